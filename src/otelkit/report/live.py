"""``otelkit top``'s figures: one snapshot of the last few minutes, read from the rollups.

:func:`snapshot` reads the minute rollups (``rollups`` at ``resolution_s = 60`` joined to
``rollup_keys``), ``session_rollups`` and ``alerts`` (schema version 3,
:mod:`otelkit.store.schema`), never ``spans``, so a refresh costs a few hundred rows however
large the store is. Every query runs in one read transaction, so the figures agree.

The window: with ``M = window_s // 60`` and ``C`` the start of the minute holding ``now_ns``, it
is the ``M`` complete minutes before ``C`` plus the current, partial minute: rollup buckets
``C - M minutes .. C``. It therefore lasts ``minutes = M + (now_ns - C) / 60 s`` (the
snapshot's ``window.minutes``), and every rate divides by that. A span counts in the minute it
started; it reaches the store when it ends (in batches, usually within seconds), so the current
minute fills in as spans finish, and a span still running is not counted yet.

The snapshot (a dict; every count is weighted by sample rate, as in :mod:`otelkit.report`)::

    now_ns, service (the --service filter, None for all), window: {seconds, start_ns, minutes}
    spans                 weighted spans that started in the window
    requests              weighted root spans (no parent: one per trace) among them
    errors                weighted spans with status ERROR among them (any span, not only roots)
    requests_per_minute   requests / minutes
    spans_per_minute      spans / minutes
    error_rate            errors / spans (0..1); None without spans
    p95_ms                95th percentile duration of those spans, from the merged minute
                          histograms (within 1% of the duration at that rank); None without spans
    input_tokens, output_tokens   weighted gen_ai.usage tokens of those spans (cached input included)
    tokens_per_minute     (input_tokens + output_tokens) / minutes
    cost_usd              weighted gen_ai.usage.cost of those spans (priced and estimated calls)
    cost_per_hour         cost_usd / minutes * 60: the USD rate the window's spending runs at
    unpriced_llm_calls    weighted LLM calls with tokens but no cost (cost figures omit them)
    per_minute            the last 15 minute buckets, oldest first, the current one last:
                          [{bucket_ns, requests, errors, spans}] (weighted, as above)
    operations            the 5 (operation type, span name) pairs with the most spans in the
                          window: [{type, name, count, per_minute, errors, error_rate, p95_ms}]
    active_sessions       sessions whose latest span ended within window_s of now_ns
                          (last_ns >= now_ns - window_s): a count, not weighted
    recent_sessions       the 5 of them that ended a span last: [{id, service, spans,
                          tool_calls, errors, cost_usd, first_ns, last_ns}]; these figures are
                          the session's lifetime totals, weighted, not only its spans in the window
    latest_alerts         the 5 alerts fired most recently (newest ``fired_ns`` first), whatever
                          their time or service: [{id, rule, kind, severity, state, group_key,
                          fired_ns, resolved_ns, message}]

``service`` restricts spans and sessions to that ``service.name`` (a session belongs to the
service of the first of its spans the store received); alerts carry no service and are
never filtered.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import orjson

from otelkit.store.rollup import MINUTE_NS, histogram_percentile_ms
from otelkit.store.schema import StoreError

ROLLUPS_VERSION = 3  # the store schema version that added the rollup tables
SERIES_MINUTES = 15
TOP_OPERATIONS = 5
RECENT_SESSIONS = 5
LATEST_ALERTS = 5
_RESOLUTION_S = 60
_INT64_MIN = -(2**63)

_ROLLUP_SQL = """
SELECT r.bucket_ns, k.operation_type, k.name, r.weight, r.roots, r.errors, r.input_tokens,
       r.output_tokens, r.cost_usd, r.unpriced_calls, r.histogram
FROM rollups AS r JOIN rollup_keys AS k ON k.id = r.key_id
WHERE r.resolution_s = ? AND r.bucket_ns >= ? AND r.bucket_ns <= ?{service}
"""
_SESSION_FIELDS = ("id", "service", "spans", "tool_calls", "errors", "cost_usd", "first_ns", "last_ns")
_SESSION_SQL = """
SELECT session_id, service_name, weight, tool_calls, errors, cost_usd, first_ns, last_ns
FROM session_rollups WHERE last_ns >= ?{service} ORDER BY last_ns DESC, session_id LIMIT ?
"""
_ALERT_FIELDS = ("id", "rule", "kind", "severity", "state", "group_key", "fired_ns", "resolved_ns", "message")
_ALERT_SQL = f"SELECT {', '.join(_ALERT_FIELDS)} FROM alerts ORDER BY fired_ns DESC, id DESC LIMIT ?"


class _Totals:
    """Weighted sums over rollup rows, and their merged duration histogram."""

    __slots__ = ("spans", "requests", "errors", "input_tokens", "output_tokens", "cost_usd", "unpriced", "histogram")

    def __init__(self) -> None:
        self.spans = self.requests = self.errors = 0.0
        self.input_tokens = self.output_tokens = self.cost_usd = self.unpriced = 0.0
        self.histogram: dict[int, float] = {}

    def add(self, row: Sequence[Any], histogram: dict[int, float] | None) -> None:
        """Add one row of :data:`_ROLLUP_SQL` (its histogram already parsed, when wanted)."""
        self.spans += row[3]
        self.requests += row[4]
        self.errors += row[5]
        self.input_tokens += row[6]
        self.output_tokens += row[7]
        self.cost_usd += row[8]
        self.unpriced += row[9]
        for index, weight in (histogram or {}).items():
            self.histogram[index] = self.histogram.get(index, 0.0) + weight

    def error_rate(self) -> float | None:
        return self.errors / self.spans if self.spans > 0 else None

    def p95_ms(self) -> float | None:
        return histogram_percentile_ms(self.histogram, 95)


def require_rollups(conn: sqlite3.Connection) -> None:
    """Raise StoreError (one line) when the store predates the rollups; a read-only reader cannot migrate it."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < ROLLUPS_VERSION:
        raise StoreError(
            f"store schema version {version} predates the rollups this view reads (version {ROLLUPS_VERSION}); "
            "writing to it with this otelkit (an exporter or 'otelkit serve') upgrades it"
        )


