"""Head sampling: rules by operation type and span name, parent-based, consistent across processes.

How otelkit samples, end to end (the tail stage is :mod:`otelkit.processors.tail_sampling`):

- **Only local roots are decided.** A span with no valid parent, or whose remote parent carries
  no decision otelkit can trust, is matched against the head rules (first match wins, else
  ``default_ratio``). Every other span follows its parent, so a trace is never split: a kept
  parent's children are kept, a dropped parent's children are dropped.
- **Consistent.** The decision follows the OpenTelemetry consistent probability sampling
  convention (TraceState ``ot=th:...``): a ratio ``p`` becomes the rejection threshold
  ``T = 2**56 - round(p * 2**56)`` and the span is kept when the trace's randomness
  ``R >= T``; ``R`` is the low 56 bits of the trace id (random in W3C Trace Context level 2
  ids), or the ``ot=rv:`` value when an upstream supplied one. The same trace id gets the same
  decision in every process and from every consistent sampler with the same ratio.
- **The rate travels with the trace.** A kept local root writes ``th`` (full 56-bit
  precision, trailing zeros trimmed) into its ``ot`` tracestate entry; children inherit the
  tracestate, the W3C ``tracecontext`` propagator carries it to other processes, and every
  kept span learns its rate from it, so children in any process carry their root's value.
- **Which remote parents are trusted.** A sampled remote parent with a threshold its
  randomness satisfies is followed, with that threshold's rate. A remote parent that is not
  sampled is followed too (dropping never skews a weight, and keeping under a dropped parent
  would store half a trace). A sampled remote parent without a threshold (a sampler of unknown
  probability upstream), or with one that contradicts its flag, is decided by the rules as a
  local root, keeping the other tracestate entries.

``otelkit.sample.rate`` on a span is its *adjusted count*: how many spans of the unsampled
population it stands for, ``1 / probability`` (a span kept with probability 0.1 carries 10.0;
every kept span carries it, 1.0 when nothing was sampled away). It is derived from the
threshold (``2**56 / (2**56 - T)``, rounded to 10 significant digits so that 10% gives exactly
10.0), and the tail stage multiplies it when it keeps a fraction of the remaining traces.
Reports weight every span by it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otelkit import semconv as sc
from otelkit.sampling_settings import HeadRule, SamplingSettings

if TYPE_CHECKING:
    from otelkit.config import Policy

__all__ = [
    "MAX_THRESHOLD",
    "OtValue",
    "RuleSampler",
    "adjusted_count",
    "head_sampler",
    "ot_entry",
    "parse_ot",
    "proportional_threshold",
    "randomness_of",
    "sampler_for_environment",
    "threshold_for",
    "with_threshold",
]

MAX_THRESHOLD = 1 << 56  # thresholds and randomness are 56-bit values (7 random trace-id bytes)
RANDOMNESS_MASK = MAX_THRESHOLD - 1
OT_KEY = sc.TRACESTATE_OT  # the OpenTelemetry entry of the W3C tracestate
OTHER_TYPE = "other"  # what the rules call a span with no operation type (as reports do)
ENV_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER"
_THRESHOLD_DIGITS = 14
_HEX = frozenset("0123456789abcdef")
_CACHE_LIMIT = 4096


def threshold_for(ratio: float) -> int | None:
    """The rejection threshold keeping ``ratio`` of traces; None for 0 (keep none: no threshold
    can express it). ``ratio * 2**56`` is exact in floating point, so every process agrees."""
    kept = round(ratio * MAX_THRESHOLD)
    if kept <= 0:
        return None
    return MAX_THRESHOLD - min(kept, MAX_THRESHOLD)


def proportional_threshold(threshold: int, ratio: float) -> int | None:
    """The threshold keeping ``ratio`` of what ``threshold`` kept (the specification's
    proportional downstream sampler); None when that is nothing."""
    kept = round(ratio * (MAX_THRESHOLD - threshold))
    if kept <= 0:
        return None
    return MAX_THRESHOLD - kept


def adjusted_count(threshold: int) -> float:
    """``1 / probability`` of a threshold, to 10 significant digits (so 10% is exactly 10.0)."""
    return float(f"{MAX_THRESHOLD / (MAX_THRESHOLD - threshold):.10g}")


def encode_threshold(threshold: int) -> str:
    """The ``th`` value: 14 hex digits with trailing zeros trimmed (``0`` for keep-all)."""
    return format(threshold, "014x").rstrip("0") or "0"


@dataclass(frozen=True)
class OtValue:
    """A parsed ``ot`` tracestate value: its threshold and explicit randomness, if valid."""

    threshold: int | None
    randomness: int | None
    rate: float | None  # adjusted count of the threshold
    others: tuple[tuple[str, str], ...]  # sub-keys otelkit does not interpret, kept in order


@lru_cache(maxsize=_CACHE_LIMIT)
def parse_ot(value: str) -> OtValue:
    """Parse ``th:...;rv:...;...``; a malformed ``th`` or ``rv`` counts as absent (spec: erase it)."""
    threshold: int | None = None
    randomness: int | None = None
    others: list[tuple[str, str]] = []
    for member in value.split(";"):
        key, _, text = member.partition(":")
        if key == "th":
            if 0 < len(text) <= _THRESHOLD_DIGITS and _HEX.issuperset(text):
                threshold = int(text.ljust(_THRESHOLD_DIGITS, "0"), 16)
        elif key == "rv":
            if len(text) == _THRESHOLD_DIGITS and _HEX.issuperset(text):
                randomness = int(text, 16)
        elif key:
            others.append((key, text))
    rate = adjusted_count(threshold) if threshold is not None else None
    return OtValue(threshold, randomness, rate, tuple(others))


@lru_cache(maxsize=_CACHE_LIMIT)
def with_threshold(value: str | None, threshold: int | None) -> str:
    """``value`` (an ``ot`` entry, or None) with its ``th`` replaced, or removed when None."""
    parsed = parse_ot(value) if value else OtValue(None, None, None, ())
    members = [] if threshold is None else [f"th:{encode_threshold(threshold)}"]
    if parsed.randomness is not None:
        members.append(f"rv:{parsed.randomness:014x}")
    members.extend(f"{key}:{text}" for key, text in parsed.others)
    return ";".join(members)


def ot_entry(state: TraceState) -> str | None:
    """The ``ot`` tracestate entry, or None (a membership test: ``Mapping.get`` raises inside)."""
    return state[OT_KEY] if OT_KEY in state else None


def randomness_of(trace_id: int, ot: OtValue | None) -> int:
    """The trace's randomness: the explicit ``rv`` when present, else the trace id's low 56 bits."""
    if ot is not None and ot.randomness is not None:
        return ot.randomness
    return trace_id & RANDOMNESS_MASK


def _set_ot(trace_state: TraceState | None, value: str) -> TraceState:
    """``trace_state`` with its ``ot`` entry set to ``value`` (removed when empty), others kept."""
    state = trace_state if trace_state is not None else TraceState()
    if not value:
        return state.delete(OT_KEY) if OT_KEY in state else state
    return state.update(OT_KEY, value)  # moves the entry first, as W3C asks of a changed entry


def _matcher(pattern: str) -> Callable[[str], bool] | None:
    """A compiled test for a glob (None: matches everything; plain text: an equality test)."""
    if pattern == "*":
        return None
    if not any(ch in pattern for ch in "*?["):
        return pattern.__eq__
    compiled = re.compile(fnmatch.translate(pattern))
    return lambda text: compiled.match(text) is not None


@dataclass(frozen=True)
class _Verdict:
    """What a ratio decides, precomputed: its threshold, rate, and the tracestate a root gets."""

    ratio: float
    threshold: int | None
    rate: float
    ot: str
    root_state: TraceState

    @classmethod
    def of(cls, ratio: float) -> "_Verdict":
        threshold = threshold_for(ratio)
        if threshold is None:
            return cls(ratio, None, 0.0, "", TraceState())
        ot = with_threshold(None, threshold)
        return cls(ratio, threshold, adjusted_count(threshold), ot, TraceState([(OT_KEY, ot)]))


_DROP_ROOT = SamplingResult(Decision.DROP)


class RuleSampler(Sampler):
    """Parent-based, consistent head sampler whose local roots are decided by rules.

    Rules are compiled once; the ratio of each (operation type, span name) pair is cached, so a
    root costs a dictionary lookup after its first occurrence and a child a tracestate lookup.
    """

    def __init__(self, rules: Sequence[HeadRule] = (), default_ratio: float = 1.0) -> None:
        self.rules = tuple(rules)
        self.default_ratio = default_ratio
        self._compiled = [(_matcher(r.operation_type), _matcher(r.name), _Verdict.of(r.ratio)) for r in self.rules]
        self._default = _Verdict.of(default_ratio)
        self._by_key: dict[tuple[str, str], _Verdict] = {}

    def ratio_for(self, operation_type: str | None, name: str) -> float:
        """The ratio a local root of this type (None: untyped) and name is kept with."""
        return self._verdict(operation_type or OTHER_TYPE, name).ratio

    def _verdict(self, operation_type: str, name: str) -> _Verdict:
        key = (operation_type, name)
        verdict = self._by_key.get(key)
        if verdict is None:
            verdict = self._default
            for type_matches, name_matches, candidate in self._compiled:
                if (type_matches is None or type_matches(operation_type)) and (
                    name_matches is None or name_matches(name)
                ):
                    verdict = candidate
                    break
            if len(self._by_key) >= _CACHE_LIMIT:  # names of unbounded cardinality: start over
                self._by_key.clear()
            self._by_key[key] = verdict
        return verdict

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            return self._root(trace_id, name, attributes, None, None)
        state = parent.trace_state
        ot_text = ot_entry(state)
        if not parent.is_remote:
            if not parent.trace_flags.sampled:
                return SamplingResult(Decision.DROP, None, state)
            rate = parse_ot(ot_text).rate if ot_text else None
            return _keep(attributes, 1.0 if rate is None else rate, state)
        if not parent.trace_flags.sampled:
            return SamplingResult(Decision.DROP, None, state)
        ot = parse_ot(ot_text) if ot_text else None
        if ot is not None and ot.threshold is not None and randomness_of(trace_id, ot) >= ot.threshold:
            return _keep(attributes, ot.rate or 1.0, state)
        return self._root(trace_id, name, attributes, state, ot_text)

    def _root(
        self,
        trace_id: int,
        name: str,
        attributes: Attributes,
        state: TraceState | None,
        ot_text: str | None,
    ) -> SamplingResult:
        verdict = self._verdict(sc.operation_type_of(attributes) or OTHER_TYPE, name)  # type: ignore[arg-type]
        if state is None:
            if verdict.threshold is None or trace_id & RANDOMNESS_MASK < verdict.threshold:
                return _DROP_ROOT
            return _keep(attributes, verdict.rate, verdict.root_state)
        ot = parse_ot(ot_text) if ot_text else None
        if verdict.threshold is None or randomness_of(trace_id, ot) < verdict.threshold:
            return SamplingResult(Decision.DROP, None, _set_ot(state, with_threshold(ot_text, None)))
        return _keep(attributes, verdict.rate, _set_ot(state, with_threshold(ot_text, verdict.threshold)))

    def get_description(self) -> str:
        rules = ",".join(f"{r.operation_type}/{r.name}={r.ratio:g}" for r in self.rules)
        return f"OtelkitRuleSampler{{rules=[{rules}],default={self.default_ratio:g}}}"


def _keep(attributes: Attributes, rate: float, state: TraceState | None) -> SamplingResult:
    kept = dict(attributes) if attributes else {}
    kept[sc.SAMPLE_RATE] = rate
    return SamplingResult(Decision.RECORD_AND_SAMPLE, kept, state)


def _settings(source: "Policy | SamplingSettings | None") -> SamplingSettings:
    if source is None:
        from otelkit.config import current_policy

        return current_policy().sampling
    return source if isinstance(source, SamplingSettings) else source.sampling


def head_sampler(settings: "Policy | SamplingSettings | None" = None) -> RuleSampler:
    """The head sampler for a policy or its ``sampling`` section (the current policy when None):
    ``TracerProvider(sampler=head_sampler(policy))``."""
    sampling = _settings(settings)
    return RuleSampler(sampling.head_rules, sampling.default_ratio)


def sampler_for_environment(
    settings: "Policy | SamplingSettings | None" = None, environ: Mapping[str, str] | None = None
) -> RuleSampler | None:
    """What the configurator installs: otelkit's head sampler, or None (the SDK then builds the
    sampler ``OTEL_TRACES_SAMPLER`` names) when the user set that variable."""
    env = os.environ if environ is None else environ
    if env.get(ENV_TRACES_SAMPLER, "").strip():
        return None
    return head_sampler(settings)
