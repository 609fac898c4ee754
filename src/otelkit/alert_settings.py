"""The policy's ``alerts`` section: threshold rules over finished spans and where alerts go.

Owned by the alerting stage (:mod:`otelkit.processors.alerting`). Every rule is validated here,
once, at load, so the engine never meets a rule it cannot evaluate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from otelkit.config_errors import ConfigError

# What each kind measures and the unit of its ``threshold``:
#   latency       one span's duration (ms) above threshold
#   percentile    the rolling ``percentile`` of durations (ms) over window_s above threshold
#   error_rate    the share of ERROR spans (0..1) over window_s above threshold, given min_count spans
#   success_rate  the share of non-ERROR spans (0..1) over window_s below threshold, given min_count
#   error_burst   at least threshold ERROR spans of one error category within window_s
#   daily_cost    the summed gen_ai.usage.cost (USD) of the current UTC day above threshold
#   token_spike   tokens within window_s above factor x the average of the baseline_windows
#                 windows before it, and above threshold (a floor; default 0)
RULE_KINDS: tuple[str, ...] = (
    "latency", "percentile", "error_rate", "success_rate", "error_burst", "daily_cost", "token_spike",
)  # fmt: skip
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
GROUP_FIELDS: tuple[str, ...] = ("name", "operation_type", "model", "agent")
WEBHOOK_FORMATS: tuple[str, ...] = ("json", "slack")

_RATE_KINDS = ("error_rate", "success_rate")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+:[^\r\n]*$")
MAX_BASELINE_WINDOWS = 100


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")


@dataclass(frozen=True)
class Selector:
    """Which spans a rule watches; every field given must match (globs: ``*``, ``?``, ``[...]``).

    ``operation_type`` is ``otelkit.operation.type`` or the type a ``gen_ai.operation.name``
    denotes; ``model`` the response model, else the request model; ``agent`` is
    ``gen_ai.agent.name``; ``attributes`` are ``"key=value"`` equalities (values compared as
    text, booleans as ``true``/``false``).
    """

    operation_type: str | None = None
    name: str | None = None
    model: str | None = None
    agent: str | None = None
    attributes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for index, item in enumerate(self.attributes):
            key, sep, _ = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"attributes[{index}]: expected 'key=value', got {item!r}")

    def attribute_pairs(self) -> tuple[tuple[str, str], ...]:
        """The ``attributes`` equalities as (key, value) pairs, keys stripped."""
        pairs = []
        for item in self.attributes:
            key, _, value = item.partition("=")
            pairs.append((key.strip(), value.strip()))
        return tuple(pairs)


@dataclass(frozen=True)
class AlertRule:
    """One threshold rule; see :data:`RULE_KINDS` for what ``threshold`` means per kind.

    An alert is per rule and group (the values of ``group_by``; error_burst also groups by
    error category). It fires after ``occurrences`` breaching evaluations in a row, is sent
    again at most every ``min_interval_s`` (event time) while it holds, and resolves when the
    condition clears.
    """

    name: str = ""
    kind: str = ""
    threshold: float | None = None
    window_s: float = 300.0
    min_count: int = 20
    percentile: float = 95.0
    select: Selector = field(default_factory=Selector)
    group_by: tuple[str, ...] = ()
    min_interval_s: float = 300.0
    occurrences: int = 1
    severity: str = "warning"
    baseline_windows: int = 6
    factor: float = 3.0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError("name: every rule needs a name")
        if self.kind not in RULE_KINDS:
            raise ConfigError(f"kind: expected one of {', '.join(RULE_KINDS)}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ConfigError(f"severity: expected one of {', '.join(SEVERITIES)}, got {self.severity!r}")
        if self.threshold is None:
            if self.kind != "token_spike":
                raise ConfigError(f"threshold: a {self.kind} rule needs a threshold")
            object.__setattr__(self, "threshold", 0.0)  # token_spike: no floor under the spike
        threshold = float(self.threshold)  # type: ignore[arg-type]
        _finite("threshold", threshold)
        if threshold < 0:
            raise ConfigError(f"threshold: expected zero or more, got {threshold!r}")
        if self.kind in _RATE_KINDS and threshold > 1:
            raise ConfigError(f"threshold: a {self.kind} is a fraction from 0 to 1, got {threshold!r}")
        _finite("window_s", self.window_s)
        if self.window_s <= 0:
            raise ConfigError(f"window_s: expected more than 0, got {self.window_s!r}")
        if self.min_count < 1:
            raise ConfigError(f"min_count: expected 1 or more, got {self.min_count!r}")
        if not 0 < self.percentile < 100:
            raise ConfigError(f"percentile: expected more than 0 and less than 100, got {self.percentile!r}")
        _finite("min_interval_s", self.min_interval_s)
        if self.min_interval_s < 0:
            raise ConfigError(f"min_interval_s: expected zero or more, got {self.min_interval_s!r}")
        if self.occurrences < 1:
            raise ConfigError(f"occurrences: expected 1 or more, got {self.occurrences!r}")
        if not 1 <= self.baseline_windows <= MAX_BASELINE_WINDOWS:
            raise ConfigError(f"baseline_windows: expected 1 to {MAX_BASELINE_WINDOWS}, got {self.baseline_windows!r}")
        _finite("factor", self.factor)
        if self.factor <= 0:
            raise ConfigError(f"factor: expected more than 0, got {self.factor!r}")
        for index, name in enumerate(self.group_by):
            if name not in GROUP_FIELDS:
                raise ConfigError(f"group_by[{index}]: expected one of {', '.join(GROUP_FIELDS)}, got {name!r}")
        if len(set(self.group_by)) != len(self.group_by):
            raise ConfigError("group_by: a field is listed twice")


@dataclass(frozen=True)
class Webhook:
    """An HTTP endpoint that receives each alert as a JSON POST, from a background thread.

    ``format: slack`` sends ``{"text": ...}`` (Slack, Mattermost, Teams incoming webhooks).
    A failed delivery (connection error, timeout, 429 or 5xx) is retried ``max_retries`` times,
    waiting ``backoff_s``, then twice that, and so on. At most ``queue_size`` alerts wait; when
    the queue is full the oldest waiting alert is dropped (and counted). ``headers`` are
    ``"Name: value"`` strings (an ``Authorization`` header, for instance).
    """

    url: str = ""
    format: str = "json"
    timeout_s: float = 5.0
    max_retries: int = 3
    backoff_s: float = 0.5
    queue_size: int = 1000
    headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("url: expected an http:// or https:// URL")
        if self.format not in WEBHOOK_FORMATS:
            raise ConfigError(f"format: expected one of {', '.join(WEBHOOK_FORMATS)}, got {self.format!r}")
        _finite("timeout_s", self.timeout_s)
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s: expected more than 0, got {self.timeout_s!r}")
        if not 0 <= self.max_retries <= 20:
            raise ConfigError(f"max_retries: expected 0 to 20, got {self.max_retries!r}")
        _finite("backoff_s", self.backoff_s)
        if self.backoff_s < 0:
            raise ConfigError(f"backoff_s: expected zero or more, got {self.backoff_s!r}")
        if self.queue_size < 1:
            raise ConfigError(f"queue_size: expected 1 or more, got {self.queue_size!r}")
        for index, header in enumerate(self.headers):
            if not _HEADER.match(header):
                raise ConfigError(f"headers[{index}]: expected 'Name: value' on one line")

    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        """The ``headers`` as (name, value) pairs."""
        return tuple((name.strip(), value.strip()) for name, _, value in (h.partition(":") for h in self.headers))

    @property
    def host(self) -> str:
        """Scheme and host only: what logs and ``otelkit alerts rules`` show (webhook URLs carry secrets)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}"


@dataclass(frozen=True)
class AlertSettings:
    """No rules by default; alerts go to the ``otelkit.alerts`` log and the store.

    ``max_groups`` bounds the groups each rule tracks (least recently seen, not firing, go
    first); ``shutdown_timeout_s`` bounds how long shutdown waits for queued webhook and store
    deliveries.
    """

    enabled: bool = True
    rules: tuple[AlertRule, ...] = ()
    log: bool = True
    store: bool = True
    webhooks: tuple[Webhook, ...] = ()
    max_groups: int = 1000
    shutdown_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ConfigError(f"rules[{index}].name: rule {rule.name!r} is defined twice")
            seen.add(rule.name)
        if self.max_groups < 1:
            raise ConfigError(f"max_groups: expected 1 or more, got {self.max_groups!r}")
        _finite("shutdown_timeout_s", self.shutdown_timeout_s)
        if self.shutdown_timeout_s < 0:
            raise ConfigError(f"shutdown_timeout_s: expected zero or more, got {self.shutdown_timeout_s!r}")
