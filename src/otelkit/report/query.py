"""Span statistics for reports, read from the store and weighted by each span's sample rate.

Sampling keeps some spans and drops others; every kept span carries ``otelkit.sample.rate``
(the store's ``sample_rate`` column), the number of spans it stands for: ``1 / probability``
of having been kept (1 when nothing was sampled away). A report therefore estimates, it does
not count: each span adds its weight ``w`` (its rate; a missing, non-numeric or below-1 rate
counts as 1) to every total. These are the Horvitz-Thompson estimators, unbiased whatever the
probabilities, as long as each span's rate is the inverse of its probability of being stored:

- spans, errors, operations' counts: ``sum(w)``; total time: ``sum(w * duration)``; tokens,
  cost and unpriced calls: ``sum(w * value)``; success rate and time share: ratios of these.
- traces: the sum, over the distinct trace ids seen, of each trace's weight: the smallest
  weight among its spans in the window. Its spans normally share one (sampling decides whole
  traces); when processes decided differently, the smallest weight is that of the part most
  likely kept, which sets the trace's odds of appearing at all.
- sessions: not weighted: the distinct session ids seen. A session is many traces sampled
  independently, and no per-trace weight tells how many sessions lost every trace; the number
  is a lower bound, exact when nothing was sampled away.

Percentiles interpolate over the weighted sample. For durations sorted ascending as
``x[0] .. x[n-1]`` with weights ``w[i] >= 1``, a duration of weight ``w`` stands for ``w``
copies of itself: it covers the (0-based) positions ``S[i-1] .. S[i] - 1`` where
``S[i] = w[0] + ... + w[i]`` (``S[-1] = 0``), and between one duration's last position and
the next one's first, values are interpolated linearly. With ``W = S[n-1]`` and a percent p::

    h = (W - 1) * p / 100
    i = the first index with S[i] - 1 >= h
    P(p) = x[i]                                        when h >= S[i-1]
    P(p) = x[i-1] + (h - (S[i-1] - 1)) * (x[i] - x[i-1])   otherwise

With whole-number weights this is exactly Hyndman & Fan type 7 over the durations repeated
``w`` times; with every weight 1 it is type 7 itself (numpy's default,
``statistics.quantiles(method="inclusive")``), ``h = (n - 1) * p / 100``, ``j = floor(h)``,
``P(p) = x[j] + (h - j) * (x[j + 1] - x[j])``, and then it is computed in integer nanoseconds and
divided once, so each result is the correctly rounded millisecond value.

One scan of ``spans`` feeds every number (an unbounded window skips the ``start_ns`` index, a
bounded one range-scans it); sorting in Python measured several times faster than SQLite
window functions over a million spans. :func:`window_stats` is the seam for faster paths: a
rollup-table reader can answer behind the same signature later.
"""

from __future__ import annotations

import operator
import sqlite3
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from typing import Mapping, Sequence

PERCENTILES: tuple[int, ...] = (50, 95, 99)
OTHER_TYPE = "other"
_NS_PER_MS = 1_000_000

# A span's weight: its sample rate, at least 1 (text that is no number reads as 0, so as 1).
# One reference to the column: each one re-extracts it from the attributes JSON.
WEIGHT_SQL = "max(CAST(sample_rate AS REAL), 1.0)"

_SCAN_SQL = f"""
SELECT coalesce(operation_type, '{OTHER_TYPE}'), name, duration_ns, status_code = 'ERROR', session_id, trace_id,
       {WEIGHT_SQL}
FROM spans
"""
_SINCE = " WHERE start_ns >= :since"


@dataclass(frozen=True)
class DurationStats:
    """Spans in one group: estimated count, errors and total time (weighted), percentiles,
    and how many spans the store actually holds. Unweighted groups give whole numbers."""

    count: float
    errors: float
    total_ns: float
    percentiles_ms: Mapping[int, float]
    stored: int = 0

    @property
    def success_rate(self) -> float | None:
        """The estimated fraction of spans whose status is not ERROR; None for an empty group."""
        return (self.count - self.errors) / self.count if self.count else None


@dataclass(frozen=True)
class OperationStats:
    """The statistics of one operation: its type (``other`` when untyped) and span name."""

    type: str
    name: str
    stats: DurationStats


@dataclass(frozen=True)
class WindowStats:
    """Everything a report needs about one time window."""

    overall: DurationStats
    operations: list[OperationStats]
    traces: float  # estimated: the sum of each distinct trace's weight
    sessions: int  # distinct session ids seen (not an estimate; see the module docs)
    stored_traces: int = 0


def percentile_ms(sorted_ns: Sequence[int], percent: int) -> float:
    """The type-7 percentile, in ms, of durations in ns sorted ascending (at least one)."""
    j, delta = divmod((len(sorted_ns) - 1) * percent, 100)
    low = sorted_ns[j]
    high = sorted_ns[j + 1] if delta else low
    return (low * (100 - delta) + high * delta) / (100 * _NS_PER_MS)


