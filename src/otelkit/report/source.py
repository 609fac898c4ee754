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
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from otelkit.store.rollup import (
    KEY_COLUMNS,
    RESOLUTIONS,
    Accumulator,
    Key,
    Stats,
)
from otelkit.store.tool_sequences import window_ngrams
from otelkit.store.writer import SPAN_COLUMNS

EXACT_LIMIT = 50_000
MINUTE_NS = 60 * 1_000_000_000
_NS = 1_000_000_000
_LOW = -(2**63)
_HIGH = 2**63 - 1



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


class SlowSpan(NamedTuple):
    trace_id: str
    span_id: str
    start_ns: int
    end_ns: int


def _one_per_trace(spans: Sequence[SlowSpan], limit: int) -> list[SlowSpan]:
    chosen: list[SlowSpan] = []
    seen: set[str] = set()
    for span in spans:
        if span.trace_id not in seen:
            seen.add(span.trace_id)
            chosen.append(span)
            if len(chosen) == limit:
                break
    return chosen


class ErrorRow(NamedTuple):
    """Failed spans of one bucket, key, category, error type and message template."""

    bucket_ns: int
    key: Key
    category: str
    error_type: str
    message: str
    spans: int
    weight: float
    last_trace_id: str | None
    last_ns: int


@dataclass
class WindowData:
    """Everything the report sections read about one window."""

    since_ns: int | None
    until_ns: int | None
    source: str  # "exact" or "rollups"
    slices: list[Slice] = field(default_factory=list)
    errors: list[ErrorRow] = field(default_factory=list)
    ngram_reader: Callable[[], dict[tuple[int, str], float]] | None = None
    _ngrams: dict[tuple[int, str], float] | None = None
    _by_key: dict[Key, Stats] | None = None
    _total: Stats | None = None
    durations: dict[Key, list[tuple[int, float]]] | None = None
    traces: float | None = None

    @property
    def ngrams(self) -> dict[tuple[int, str], float]:
        """Weighted counts of tool sequences (n, ``a > b``) completed in the window, read on first use."""
        if self._ngrams is None:
            self._ngrams = self.ngram_reader() if self.ngram_reader is not None else {}
        return self._ngrams

    def by_key(self) -> dict[Key, Stats]:
        """The window's stats per operation key (computed once; callers must not change them)."""
        if self._by_key is None:
            merged: dict[Key, Stats] = {}
            for item in self.slices:
                target = merged.get(item.key)
                if target is None:
                    target = merged[item.key] = Stats()
                target.merge(item.stats)
            self._by_key = merged
        return self._by_key

    def total(self) -> Stats:
        """The window's stats over every key (computed once)."""
        if self._total is None:
            merged = Stats()
            for stats in self.by_key().values():
                merged.merge(stats)
            self._total = merged
        return self._total


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
        self._add_accumulated(data, acc)
        calls = acc.tool_calls
        data.ngram_reader = lambda: window_ngrams(self.conn, calls)
        return data

    def _add_accumulated(self, data: WindowData, acc: Accumulator) -> None:
        for (minute, key), stats in acc.groups.items():
            data.slices.append(Slice(minute, 0, key, stats))
        for (minute, key, category, error_type, message), (spans, weight, trace_id, last) in acc.errors.items():
            data.errors.append(ErrorRow(minute, key, category, error_type, message, spans, weight, trace_id, last))

    def _from_rollups(self, since_ns: int | None, until_ns: int | None) -> WindowData:
        data = WindowData(since_ns, until_ns, "rollups")
        clause, params = self._service_clause()
        for segment in cover(since_ns, until_ns):
            if segment.resolution_s == 0:
                acc = Accumulator()
                acc.add_rows(self._raw_rows(segment.since_ns, segment.until_ns))
                self._add_accumulated(data, acc)
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
                "SELECT e.bucket_ns, e.key_id, e.category, e.error_type, e.message, e.spans, e.weight, e.last_trace_id, "
                "e.last_ns "
                "FROM error_rollups e JOIN rollup_keys k ON k.id = e.key_id "
                f"WHERE e.resolution_s = ? AND e.bucket_ns >= ? AND e.bucket_ns < ?{clause}",
                [*bounds, *params],
            ):
                data.errors.append(ErrorRow(row[0], self._key(row[1]), *row[2:]))
        data.ngram_reader = lambda: self._rollup_ngrams(since_ns, until_ns)
        return data

    def _rollup_ngrams(self, since_ns: int | None, until_ns: int | None) -> dict[tuple[int, str], float]:
        """Tool sequences: whole hours and days from ``tool_ngrams`` (the finest it keeps is an
        hour), the edges from the spans, with each sequence's earlier calls as context."""
        ngrams: dict[tuple[int, str], float] = {}
        clause, params = self._service_clause("service_name")
        for segment in cover(since_ns, until_ns, RESOLUTIONS[1:]):
            if segment.resolution_s == 0:
                acc = Accumulator()
                acc.add_rows(self._raw_rows(segment.since_ns, segment.until_ns))
                found = list(window_ngrams(self.conn, acc.tool_calls).items())
            else:
                found = [
                    ((n, sequence), weight)
                    for n, sequence, weight in self.conn.execute(
                        "SELECT n, sequence, sum(weight) FROM tool_ngrams WHERE resolution_s = ? AND bucket_ns >= ? "
                        f"AND bucket_ns < ?{clause} GROUP BY n, sequence HAVING sum(weight) > 1e-9",
                        [segment.resolution_s, segment.since_ns, segment.until_ns, *params],
                    )
                ]
            for slot, weight in found:
                ngrams[slot] = ngrams.get(slot, 0.0) + weight
        return ngrams

    def key_id(self, key: Key) -> int | None:
        """The ``rollup_keys`` id of a key (None when the store has no such key)."""
        row = self.conn.execute(
            f"SELECT id FROM rollup_keys WHERE {' AND '.join(f'{c} = ?' for c in KEY_COLUMNS)}", key
        ).fetchone()
        return None if row is None else int(row[0])

    def slowest(self, data: WindowData, wanted: Callable[[Key], bool], limit: int, roots_only: bool = False) -> list[SlowSpan]:
        """The ``limit`` slowest spans of the keys ``wanted`` accepts in the window, one per trace.

        An exact window ranks its spans in SQL. A rollup window ranks the buckets' slowest spans
        first: the ``limit``-th of them (distinct traces) bounds the answer from below, so only
        minutes whose slowest span reaches that bound can hold one, and only those minutes are
        read from the spans (the minute rollups say which)."""
        low = _LOW if data.since_ns is None else data.since_ns
        high = _HIGH if data.until_ns is None else data.until_ns
        if data.source == "exact":
            keys = [key for key in data.by_key() if wanted(key)]
            return self._slowest_in(low, high, keys, 0, limit, roots_only)
        candidates = sorted(
            (s for s in data.slices if s.stats.max_trace_id and wanted(s.key) and (s.stats.roots > 0 or not roots_only)),
            key=lambda s: -s.stats.max_ns,
        )
        traces: set[str] = set()
        bound = 0
        for item in candidates:
            traces.add(item.stats.max_trace_id or "")
            bound = item.stats.max_ns
            if len(traces) == limit:
                break
        found: list[SlowSpan] = []
        scanned: set[tuple[int, Key]] = set()
        for item in candidates:
            chosen = _one_per_trace(sorted(found, key=lambda s: s.start_ns - s.end_ns), limit)
            if len(chosen) == limit:
                bound = max(bound, chosen[-1].end_ns - chosen[-1].start_ns)
            if item.stats.max_ns < bound or (len(chosen) == limit and item.stats.max_ns <= bound):
                break
            if item.resolution_s <= 60:
                minutes = [item.bucket_ns - item.bucket_ns % MINUTE_NS]
            else:
                minutes = self._minutes_reaching(self.key_id(item.key), item.bucket_ns, item.resolution_s, bound)
            for minute in minutes:
                if (minute, item.key) in scanned:
                    continue
                scanned.add((minute, item.key))
                found.extend(
                    self._slowest_in(max(minute, low), min(minute + MINUTE_NS, high), [item.key], bound, limit, roots_only)
                )
        found.sort(key=lambda s: (s.start_ns - s.end_ns, s.trace_id))
        return _one_per_trace(found, limit)

    def _minutes_reaching(self, key_id: int | None, bucket_ns: int, resolution_s: int, bound: int) -> list[int]:
        """The minutes of a bucket whose slowest span of ``key_id`` lasted at least ``bound``,
        found level by level (day, hours, minutes), so each step reads few rows."""
        finer = [r for r in RESOLUTIONS if r < resolution_s]
        if not finer:
            return [bucket_ns]
        found: list[int] = []
        for (bucket,) in self.conn.execute(
            "SELECT bucket_ns FROM rollups WHERE resolution_s = ? AND bucket_ns >= ? AND bucket_ns < ? "
            "AND key_id = ? AND max_ns >= ?",
            (finer[-1], bucket_ns, bucket_ns + resolution_s * _NS, key_id, bound),
        ).fetchall():
            found.extend(self._minutes_reaching(key_id, bucket, finer[-1], bound))
        return found

    def _slowest_in(
        self, since_ns: int, until_ns: int, keys: Sequence[Key], at_least_ns: int, limit: int, roots_only: bool
    ) -> list[SlowSpan]:
        """The slowest spans (one per trace) in ``[since, until)`` named and served like ``keys``."""
        names = sorted({(key[0], key[2]) for key in keys})
        if not names:
            return []
        pairs = " OR ".join("(coalesce(service_name, '') = ? AND name = ?)" for _ in names)
        where = f"start_ns >= ? AND start_ns < ? AND duration_ns >= ? AND ({pairs})"
        params: list[Any] = [since_ns, until_ns, at_least_ns, *(v for pair in names for v in pair)]
        if roots_only:
            where += " AND parent_span_id IS NULL"
        rows = self.conn.execute(
            f"SELECT trace_id, span_id, start_ns, end_ns FROM spans WHERE {where} ORDER BY duration_ns DESC LIMIT ?",
            [*params, limit * 4],
        )
        return _one_per_trace([SlowSpan(*row) for row in rows], limit)

    def session_filter(self, since_ns: int | None, until_ns: int | None) -> tuple[str, list[Any]]:
        """The WHERE clause (and its parameters) of ``session_rollups`` rows of the sessions that
        started in the window (their figures cover their whole life).

        When the window holds most of the store's sessions the clause reads the table in one
        sequential scan (``+first_ns`` keeps SQLite off the index): reading every row through
        ``session_rollups_by_first`` costs a tree lookup per session and is about 3x slower."""
        total = int(self.conn.execute("SELECT count(*) FROM session_rollups").fetchone()[0])
        scan = self.session_count(since_ns, until_ns) * 4 >= total
        return self._session_where("+first_ns" if scan else "first_ns", since_ns, until_ns)

    def session_count(self, since_ns: int | None, until_ns: int | None) -> int:
        """How many sessions started in the window (counted on the index alone)."""
        where, params = self._session_where("first_ns", since_ns, until_ns)
        return int(self.conn.execute(f"SELECT count(*) FROM session_rollups WHERE {where}", params).fetchone()[0])

    def _session_where(self, column: str, since_ns: int | None, until_ns: int | None) -> tuple[str, list[Any]]:
        where = f"{column} >= ? AND {column} < ?"
        params: list[Any] = [_LOW if since_ns is None else since_ns, _HIGH if until_ns is None else until_ns]
        if self.service is not None:
            where += " AND service_name = ?"
            params.append(self.service)
        return where, params

    def error_series(self, since_ns: int | None, until_ns: int | None, resolution_s: int) -> dict[int, tuple[float, float]]:
        """(weighted errors, weighted spans) per bucket of ``resolution_s`` across the window, the
        buckets that hold spans only (a bucket at an edge covers only the part inside the window)."""
        out: dict[int, list[float]] = {}
        step = resolution_s * _NS
        clause, params = self._service_clause()
        for segment in cover(since_ns, until_ns, [r for r in RESOLUTIONS if r <= resolution_s]):
            if segment.resolution_s == 0:
                acc = Accumulator()
                acc.add_rows(self._raw_rows(segment.since_ns, segment.until_ns))
                items: Iterator[tuple[int, float, float]] = (
                    (minute, stats.errors, stats.weight) for (minute, _key), stats in acc.groups.items()
                )
            else:
                items = iter(
                    self.conn.execute(
                        "SELECT r.bucket_ns, total(r.errors), total(r.weight) FROM rollups r "
                        "JOIN rollup_keys k ON k.id = r.key_id WHERE r.resolution_s = ? AND r.bucket_ns >= ? "
                        f"AND r.bucket_ns < ?{clause} GROUP BY r.bucket_ns",
                        [segment.resolution_s, segment.since_ns, segment.until_ns, *params],
                    ).fetchall()
                )
            for bucket, errors, weight in items:
                entry = out.setdefault(_floor(bucket, step), [0.0, 0.0])
                entry[0] += errors
                entry[1] += weight
        return {bucket: (entry[0], entry[1]) for bucket, entry in sorted(out.items())}
