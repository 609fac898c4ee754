"""The policy's ``sanitize`` and ``sampling.tail`` sections rendered as OpenTelemetry Collector config.

``otelkit collector-config`` writes a whole Collector configuration (receivers, processors,
exporters, extensions, pipelines) for one of two tiers:

- ``agent``: OTLP in on 127.0.0.1 → memory_limiter → redaction → transform (span names and
  status messages; value length) → tail_sampling → batch → OTLP to Jaeger and to
  ``otelkit serve``, each with retries and a persistent sending queue on file_storage;
- ``gateway``: the same for a central tier, plus the span_metrics connector, which turns every
  span (before sampling) into RED metrics (calls, errors, duration) exported to ``otelkit serve``.

The redaction and tail_sampling sections come from the policy, so one file drives the
in-process chain and the Collector. The detectors (:mod:`otelkit.processors.detectors`) are
written in the subset of regular expressions Python and the Collector's RE2 share; what RE2
cannot run is handled here, one way for each case:

- a detector's ``check`` (a Python validator that narrows a match) has no Collector form, so
  the Collector masks every match of the regex: it over-redacts, never under-redacts. Two
  checks can be written as RE2 and are (``us_ssn``, ``ipv6``); the others are listed in
  :data:`UNCHECKED_RULES`;
- the whole match is masked (RE2 replacement cannot keep a prefix), ``****`` rather than
  otelkit's ``[REDACTED:rule]`` markers; ``drop`` masks instead of removing the attribute;
  ``hash`` is HMAC-SHA256 keyed with ``OTELKIT_SANITIZE_KEY`` (full hex digest);
- a pattern of the user's own that uses what RE2 lacks (look-around, back-references,
  atomic groups, ...) is refused with a :class:`ConfigError` naming the rule, never dropped.

Everything is built as plain dicts and dumped with PyYAML below a comment header that says
how to run the result; :func:`render` with the default policy is what ``collector-config/``
ships (a test keeps them equal).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import yaml

from otelkit import semconv as sc
from otelkit.config import Policy
from otelkit.config_errors import ConfigError
from otelkit.processors.detectors import BUILTIN, SAFE_KEYS, SAFE_PREFIXES, Rule, rules_for
from otelkit.sampling_settings import TailSettings
from otelkit.sanitize_settings import ENV_SANITIZE_KEY, SanitizeSettings

__all__ = [
    "COLLECTOR_VERSION",
    "ENVIRONMENT",
    "FEATURE_GATES",
    "MODES",
    "UNCHECKED_RULES",
    "CollectorRule",
    "EnvSetting",
    "build_config",
    "collector_rules",
    "emitted_regexes",
    "re2_problem",
    "render",
]

COLLECTOR_VERSION = "0.159.0"
MODES = ("agent", "gateway")
MASK = "****"  # what the redaction processor writes in place of a match; names get the same


@dataclass(frozen=True)
class EnvSetting:
    """A setting a deployment changes: ``${env:NAME:-default}`` in the rendered config."""

    name: str
    meaning: str
    agent: str | None  # the default in each mode (None: not used in that mode)
    gateway: str | None

    def default(self, mode: str) -> str | None:
        return self.agent if mode == "agent" else self.gateway


# The README and each file's header list the same.
ENVIRONMENT: tuple[EnvSetting, ...] = (
    EnvSetting("OTELKIT_COLLECTOR_HOST", "interface the gateway's OTLP receiver binds (0.0.0.0: reachable by agents)",
               None, "127.0.0.1"),
    EnvSetting("OTELKIT_COLLECTOR_GRPC_PORT", "OTLP/gRPC receiver port", "4317", "4317"),
    EnvSetting("OTELKIT_COLLECTOR_HTTP_PORT", "OTLP/HTTP receiver port", "4318", "4318"),
    EnvSetting("OTELKIT_JAEGER_ENDPOINT", "Jaeger's OTLP/gRPC receiver (collector-config/jaeger.yaml)",
               "127.0.0.1:14317", "127.0.0.1:14317"),
    EnvSetting("OTELKIT_SERVE_ENDPOINT", "otelkit serve's OTLP/gRPC endpoint (otelkit serve --grpc-endpoint ...)",
               "127.0.0.1:24317", "127.0.0.1:24317"),
    EnvSetting("OTELKIT_COLLECTOR_STORAGE_DIR", "persistent sending queues (file_storage); in production, a "
               "directory that survives reboots", "/tmp/otelkit-collector/agent", "/tmp/otelkit-collector/gateway"),
    EnvSetting("OTELKIT_COLLECTOR_HEALTH_PORT", "health_check extension on 127.0.0.1", "13133", "13133"),
    EnvSetting("OTELKIT_COLLECTOR_METRICS_PORT", "the Collector's own Prometheus metrics on 127.0.0.1 "
               "(queue size, sent and failed counts)", "8888", "8888"),
)  # fmt: skip

# Alpha feature gate the sample-rate transform relies on: tail_sampling then records which
# policy kept a trace (scope attribute ``tailsampling.policy``).
FEATURE_GATES = ("processor.tailsamplingprocessor.recordpolicy",)
TAIL_POLICY_ATTRIBUTE = "tailsampling.policy"

# Rules whose ``check`` the Collector cannot run: it masks every match of the regex.
UNCHECKED_RULES: dict[str, str] = {
    "credit_card": "the Luhn checksum: any 13-19 digit number starting 2-6 (or printed card layout) is masked",
    "openai_key": "'letters and digits': any sk- run of 20+ key characters is masked",
    "labelled_secret": "'a value, not code': password = read(...) in a stack trace is masked too",
    "high_entropy": "the entropy test: every run of 32+ [A-Za-z0-9+/_-] (long paths, hex ids) is masked",
}

# Checks RE2 can express exactly enough: the rule's regex narrowed to what the check accepts.
# us_ssn: never area 000, 666 or 9xx, group 00 or serial 0000 (the ``ssn`` check, exactly).
_SSN = (
    r"\b(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])"
    r"-(?:0[1-9]|[1-9][0-9])-(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})\b"
)
# ipv6: a well-formed address standing on its own (the ``ipv6`` check: ipaddress.IPv6Address and
# no letter, digit or ':' either side), written with \b and \B where the check looks around. A
# fixed count of groups before '::' keeps the alternatives apart, so the greedy one after it
# always takes the whole address (RE2 picks the first alternative that matches, not the longest).
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    [rf"\b{_H}(?::{_H}){{7}}\b"]
    + [rf"\b(?:{_H}:){{{left}}}(?::{_H}){{1,{7 - left}}}\b" for left in range(1, 7)]
    + [rf"\B:(?::{_H}){{1,7}}\b", rf"\b(?:{_H}:){{1,7}}:\B", r"\B::\B"]
)
COLLECTOR_VALUE: dict[str, str] = {"us_ssn": _SSN, "ipv6": _IPV6}


@dataclass(frozen=True)
class CollectorRule:
    """One sanitize rule as the Collector runs it: RE2 key and value regexes and the mode."""

    name: str
    key: str | None
    value: str | None
    mode: str


# --- RE2 ------------------------------------------------------------------------------------

_RE2_FLAGS = {"i", "m", "s"}  # inline flags both dialects read alike (RE2 also has U)
_BAD_FLAGS = {re.VERBOSE: "x (verbose)", re.ASCII: "a", re.LOCALE: "L", re.UNICODE: "u"}
_MAX_REPEAT = 1000  # RE2's largest {n,m}


def _text_problem(pattern: str) -> str | None:
    """What the pattern *spells* in a way RE2 reads differently (the parse tree cannot tell)."""
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            following = pattern[i + 1 : i + 2]
            if following == "Z":
                return "\\Z (use $ instead)"
            if following in ("u", "U", "N"):
                return f"the escape \\{following} (write the character itself, or \\x{{...}})"
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            j = i + 1
            if pattern[j : j + 1] == "^":
                j += 1
            if pattern[j : j + 1] == "]":  # a leading ']' is a member, not the end
                j += 1
            i = j
            continue
        elif pattern.startswith("(?#", i):
            return "a (?#...) comment"
        elif pattern.startswith("{,", i) and re.match(r"\{,[0-9]+\}", pattern[i:]):
            return "a {,n} repeat (write {0,n})"
        elif c == "(" and pattern.startswith("(?", i):
            flags = re.match(r"\(\?([a-zA-Z-]+)[:)]", pattern[i:])
            if flags and set(flags.group(1)) - _RE2_FLAGS - {"-"}:
                return f"the inline flag(s) {''.join(sorted(set(flags.group(1)) - _RE2_FLAGS - {'-'}))}"
        i += 1
    return None


def _tree_problem(items: Any) -> str | None:
    for op, av in items:
        if op in (sre.ASSERT, sre.ASSERT_NOT):
            direction, _ = av
            kind = "look-behind" if direction < 0 else "look-ahead"
            return f"a {'negative ' if op is sre.ASSERT_NOT else ''}{kind}"
        if op is sre.GROUPREF:
            return "a back-reference"
        if op is sre.GROUPREF_EXISTS:
            return "a conditional group (?(...)...)"
        if op is sre.ATOMIC_GROUP:
            return "an atomic group (?>...)"
        if op is sre.POSSESSIVE_REPEAT:
            return "a possessive quantifier"
        if op is sre.AT and av is sre.AT_END_STRING:
            return "\\Z (use $ instead)"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, sub = av
            if low > _MAX_REPEAT or (high is not sre.MAXREPEAT and high > _MAX_REPEAT):
                return f"a repeat count above {_MAX_REPEAT}"
            found = _tree_problem(sub)
        elif op is sre.SUBPATTERN:
            _, add, remove, sub = av
            for flag, name in _BAD_FLAGS.items():
                if (add | remove) & flag:
                    return f"the inline flag {name}"
            found = _tree_problem(sub)
        elif op is sre.BRANCH:
            found = next((p for p in map(_tree_problem, av[1]) if p), None)
        else:
            found = None
        if found:
            return found
    return None


def re2_problem(pattern: str) -> str | None:
    """Why the Collector's RE2 cannot run ``pattern`` as Python does, or None when it can.

    Checks what RE2 lacks (look-around, back-references, conditionals, atomic groups,
    possessive quantifiers, repeats above 1000, the x/a/u/L flags, comments) and what it spells
    differently (``\\Z``, ``\\u``, ``{,n}``). Character classes such as ``\\s`` and ``\\b`` are
    ASCII in RE2 and Unicode in Python: that difference is accepted (it only matters for
    non-ASCII text around a match).
    """
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    if parsed.state.flags & (re.VERBOSE | re.LOCALE):
        return "the x or L flag"
    return _text_problem(pattern) or _tree_problem(parsed)


# --- sanitize → redaction -------------------------------------------------------------------


def collector_rules(settings: SanitizeSettings) -> tuple[CollectorRule, ...]:
    """The policy's rules (:func:`rules_for`, in order) as the Collector runs them.

    Key regexes are searched case-insensitively in otelkit, so they get ``(?i)``. A rule of the
    user's own that RE2 cannot run raises :class:`ConfigError` naming it.
    """
    result = []
    for rule in rules_for(settings):
        key = value = None
        if rule.key:
            _require_re2(rule, rule.key, "key_patterns")
            key = rule.key if rule.key.startswith("(?i)") else f"(?i){rule.key}"
        if rule.value:
            value = COLLECTOR_VALUE.get(rule.name, rule.value) if rule.name in BUILTIN else rule.value
            _require_re2(rule, value, "value_patterns")
        result.append(CollectorRule(rule.name, key, value, rule.mode))
    return tuple(result)


def _require_re2(rule: Rule, pattern: str, field_name: str) -> None:
    problem = re2_problem(pattern)
    if problem is None:
        return
    where = f"sanitize.{field_name}" if rule.name not in BUILTIN else "sanitize"
    raise ConfigError(
        f"{where}: rule {rule.name!r} uses {problem}, which the Collector's RE2 regular expressions "
        "cannot run; rewrite the pattern without it"
    )


def _glob_regex(glob: str) -> str:
    """An ``allow_keys`` glob (fnmatch: * ? [seq] [!seq], case-sensitive) as an anchored RE2 regex."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1 if glob[i : i + 1] == "!" else i
            j = j + 1 if glob[j : j + 1] == "]" else j  # a leading ']' is a member
            close = glob.find("]", j)
            if close < 0:
                out.append(re.escape(c))
                continue
            body = glob[i:close]
            negate = body.startswith("!")
            members = "".join("\\" + ch if ch in "\\^[]" else ch for ch in (body[1:] if negate else body))
            out.append(f"[{'^' if negate else ''}{members}]")
            i = close + 1
        else:
            out.append(re.escape(c))
    return "^" + "".join(out) + "$"


