"""The otelkit policy: one YAML file (``OTELKIT_CONFIG``) mapped onto frozen dataclasses.

The file is validated once, at load, by walking the YAML node tree against the dataclass
fields, so an error names the dotted key and its line. Every field has a default, so otelkit
is useful with no file at all; later features add a section by adding a dataclass field to
:class:`Policy`. Environment variables override the file where DESIGN.md names one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from otelkit.alert_settings import AlertSettings
from otelkit.config_errors import ConfigError
from otelkit.enrich_settings import EnrichSettings
from otelkit.sampling_settings import SamplingSettings
from otelkit.sanitize_settings import SanitizeSettings

__all__ = ["ConfigError", "Policy", "current_policy", "load_policy", "parse_policy", "reset_policy_cache"]

ENV_CONFIG = "OTELKIT_CONFIG"
ENV_SQLITE_PATH = "OTELKIT_SQLITE_PATH"
ENV_AUTOWRAP = "OTELKIT_AUTOWRAP"
ENV_CAPTURE_CONTENT = "OTELKIT_CAPTURE_CONTENT"
ENV_GENAI_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_METRICS = "OTELKIT_METRICS"
DEFAULT_SQLITE_PATH = "./otelkit.db"
TOKENIZERS = ("auto", "tiktoken", "estimate")


@dataclass(frozen=True)
class StoreSettings:
    """Where and how spans, metrics and logs are written."""

    path: str = DEFAULT_SQLITE_PATH
    busy_timeout_ms: int = 30_000
    cache_size_mib: int = 64


@dataclass(frozen=True)
class InstrumentationSettings:
    """What the zero-code instrumentation records."""

    capture_content: bool = False
    autowrap: tuple[str, ...] = ()
    metrics: bool = True
    stream_usage: bool = False
    tokenizer: str = "auto"

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"tokenizer: expected one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")


@dataclass(frozen=True)
class ModelPrice:
    """One pricing-table entry: USD per million tokens for a provider's model (or model pattern)."""

    model: str = ""
    provider: str = ""
    input: float = 0.0
    output: float = 0.0
    cached_input: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model: a model name or pattern is required")
        for name in ("input", "output", "cached_input", "cache_write"):
            value = getattr(self, name)
            if value is not None and (value < 0 or value != value):
                raise ConfigError(f"{name}: a price must be zero or more, got {value!r}")


@dataclass(frozen=True)
class PricingSettings:
    """Where prices come from: the vendored table, or ``table`` in its place, with ``models`` on top."""

    table: str | None = None
    models: tuple[ModelPrice, ...] = ()


@dataclass(frozen=True)
class ChainSettings:
    """How the processor chain treats a span whose stage raised: ``pass`` it on unchanged
    (nothing already finished is lost) or ``drop`` it (nothing unchecked leaves the process)."""

    on_stage_error: str = "pass"

    def __post_init__(self) -> None:
        if self.on_stage_error not in ("pass", "drop"):
            raise ConfigError(f"on_stage_error: expected pass or drop, got {self.on_stage_error!r}")


@dataclass(frozen=True)
class Policy:
    """The whole policy; each section is a frozen dataclass with defaults."""

    version: int = 1
    store: StoreSettings = field(default_factory=StoreSettings)
    instrumentation: InstrumentationSettings = field(default_factory=InstrumentationSettings)
    pricing: PricingSettings = field(default_factory=PricingSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    sanitize: SanitizeSettings = field(default_factory=SanitizeSettings)
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    chain: ChainSettings = field(default_factory=ChainSettings)


def _where(node: yaml.Node | None) -> str:
    return f" (line {node.start_mark.line + 1})" if node is not None else ""


def _scalar(node: yaml.Node, key: str, kind: type) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{key}: expected a {kind.__name__}{_where(node)}")
    value = yaml.safe_load(yaml.serialize(node))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, (int, float)):
        value = str(node.value)  # as written: `preset: off` is the word off, not YAML's false
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected a {kind.__name__}, got {value!r}{_where(node)}")
    return value


