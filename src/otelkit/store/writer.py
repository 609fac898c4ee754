"""Writes rows into the store: one transaction per batch, safe across threads, forks and processes.

Rows are plain tuples in the column order below, so every producer (the SDK exporters, the
OTLP receiver) converts once and shares this write path. Spans are inserted with
``INSERT OR IGNORE`` on ``(start_ns, span_id)`` so a re-delivered batch stores nothing twice
(and its events are kept only for the spans that were new). The same transaction adds the new
spans to the rollups reports read (:mod:`otelkit.store.rollup`), so they never disagree.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
from contextlib import contextmanager
from itertools import chain
from typing import Any, Iterator, Mapping, Sequence

import orjson

from otelkit.store.rollup import Accumulator, RollupWriter
from otelkit.store.schema import connect_for_writing

SPAN_COLUMNS: tuple[str, ...] = (
    "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "resource_id",
    "scope_id", "start_ns", "end_ns", "status_code", "status_message", "error_type",
    "trace_state", "attributes", "links",
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

ALERT_COLUMNS: tuple[str, ...] = (
    "uid", "rule", "kind", "severity", "state", "group_key", "started_ns", "fired_ns",
    "resolved_ns", "value", "threshold", "message", "trace_id", "span_id", "notifications",
)  # fmt: skip


_SPAN_PREFIX = f"INSERT OR IGNORE INTO span_rows ({', '.join(SPAN_COLUMNS)}) VALUES "
_EVENT_PREFIX = f"INSERT INTO span_events ({', '.join(EVENT_COLUMNS)}) VALUES "
_METRIC_PREFIX = f"INSERT INTO metric_points ({', '.join(METRIC_COLUMNS)}) VALUES "
_LOG_PREFIX = f"INSERT INTO log_records ({', '.join(LOG_COLUMNS)}) VALUES "
_MAX_CHUNK = 1024
# One row per alert: a repeat updates the firing details, a resolution only the state and
# time (the row keeps what fired); a resolution whose firing never arrived inserts the row.
_ALERT_UPSERT = (
    f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}) VALUES ({', '.join('?' * len(ALERT_COLUMNS))}) "
    "ON CONFLICT (uid) DO UPDATE SET state = excluded.state, resolved_ns = excluded.resolved_ns, "
    "notifications = max(notifications, excluded.notifications), "
    + ", ".join(
        f"{column} = CASE WHEN excluded.state = 'firing' THEN excluded.{column} ELSE {column} END"
        for column in ("fired_ns", "value", "threshold", "message", "trace_id", "span_id")
    )
)


def _chunks(count: int, width: int, limit: int) -> Iterator[int]:
    """Power-of-two chunk sizes covering ``count`` rows, each within SQLite's variable limit.

    Whole chunks become one multi-row statement each: SQLite then works on the whole chunk in
    one call with the GIL released (``executemany`` releases and retakes it per row, and each
    retake can wait a full switch interval behind a busy application thread). Power-of-two
    sizes keep the number of distinct statements, and so of cached prepared ones, small.
    """
    largest = min(_MAX_CHUNK, 1 << max(0, (limit // width).bit_length() - 1))
    while count:
        size = largest
        while size > count:
            size >>= 1
        yield size
        count -= size


def _insert_rows(conn: sqlite3.Connection, prefix: str, width: int, rows: Sequence[Sequence[Any]], suffix: str = "") -> int:
    """Insert ``rows`` with multi-row statements; returns how many rows were stored."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    placeholders = "(" + ", ".join("?" * width) + ")"
    stored = 0
    start = 0
    for size in _chunks(len(rows), width, limit):
        sql = prefix + ", ".join([placeholders] * size) + suffix
        stored += conn.execute(sql, list(chain.from_iterable(rows[start : start + size]))).rowcount
        start += size
    return stored


