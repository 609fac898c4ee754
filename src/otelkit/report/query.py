"""Span statistics for reports, read from the store: counts, errors, total time, exact percentiles.

Percentiles use linear interpolation between the closest ranks (Hyndman & Fan type 7; numpy's
default, ``statistics.quantiles(method="inclusive")``, Excel's PERCENTILE.INC). For ``n``
durations sorted ascending as ``x[0] .. x[n-1]`` and a percent ``p``::

    h = (n - 1) * p / 100,  j = floor(h)
    P(p) = x[j] + (h - j) * (x[j + 1] - x[j])        (just x[j] when h is whole)

The values are exact, not sketches: every duration in the window is read and sorted, and the
interpolation is done in integer nanoseconds and divided once, so each result is the correctly
rounded millisecond value. One scan of ``spans`` feeds every number (an unbounded window skips
the ``start_ns`` index, a bounded one range-scans it); sorting in Python measured several times
faster than SQLite window functions over a million spans. :func:`window_stats` is the seam for
faster paths: a rollup-table reader can answer behind the same signature later.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

PERCENTILES: tuple[int, ...] = (50, 95, 99)
OTHER_TYPE = "other"
_NS_PER_MS = 1_000_000

_SCAN_SQL = f"""
SELECT coalesce(operation_type, '{OTHER_TYPE}'), name, duration_ns, status_code = 'ERROR', session_id, trace_id
FROM spans
"""
_SINCE = " WHERE start_ns >= :since"


@dataclass(frozen=True)
class DurationStats:
    """Spans in one group: how many, how many failed, their total time, and exact percentiles."""

    count: int
    errors: int
    total_ns: int
    percentiles_ms: Mapping[int, float]

    @property
    def success_rate(self) -> float | None:
        """The fraction of spans whose status is not ERROR; None for an empty group."""
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
    traces: int
    sessions: int


def percentile_ms(sorted_ns: Sequence[int], percent: int) -> float:
    """The type-7 percentile, in ms, of durations in ns sorted ascending (at least one)."""
    j, delta = divmod((len(sorted_ns) - 1) * percent, 100)
    low = sorted_ns[j]
    high = sorted_ns[j + 1] if delta else low
    return (low * (100 - delta) + high * delta) / (100 * _NS_PER_MS)


def duration_stats(sorted_ns: Sequence[int], errors: int) -> DurationStats:
    """Count, errors, total time and :data:`PERCENTILES` of one group's sorted durations."""
    return DurationStats(
        count=len(sorted_ns),
        errors=errors,
        total_ns=sum(sorted_ns),
        percentiles_ms={p: percentile_ms(sorted_ns, p) for p in PERCENTILES} if sorted_ns else {},
    )


def window_stats(conn: sqlite3.Connection, since_ns: int | None) -> WindowStats:
    """Statistics of the spans that started at or after ``since_ns`` (all spans when None)."""
    where, params = ("", {}) if since_ns is None else (_SINCE, {"since": since_ns})
    durations: dict[tuple[str, str], list[int]] = {}
    errors: dict[tuple[str, str], int] = defaultdict(int)
    sessions: set[str] = set()
    traces: set[str] = set()
    for op_type, name, duration_ns, failed, session_id, trace_id in conn.execute(_SCAN_SQL + where, params):
        key = (op_type, name)
        bucket = durations.get(key)
        if bucket is None:
            bucket = durations[key] = []
        bucket.append(duration_ns)
        if failed:
            errors[key] += 1
        if session_id is not None:
            sessions.add(session_id)
        traces.add(trace_id)
    operations = []
    for (op_type, name), bucket in durations.items():
        bucket.sort()
        operations.append(OperationStats(op_type, name, duration_stats(bucket, errors[(op_type, name)])))
    everything = sorted(d for bucket in durations.values() for d in bucket)
    return WindowStats(
        overall=duration_stats(everything, sum(errors.values())),
        operations=operations,
        traces=len(traces),
        sessions=len(sessions),
    )


@dataclass(frozen=True)
class UsageTotals:
    """GenAI usage in a window: tokens, cost, and the calls the pricing table could not price."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced_calls: int


_USAGE_SQL = """
SELECT total(input_tokens), total(output_tokens), total(cost_usd), count(*) FILTER (WHERE cost_status = 'unpriced')
FROM spans
"""


def usage_totals(conn: sqlite3.Connection, since_ns: int | None) -> UsageTotals:
    """Token and cost totals of the spans that started at or after ``since_ns`` (all when None)."""
    where, params = ("", {}) if since_ns is None else (_SINCE, {"since": since_ns})
    inputs, outputs, cost, unpriced = conn.execute(_USAGE_SQL + where, params).fetchone()
    return UsageTotals(int(inputs), int(outputs), float(cost), int(unpriced))