def _redaction(rules: list[CollectorRule], safe: list[str], patterns: list[str], hashed: bool) -> dict[str, Any]:
    config: dict[str, Any] = {
        "allow_all_keys": True,  # keys are masked by pattern, never removed for not being listed
        "ignored_keys": [_literal(k) for k in safe],
    }
    if patterns:
        config["ignored_key_patterns"] = patterns
    keys = [r.key for r in rules if r.key]
    values = [r.value for r in rules if r.value]
    if keys:
        config["blocked_key_patterns"] = [_literal(k) for k in keys]
    if values:
        config["blocked_values"] = [_literal(v) for v in values]
    config["redact_all_types"] = True  # numbers too: a card number sent as an int is masked
    if hashed:
        config["hash_function"] = "hmac-sha256"
        config["hmac_key"] = f"${{env:{ENV_SANITIZE_KEY}}}"
    config["summary"] = "info"  # redaction.masked.count on what it touched, never key names
    return config


def redaction_processors(settings: SanitizeSettings) -> dict[str, dict[str, Any]]:
    """``redaction`` for the redact and drop rules, ``redaction/hash`` for the hash rules."""
    rules = collector_rules(settings)
    if not rules:
        return {}
    literal = [k for k in settings.allow_keys if not any(ch in k for ch in "*?[")]
    safe = sorted(SAFE_KEYS | set(literal))
    patterns = [f"^{re.escape(p)}" for p in SAFE_PREFIXES]
    patterns += [_literal(_glob_regex(k)) for k in settings.allow_keys if k not in literal]
    processors: dict[str, dict[str, Any]] = {}
    masked = [r for r in rules if r.mode != "hash"]
    hashed = [r for r in rules if r.mode == "hash"]
    if masked:
        processors["redaction"] = _redaction(masked, safe, patterns, hashed=False)
    if hashed:
        processors["redaction/hash"] = _redaction(hashed, safe, patterns, hashed=True)
    return processors