def weighted_percentile_ms(sorted_ns: Sequence[int], cumulative: Sequence[float], percent: int) -> float:
    """The weighted type-7 percentile (see the module docs), in ms, of durations in ns sorted
    ascending with the running sums of their weights (each weight at least 1)."""
    h = (cumulative[-1] - 1) * percent / 100
    i = min(bisect_left(cumulative, h + 1), len(sorted_ns) - 1)
    start = cumulative[i - 1] if i else 0.0
    if h >= start:
        return sorted_ns[i] / _NS_PER_MS
    low = sorted_ns[i - 1]
    return (low + (h - (start - 1)) * (sorted_ns[i] - low)) / _NS_PER_MS


def duration_stats(durations: list[int], weights: list[float], errors: float) -> DurationStats:
    """Stats of one group from its durations (sorted here, in place), their weights, and the
    weight of its failed spans. With every weight 1 the numbers are exact whole counts."""
    n = len(durations)
    if n == 0:
        return DurationStats(count=0, errors=0, total_ns=0, percentiles_ms={}, stored=0)
    if weights.count(1.0) == n:
        durations.sort()
        return DurationStats(
            count=n,
            errors=round(errors),
            total_ns=sum(durations),
            percentiles_ms={p: percentile_ms(durations, p) for p in PERCENTILES},
            stored=n,
        )
    order = sorted(range(n), key=durations.__getitem__)  # int keys: faster than sorting pairs
    ordered = [durations[i] for i in order]
    cumulative = list(accumulate([weights[i] for i in order]))
    return DurationStats(
        count=cumulative[-1],
        errors=errors,
        total_ns=sum(map(operator.mul, durations, weights)),
        percentiles_ms={p: weighted_percentile_ms(ordered, cumulative, p) for p in PERCENTILES},
        stored=n,
    )


class _Group:
    """What one operation's rows add up to during the scan."""

    __slots__ = ("durations", "weights", "errors")

    def __init__(self) -> None:
        self.durations: list[int] = []
        self.weights: list[float] = []
        self.errors = 0.0


def window_stats(conn: sqlite3.Connection, since_ns: int | None) -> WindowStats:
    """Weighted statistics of the spans that started at or after ``since_ns`` (all spans when None)."""
    where, params = ("", {}) if since_ns is None else (_SINCE, {"since": since_ns})
    groups: dict[tuple[str, str], _Group] = {}
    sessions: set[str] = set()
    traces: dict[str, float] = {}
    for op_type, name, duration_ns, failed, session_id, trace_id, weight in conn.execute(_SCAN_SQL + where, params):
        key = (op_type, name)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
        group.durations.append(duration_ns)
        group.weights.append(weight)
        if failed:
            group.errors += weight
        if session_id is not None:
            sessions.add(session_id)
        seen = traces.get(trace_id)
        if seen is None or weight < seen:
            traces[trace_id] = weight
    everything: list[int] = []
    everything_weights: list[float] = []
    operations = []
    for (op_type, name), group in groups.items():
        everything.extend(group.durations)
        everything_weights.extend(group.weights)
        operations.append(OperationStats(op_type, name, duration_stats(group.durations, group.weights, group.errors)))
    return WindowStats(
        overall=duration_stats(everything, everything_weights, sum(g.errors for g in groups.values())),
        operations=operations,
        traces=sum(traces.values()),
        sessions=len(sessions),
        stored_traces=len(traces),
    )


@dataclass(frozen=True)
class UsageTotals:
    """GenAI usage in a window, weighted: tokens, cost, and calls the pricing table could not price."""

    input_tokens: float
    output_tokens: float
    cost_usd: float
    unpriced_calls: float


# The weight is computed only for spans with usage (each reference to a generated column
# parses the attributes JSON again).
_USAGE_SQL = f"""
SELECT total(input_tokens * w), total(output_tokens * w), total(cost_usd * w),
       total(w) FILTER (WHERE cost_status = 'unpriced')
FROM (SELECT input_tokens, output_tokens, cost_usd, cost_status, {WEIGHT_SQL} AS w FROM spans
      WHERE (input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR cost_usd IS NOT NULL OR cost_status IS NOT NULL)
"""
_USAGE_SINCE = " AND start_ns >= :since"


def usage_totals(conn: sqlite3.Connection, since_ns: int | None) -> UsageTotals:
    """Estimated token and cost totals of the spans that started at or after ``since_ns`` (all when None)."""
    where, params = ("", {}) if since_ns is None else (_USAGE_SINCE, {"since": since_ns})
    inputs, outputs, cost, unpriced = conn.execute(_USAGE_SQL + where + ")", params).fetchone()
    return UsageTotals(float(inputs), float(outputs), float(cost), float(unpriced))