def _convert(node: yaml.Node, key: str, hint: Any) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, node, key)
    origin = typing.get_origin(hint)
    if origin is tuple:
        item_hint = typing.get_args(hint)[0]
        if isinstance(node, yaml.ScalarNode) and item_hint is str:
            text = _scalar(node, key, str)
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if not isinstance(node, yaml.SequenceNode):
            raise ConfigError(f"{key}: expected a list{_where(node)}")
        return tuple(_convert(item, f"{key}[{i}]", item_hint) for i, item in enumerate(node.value))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return None
        return _convert(node, key, args[0])
    return _scalar(node, key, hint)


def _build(cls: Any, node: yaml.Node | None, prefix: str) -> Any:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
        return cls()
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{prefix or 'policy'}: expected a mapping{_where(node)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        name = str(key_node.value)
        dotted = f"{prefix}.{name}" if prefix else name
        if name not in names:
            raise ConfigError(
                f"unknown key '{dotted}'{_where(key_node)}; expected one of: {', '.join(sorted(names))}"
            )
        values[name] = _convert(value_node, dotted, hints[name])
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{prefix or 'policy'}.{exc}{_where(node)}") from None


def parse_document(cls: Any, text: str, source: str) -> Any:
    """Parse YAML ``text`` into the dataclass ``cls``; raises ConfigError naming the key and line."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    return _build(cls, root, "")


def parse_policy(text: str, source: str = "policy") -> Policy:
    """Parse policy YAML text; raises ConfigError naming the bad key and line."""
    policy: Policy = parse_document(Policy, text, source)
    if policy.version != 1:
        raise ConfigError(f"version: unsupported policy version {policy.version}; this otelkit reads 1")
    return policy


def _truthy(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def apply_environment(policy: Policy, environ: Mapping[str, str]) -> Policy:
    """Overlay the OTELKIT_* (and standard OTEL_*) variables on a policy."""
    store = policy.store
    if environ.get(ENV_SQLITE_PATH):
        store = dataclasses.replace(store, path=environ[ENV_SQLITE_PATH])
    inst = policy.instrumentation
    for name in (ENV_GENAI_CAPTURE_CONTENT, ENV_CAPTURE_CONTENT):
        if name in environ:
            inst = dataclasses.replace(inst, capture_content=_truthy(environ[name], name))
    if ENV_METRICS in environ:
        inst = dataclasses.replace(inst, metrics=_truthy(environ[ENV_METRICS], ENV_METRICS))
    if environ.get(ENV_AUTOWRAP):
        specs = tuple(s.strip() for s in environ[ENV_AUTOWRAP].split(",") if s.strip())
        inst = dataclasses.replace(inst, autowrap=inst.autowrap + specs)
    return dataclasses.replace(policy, store=store, instrumentation=inst)


def load_policy(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Policy:
    """The effective policy: the file (argument, else ``OTELKIT_CONFIG``) plus the environment."""
    env = os.environ if environ is None else environ
    source = path if path is not None else env.get(ENV_CONFIG)
    policy = Policy()
    if source:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read policy file {source}: {exc.strerror or exc}") from None
        policy = parse_policy(text, str(source))
    return apply_environment(policy, env)


_cached: Policy | None = None


def current_policy() -> Policy:
    """The process-wide policy, loaded once on first use.

    This is what instrumented programs use, so it never raises: a bad file or variable is
    reported once on the ``otelkit`` logger and the defaults apply. The CLI calls
    :func:`load_policy`, which raises, instead.
    """
    global _cached
    if _cached is None:
        try:
            _cached = load_policy()
        except ConfigError as exc:
            logging.getLogger("otelkit").error("otelkit: %s; using the default policy", exc)
            try:
                _cached = apply_environment(Policy(), os.environ)
            except ConfigError:
                _cached = Policy()
    return _cached


def reset_policy_cache() -> None:
    """Forget the cached policy (tests and long-lived hosts that reload settings)."""
    global _cached
    _cached = None