def _literal(text: str) -> str:
    """``text`` as the Collector reads it back: its config expands ``${...}`` and reads ``$$`` as
    ``$``, so a ``$`` before ``{`` or ``$`` (possible in a user's regex) is doubled."""
    return re.sub(r"\$(?=[{$])", "$$", text)


def _ottl_string(text: str) -> str:
    """``text`` as an OTTL string literal (Go-unquoted: backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sanitize_transform(settings: SanitizeSettings) -> dict[str, Any] | None:
    """What redaction leaves out: value rules on span names, status messages and event names,
    and ``max_value_length`` on attribute strings (cut after redaction saw the whole value)."""
    rules = collector_rules(settings)
    values = [r.value for r in rules if r.value]
    span: list[str] = []
    event: list[str] = []
    log: list[str] = []
    for value in values:
        regex = _literal(_ottl_string(value))
        span.append(f'replace_pattern(span.name, {regex}, "{MASK}")')
        span.append(f'replace_pattern(span.status.message, {regex}, "{MASK}")')
        event.append(f'replace_pattern(spanevent.name, {regex}, "{MASK}")')
    limit = settings.max_value_length if rules else 0
    if limit:
        span.append(f"truncate_all(span.attributes, {limit})")
        span.append(f"truncate_all(resource.attributes, {limit})")
        event.append(f"truncate_all(spanevent.attributes, {limit})")
        log.append(f"truncate_all(log.attributes, {limit})")
    if not span and not event and not log:
        return None
    config: dict[str, Any] = {"error_mode": "ignore"}
    trace_groups = [{"context": c, "statements": s} for c, s in (("span", span), ("spanevent", event)) if s]
    if trace_groups:
        config["trace_statements"] = trace_groups
    if log:
        config["log_statements"] = [{"context": "log", "statements": log}]
    return config


# --- sampling.tail → tail_sampling ----------------------------------------------------------

_REST_POLICY = "rest"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def tail_sampling_processor(tail: TailSettings) -> dict[str, Any] | None:
    """The tail rules as tail_sampling policies (a trace is kept when any policy keeps it).

    None when ``keep_ratio`` is 1: every trace is kept, so holding them would only cost memory.
    ``enabled`` switches the in-process stage only; the Collector, which sees whole traces,
    always applies the rules.
    """
    if tail.keep_ratio >= 1.0:
        return None
    policies: list[dict[str, Any]] = []
    if tail.keep_errors:
        policies.append({"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}})
    if tail.latency_threshold_ms is not None:
        # whole milliseconds: the Collector keeps a trace whose duration in ms exceeds this
        threshold = int(math.floor(tail.latency_threshold_ms))
        policies.append({"name": "slow", "type": "latency", "latency": {"threshold_ms": threshold}})
    if tail.cost_threshold_usd is not None:
        condition = f'span.attributes["{sc.GEN_AI_USAGE_COST}"] > {float(tail.cost_threshold_usd)!r}'
        policies.append(
            {"name": "costly", "type": "ottl_condition", "ottl_condition": {"error_mode": "ignore", "span": [condition]}}
        )
    if tail.keep_ratio > 0:
        percentage = round(tail.keep_ratio * 100, 10)
        policies.append(
            {"name": _REST_POLICY, "type": "probabilistic", "probabilistic": {"sampling_percentage": percentage}}
        )
    if not policies:
        raise ConfigError(
            "sampling.tail: keep_ratio is 0 and no rule (keep_errors, latency_threshold_ms, cost_threshold_usd) "
            "keeps a trace, so the Collector would drop every trace"
        )
    return {
        "decision_wait": _seconds(tail.decision_timeout_s),
        # decide soon after the root span arrives, as the in-process stage decides when it ends
        "decision_wait_after_root_received": "1s",
        "num_traces": tail.max_traces,
        "decision_cache": {
            "sampled_cache_size": tail.recent_decisions,
            "non_sampled_cache_size": tail.recent_decisions,
        },
        "policies": policies,
    }


def sample_rate_transform(tail: TailSettings) -> dict[str, Any] | None:
    """Multiply ``otelkit.sample.rate`` by ``1 / keep_ratio`` on the spans of traces kept only
    by the ratio, so reports keep estimating true counts (needs :data:`FEATURE_GATES`)."""
    if not 0 < tail.keep_ratio < 1:
        return None
    factor = 1.0 / tail.keep_ratio
    rate = f'span.attributes["{sc.SAMPLE_RATE}"]'
    return {
        "error_mode": "ignore",
        "trace_statements": [
            {
                "context": "span",
                "conditions": [f'scope.attributes["{TAIL_POLICY_ATTRIBUTE}"] == "{_REST_POLICY}"'],
                "statements": [
                    f"set({rate}, Double({rate}) * {factor!r}) where {rate} != nil",
                    f"set({rate}, {factor!r}) where {rate} == nil",
                ],
            }
        ],
    }


# --- the whole config -----------------------------------------------------------------------


def _env(name: str, mode: str) -> str:
    default = next(setting for setting in ENVIRONMENT if setting.name == name).default(mode)
    return f"${{env:{name}:-{default}}}"


def _otlp_exporter(endpoint_env: str, mode: str) -> dict[str, Any]:
    return {
        "endpoint": _env(endpoint_env, mode),
        "tls": {"insecure": True},
        "timeout": "10s",
        # never give up on queued data: a backend that is down only delays it
        "retry_on_failure": {"enabled": True, "initial_interval": "1s", "max_interval": "30s", "max_elapsed_time": "0s"},
        "sending_queue": {"enabled": True, "storage": "file_storage", "num_consumers": 4, "queue_size": 5000},
    }


def build_config(policy: Policy, mode: str) -> dict[str, Any]:
    """The Collector config for ``mode`` (agent or gateway) as plain dicts, in file order."""
    if mode not in MODES:
        raise ConfigError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    gateway = mode == "gateway"
    host = _env("OTELKIT_COLLECTOR_HOST", mode) if gateway else "127.0.0.1"
    storage = _env("OTELKIT_COLLECTOR_STORAGE_DIR", mode)

    redaction = redaction_processors(policy.sanitize)
    sanitize = sanitize_transform(policy.sanitize)
    tail = tail_sampling_processor(policy.sampling.tail)
    weights = sample_rate_transform(policy.sampling.tail) if tail else None

    processors: dict[str, Any] = {
        "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
        **redaction,
    }
    if sanitize:
        processors["transform/sanitize"] = sanitize
    if tail:
        processors["tail_sampling"] = tail
    if weights:
        processors["transform/sample_rate"] = weights
    processors["batch"] = {"send_batch_size": 1024, "send_batch_max_size": 2048, "timeout": "1s"}

    scrub = ["memory_limiter", *redaction]
    traces = [*scrub, *(["transform/sanitize"] if sanitize else [])]
    logs = [*scrub, *(["transform/sanitize"] if sanitize and "log_statements" in sanitize else []), "batch"]
    sampled = [*traces, *(["tail_sampling"] if tail else []), *(["transform/sample_rate"] if weights else []), "batch"]

    pipelines: dict[str, Any] = {
        "traces": {"receivers": ["otlp"], "processors": sampled, "exporters": ["otlp_grpc/jaeger", "otlp_grpc/otelkit"]},
    }
    if gateway:
        # RED metrics from every span, before tail sampling drops any
        pipelines["traces/spanmetrics"] = {"receivers": ["otlp"], "processors": traces, "exporters": ["span_metrics"]}
    pipelines["metrics"] = {
        "receivers": ["otlp", "span_metrics"] if gateway else ["otlp"],
        "processors": [*scrub, "batch"],
        "exporters": ["otlp_grpc/otelkit"],
    }
    pipelines["logs"] = {"receivers": ["otlp"], "processors": logs, "exporters": ["otlp_grpc/otelkit"]}

    config: dict[str, Any] = {
        "extensions": {
            "health_check": {"endpoint": f"127.0.0.1:{_env('OTELKIT_COLLECTOR_HEALTH_PORT', mode)}"},
            "file_storage": {
                "directory": storage,
                "create_directory": True,
                "timeout": "10s",
                "compaction": {"directory": storage, "on_start": True, "on_rebound": True},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{host}:{_env('OTELKIT_COLLECTOR_GRPC_PORT', mode)}"},
                    "http": {"endpoint": f"{host}:{_env('OTELKIT_COLLECTOR_HTTP_PORT', mode)}"},
                }
            }
        },
        "processors": processors,
    }
    if gateway:
        config["connectors"] = {
            "span_metrics": {
                "histogram": {
                    "unit": "ms",
                    "explicit": {"buckets": ["5ms", "10ms", "25ms", "50ms", "100ms", "250ms", "500ms", "1s", "2500ms", "5s", "10s", "30s"]},
                },
                "dimensions": [
                    {"name": sc.OPERATION_TYPE},
                    {"name": sc.GEN_AI_OPERATION_NAME},
                    {"name": sc.GEN_AI_REQUEST_MODEL},
                    {"name": sc.ERROR_TYPE},
                ],
                "aggregation_temporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                "metrics_flush_interval": "15s",
            }
        }
    config["exporters"] = {
        "otlp_grpc/jaeger": _otlp_exporter("OTELKIT_JAEGER_ENDPOINT", mode),
        "otlp_grpc/otelkit": _otlp_exporter("OTELKIT_SERVE_ENDPOINT", mode),
    }
    config["service"] = {
        "extensions": ["health_check", "file_storage"],
        "pipelines": pipelines,
        "telemetry": {
            "metrics": {
                "level": "normal",
                "readers": [
                    {
                        "pull": {
                            "exporter": {
                                "prometheus": {"host": "127.0.0.1", "port": _env("OTELKIT_COLLECTOR_METRICS_PORT", mode)}
                            }
                        }
                    }
                ],
            }
        },
    }
    return config


def emitted_regexes(config: dict[str, Any]) -> list[str]:
    """Every regular expression a config built here hands the Collector (the redaction lists and
    the transform's replace_pattern calls), as the Collector reads it (``$$`` back to ``$``)."""
    found: list[str] = []
    for name, processor in config.get("processors", {}).items():
        kind = name.split("/")[0]
        if kind == "redaction":
            for field in ("blocked_key_patterns", "blocked_values", "ignored_key_patterns"):
                found += processor.get(field, [])
        elif kind == "transform":
            for groups in (processor.get("trace_statements", []), processor.get("log_statements", [])):
                for group in groups:
                    for statement in group["statements"]:
                        call = _REPLACE_CALL.match(statement)
                        if call:
                            found.append(re.sub(r"\\(.)", r"\1", call.group(1)))  # undo _ottl_string
    return [text.replace("$$", "$") for text in found]


_REPLACE_CALL = re.compile(r'replace_pattern\([a-z.]+, "((?:\\.|[^\\"])*)", ')


def _header(policy: Policy, mode: str, source: str | None) -> str:
    settings = policy.sanitize
    rules = collector_rules(settings)
    names = {r.name for r in rules}
    from_what = f"the policy {source}" if source else "the default policy (no policy file)"
    regenerate = f"otelkit collector-config --mode {mode}" + (f" --policy {source}" if source else "")
    lines = [
        f"OpenTelemetry Collector config ({mode}) for otelcol-otelkit v{COLLECTOR_VERSION}",
        f"(collector-config/builder-config.yaml), rendered from {from_what} by:",
        f"  {regenerate}",
        "Change the policy and render again rather than editing this file.",
        "",
        "Run:",
        f"  otelcol-otelkit --config {mode}.yaml --feature-gates={','.join(FEATURE_GATES)}",
        "The feature gate lets transform/sample_rate re-weight traces the tail sampler kept by its",
        "rate (otelkit.sample.rate), so otelkit reports still estimate true counts.",
        "",
        "Environment (default):",
    ]
    for setting in ENVIRONMENT:
        if setting.default(mode) is not None:
            lines.append(f"  {setting.name} ({setting.default(mode)}): {setting.meaning}")
    if any(r.mode == "hash" for r in rules):
        lines.append(f"  {ENV_SANITIZE_KEY} (required, 32+ characters): HMAC key of the hash-mode rules")
    lines += ["", "Redaction (policy: sanitize):"]
    if not rules:
        lines.append("  none: sanitize.preset is off")
    else:
        lines += [
            f"  {len(rules)} rules; matches become {MASK} (the whole match), hash-mode rules an HMAC-SHA256",
            "  hex digest, drop-mode rules are masked (the Collector cannot drop by rule).",
        ]
        unchecked = [f"{n}: {why}" for n, why in UNCHECKED_RULES.items() if n in names]
        if unchecked:
            lines.append("  Checks RE2 cannot run, so these over-redact:")
            lines += [f"    {line}" for line in unchecked]
    tail = policy.sampling.tail
    lines += ["", "Tail sampling (policy: sampling.tail):"]
    if tail.keep_ratio >= 1.0:
        lines.append("  none: keep_ratio is 1, every trace is kept")
    else:
        kept = (["errors"] if tail.keep_errors else [])
        if tail.latency_threshold_ms is not None:
            kept.append(f"traces over {tail.latency_threshold_ms:g} ms")
        if tail.cost_threshold_usd is not None:
            kept.append(f"traces with a span costing over ${tail.cost_threshold_usd:g}")
        lines.append(f"  keeps {', '.join(kept) or 'no trace by rule'}; {tail.keep_ratio:.4g} of the rest.")
    return "".join(f"# {line}".rstrip() + "\n" for line in lines) + "\n"


def render(policy: Policy, mode: str, source: str | None = None) -> str:
    """The YAML text ``otelkit collector-config`` writes: a comment header, then the config."""
    config = build_config(policy, mode)
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1_000_000, allow_unicode=True)
    return _header(policy, mode, source) + body