@contextmanager
def _read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction around the snapshot's queries, so a concurrent commit cannot split them."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")


def snapshot(conn: sqlite3.Connection, now_ns: int, window_s: int = 300, service: str | None = None) -> dict[str, Any]:
    """The figures of the window ending at ``now_ns`` (see the module docs for each one)."""
    if window_s < 60:
        raise ValueError(f"window_s must be at least 60 (a whole minute), not {window_s}")
    require_rollups(conn)
    current = now_ns - now_ns % MINUTE_NS
    start = max(current - (window_s // 60) * MINUTE_NS, _INT64_MIN)
    minutes = (window_s // 60) + (now_ns - current) / MINUTE_NS
    with _read_transaction(conn):
        window, operations, series = _read_rollups(conn, start, current, service)
        active, recent = _read_sessions(conn, max(now_ns - window_s * 1_000_000_000, _INT64_MIN), service)
        alerts = _read_alerts(conn)
    return {
        "now_ns": now_ns,
        "service": service,
        "window": {"seconds": window_s, "start_ns": start, "minutes": minutes},
        **_headline(window, minutes),
        "per_minute": series,
        "operations": _top_operations(operations, minutes),
        "active_sessions": active,
        "recent_sessions": recent,
        "latest_alerts": alerts,
    }


def _headline(window: _Totals, minutes: float) -> dict[str, Any]:
    """The window's totals and the rates derived from them."""
    return {
        "spans": window.spans,
        "requests": window.requests,
        "errors": window.errors,
        "requests_per_minute": window.requests / minutes,
        "spans_per_minute": window.spans / minutes,
        "error_rate": window.error_rate(),
        "p95_ms": window.p95_ms(),
        "input_tokens": window.input_tokens,
        "output_tokens": window.output_tokens,
        "tokens_per_minute": (window.input_tokens + window.output_tokens) / minutes,
        "cost_usd": window.cost_usd,
        "cost_per_hour": window.cost_usd / minutes * 60,
        "unpriced_llm_calls": window.unpriced,
    }


def _read_rollups(
    conn: sqlite3.Connection, start: int, current: int, service: str | None
) -> tuple[_Totals, dict[tuple[str, str], _Totals], list[dict[str, Any]]]:
    """The window's totals, its totals per operation, and the per-minute series, in one range scan."""
    first_series = current - (SERIES_MINUTES - 1) * MINUTE_NS
    sql = _ROLLUP_SQL.format(service="" if service is None else " AND k.service_name = ?")
    params: list[Any] = [_RESOLUTION_S, min(start, first_series), current]
    if service is not None:
        params.append(service)
    window = _Totals()
    operations: dict[tuple[str, str], _Totals] = {}
    buckets = {first_series + i * MINUTE_NS: _Totals() for i in range(SERIES_MINUTES)}
    for row in conn.execute(sql, params):
        if row[0] in buckets:
            buckets[row[0]].add(row, None)
        if row[0] >= start:
            histogram = {int(k): v for k, v in orjson.loads(row[10]).items()}
            window.add(row, histogram)
            operations.setdefault((row[1], row[2]), _Totals()).add(row, histogram)
    series = [
        {"bucket_ns": bucket, "requests": t.requests, "errors": t.errors, "spans": t.spans}
        for bucket, t in sorted(buckets.items())
    ]
    return window, operations, series


def _top_operations(operations: dict[tuple[str, str], _Totals], minutes: float) -> list[dict[str, Any]]:
    """The busiest operations: most weighted spans first, ties by type then name."""
    ranked = sorted(operations.items(), key=lambda item: (-item[1].spans, item[0]))[:TOP_OPERATIONS]
    return [
        {
            "type": op_type,
            "name": name,
            "count": totals.spans,
            "per_minute": totals.spans / minutes,
            "errors": totals.errors,
            "error_rate": totals.error_rate(),
            "p95_ms": totals.p95_ms(),
        }
        for (op_type, name), totals in ranked
    ]


def _read_sessions(conn: sqlite3.Connection, since_ns: int, service: str | None) -> tuple[int, list[dict[str, Any]]]:
    """How many sessions were active since ``since_ns``, and the most recently active ones."""
    where = "" if service is None else " AND service_name = ?"
    params: list[Any] = [since_ns] + ([] if service is None else [service])
    count = conn.execute(f"SELECT count(*) FROM session_rollups WHERE last_ns >= ?{where}", params).fetchone()[0]
    rows = conn.execute(_SESSION_SQL.format(service=where), [*params, RECENT_SESSIONS]).fetchall()
    return count, [dict(zip(_SESSION_FIELDS, row)) for row in rows]


def _read_alerts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The alerts fired most recently, newest first."""
    return [dict(zip(_ALERT_FIELDS, row)) for row in conn.execute(_ALERT_SQL, (LATEST_ALERTS,))]
