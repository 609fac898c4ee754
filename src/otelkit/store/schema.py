"""The store's schema: versioned DDL, migrations, and how a connection is opened.

The file is marked as otelkit's with ``PRAGMA application_id`` and carries its schema version
in ``PRAGMA user_version``; :data:`MIGRATIONS` takes any older otelkit file to the current
version inside one write transaction, so concurrent openers never race. Index choice follows
the write path: ``spans`` has one index, time-ordered. A random-key index (on ``trace_id``, or a
per-trace summary table keyed by it) dirties a random page for every new trace; once it outgrows
the page cache, each commit writes hundreds of scattered pages and the insert rate collapses
(measured: from ~120k to ~16k spans/s at a million single-span traces).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from otelkit import semconv as sc

APPLICATION_ID = 0x6F746B31  # "otk1": identifies an otelkit store among SQLite files
SCHEMA_VERSION = 4


class StoreError(RuntimeError):
    """The file cannot be used as an otelkit store; the message is one line."""


_V1_TEMPLATE = """
CREATE TABLE resources (
    id           INTEGER PRIMARY KEY,
    fingerprint  TEXT NOT NULL UNIQUE,
    service_name TEXT,
    attributes   TEXT NOT NULL
);
CREATE TABLE scopes (
    id          INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    version     TEXT,
    attributes  TEXT NOT NULL
);
CREATE TABLE spans (
    id                INTEGER PRIMARY KEY,
    trace_id          TEXT NOT NULL,
    span_id           TEXT NOT NULL,
    parent_span_id    TEXT,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL,
    service_name      TEXT,
    resource_id       INTEGER,
    scope_id          INTEGER,
    start_ns          INTEGER NOT NULL,
    end_ns            INTEGER NOT NULL,
    duration_ns       INTEGER GENERATED ALWAYS AS (end_ns - start_ns) VIRTUAL,
    status_code       TEXT NOT NULL,
    status_message    TEXT,
    error_type        TEXT,
    trace_state       TEXT,
    attributes        TEXT NOT NULL DEFAULT '{{}}',
    links             TEXT,
    operation_type    TEXT GENERATED ALWAYS AS ({operation_type}) VIRTUAL,
    provider          TEXT GENERATED ALWAYS AS ({provider}) VIRTUAL,
    model             TEXT GENERATED ALWAYS AS ({model}) VIRTUAL,
    input_tokens      INTEGER GENERATED ALWAYS AS ({input_tokens}) VIRTUAL,
    output_tokens     INTEGER GENERATED ALWAYS AS ({output_tokens}) VIRTUAL,
    cache_read_tokens INTEGER GENERATED ALWAYS AS ({cache_read_tokens}) VIRTUAL,
    cost_usd          REAL GENERATED ALWAYS AS ({cost_usd}) VIRTUAL,
    cost_status       TEXT GENERATED ALWAYS AS ({cost_status}) VIRTUAL,
    session_id        TEXT GENERATED ALWAYS AS ({session_id}) VIRTUAL,
    error_category    TEXT GENERATED ALWAYS AS ({error_category}) VIRTUAL,
    sample_rate       REAL GENERATED ALWAYS AS ({sample_rate}) VIRTUAL
);
CREATE UNIQUE INDEX spans_by_start ON spans (start_ns, span_id);
CREATE TABLE span_events (
    id         INTEGER PRIMARY KEY,
    trace_id   TEXT NOT NULL,
    span_id    TEXT NOT NULL,
    time_ns    INTEGER NOT NULL,
    name       TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX span_events_by_span ON span_events (span_id);
CREATE TABLE metric_points (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    description   TEXT,
    unit          TEXT,
    kind          TEXT NOT NULL,
    temporality   TEXT,
    is_monotonic  INTEGER,
    service_name  TEXT,
    resource_id   INTEGER,
    scope_id      INTEGER,
    start_ns      INTEGER,
    time_ns       INTEGER NOT NULL,
    attributes    TEXT NOT NULL DEFAULT '{{}}',
    value         REAL,
    count         INTEGER,
    sum           REAL,
    min           REAL,
    max           REAL,
    buckets       TEXT
);
CREATE INDEX metric_points_by_name ON metric_points (name, time_ns);
CREATE TABLE log_records (
    id               INTEGER PRIMARY KEY,
    time_ns          INTEGER,
    observed_time_ns INTEGER NOT NULL,
    severity_number  INTEGER,
    severity_text    TEXT,
    body             TEXT,
    event_name       TEXT,
    trace_id         TEXT,
    span_id          TEXT,
    trace_flags      INTEGER,
    service_name     TEXT,
    resource_id      INTEGER,
    scope_id         INTEGER,
    session_id       TEXT,
    attributes       TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX log_records_by_time ON log_records (observed_time_ns);
"""



def _attribute(key: str) -> str:
    return f"json_extract(attributes, '$.\"{key}\"')"


# The columns reports filter on are computed by SQLite from the attributes JSON when read. Up
# to version 3 they were VIRTUAL generated columns of ``spans``; version 4 moves them to the
# ``spans`` view (see _V4). The operation type of spans from other GenAI instrumentations
# follows sc.GEN_AI_OPERATION_TYPES as it was when the store was migrated; changing that
# mapping needs a migration.
DERIVED_SPAN_COLUMNS = {
    "operation_type": f"coalesce({_attribute(sc.OPERATION_TYPE)}, CASE {_attribute(sc.GEN_AI_OPERATION_NAME)} "
    + " ".join(f"WHEN '{name}' THEN '{kind.value}'" for name, kind in sc.GEN_AI_OPERATION_TYPES.items())
    + " END)",
    "provider": f"coalesce({_attribute(sc.GEN_AI_PROVIDER_NAME)}, {_attribute(sc.GEN_AI_SYSTEM)})",
    "model": f"coalesce({_attribute(sc.GEN_AI_RESPONSE_MODEL)}, {_attribute(sc.GEN_AI_REQUEST_MODEL)})",
    "input_tokens": _attribute(sc.GEN_AI_USAGE_INPUT_TOKENS),
    "output_tokens": _attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS),
    "cache_read_tokens": _attribute(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
    "cost_usd": _attribute(sc.GEN_AI_USAGE_COST),
    "cost_status": _attribute(sc.COST_STATUS),
    "session_id": _attribute(sc.SESSION_ID),
    "error_category": _attribute(sc.ERROR_CATEGORY),
    "sample_rate": f"coalesce({_attribute(sc.SAMPLE_RATE)}, 1.0)",
}
_V1 = _V1_TEMPLATE.format(**DERIVED_SPAN_COLUMNS)

# Version 2: the alerting stage's alerts, one row per alert (``uid`` is the engine's id, so
# repeats and the resolution update the row their firing inserted). Alerts are few; the
# index serves ``otelkit alerts list`` (by state, newest first).
_V2 = """
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    uid             TEXT NOT NULL UNIQUE,
    rule            TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    state           TEXT NOT NULL,
    group_key       TEXT NOT NULL DEFAULT '',
    started_ns      INTEGER NOT NULL,
    fired_ns        INTEGER NOT NULL,
    resolved_ns     INTEGER,
    value           REAL,
    threshold       REAL,
    message         TEXT NOT NULL,
    trace_id        TEXT,
    span_id         TEXT,
    notifications   INTEGER NOT NULL DEFAULT 1,
    acknowledged_at INTEGER,
    acknowledged_by TEXT
);
CREATE INDEX alerts_by_state ON alerts (state, started_ns);
"""

# Version 3: rollups the writer maintains as it stores spans (see otelkit.store.rollup), so
# reports over millions of spans read thousands of rows. Every rollup table is keyed time first
# (resolution, bucket), so the rows a batch touches sit together at the end of the table and
# writes stay append-like; rollup_keys and session_rollups are small (one row per operation key,
# one per session). Migrating a store from version 2 builds its rollups from the spans it holds
# (otelkit.store.rollup.backfill), in the migration's transaction.
_V3 = """
CREATE TABLE rollup_keys (
    id             INTEGER PRIMARY KEY,
    service_name   TEXT NOT NULL,
    operation_type TEXT NOT NULL,
    name           TEXT NOT NULL,
    provider       TEXT NOT NULL,
    model          TEXT NOT NULL,
    agent          TEXT NOT NULL,
    tool           TEXT NOT NULL,
    UNIQUE (service_name, operation_type, name, provider, model, agent, tool)
);
CREATE TABLE rollups (
    resolution_s               INTEGER NOT NULL,
    bucket_ns                  INTEGER NOT NULL,
    key_id                     INTEGER NOT NULL REFERENCES rollup_keys (id),
    spans                      INTEGER NOT NULL,
    weight                     REAL NOT NULL,
    roots                      REAL NOT NULL,
    errors                     REAL NOT NULL,
    duration_ns                REAL NOT NULL,
    duration_sq_ms             REAL NOT NULL,
    max_ns                     INTEGER NOT NULL,
    max_trace_id               TEXT,
    max_span_id                TEXT,
    input_tokens               REAL NOT NULL,
    output_tokens              REAL NOT NULL,
    cache_read_tokens          REAL NOT NULL,
    cost_usd                   REAL NOT NULL,
    priced_calls               REAL NOT NULL,
    unpriced_calls             REAL NOT NULL,
    unpriced_input_tokens      REAL NOT NULL,
    unpriced_output_tokens     REAL NOT NULL,
    unpriced_cache_read_tokens REAL NOT NULL,
    cache_hits                 REAL NOT NULL,
    cache_checks               REAL NOT NULL,
    true_results               REAL NOT NULL,
    false_results              REAL NOT NULL,
    histogram                  TEXT NOT NULL,
    PRIMARY KEY (resolution_s, bucket_ns, key_id)
) WITHOUT ROWID;
CREATE TABLE error_rollups (
    resolution_s  INTEGER NOT NULL,
    bucket_ns     INTEGER NOT NULL,
    key_id        INTEGER NOT NULL REFERENCES rollup_keys (id),
    category      TEXT NOT NULL,
    error_type    TEXT NOT NULL,
    message       TEXT NOT NULL,
    spans         INTEGER NOT NULL,
    weight        REAL NOT NULL,
    last_trace_id TEXT,
    last_ns       INTEGER NOT NULL,
    PRIMARY KEY (resolution_s, bucket_ns, key_id, category, error_type, message)
) WITHOUT ROWID;
CREATE TABLE session_rollups (
    session_id    TEXT PRIMARY KEY,
    service_name  TEXT NOT NULL,
    first_ns      INTEGER NOT NULL,
    last_ns       INTEGER NOT NULL,
    spans         INTEGER NOT NULL,
    weight        REAL NOT NULL,
    traces        REAL NOT NULL,
    errors        REAL NOT NULL,
    llm_calls     REAL NOT NULL,
    tool_calls    REAL NOT NULL,
    tool_errors   REAL NOT NULL,
    input_tokens  REAL NOT NULL,
    output_tokens REAL NOT NULL,
    cost_usd      REAL NOT NULL,
    tools           TEXT NOT NULL,
    distinct_tools  INTEGER NOT NULL,
    unpriced_model  TEXT NOT NULL,
    unpriced_input  REAL NOT NULL,
    unpriced_output REAL NOT NULL,
    unpriced_cached REAL NOT NULL,
    unpriced        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX session_rollups_by_first ON session_rollups (first_ns);
CREATE TABLE tool_ngrams (
    resolution_s INTEGER NOT NULL,
    bucket_ns    INTEGER NOT NULL,
    service_name TEXT NOT NULL,
    n            INTEGER NOT NULL,
    sequence     TEXT NOT NULL,
    weight       REAL NOT NULL,
    PRIMARY KEY (resolution_s, bucket_ns, service_name, n, sequence)
) WITHOUT ROWID;
CREATE TABLE tool_calls (
    sequence_key TEXT NOT NULL,
    start_ns     INTEGER NOT NULL,
    span_id      TEXT NOT NULL,
    tool         TEXT NOT NULL,
    weight       REAL NOT NULL,
    service_name TEXT NOT NULL,
    PRIMARY KEY (sequence_key, start_ns, span_id)
) WITHOUT ROWID;
"""

# Version 4: the stored span columns move to the table ``span_rows`` and ``spans`` becomes a
# view adding the derived columns, in the same column order as before, so every query reads
# it unchanged. SQLite computes a table's generated columns on every INSERT, VIRTUAL ones too
# (14 json_extract calls per span, about a third of the insert's cost, measured); a view
# computes them only when a query reads them. Writers insert into ``span_rows``; the index
# keeps its name.
_STORED_SPAN_COLUMNS: tuple[str, ...] = (
    "id", "trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "resource_id", "scope_id",
    "start_ns", "end_ns",
)  # fmt: skip
_STORED_SPAN_TAIL: tuple[str, ...] = ("status_code", "status_message", "error_type", "trace_state", "attributes", "links")
_V4 = (
    "ALTER TABLE spans RENAME TO span_rows;\n"
    + "".join(f"ALTER TABLE span_rows DROP COLUMN {column};\n" for column in ("duration_ns", *DERIVED_SPAN_COLUMNS))
    + "CREATE VIEW spans AS SELECT "
    + ", ".join(
        [*_STORED_SPAN_COLUMNS, "end_ns - start_ns AS duration_ns", *_STORED_SPAN_TAIL]
        + [f"{expression} AS {column}" for column, expression in DERIVED_SPAN_COLUMNS.items()]
    )
    + " FROM span_rows;\n"
)

# MIGRATIONS[v] takes a store at version v to v + 1; version 0 is a new, empty file.
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2, 2: _V3, 3: _V4}


def _pragmas(conn: sqlite3.Connection, busy_timeout_ms: int, cache_size_mib: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA cache_size = {-1024 * int(cache_size_mib)}")
    conn.execute("PRAGMA temp_store = MEMORY")
    # Checkpoint the WAL every ~40 MB instead of ~4 MB: fewer, larger checkpoints keep commits cheap.
    conn.execute("PRAGMA wal_autocheckpoint = 10000")


def _check_identity(conn: sqlite3.Connection, path: str) -> int:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id == 0 and version == 0:
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        if has_tables:
            raise StoreError(f"{path} is a SQLite database but not an otelkit store")
        return 0
    if app_id != APPLICATION_ID:
        raise StoreError(f"{path} is a SQLite database but not an otelkit store")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {version}; this otelkit reads up to {SCHEMA_VERSION}: upgrade otelkit"
        )
    return version


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the store to :data:`SCHEMA_VERSION`, atomically and safely under concurrency."""
    if _check_identity(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _check_identity(conn, path)
        while version < SCHEMA_VERSION:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            version += 1
            if version == 3:
                from otelkit.store.rollup import backfill

                backfill(conn)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def connect_for_writing(path: str, busy_timeout_ms: int = 30_000, cache_size_mib: int = 64) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), schema up to date."""
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
        _pragmas(conn, busy_timeout_ms, cache_size_mib)
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open as an otelkit store: {exc}") from None
    return conn


READ_CACHE_MIB = 64


def connect_for_reading(path: str) -> sqlite3.Connection:
    """A read-only connection to an existing otelkit store, or StoreError saying why not."""
    if not Path(path).is_file():
        raise StoreError(f"no otelkit store at {path}")
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 30000")
        # Reports build temporary tables of up to a few hundred thousand rows: keep them in memory.
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute(f"PRAGMA cache_size = {-1024 * READ_CACHE_MIB}")
        _check_identity(conn, path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is not an otelkit store: {exc}") from None
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        raise StoreError(f"{path} is an empty SQLite file, not an otelkit store")
    if version < SCHEMA_VERSION:
        conn.close()
        _upgrade(path, version)
        return connect_for_reading(path)
    return conn


def _upgrade(path: str, version: int) -> None:
    """Migrate an older store before reading it (reports need the rollups of version 3)."""
    try:
        connect_for_writing(path).close()
    except (sqlite3.DatabaseError, StoreError, OSError) as exc:
        raise StoreError(
            f"{path} has store schema version {version} and could not be upgraded to {SCHEMA_VERSION} "
            f"(open it once with write access): {exc}"
        ) from None
