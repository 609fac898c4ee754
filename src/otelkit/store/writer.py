"""Writes rows into the store: one transaction per batch, safe across threads, forks and processes.

Rows are plain tuples in the column order below, so every producer (the SDK exporters, the
OTLP receiver) converts once and shares this write path. Spans are inserted with
``INSERT OR IGNORE`` on ``(start_ns, span_id)`` so a re-delivered batch stores nothing twice,
and the per-trace summary in ``traces`` is folded from the rows that were actually new.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from typing import Any, Iterable, Mapping, Sequence

from otelkit.store.schema import connect_for_writing

SPAN_COLUMNS: tuple[str, ...] = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "resource_id",
    "scope_id", "start_ns", "end_ns", "status_code", "status_message", "operation_type",
    "provider", "model", "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd",
    "cost_status", "session_id", "error_type", "error_category", "sample_rate", "trace_state",
    "attributes", "links",
)  # fmt: skip
EVENT_COLUMNS: tuple[str, ...] = ("trace_id", "span_id", "time_ns", "name", "attributes")
METRIC_COLUMNS: tuple[str, ...] = (
    "name", "description", "unit", "kind", "temporality", "is_monotonic", "service_name",
    "resource_id", "scope_id", "start_ns", "time_ns", "attributes", "value", "count", "sum",
    "min", "max", "buckets",
)  # fmt: skip
LOG_COLUMNS: tuple[str, ...] = (
    "time_ns", "observed_time_ns", "severity_number", "severity_text", "body", "event_name",
    "trace_id", "span_id", "trace_flags", "service_name", "resource_id", "scope_id",
    "session_id", "attributes",
)  # fmt: skip

_TRACE, _SPAN, _PARENT, _NAME = 0, 1, 2, 3
_SERVICE, _START, _END, _STATUS, _SESSION = 5, 8, 9, 10, 20


def _insert_sql(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_SPAN_INSERT = _insert_sql("spans", SPAN_COLUMNS, "INSERT OR IGNORE")
_EVENT_INSERT = _insert_sql("span_events", EVENT_COLUMNS)
_METRIC_INSERT = _insert_sql("metric_points", METRIC_COLUMNS)
_LOG_INSERT = _insert_sql("log_records", LOG_COLUMNS)
_TRACE_UPSERT = """
INSERT INTO traces (trace_id, start_ns, end_ns, span_count, error_count, root_name, service_name, session_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    start_ns = min(start_ns, excluded.start_ns),
    end_ns = max(end_ns, excluded.end_ns),
    span_count = span_count + excluded.span_count,
    error_count = error_count + excluded.error_count,
    root_name = coalesce(excluded.root_name, root_name),
    service_name = CASE WHEN excluded.root_name IS NOT NULL THEN excluded.service_name
                        ELSE coalesce(service_name, excluded.service_name) END,
    session_id = coalesce(session_id, excluded.session_id)
"""


def to_json(value: Mapping[str, Any] | Sequence[Any] | None) -> str:
    """Compact JSON for attribute maps; non-JSON values (bytes, objects) become strings."""
    if not value:
        return "{}" if not isinstance(value, (list, tuple)) else "[]"
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _fold_traces(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """One summary row per trace in the batch, merged into ``traces`` by the upsert."""
    folded: dict[str, list[Any]] = {}
    for row in rows:
        entry = folded.get(row[_TRACE])
        is_root = row[_PARENT] is None
        errors = 1 if row[_STATUS] == "ERROR" else 0
        if entry is None:
            folded[row[_TRACE]] = [
                row[_TRACE], row[_START], row[_END], 1, errors,
                row[_NAME] if is_root else None, row[_SERVICE], row[_SESSION],
            ]  # fmt: skip
            continue
        if row[_START] < entry[1]:
            entry[1] = row[_START]
        if row[_END] > entry[2]:
            entry[2] = row[_END]
        entry[3] += 1
        entry[4] += errors
        if is_root:
            entry[5], entry[6] = row[_NAME], row[_SERVICE]
        if entry[7] is None:
            entry[7] = row[_SESSION]
    return [tuple(entry) for entry in folded.values()]


class StoreWriter:
    """A thread-safe writer for one store file; reconnects after fork (gunicorn style)."""

    def __init__(self, path: str, busy_timeout_ms: int = 30_000, cache_size_mib: int = 64) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._cache_size_mib = cache_size_mib
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._fingerprints: dict[tuple[str, str], int] = {}
        self._orphans: list[sqlite3.Connection] = []

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:
                # Inherited across fork: never use or close it here (closing would touch the
                # parent's WAL state); keep it referenced so it is not finalized either.
                self._orphans.append(self._conn)
                self._lock = threading.Lock()
            self._conn = connect_for_writing(self.path, self._busy_timeout_ms, self._cache_size_mib)
            self._pid = os.getpid()
        return self._conn

    def _intern(self, table: str, fingerprint: str, insert_sql: str, values: tuple[Any, ...]) -> int:
        cached = self._fingerprints.get((table, fingerprint))
        if cached is not None:
            return cached
        conn = self._connection()
        conn.execute(insert_sql, (fingerprint, *values))
        row_id = conn.execute(f"SELECT id FROM {table} WHERE fingerprint = ?", (fingerprint,)).fetchone()[0]
        self._fingerprints[(table, fingerprint)] = row_id
        return row_id

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int:
        """The id of this resource's row, created on first sight (deduplicated by content)."""
        attrs_json = json.dumps(dict(attributes), sort_keys=True, separators=(",", ":"), default=str)
        fingerprint = hashlib.sha1(attrs_json.encode()).hexdigest()
        with self._lock:
            return self._intern(
                "resources",
                fingerprint,
                "INSERT OR IGNORE INTO resources (fingerprint, service_name, attributes) VALUES (?, ?, ?)",
                (service_name, attrs_json),
            )

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int:
        """The id of this instrumentation scope's row, created on first sight."""
        attrs_json = json.dumps(dict(attributes or {}), sort_keys=True, separators=(",", ":"), default=str)
        fingerprint = hashlib.sha1(f"{name}\0{version or ''}\0{attrs_json}".encode()).hexdigest()
        with self._lock:
            return self._intern(
                "scopes",
                fingerprint,
                "INSERT OR IGNORE INTO scopes (fingerprint, name, version, attributes) VALUES (?, ?, ?, ?)",
                (name, version, attrs_json),
            )

    def write_spans(self, rows: Sequence[Sequence[Any]], events: Sequence[Sequence[Any]] = ()) -> int:
        """Store spans and their events in one transaction; returns how many spans were new."""
        if not rows:
            return 0
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                inserted = conn.executemany(_SPAN_INSERT, rows).rowcount
                if inserted != len(rows):
                    # Some spans were stored before (a retried delivery): redo the batch row
                    # by row so the trace summary and events count only the new ones.
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    rows = [row for row in rows if conn.execute(_SPAN_INSERT, row).rowcount == 1]
                    fresh = {(row[_TRACE], row[_SPAN]) for row in rows}
                    events = [e for e in events if (e[0], e[1]) in fresh]
                    inserted = len(rows)
                if events:
                    conn.executemany(_EVENT_INSERT, events)
                if rows:
                    conn.executemany(_TRACE_UPSERT, _fold_traces(rows))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return inserted

    def _write_plain(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        if not rows:
            return 0
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return len(rows)

    def write_metric_points(self, rows: Sequence[Sequence[Any]]) -> int:
        """Store metric data points (see :data:`METRIC_COLUMNS`) in one transaction."""
        return self._write_plain(_METRIC_INSERT, rows)

    def write_log_records(self, rows: Sequence[Sequence[Any]]) -> int:
        """Store log records (see :data:`LOG_COLUMNS`) in one transaction."""
        return self._write_plain(_LOG_INSERT, rows)

    def close(self) -> None:
        """Close this process's connection; later writes reopen it."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


_writers: dict[str, StoreWriter] = {}
_writers_lock = threading.Lock()


def shared_writer(path: str, busy_timeout_ms: int = 30_000, cache_size_mib: int = 64) -> StoreWriter:
    """One writer per file per process, so the span, metric and log exporters share a connection."""
    key = os.path.abspath(path)
    with _writers_lock:
        writer = _writers.get(key)
        if writer is None:
            writer = _writers[key] = StoreWriter(path, busy_timeout_ms, cache_size_mib)
        return writer