_encode_lenient = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (JSON cannot hold them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def to_json(value: Mapping[str, Any] | Sequence[Any] | None) -> str:
    """Compact JSON for attribute maps, on every span's path, so orjson (about 10x the stdlib).

    What orjson refuses (integers beyond 64 bits, odd key types) goes through the stdlib, with
    unknown objects as strings; NaN and infinities become null, as JSON has no spelling for them.
    """
    if not value:
        return "[]" if isinstance(value, (list, tuple)) else "{}"
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _encode_lenient(_finite(value))


class StoreWriter:
    """A thread-safe writer for one store file; reconnects after fork (gunicorn style)."""

    def __init__(self, path: str, busy_timeout_ms: int = 30_000, cache_size_mib: int = 64,
                 autocheckpoint: bool = True) -> None:  # fmt: skip
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._cache_size_mib = cache_size_mib
        # False: the owner calls :meth:`checkpoint` itself, e.g. outside a lock it shares.
        self._autocheckpoint = autocheckpoint
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._fingerprints: dict[tuple[str, str], int] = {}
        self._orphans: list[sqlite3.Connection] = []
        self._rollups = RollupWriter()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:
                # Inherited across fork: never use or close it here (closing would touch the
                # parent's WAL state); keep it referenced so it is not finalized either.
                self._orphans.append(self._conn)
                self._lock = threading.Lock()
                self._rollups = RollupWriter()
            self._conn = connect_for_writing(self.path, self._busy_timeout_ms, self._cache_size_mib)
            if not self._autocheckpoint:
                self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._pid = os.getpid()
        return self._conn

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file without waiting for readers or
        writers (a PASSIVE checkpoint), so the WAL file can start over."""
        with self._lock:
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

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

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``) so waiting honours the busy timeout."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._rollups.reset()  # key ids cached in the rolled-back transaction are gone
                raise

    def write_spans(
        self,
        rows: Sequence[Sequence[Any]],
        events: Sequence[Sequence[Any]] = (),
        attributes: Sequence[Mapping[str, Any]] | None = None,
        accumulator: Accumulator | None = None,
    ) -> int:
        """Store spans and their events in one transaction, and add the new ones to the rollups;
        returns how many spans were new. ``attributes``, when given, are the rows' attribute
        maps (what their JSON says), so the rollups need not parse it again. ``accumulator``,
        when given, holds all ``rows`` already added (computed before taking the lock); it is
        used when every row is new, and recomputed for the new ones otherwise."""
        if not rows:
            return 0
        with self._transaction() as conn:
            floor = conn.execute("SELECT coalesce(max(id), 0) FROM span_rows").fetchone()[0]
            inserted = _insert_rows(conn, _SPAN_PREFIX, len(SPAN_COLUMNS), rows)
            if inserted != len(rows):
                # Some spans were stored before (a retried delivery): only the spans this batch
                # added count, with their events.
                new_spans = set(conn.execute("SELECT trace_id, span_id FROM span_rows WHERE id > ?", (floor,)))
                events = [e for e in events if (e[0], e[1]) in new_spans]
                fresh = []
                for i, row in enumerate(rows):
                    ids = (row[0], row[1])
                    if ids in new_spans:
                        new_spans.discard(ids)  # a span twice in one batch is stored once
                        fresh.append(i)
                rows = [rows[i] for i in fresh]
                attributes = None if attributes is None else [attributes[i] for i in fresh]
                accumulator = None
            if events:
                _insert_rows(conn, _EVENT_PREFIX, len(EVENT_COLUMNS), events)
            if rows:
                if accumulator is None:
                    accumulator = Accumulator()
                    accumulator.add_rows(rows, attributes)
                self._rollups.write(conn, accumulator)
        return inserted

    def _write_plain(self, prefix: str, width: int, rows: Sequence[Sequence[Any]]) -> int:
        if rows:
            with self._transaction() as conn:
                _insert_rows(conn, prefix, width, rows)
        return len(rows)

    def write_metric_points(self, rows: Sequence[Sequence[Any]]) -> int:
        """Store metric data points (see :data:`METRIC_COLUMNS`) in one transaction."""
        return self._write_plain(_METRIC_PREFIX, len(METRIC_COLUMNS), rows)

    def write_log_records(self, rows: Sequence[Sequence[Any]]) -> int:
        """Store log records (see :data:`LOG_COLUMNS`) in one transaction."""
        return self._write_plain(_LOG_PREFIX, len(LOG_COLUMNS), rows)

    def write_alerts(self, rows: Sequence[Sequence[Any]]) -> int:
        """Store alert events (see :data:`ALERT_COLUMNS`) in one transaction, in order: an
        event for a ``uid`` already stored updates its row."""
        if rows:
            with self._transaction() as conn:
                conn.executemany(_ALERT_UPSERT, rows)
        return len(rows)

    def acknowledge_alert(self, alert_id: int, by: str, at_ns: int) -> tuple[str, str | None, int | None] | None:
        """Mark alert ``alert_id`` acknowledged unless it already is; returns its rule and who
        acknowledged it when (the earlier acknowledgement, if any), or None if there is no such alert."""
        with self._transaction() as conn:
            conn.execute(
                "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND acknowledged_at IS NULL",
                (at_ns, by, alert_id),
            )
            row = conn.execute(
                "SELECT rule, acknowledged_by, acknowledged_at FROM alerts WHERE id = ?", (alert_id,)
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

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
