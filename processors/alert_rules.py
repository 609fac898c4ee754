"""The alert rule engine: threshold rules over a stream of finished spans, in event time.

Time is the spans' own end timestamps, never the wall clock, so the engine gives the same
answers in-process and inside ``otelkit serve`` on ingested spans. The engine's clock (its
watermark) is the latest end time it has seen (a span stamped after this host's clock counts as
ending now); a span that arrives out of order still counts in every window it falls in that is
still kept (windows reach back ``window_s`` from the watermark); an older one is ignored and
counted in :attr:`RuleEngine.late`.

The engine reads only :class:`SpanFacts` (name, times, error flag, attributes, ids), so any
span source can feed it.

Memory is bounded per rule and group, whatever the span rate: windows are ``WINDOW_STEPS``
buckets of ``window_s / WINDOW_STEPS`` (a window covers the last ``window_s`` to within one
bucket):

- latency, daily_cost: a few numbers;
- error_rate, success_rate, error_burst: 12 buckets of one or two counters;
- percentile: 12 sparse duration histograms (1% relative accuracy, 1 µs to 1 day: at most
  1,260 bins each, in practice a few dozen) and their running sum;
- token_spike: 12 x (baseline_windows + 1) bucket counters.

Each rule keeps at most ``max_groups`` groups (least recently seen first out, never one that is
firing); a span that would need another group while all are firing is counted in
``dropped_groups`` and not evaluated for that rule.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import math
import operator
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

from otelkit import semconv as sc
from otelkit.alert_settings import AlertRule

WINDOW_STEPS = 12
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
DAY_NS = 86_400 * NS_PER_S
FIRING = "firing"
RESOLVED = "resolved"
_NEVER = 2**63
_MAX_LABEL = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")

# Percentile histograms: bin i holds durations in (gamma^(i-1), gamma^i] ns, so the value a bin
# stands for (2 gamma^i / (gamma + 1)) is within 1% of every duration in it.
_ALPHA = 0.01
_GAMMA = (1 + _ALPHA) / (1 - _ALPHA)
_INV_LOG_GAMMA = 1 / math.log(_GAMMA)
_MIN_BIN = math.ceil(math.log(1_000) * _INV_LOG_GAMMA)  # 1 µs
_MAX_BIN = math.ceil(math.log(DAY_NS) * _INV_LOG_GAMMA)  # 1 day


class SpanFacts:
    """The fields of a finished span that rules read; built from an SDK span or an ingested one.

    ``trace_id`` and ``span_id`` are the integer ids (formatted as hex only when an alert
    fires); ``error`` is whether the span's status is ERROR.
    """

    __slots__ = ("name", "start_ns", "end_ns", "error", "attributes", "trace_id", "span_id", "_operation_type")

    def __init__(
        self,
        name: str,
        start_ns: int,
        end_ns: int,
        error: bool,
        attributes: Mapping[str, Any],
        trace_id: int = 0,
        span_id: int = 0,
    ) -> None:
        self.name = name
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.error = error
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id
        self._operation_type: str | None = None  # not read yet; "" once read and absent

    def __repr__(self) -> str:
        return f"SpanFacts(name={self.name!r}, start_ns={self.start_ns}, end_ns={self.end_ns}, error={self.error})"

    @property
    def operation_type(self) -> str | None:
        """``otelkit.operation.type``, or the type a ``gen_ai.operation.name`` denotes (computed once)."""
        found = self._operation_type
        if found is None:
            found = self._operation_type = sc.operation_type_of(self.attributes) or ""  # type: ignore[arg-type]
        return found or None

    @property
    def model(self) -> Any:
        attrs = self.attributes
        return attrs.get(sc.GEN_AI_RESPONSE_MODEL) or attrs.get(sc.GEN_AI_REQUEST_MODEL)

    @property
    def agent(self) -> Any:
        return self.attributes.get(sc.GEN_AI_AGENT_NAME)

    @property
    def error_category(self) -> Any:
        """``otelkit.error.category`` (set by the enrich stage), else ``error.type``, else ``unknown``."""
        attrs = self.attributes
        return attrs.get(sc.ERROR_CATEGORY) or attrs.get(sc.ERROR_TYPE) or "unknown"

    @property
    def tokens(self) -> float:
        """Input plus output tokens (0 when the span has none)."""
        attrs = self.attributes
        total = 0.0
        for key in (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS):
            value = attrs.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                total += value
        return total

    @property
    def cost(self) -> float:
        value = self.attributes.get(sc.GEN_AI_USAGE_COST)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
        return 0.0


@dataclass(frozen=True)
class AlertEvent:
    """One notification: an alert firing (first time or a repeat) or resolving.

    ``uid`` identifies the alert across its notifications; ``notification`` counts them
    (1 for the first firing). The message holds only rule names, numbers, span names,
    operation types, model names and group values, never other attribute values.
    """

    uid: str
    rule: str
    kind: str
    severity: str
    state: str
    group_key: str
    value: float
    threshold: float
    message: str
    started_ns: int
    fired_ns: int
    resolved_ns: int | None = None
    notification: int = 1
    trace_id: str | None = None
    span_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (the webhook body and the log record's ``otelkit_alert``)."""
        return {
            "id": self.uid,
            "rule": self.rule,
            "kind": self.kind,
            "severity": self.severity,
            "state": self.state,
            "group": self.group_key,
            "value": _finite_or_none(self.value),
            "threshold": _finite_or_none(self.threshold),
            "message": self.message,
            "started_ns": self.started_ns,
            "fired_ns": self.fired_ns,
            "resolved_ns": self.resolved_ns,
            "notification": self.notification,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def label(value: Any) -> str:
    """A value fit for an alert message or group key: text, one line, at most 128 characters."""
    text = value if isinstance(value, str) else str(value)
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


# --- selection ------------------------------------------------------------------------------

# C-level getters and matchers: each selector field costs one Python call per span.
_FIELD_GETTERS: dict[str, Callable[[SpanFacts], Any]] = {
    name: operator.attrgetter(name) for name in ("name", "operation_type", "model", "agent")
}


def _pattern_matcher(pattern: str) -> Callable[[Any], bool]:
    """Equality for a plain pattern, else a glob; a missing value never matches."""
    if not any(ch in pattern for ch in "*?["):
        return functools.partial(operator.eq, pattern)
    regex = re.compile(fnmatch.translate(pattern))

    def matches(value: Any) -> bool:
        return isinstance(value, str) and regex.match(value) is not None

    return matches


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _attribute_matcher(key: str, expected: str) -> Callable[[SpanFacts], bool]:
    def matches(facts: SpanFacts) -> bool:
        value = facts.attributes.get(key)
        return value is not None and (value == expected or _text(value) == expected)

    return matches


def compile_selector(rule: AlertRule) -> Callable[[SpanFacts], bool] | None:
    """A predicate for the rule's ``select`` (None: every span matches)."""
    select = rule.select
    checks: list[Callable[[SpanFacts], bool]] = []
    for name in ("operation_type", "name", "model", "agent"):
        pattern = getattr(select, name)
        if pattern is not None:
            getter, matcher = _FIELD_GETTERS[name], _pattern_matcher(pattern)
            checks.append(lambda facts, g=getter, m=matcher: bool(m(g(facts))))
    for key, expected in select.attribute_pairs():
        checks.append(_attribute_matcher(key, expected))
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    frozen = tuple(checks)

    def matches_all(facts: SpanFacts) -> bool:
        for check in frozen:
            if not check(facts):
                return False
        return True

    return matches_all


# --- per-group state ------------------------------------------------------------------------


class _Group:
    """One (rule, group) pair: its alert state and its kind's window data."""

    __slots__ = (
        "key", "streak", "breach_since", "uid", "started_ns", "sent_ns", "notifications",
        "trace_id", "span_id", "checked_idx", "data",
    )  # fmt: skip

    def __init__(self, key: Hashable, data: Any) -> None:
        self.key = key
        self.streak = 0
        self.breach_since: int | None = None
        self.uid: str | None = None  # set while firing
        self.started_ns = 0
        self.sent_ns: int | None = None
        self.notifications = 0
        self.trace_id = 0
        self.span_id = 0
        self.checked_idx = -1
        self.data = data


class _Ring:
    """Counters in ``size`` event-time buckets, with running sums over all of them.

    ``low`` is the oldest bucket index still counted; :meth:`advance` expires the buckets the
    watermark has left behind, so the sums always cover the last ``size`` buckets.
    """

    __slots__ = ("size", "low", "born", "stamps", "columns", "sums")

    def __init__(self, size: int, width: int, now_idx: int) -> None:
        self.size = size
        self.low = now_idx - size + 1
        self.born = now_idx
        self.stamps = [-1] * size
        self.columns = [[0.0] * size for _ in range(width)]
        self.sums = [0.0] * width

    def advance(self, now_idx: int) -> None:
        low = now_idx - self.size + 1
        if low <= self.low:
            return
        stamps, columns, sums = self.stamps, self.columns, self.sums
        for idx in range(self.low, min(low, self.low + self.size)):
            slot = idx % self.size
            if stamps[slot] == idx:
                self.expire(slot)
                stamps[slot] = -1
                for c, column in enumerate(columns):
                    sums[c] -= column[slot]
                    column[slot] = 0.0
        self.low = low

    def expire(self, slot: int) -> None:
        """Hook for data kept beside the counters (the percentile histograms)."""

    def add(self, idx: int, column: int, amount: float) -> bool:
        """Count ``amount`` in bucket ``idx``; False if that bucket is no longer kept.

        After :meth:`advance`, a slot holds either bucket ``idx`` or nothing, so it never
        needs clearing here.
        """
        if idx < self.low:
            return False
        slot = idx % self.size
        self.stamps[slot] = idx
        self.columns[column][slot] += amount
        self.sums[column] += amount
        return True

    def recent(self, now_idx: int, count: int) -> float:
        """The sum of column 0 over the ``count`` newest buckets up to ``now_idx``."""
        stamps, column, size = self.stamps, self.columns[0], self.size
        total = 0.0
        for idx in range(now_idx - count + 1, now_idx + 1):
            slot = idx % size
            if stamps[slot] == idx:
                total += column[slot]
        return total


class _Histograms(_Ring):
    """Per-bucket duration histograms and their running sum (bins of 1% relative width)."""

    __slots__ = ("bins", "total")

    def __init__(self, now_idx: int) -> None:
        super().__init__(WINDOW_STEPS, 1, now_idx)
        self.bins: list[dict[int, int]] = [{} for _ in range(WINDOW_STEPS)]
        self.total: dict[int, int] = {}

    def expire(self, slot: int) -> None:
        total = self.total
        for bin_index, count in self.bins[slot].items():
            left = total[bin_index] - count
            if left:
                total[bin_index] = left
            else:
                del total[bin_index]
        self.bins[slot] = {}

    def add_duration(self, idx: int, duration_ns: int) -> bool:
        if idx < self.low:
            return False
        slot = idx % self.size
        self.stamps[slot] = idx
        self.columns[0][slot] += 1.0
        self.sums[0] += 1.0
        bin_index = _MIN_BIN
        if duration_ns > 1_000:
            bin_index = min(_MAX_BIN, math.ceil(math.log(duration_ns) * _INV_LOG_GAMMA))
        slot_bins = self.bins[slot]
        slot_bins[bin_index] = slot_bins.get(bin_index, 0) + 1
        self.total[bin_index] = self.total.get(bin_index, 0) + 1
        return True

    @property
    def count(self) -> int:
        return int(self.sums[0])

    def percentile(self, percent: float) -> float:
        """The nearest-rank ``percent`` percentile in ms (within 1%); 0.0 when empty."""
        count = self.count
        if not count:
            return 0.0
        rank = max(1, math.ceil(percent / 100 * count))
        seen = 0
        total = self.total
        for bin_index in sorted(total):
            seen += total[bin_index]
            if seen >= rank:
                return 2 * _GAMMA**bin_index / (_GAMMA + 1) / NS_PER_MS
        return 0.0


class _DayTotal:
    """The summed cost of one UTC day."""

    __slots__ = ("day", "total")

    def __init__(self, day: int) -> None:
        self.day = day
        self.total = 0.0


# --- rules ----------------------------------------------------------------------------------

Check = tuple[bool, float, float]  # breach, value, threshold


class Rule:
    """A compiled :class:`AlertRule`: selection, grouping, per-group state and the alert state machine.

    Subclasses implement :meth:`observe` (take in one matching span), :meth:`check` (the
    condition for a group as of an event time) and :meth:`message` (built only for an event:
    formatting text on every span would cost more than evaluating the rule).
    """

    def __init__(self, spec: AlertRule, max_groups: int) -> None:
        self.spec = spec
        self.name = spec.name
        self.matches = compile_selector(spec)
        self.threshold = float(spec.threshold or 0.0)
        self.max_groups = max_groups
        self.groups: OrderedDict[Hashable, _Group] = OrderedDict()
        self.firing: dict[Hashable, _Group] = {}
        self.unchecked: dict[Hashable, _Group] = {}  # groups with spans not yet checked
        self.dropped_groups = 0
        self.late = 0
        self.step_ns = _NEVER
        self.next_tick_ns = _NEVER
        self._min_interval_ns = int(spec.min_interval_s * NS_PER_S)
        self._getters = tuple(_FIELD_GETTERS[name] for name in spec.group_by)
        self._group_fields: tuple[str, ...] = spec.group_by
        self._single: _Group | None = None  # the one group of a rule without group_by

    # keys and groups

    def key_of(self, facts: SpanFacts) -> Hashable:
        getters = self._getters
        if len(getters) == 1:
            return _hashable(getters[0](facts))
        return tuple(_hashable(getter(facts)) for getter in getters)

    def key_text(self, key: Hashable) -> str:
        """``field=value,...`` for a group key, in ``group_by`` order ('' for a rule without groups)."""
        if not self._group_fields:
            return ""
        values: tuple[Any, ...] = (key,) if len(self._group_fields) == 1 else key  # type: ignore[assignment]
        return ",".join(
            f"{name}={'' if value is None else label(value)}" for name, value in zip(self._group_fields, values)
        )

    def new_data(self, now_ns: int) -> Any:
        return None

    def group_of(self, facts: SpanFacts, now_ns: int) -> _Group | None:
        """The span's group, created on first sight (None when all ``max_groups`` are firing)."""
        if not self._getters:
            group = self._single
            if group is None:
                group = self._single = self.groups[None] = _Group(None, self.new_data(now_ns))
            return group
        return self.group(self.key_of(facts), now_ns)

    def group(self, key: Hashable, now_ns: int) -> _Group | None:
        groups = self.groups
        group = groups.get(key)
        if group is not None:
            groups.move_to_end(key)
            return group
        if len(groups) >= self.max_groups and not self._evict():
            self.dropped_groups += 1
            return None
        group = groups[key] = _Group(key, self.new_data(now_ns))
        return group

    def _evict(self) -> bool:
        """Forget the least recently seen group that is not firing; False if every group is firing."""
        for key, group in self.groups.items():
            if group.uid is None:
                del self.groups[key]
                self.unchecked.pop(key, None)
                return True
        return False

    # evaluation

    def observe(self, facts: SpanFacts, now_ns: int) -> AlertEvent | None:
        """Take in one matching span; an event if the alert fires, repeats or resolves."""
        raise NotImplementedError

    def check(self, group: _Group, now_ns: int) -> Check:
        raise NotImplementedError

    def message(self, group: _Group, breach: bool, value: float, threshold: float, facts: SpanFacts | None) -> str:
        raise NotImplementedError

    def tick(self, now_ns: int) -> list[AlertEvent]:
        """Event time entered a new bucket: re-check firing groups (so quiet ones resolve) and
        groups holding spans not yet checked."""
        self.next_tick_ns = (now_ns // self.step_ns + 1) * self.step_ns
        if not self.firing and not self.unchecked:
            return []
        pending = {**self.unchecked, **self.firing}
        self.unchecked.clear()
        events = []
        for group in pending.values():
            event = self.judge(group, *self.check(group, now_ns), now_ns, None)
            if event is not None:
                events.append(event)
        return events

    def judge(
        self, group: _Group, breach: bool, value: float, threshold: float, now_ns: int, facts: SpanFacts | None
    ) -> AlertEvent | None:
        """The alert state machine: ``occurrences`` breaches in a row before the first firing;
        at most one notification per ``min_interval_s`` (repeats while firing, and a new firing
        soon after the last notification is held back until the interval has passed); a
        resolved event when the condition clears."""
        if not breach:
            group.streak = 0
            group.breach_since = None
            if group.uid is None:
                return None
            event = self._event(group, RESOLVED, value, threshold, now_ns, facts)
            del self.firing[group.key]
            group.uid = None
            return event
        group.streak += 1
        if group.breach_since is None:
            group.breach_since = now_ns
        if facts is not None:
            group.trace_id, group.span_id = facts.trace_id, facts.span_id
        recent = group.sent_ns is not None and now_ns - group.sent_ns < self._min_interval_ns
        if group.uid is None:
            if group.streak < self.spec.occurrences or recent:
                return None
            group.uid = uuid.uuid4().hex
            group.started_ns = group.breach_since
            group.notifications = 0
            self.firing[group.key] = group
        elif recent:
            return None
        group.sent_ns = now_ns
        group.notifications += 1
        return self._event(group, FIRING, value, threshold, now_ns, facts)

    def _event(
        self, group: _Group, state: str, value: float, threshold: float, now_ns: int, facts: SpanFacts | None
    ) -> AlertEvent:
        return AlertEvent(
            uid=group.uid or "",
            rule=self.name,
            kind=self.spec.kind,
            severity=self.spec.severity,
            state=state,
            group_key=self.key_text(group.key),
            value=value,
            threshold=threshold,
            message=self.message(group, state == FIRING, value, threshold, facts),
            started_ns=group.started_ns,
            fired_ns=group.sent_ns if group.sent_ns is not None else now_ns,
            resolved_ns=now_ns if state == RESOLVED else None,
            notification=group.notifications,
            trace_id=f"{group.trace_id:032x}" if group.trace_id else None,
            span_id=f"{group.span_id:016x}" if group.span_id else None,
        )

    def _for(self, group: _Group) -> str:
        text = self.key_text(group.key)
        return f" for {text}" if text else ""


def _hashable(value: Any) -> Hashable:
    """A dict key for a group value: the value itself (text, nearly always), else its text."""
    if value.__class__ is str or value is None:
        return value  # type: ignore[no-any-return]
    try:
        hash(value)
    except TypeError:
        return str(value)
    return value  # type: ignore[no-any-return]


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) and abs(value) < 1e15 else f"{value:,.2f}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


class LatencyRule(Rule):
    """One span's duration above ``threshold`` ms; clears when the group's next span is within it."""

    def observe(self, facts: SpanFacts, now_ns: int) -> AlertEvent | None:
        group = self._single or self.group_of(facts, now_ns)
        if group is None:
            return None
        value = (facts.end_ns - facts.start_ns) / NS_PER_MS
        breach = value > self.threshold
        if not breach and group.uid is None:
            group.streak, group.breach_since = 0, None
            return None
        return self.judge(group, breach, value, self.threshold, now_ns, facts)

    def message(self, group: _Group, breach: bool, value: float, threshold: float, facts: SpanFacts | None) -> str:
        op = facts.operation_type if facts is not None else None
        name = f"span '{label(facts.name)}'" if facts is not None else "the span"
        return (
            f"{name}{f' ({label(op)})' if op else ''} took {_number(value)} ms"
            f" {'>' if breach else '<='} {_number(threshold)} ms"
        )


class _WindowRule(Rule):
    """A rule over ``WINDOW_STEPS`` event-time buckets spanning ``window_s``, checked on every
    span it counts (the sums are running, so a check is a few operations)."""

    def __init__(self, spec: AlertRule, max_groups: int) -> None:
        super().__init__(spec, max_groups)
        self.step_ns = max(1, int(spec.window_s * NS_PER_S) // WINDOW_STEPS)
        self.next_tick_ns = 0

    def new_data(self, now_ns: int) -> Any:
        return _Ring(WINDOW_STEPS, 1, now_ns // self.step_ns)

    def amount(self, facts: SpanFacts) -> float:
        """What the span adds to the window (0: the span does not concern this rule)."""
        return 1.0

    def observe(self, facts: SpanFacts, now_ns: int) -> AlertEvent | None:
        amount = self.amount(facts)
        if not amount:
            return None
        group = self._single or self.group_of(facts, now_ns)
        if group is None:
            return None
        ring: _Ring = group.data
        step = self.step_ns
        now_idx = now_ns // step
        if now_idx - ring.size >= ring.low:
            ring.advance(now_idx)
        if not ring.add(facts.end_ns // step, 0, amount):
            self.late += 1
            return None
        breach, value, threshold = self.measure(group, now_ns)
        if not breach and group.uid is None:
            group.streak, group.breach_since = 0, None
            return None
        return self.judge(group, breach, value, threshold, now_ns, facts)

    def check(self, group: _Group, now_ns: int) -> Check:
        group.data.advance(now_ns // self.step_ns)
        return self.measure(group, now_ns)

    def measure(self, group: _Group, now_ns: int) -> Check:
        raise NotImplementedError


class RateRule(_WindowRule):
    """error_rate (ERROR share above threshold) and success_rate (non-ERROR share below it),
    only once the window holds ``min_count`` spans."""

    def __init__(self, spec: AlertRule, max_groups: int) -> None:
        super().__init__(spec, max_groups)
        self._errors_kind = spec.kind == "error_rate"
        self._min_count = spec.min_count

    def new_data(self, now_ns: int) -> Any:
        return _Ring(WINDOW_STEPS, 2, now_ns // self.step_ns)  # spans, errors

    def observe(self, facts: SpanFacts, now_ns: int) -> AlertEvent | None:
        group = self._single or self.group_of(facts, now_ns)
        if group is None:
            return None
        ring: _Ring = group.data
        step = self.step_ns
        now_idx = now_ns // step
        if now_idx - WINDOW_STEPS >= ring.low:
            ring.advance(now_idx)
        idx = facts.end_ns // step
        if idx < ring.low:
            self.late += 1
            return None
        # _Ring.add inlined, for both columns: this is the commonest rule's path on every span.
        slot = idx % WINDOW_STEPS
        ring.stamps[slot] = idx
        columns, sums = ring.columns, ring.sums
        columns[0][slot] += 1.0
        sums[0] += 1.0
        if facts.error:
            columns[1][slot] += 1.0
            sums[1] += 1.0
            group.trace_id, group.span_id = facts.trace_id, facts.span_id  # an alert points at an error
        if group.uid is None:
            spans = sums[0]
            if spans < self._min_count or (
                sums[1] <= self.threshold * spans if self._errors_kind else spans - sums[1] >= self.threshold * spans
            ):
                group.streak, group.breach_since = 0, None
                return None
        return self.judge(group, *self.measure(group, now_ns), now_ns, None)

    def measure(self, group: _Group, now_ns: int) -> Check:
        spans, errors = group.data.sums
        if self._errors_kind:
            rate = errors / spans if spans else 0.0
            return spans >= self._min_count and rate > self.threshold, rate, self.threshold
        rate = (spans - errors) / spans if spans else 1.0
        return spans >= self._min_count and rate < self.threshold, rate, self.threshold

    def message(self, group: _Group, breach: bool, value: float, threshold: float, facts: SpanFacts | None) -> str:
        spans = group.data.sums[0]
        what, above = ("error rate", True) if self._errors_kind else ("success rate", False)
        relation = (">" if above else "<") if breach else ("<=" if above else ">=")
        text = (
            f"{what} {value:.1%} of {_number(spans)} spans over {_seconds(self.spec.window_s)}{self._for(group)}"
            f" {relation} {threshold:.1%}"
        )
        return text if spans >= self._min_count else text + f" (fewer than {self._min_count} spans)"


class BurstRule(_WindowRule):
    """At least ``threshold`` ERROR spans of one error category within the window."""

    def amount(self, facts: SpanFacts) -> float:
        return 1.0 if facts.error else 0.0

    def group_of(self, facts: SpanFacts, now_ns: int) -> _Group | None:
        rest = self.key_of(facts) if self._getters else None
        return self.group((_hashable(facts.error_category), rest), now_ns)

    def key_text(self, key: Hashable) -> str:
        category, rest = key  # type: ignore[misc]
        text = super().key_text(rest)
        return f"category={label(category)}" + (f",{text}" if text else "")

    def measure(self, group: _Group, now_ns: int) -> Check:
        errors = group.data.sums[0]
        return errors >= self.threshold, errors, self.threshold

    def message(self, group: _Group, breach: bool, value: float, threshold: float, facts: SpanFacts | None) -> str:
        category, rest = group.key  # type: ignore[misc]
        where = super().key_text(rest)
        return (
            f"{_number(value)} '{label(category)}' errors over {_seconds(self.spec.window_s)}"
            f"{f' for {where}' if where else ''} {'>=' if breach else '<'} {_number(threshold)}"
        )


class PercentileRule(_WindowRule):
    """The rolling ``percentile`` of durations over the window above ``threshold`` ms, given
    ``min_count`` spans. A group is checked at most once per bucket (sorting its histogram on
    every span would cost more than the rest of the chain): on its first span in a bucket, and
    at the next bucket boundary for spans that came after that check."""

    def __init__(self, spec: AlertRule, max_groups: int) -> None:
        super().__init__(spec, max_groups)
        self._threshold_ns = self.threshold * NS_PER_MS

    def new_data(self, now_ns: int) -> Any:
        return _Histograms(now_ns // self.step_ns)

    def observe(self, facts: SpanFacts, now_ns: int) -> AlertEvent | None:
        group = self._single or self.group_of(facts, now_ns)
        if group is None:
            return None
        data: _Histograms = group.data
        now_idx = now_ns // self.step_ns
        if now_idx - WINDOW_STEPS >= data.low:
            data.advance(now_idx)
        duration = facts.end_ns - facts.start_ns
        if not data.add_duration(facts.end_ns // self.step_ns, duration):
            self.late += 1
            return None
        if duration > self._threshold_ns:  # an alert points at a span slower than the threshold
            group.trace_id, group.span_id = facts.trace_id, facts.span_id
        if group.checked_idx == now_idx:
            self.unchecked[group.key] = group
            return None
        return self.judge(group, *self.check(group, now_ns), now_ns, None)

    def check(self, group: _Group, now_ns: int) -> Check:
        now_idx = now_ns // self.step_ns
        group.checked_idx = now_idx
        self.unchecked.pop(group.key, None)
        group.data.advance(now_idx)
        return self.measure(group, now_ns)

    def measure(self, group: _Group, now_ns: int) -> Check:
        data: _Histograms = group.data
        value = data.percentile(self.spec.percentile)
        return data.count >= self.spec.min_count and value > self.threshold, value, self.threshold

    def message(self, group: _Group, breach: bool, value: float, threshold: float, facts: SpanFacts | None) -> str:
        spec, count = self.spec, group.data.count
        text = (
            f"p{spec.percentile:g} of {_number(count)} spans over {_seconds(spec.window_s)}{self._for(group)}"
            f" is {_number(value)} ms {'>' if breach else '<='} {_number(threshold)} ms"
        )
        return text if count >= spec.min_count else text + f" (fewer than {spec.min_count} spans)"


class TokenSpikeRule(_WindowRule):
    """Tokens over the last ``window_s`` above ``factor`` times the average of the
    ``baseline_windows`` windows before it (and above ``threshold``), once a group has been
    seen for that long. Spans without tokens are not counted."""

    def __init__(self, spec: AlertRule, max_groups: int) -> None:
        super().__init__(spec, max_groups)
        self._size = WINDOW_STEPS * (spec.baseline_windows + 1)

    def new_data(self, now_ns: int) -> Any:
        return _Ring(self._size, 1, now_ns // self.step_ns)

    def amount(self, facts: SpanFacts) -> float:
        return facts.tokens

    def _window(self, group: _Group, now_ns: int) -> tuple[float, float, bool]:
        """(tokens in the current window, the baseline average, whether the baseline is complete)."""
        ring: _Ring = group.data
        now_idx = now_ns // self.step_ns
        current = ring.recent(now_idx, WINDOW_STEPS)
        return current, (ring.sums[0] - current) / self.spec.baseline_windows, now_idx - ring.born >= self._size - 1

    def measure(self, group: _Group, now_ns: int) -> Check:
        current, baseline, ready = self._window(group, now_ns)
        threshold = max(self.threshold, self.spec.factor * baseline)
        return ready and current > threshold, current, threshold

    def message(self, group: _Group, breach: bool, value: float, threshold: float, facts: SpanFacts | None) -> str:
        spec = self.spec
        ring: _Ring = group.data
        baseline = (ring.sums[0] - value) / spec.baseline_windows
        ready = ring.low >= ring.born
        text = (
            f"{_number(value)} tokens over {_seconds(spec.window_s)}{self._for(group)}"
            f" {'>' if breach else '<='} {_number(threshold)}"
            f" ({spec.factor:g}x the average {_number(baseline)} of the {spec.baseline_windows} windows before)"
        )
        return text if ready else text + " (baseline not yet complete)"


class DailyCostRule(Rule):
    """The summed ``gen_ai.usage.cost`` of the current UTC day (of the watermark) above
    ``threshold`` USD; resolves when the day ends. Costs of an earlier day are late."""

    def __init__(self, spec: AlertRule, max_groups: int) -> None:
        super().__init__(spec, max_groups)
        self.step_ns = DAY_NS
        self.next_tick_ns = 0

    def new_data(self, now_ns: int) -> Any:
        return _DayTotal(now_ns // DAY_NS)

    def observe(self, facts: SpanFacts, now_ns: int) -> AlertEvent | None:
        cost = facts.cost
        if not cost:
            return None
        if facts.end_ns // DAY_NS < now_ns // DAY_NS:
            self.late += 1
            return None
        group = self._single or self.group_of(facts, now_ns)
        if group is None:
            return None
        data = self._today(group, now_ns)
        data.total += cost
        if data.total <= self.threshold and group.uid is None:
            group.streak, group.breach_since = 0, None
            return None
        return self.judge(group, *self.measure(group), now_ns, facts)

    def check(self, group: _Group, now_ns: int) -> Check:
        self._today(group, now_ns)
        return self.measure(group)

    def _today(self, group: _Group, now_ns: int) -> _DayTotal:
        """The group's total, started afresh when the watermark has entered a new day."""
        data: _DayTotal = group.data
        today = now_ns // DAY_NS
        if data.day != today:
            data.day, data.total = today, 0.0
        return data

    def measure(self, group: _Group) -> Check:
        total = group.data.total
        return total > self.threshold, total, self.threshold

    def message(self, group: _Group, breach: bool, value: float, threshold: float, facts: SpanFacts | None) -> str:
        day = time.strftime("%Y-%m-%d", time.gmtime(group.data.day * 86_400))
        return (
            f"cost ${value:,.4f} on {day} (UTC){self._for(group)}"
            f" {'>' if breach else '<='} budget ${threshold:,.2f}"
        )


_RULE_CLASSES: dict[str, type[Rule]] = {
    "latency": LatencyRule,
    "percentile": PercentileRule,
    "error_rate": RateRule,
    "success_rate": RateRule,
    "error_burst": BurstRule,
    "daily_cost": DailyCostRule,
    "token_spike": TokenSpikeRule,
}


_NO_EVENTS: tuple[AlertEvent, ...] = ()  # what most spans cause


class RuleEngine:
    """Evaluates rules on finished spans in event time; thread-safe, never raises from a rule."""

    def __init__(self, rules: Sequence[AlertRule], max_groups: int = 1000) -> None:
        self.rules: tuple[Rule, ...] = tuple(_RULE_CLASSES[spec.kind](spec, max_groups) for spec in rules)
        self._plan = tuple((rule, rule.matches, rule.observe) for rule in self.rules)
        self.watermark_ns = 0
        self.rule_failures = 0
        self._next_tick_ns = min((rule.next_tick_ns for rule in self.rules), default=_NEVER)
        self._lock = threading.Lock()

    @property
    def late(self) -> int:
        """Spans ignored because their window had already passed (summed over rules)."""
        return sum(rule.late for rule in self.rules)

    @property
    def dropped_groups(self) -> int:
        """Spans not evaluated by a rule because all its ``max_groups`` groups were firing."""
        return sum(rule.dropped_groups for rule in self.rules)

    def evaluate(self, facts: SpanFacts) -> Sequence[AlertEvent]:
        """Feed one finished span; the alert events (firing, repeats, resolved) it caused."""
        events: Sequence[AlertEvent] = _NO_EVENTS
        with self._lock:
            if facts.end_ns > self.watermark_ns:
                ahead = facts.end_ns - time.time_ns()
                if ahead > 0:
                    # Stamped after this host's clock (a skewed host, a bad timestamp): counted as
                    # ending now, duration kept. Event time moved that far ahead would make every
                    # correct span after it late.
                    facts.start_ns -= ahead
                    facts.end_ns -= ahead
                self.watermark_ns = max(self.watermark_ns, facts.end_ns)
            now = self.watermark_ns
            for rule, matches, observe in self._plan:
                try:
                    if matches is not None and not matches(facts):
                        continue
                    event = observe(facts, now)
                except Exception as exc:  # a rule's bug must never reach the application
                    self._failed(rule, exc)
                    continue
                if event is not None:
                    events = [*events, event]
            if now >= self._next_tick_ns:
                ticked: list[AlertEvent] = list(events)
                self._tick(now, ticked)
                events = ticked
        return events

    def advance(self, time_ns: int) -> list[AlertEvent]:
        """Move event time forward without a span (an idle ingest stream): windows slide, and
        alerts whose condition cleared resolve."""
        events: list[AlertEvent] = []
        with self._lock:
            if time_ns > self.watermark_ns:
                self.watermark_ns = time_ns
            if self.watermark_ns >= self._next_tick_ns:
                self._tick(self.watermark_ns, events)
        return events

    def _tick(self, now: int, events: list[AlertEvent]) -> None:
        for rule in self.rules:
            if now >= rule.next_tick_ns:
                try:
                    events.extend(rule.tick(now))
                except Exception as exc:
                    rule.next_tick_ns = now + rule.step_ns
                    self._failed(rule, exc)
        self._next_tick_ns = min(rule.next_tick_ns for rule in self.rules)

    def _failed(self, rule: Rule, exc: Exception) -> None:
        self.rule_failures += 1
        if self.rule_failures == 1:
            logging.getLogger("otelkit").error(
                "otelkit: alert rule %s failed (%s: %s); its spans are skipped", rule.name, type(exc).__name__, exc
            )


def describe(spec: AlertRule) -> str:
    """The rule's condition in words, with its defaults filled in (``otelkit alerts rules``)."""
    t = spec.threshold or 0.0
    window = _seconds(spec.window_s)
    if spec.kind == "latency":
        return f"a span takes more than {_number(t)} ms"
    if spec.kind == "percentile":
        return f"p{spec.percentile:g} over {window} is more than {_number(t)} ms (at least {spec.min_count} spans)"
    if spec.kind == "error_rate":
        return f"error rate over {window} is more than {t:.1%} (at least {spec.min_count} spans)"
    if spec.kind == "success_rate":
        return f"success rate over {window} is less than {t:.1%} (at least {spec.min_count} spans)"
    if spec.kind == "error_burst":
        return f"at least {_number(t)} errors of one category within {window}"
    if spec.kind == "daily_cost":
        return f"cost of the UTC day is more than ${t:,.2f}"
    floor = f", and more than {_number(t)}" if t else ""
    return (
        f"tokens over {window} are more than {spec.factor:g}x the average of the "
        f"{spec.baseline_windows} windows before{floor}"
    )
