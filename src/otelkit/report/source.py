"""Where a report's numbers come from: the rollup tables for the bulk of a window, the spans
themselves for its ragged edges, or the spans alone when the window holds few of them.

A window ``[since, until)`` (either end may be open) is covered by the coarsest buckets that fit
inside it: whole days in the middle, whole hours and whole minutes towards the ends, and the
partial minutes at the very ends are read from ``spans`` and added up with the same code the
writer uses (:class:`otelkit.store.rollup.Accumulator`). Sums, counts and maxima are therefore
exact for any window; only percentiles come from histograms (within 1%, see
:mod:`otelkit.store.rollup`). When the window holds at most ``exact_limit`` stored spans, the
whole window is read from ``spans`` and percentiles, trace counts and tool sequences are exact.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from otelkit.store.rollup import (
    KEY_COLUMNS,
    RESOLUTIONS,
    Accumulator,
    Key,
    SessionStats,
    Stats,
    ToolSequences,
)
from otelkit.store.writer import SPAN_COLUMNS

EXACT_LIMIT = 50_000
_NS = 1_000_000_000
_LOW = -(2**63)
_HIGH = 2**63 - 1

Progress = Callable[[str], None]


def _floor(value: int, step: int) -> int:
    return value - value % step


def _ceil(value: int, step: int) -> int:
    return -((-value) // step) * step


@dataclass(frozen=True)
class Segment:
    """A stretch of the window read at one resolution (seconds; 0 = from the spans)."""

    resolution_s: int
    since_ns: int
    until_ns: int


def cover(since_ns: int | None, until_ns: int | None, resolutions: Sequence[int] = RESOLUTIONS) -> list[Segment]:
    """Segments covering ``[since, until)`` with the coarsest aligned buckets of ``resolutions``
    (ascending), and raw segments (resolution 0) for what no whole bucket covers."""
    low = _LOW if since_ns is None else since_ns
    high = _HIGH if until_ns is None else until_ns
    if low >= high:
        return []
    segments: list[Segment] = []

    def split(lo: int, hi: int, level: int) -> None:
        if level == len(resolutions):
            return
        step = resolutions[level] * _NS
        a = lo if lo == _LOW else _ceil(lo, step)
        b = hi if hi == _HIGH else _floor(hi, step)
        if a >= b:
            segments.append(Segment(resolutions[level - 1] if level else 0, lo, hi))
            return
        if lo < a:
            segments.append(Segment(resolutions[level - 1] if level else 0, lo, a))
        if b < hi:
            segments.append(Segment(resolutions[level - 1] if level else 0, b, hi))
        if level + 1 == len(resolutions):
            segments.append(Segment(resolutions[level], a, b))
        else:
            split(a, b, level + 1)

    split(low, high, 0)
    return sorted(segments, key=lambda s: s.since_ns)


@dataclass
class Slice:
    """One rollup row (or the raw edge's equivalent): a bucket, its resolution and its stats."""

    bucket_ns: int
    resolution_s: int
    key: Key
    stats: Stats


@dataclass
class WindowData:
    """Everything the report sections read about one window."""

    since_ns: int | None
    until_ns: int | None
    source: str  # "exact" or "rollups"
    slices: list[Slice] = field(default_factory=list)
    errors: list[tuple[int, Key, str, str, str, int, float, str | None]] = field(default_factory=list)
    ngrams: dict[tuple[int, str], float] = field(default_factory=dict)
    durations: dict[Key, list[tuple[int, float]]] | None = None
    traces: float | None = None

    def by_key(self) -> dict[Key, Stats]:
        """The window's stats per operation key."""
        merged: dict[Key, Stats] = {}
        for item in self.slices:
            target = merged.get(item.key)
            if target is None:
                target = merged[item.key] = Stats()
            target.merge(item.stats)
        return merged

    def total(self) -> Stats:
        merged = Stats()
        for item in self.slices:
            merged.merge(item.stats)
        return merged


class Source:
    """Reads windows of one store, optionally for one service."""

    def __init__(self, conn: sqlite3.Connection, service: str | None = None, exact_limit: int = EXACT_LIMIT) -> None:
        self.conn = conn
        self.service = service
        self.exact_limit = exact_limit
        self._keys: dict[int, Key] = {}

    def _key(self, key_id: int) -> Key:
        found = self._keys.get(key_id)
        if found is None:  # first use, or a key a writer added since the last load
            for row in self.conn.execute(f"SELECT id, {', '.join(KEY_COLUMNS)} FROM rollup_keys"):
                self._keys[row[0]] = tuple(row[1:])  # type: ignore[assignment]
            found = self._keys[key_id]
        return found

    def _service_clause(self, column: str = "k.service_name") -> tuple[str, list[Any]]:
        if self.service is None:
            return "", []
        return f" AND {column} = ?", [self.service]

    def _raw_rows(self, since_ns: int, until_ns: int) -> Iterator[Sequence[Any]]:
        where = "start_ns >= ? AND start_ns < ?"
        params: list[Any] = [since_ns, until_ns]
        if self.service is not None:
            where += " AND service_name = ?"
            params.append(self.service)
        yield from self.conn.execute(f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans WHERE {where}", params)

    def stored_spans(self, since_ns: int | None, until_ns: int | None) -> int:
        """How many spans the store holds in the window, from the rollups (edges from the spans)."""
        total = 0
        for segment in cover(since_ns, until_ns):
            if segment.resolution_s == 0:
                total += self._raw_count(segment.since_ns, segment.until_ns)
                continue
            clause, params = self._service_clause()
            total += self.conn.execute(
                "SELECT coalesce(sum(r.spans), 0) FROM rollups r JOIN rollup_keys k ON k.id = r.key_id "
                f"WHERE r.resolution_s = ? AND r.bucket_ns >= ? AND r.bucket_ns < ?{clause}",
                [segment.resolution_s, segment.since_ns, segment.until_ns, *params],
            ).fetchone()[0]
        return int(total)

    def _raw_count(self, since_ns: int, until_ns: int) -> int:
        where = "start_ns >= ? AND start_ns < ?"
        params: list[Any] = [since_ns, until_ns]
        if self.service is not None:
            where += " AND service_name = ?"
            params.append(self.service)
        return int(self.conn.execute(f"SELECT count(*) FROM spans WHERE {where}", params).fetchone()[0])

    def window(self, since_ns: int | None, until_ns: int | None, exact: bool | None = None) -> WindowData:
        """The window's data: exact when asked, or (``exact=None``) when it holds few spans."""
        if exact is None:
            exact = self.stored_spans(since_ns, until_ns) <= self.exact_limit
        if exact:
            return self._exact(since_ns, until_ns)
        return self._from_rollups(since_ns, until_ns)

    def _exact(self, since_ns: int | None, until_ns: int | None) -> WindowData:
        acc = Accumulator(exact=True)
        acc.add_rows(self._raw_rows(_LOW if since_ns is None else since_ns, _HIGH if until_ns is None else until_ns))
        data = WindowData(since_ns, until_ns, "exact", durations=acc.durations, traces=sum(acc.traces.values()))
        self._add_accumulated(data, acc, exact_ngrams=True)
        return data

    def _add_accumulated(self, data: WindowData, acc: Accumulator, exact_ngrams: bool) -> None:
        for (minute, key), stats in acc.groups.items():
            data.slices.append(Slice(minute, 0, key, stats))
        for (minute, key, category, error_type, message), (spans, weight, trace_id) in acc.errors.items():
            data.errors.append((minute, key, category, error_type, message, spans, weight, trace_id))
        if acc.tool_calls:
            for _start, _service, n, sequence, w in ToolSequences().ngrams(acc.tool_calls):
                data.ngrams[(n, sequence)] = data.ngrams.get((n, sequence), 0.0) + w

    def _from_rollups(self, since_ns: int | None, until_ns: int | None) -> WindowData:
        data = WindowData(since_ns, until_ns, "rollups")
        clause, params = self._service_clause()
        for segment in cover(since_ns, until_ns):
            if segment.resolution_s == 0:
                acc = Accumulator()
                acc.add_rows(self._raw_rows(segment.since_ns, segment.until_ns))
                self._add_accumulated(data, acc, exact_ngrams=False)
                continue
            bounds = [segment.resolution_s, segment.since_ns, segment.until_ns]
            for row in self.conn.execute(
                f"SELECT r.bucket_ns, r.key_id, {', '.join('r.' + f for f in Stats.FIELDS)}, r.histogram "
                "FROM rollups r JOIN rollup_keys k ON k.id = r.key_id "
                f"WHERE r.resolution_s = ? AND r.bucket_ns >= ? AND r.bucket_ns < ?{clause}",
                [*bounds, *params],
            ):
                data.slices.append(Slice(row[0], segment.resolution_s, self._key(row[1]), Stats.from_row(row[2:])))
            for row in self.conn.execute(
                "SELECT e.bucket_ns, e.key_id, e.category, e.error_type, e.message, e.spans, e.weight, e.last_trace_id "
                "FROM error_rollups e JOIN rollup_keys k ON k.id = e.key_id "
                f"WHERE e.resolution_s = ? AND e.bucket_ns >= ? AND e.bucket_ns < ?{clause}",
                [*bounds, *params],
            ):
                data.errors.append((row[0], self._key(row[1]), *row[2:]))  # type: ignore[arg-type]
        self._rollup_ngrams(data, since_ns, until_ns)
        return data

    def _rollup_ngrams(self, data: WindowData, since_ns: int | None, until_ns: int | None) -> None:
        """Tool sequences: whole hours and days from ``tool_ngrams`` (the finest it keeps is an
        hour), the rest of the window's edges from the spans."""
        data.ngrams.clear()
        clause, params = self._service_clause("service_name")
        for segment in cover(since_ns, until_ns, RESOLUTIONS[1:]):
            if segment.resolution_s == 0:
                acc = Accumulator()
                acc.add_rows(self._raw_rows(segment.since_ns, segment.until_ns))
                for _start, _service, n, sequence, w in ToolSequences().ngrams(acc.tool_calls):
                    data.ngrams[(n, sequence)] = data.ngrams.get((n, sequence), 0.0) + w
                continue
            for n, sequence, weight in self.conn.execute(
                "SELECT n, sequence, sum(weight) FROM tool_ngrams WHERE resolution_s = ? AND bucket_ns >= ? "
                f"AND bucket_ns < ?{clause} GROUP BY n, sequence",
                [segment.resolution_s, segment.since_ns, segment.until_ns, *params],
            ):
                data.ngrams[(n, sequence)] = data.ngrams.get((n, sequence), 0.0) + weight

    def sessions(self, since_ns: int | None, until_ns: int | None) -> dict[str, SessionStats]:
        """The sessions that started in the window, whole (their figures cover their whole life)."""
        where = "first_ns >= ? AND first_ns < ?"
        params: list[Any] = [_LOW if since_ns is None else since_ns, _HIGH if until_ns is None else until_ns]
        if self.service is not None:
            where += " AND service_name = ?"
            params.append(self.service)
        return {
            row[0]: SessionStats.from_row(row[1:])
            for row in self.conn.execute(
                f"SELECT session_id, {', '.join(SessionStats.FIELDS)}, tools FROM session_rollups WHERE {where}", params
            )
        }

    def series(self, since_ns: int | None, until_ns: int | None, resolution_s: int) -> dict[int, Stats]:
        """Totals per bucket of ``resolution_s`` (a minute, an hour or a day) across the window
        (a bucket at an edge covers only the part inside the window)."""
        out: dict[int, Stats] = {}
        step = resolution_s * _NS
        clause, params = self._service_clause()
        finer = [r for r in RESOLUTIONS if r <= resolution_s]
        for segment in cover(since_ns, until_ns, finer):
            if segment.resolution_s == 0:
                acc = Accumulator()
                acc.add_rows(self._raw_rows(segment.since_ns, segment.until_ns))
                items: Iterator[tuple[int, Stats]] = ((minute, stats) for (minute, _key), stats in acc.groups.items())
            else:
                items = (
                    (row[0], Stats.from_row(row[1:]))
                    for row in self.conn.execute(
                        f"SELECT r.bucket_ns, {', '.join('r.' + f for f in Stats.FIELDS)}, r.histogram "
                        "FROM rollups r JOIN rollup_keys k ON k.id = r.key_id "
                        f"WHERE r.resolution_s = ? AND r.bucket_ns >= ? AND r.bucket_ns < ?{clause}",
                        [segment.resolution_s, segment.since_ns, segment.until_ns, *params],
                    )
                )
            for bucket, stats in items:
                slot = _floor(bucket, step)
                target = out.get(slot)
                if target is None:
                    target = out[slot] = Stats()
                target.merge(stats)
        return dict(sorted(out.items()))
