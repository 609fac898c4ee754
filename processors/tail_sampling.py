"""Tail sampling: whole-trace decisions once a trace's local root ends, in bounded memory.

:class:`TailSamplingStage` is the last stage of the processor chain. It holds each trace's
finished spans until the trace's local root (the span with no parent, or a remote one) ends,
then keeps the whole trace when any span has status ERROR (``keep_errors``), when the root
lasted longer than ``latency_threshold_ms``, or when its spans' ``gen_ai.usage.cost`` adds up
to more than ``cost_threshold_usd``; of the other traces it keeps ``keep_ratio``.

- **Consistent ratio.** "The rest" is sampled like the head sampler samples
  (:mod:`otelkit.processors.sampling`): a trace whose tracestate carries a threshold ``th`` is
  kept when its randomness passes the *proportional* threshold (keep ``keep_ratio`` of what
  ``th`` kept), so the decision depends only on the trace id and is the same in every process;
  because head and tail test the same randomness, the product threshold is what keeps the two
  stages' probabilities multiplying. A trace with no threshold (another head sampler) is tested
  on the trace id's high 64 bits, which a trace-id-ratio head sampler never looked at.
- **Weights.** Spans of a trace kept by a rule keep their ``otelkit.sample.rate``; spans of a
  trace kept by the ratio are handed on as new span objects whose rate is multiplied by
  ``1 / keep_ratio`` (exactly: the proportional threshold's adjusted count) and whose ``ot``
  tracestate carries the new threshold, as the specification asks of a stage that changes it.
- **Bounds.** At most ``max_traces`` traces and ``max_spans`` spans are held. Past either
  bound the oldest trace is decided at once with what is known (its errors and cost so far,
  and the longest of its spans in place of the root's duration) and counted in
  ``decided_early``. A trace whose root has not ended ``decision_timeout_s`` after its first
  span arrived is decided the same way and counted in ``timed_out``; the clock is checked when
  a span arrives and on :meth:`flush`. :meth:`flush` (the chain calls it on ``force_flush`` and
  ``shutdown``) decides every trace still held and returns the spans kept.
- **Late spans.** The last ``recent_decisions`` decisions are remembered (least recently used
  forgotten first); a span of a decided trace follows its decision at once. A span of a trace
  decided and forgotten starts a new held trace.

Every decision is counted (:meth:`TailSamplingStage.counters`). The stage sees each process's
part of a trace: a trace whose spans in another process have the error is kept there, and here
only if the ratio keeps it; for decisions over whole distributed traces, use the Collector's
``tail_sampling`` processor.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, StatusCode

from otelkit import semconv as sc
from otelkit.processors.chain import replace_span
from otelkit.processors.sampling import (
    MAX_THRESHOLD,
    OT_KEY,
    adjusted_count,
    ot_entry,
    parse_ot,
    proportional_threshold,
    randomness_of,
    threshold_for,
    with_threshold,
)
from otelkit.sampling_settings import SamplingSettings, TailSettings

if TYPE_CHECKING:
    from otelkit.config import Policy

__all__ = ["TailCounters", "TailSamplingStage", "tail_stage"]

_NS_PER_MS = 1_000_000
_HIGH_BITS_SHIFT = 64

# A decision: drop the trace, keep it as it is (a rule matched), or keep it by the ratio
# (spans re-weighted).
_DROP = 0
_KEEP = 1
_KEEP_BY_RATIO = 2


@dataclass(frozen=True)
class TailCounters:
    """What the stage has done since it started (traces unless the name says spans)."""

    held: int  # traces held now, waiting for a decision
    held_spans: int  # spans held now
    kept: int  # traces kept (by a rule or by the ratio)
    kept_by_ratio: int  # ... of which by the ratio (their spans re-weighted)
    dropped: int  # traces dropped
    decided_early: int  # decided before their root ended because a bound was reached
    timed_out: int  # decided because their root had not ended within decision_timeout_s
    flushed: int  # decided on flush() before their root ended
    kept_spans: int  # spans handed on (late spans included)
    dropped_spans: int  # spans dropped (late spans included)
    late_spans: int  # spans that arrived after their trace was decided and followed it


class _Trace:
    """The spans held for one trace, when its first span arrived, and its local root once ended."""

    __slots__ = ("spans", "first_seen", "root")

    def __init__(self, first_seen: float) -> None:
        self.spans: list[ReadableSpan] = []
        self.first_seen = first_seen
        self.root: ReadableSpan | None = None


def _duration_ns(span: ReadableSpan) -> int:
    return (span.end_time or 0) - (span.start_time or 0)


def _cost_of(span: ReadableSpan) -> float:
    attributes = span.attributes
    # A scan of the keys: the SDK's attribute mapping answers ``get`` and ``in`` by raising and
    # catching KeyError for every absent key, which costs twice as much.
    if sc.GEN_AI_USAGE_COST not in iter(attributes):
        return 0.0
    value = attributes[sc.GEN_AI_USAGE_COST]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


Released = list[tuple[int, list[ReadableSpan]]]  # (decision, spans) pairs, in decision order


class TailSamplingStage:
    """A chain stage: holds spans per trace and releases each trace whole when it is decided.

    A span's arrival costs a few dictionary operations under a lock; what the keep rules read
    (statuses, costs, durations) is read once per trace, when it is decided.
    """

    __name__ = "sampling.tail"

    def __init__(self, settings: TailSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._latency_ns = (
            None if settings.latency_threshold_ms is None else settings.latency_threshold_ms * _NS_PER_MS
        )
        self._cost = settings.cost_threshold_usd
        self._keep_errors = settings.keep_errors
        self._ratio = settings.keep_ratio
        self._plain_threshold = threshold_for(settings.keep_ratio)
        self._timeout = settings.decision_timeout_s
        self._deadline = 0.0  # no held trace can time out before this (checked on arrival)
        self._max_traces = settings.max_traces
        self._max_spans = settings.max_spans
        self._remember = settings.recent_decisions
        self._traces: OrderedDict[int, _Trace] = OrderedDict()  # oldest first
        self._decided: OrderedDict[int, int] = OrderedDict()  # least recently used first
        self._held_spans = 0
        self._lock = threading.Lock()
        self._kept = self._kept_by_ratio = self._dropped = 0
        self._early = self._timed_out = self._flushed = 0
        self._kept_spans = self._dropped_spans = self._late = 0

    def __call__(self, span: ReadableSpan) -> list[ReadableSpan] | None:
        trace_id = span.context.trace_id
        parent = span.parent
        released: Released | None = None
        with self._lock:
            now = self._clock()
            held = self._traces.get(trace_id)
            if held is None:
                decision = self._decided.get(trace_id)
                if decision is not None:
                    self._decided.move_to_end(trace_id)
                    self._late += 1
                    released = [(decision, [span])]
                else:
                    held = self._traces[trace_id] = _Trace(now)
            if held is not None:
                held.spans.append(span)
                self._held_spans += 1
                if parent is None or parent.is_remote:
                    held.root = span
                    released = []
                    self._decide(trace_id, released)
            if now >= self._deadline:
                released = self._expire(now, released)
            if self._held_spans > self._max_spans or len(self._traces) > self._max_traces:
                released = self._shed(released)
            if released:
                self._count(released)
        return self._release(released) if released else None

    def _expire(self, now: float, released: Released | None) -> Released:
        """Decide the traces held ``decision_timeout_s`` or longer. The next deadline is the
        oldest remaining trace's: never later than the true one, as held traces are in age order."""
        out: Released = [] if released is None else released
        traces = self._traces
        while traces:
            trace_id, oldest = next(iter(traces.items()))
            if now - oldest.first_seen < self._timeout:
                self._deadline = oldest.first_seen + self._timeout
                return out
            self._timed_out += 1
            self._decide(trace_id, out)
        self._deadline = now + self._timeout
        return out

    def _shed(self, released: Released | None) -> Released:
        """Decide the oldest traces early until both bounds hold again."""
        out: Released = [] if released is None else released
        traces = self._traces
        while traces and (len(traces) > self._max_traces or self._held_spans > self._max_spans):
            self._early += 1
            self._decide(next(iter(traces)), out)
        return out

    def _decide(self, trace_id: int, released: Released) -> None:
        """Decide a held trace (the lock is held), remember the decision, queue its spans."""
        held = self._traces.pop(trace_id)
        self._held_spans -= len(held.spans)
        decision = self._decision(trace_id, held)
        if decision == _DROP:
            self._dropped += 1
        else:
            self._kept += 1
            if decision == _KEEP_BY_RATIO:
                self._kept_by_ratio += 1
        if self._remember:
            self._decided[trace_id] = decision
            if len(self._decided) > self._remember:
                self._decided.popitem(last=False)
        released.append((decision, held.spans))

    def _decision(self, trace_id: int, held: _Trace) -> int:
        spans = held.spans
        if self._keep_errors and any(s.status.status_code is StatusCode.ERROR for s in spans):
            return _KEEP
        if self._latency_ns is not None:
            root = held.root
            duration = _duration_ns(root) if root is not None else max(map(_duration_ns, spans))
            if duration > self._latency_ns:
                return _KEEP
        if self._cost is not None and sum(map(_cost_of, spans)) > self._cost:
            return _KEEP
        return _KEEP_BY_RATIO if self._ratio_keeps(trace_id, held.root or spans[0]) else _DROP

    def _ratio_keeps(self, trace_id: int, span: ReadableSpan) -> bool:
        ot_text = ot_entry(span.context.trace_state)
        ot = parse_ot(ot_text) if ot_text else None
        if ot is not None and ot.threshold is not None:
            threshold = proportional_threshold(ot.threshold, self._ratio)
            return threshold is not None and randomness_of(trace_id, ot) >= threshold
        randomness = (trace_id >> _HIGH_BITS_SHIFT) & (MAX_THRESHOLD - 1)
        return self._plain_threshold is not None and randomness >= self._plain_threshold

    def _count(self, released: Released) -> None:
        for decision, spans in released:
            if decision == _DROP:
                self._dropped_spans += len(spans)
            else:
                self._kept_spans += len(spans)

    def _release(self, released: Released) -> list[ReadableSpan]:
        """The spans to hand on (outside the lock: re-weighting makes new span objects)."""
        out: list[ReadableSpan] = []
        for decision, spans in released:
            if decision == _KEEP or (decision == _KEEP_BY_RATIO and self._ratio == 1.0):
                out.extend(spans)
            elif decision == _KEEP_BY_RATIO:
                out.extend(self._reweighted(span) for span in spans)
        return out

    def _reweighted(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` with its rate multiplied by the ratio's weight and its threshold raised."""
        context = span.context
        attributes = dict(span.attributes or {})
        ot_text = ot_entry(context.trace_state)
        raised = _raised(ot_text, self._ratio) if ot_text else None
        if raised is None:  # no threshold (or, in a span unlike its root, none left): scale the rate
            attributes[sc.SAMPLE_RATE] = _rate_times(attributes.get(sc.SAMPLE_RATE), self._ratio)
            return replace_span(span, attributes=attributes)
        new_ot, rate = raised
        attributes[sc.SAMPLE_RATE] = rate
        new_context = SpanContext(
            context.trace_id,
            context.span_id,
            context.is_remote,
            context.trace_flags,
            context.trace_state.update(OT_KEY, new_ot),
        )
        return replace_span(span, context=new_context, attributes=attributes)

    def flush(self) -> list[ReadableSpan]:
        """Decide every trace still held (with what is known) and return the spans kept."""
        released: Released = []
        with self._lock:
            now = self._clock()
            while self._traces:
                trace_id, held = next(iter(self._traces.items()))
                if now - held.first_seen >= self._timeout:
                    self._timed_out += 1
                else:
                    self._flushed += 1
                self._decide(trace_id, released)
            self._count(released)
        return self._release(released)

    def counters(self) -> TailCounters:
        """A snapshot of the stage's counters."""
        with self._lock:
            return TailCounters(
                held=len(self._traces),
                held_spans=self._held_spans,
                kept=self._kept,
                kept_by_ratio=self._kept_by_ratio,
                dropped=self._dropped,
                decided_early=self._early,
                timed_out=self._timed_out,
                flushed=self._flushed,
                kept_spans=self._kept_spans,
                dropped_spans=self._dropped_spans,
                late_spans=self._late,
            )


@lru_cache(maxsize=1024)
def _raised(ot_text: str, ratio: float) -> tuple[str, float] | None:
    """The ``ot`` value and rate after keeping ``ratio`` of what its threshold kept."""
    threshold = parse_ot(ot_text).threshold
    if threshold is None:
        return None
    raised = proportional_threshold(threshold, ratio)
    if raised is None:
        return None
    return with_threshold(ot_text, raised), adjusted_count(raised)


def _rate_times(rate: object, ratio: float) -> float:
    """A rate of no known threshold multiplied by ``1 / ratio`` (absent or invalid counts as 1)."""
    base = float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate >= 1 else 1.0
    return float(f"{base / ratio:.10g}")


def tail_stage(settings: "Policy | SamplingSettings | TailSettings | None" = None) -> TailSamplingStage | None:
    """The tail stage for a policy (the current one when None) or its sections; None when
    ``sampling.tail.enabled`` is false. It goes last in the chain."""
    if settings is None:
        from otelkit.config import current_policy

        settings = current_policy()
    if not isinstance(settings, TailSettings):
        settings = (settings if isinstance(settings, SamplingSettings) else settings.sampling).tail
    return TailSamplingStage(settings) if settings.enabled else None
