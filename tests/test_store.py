"""The SQLite store: schema identity and versioning, batched writes, dedup, indexes, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from otelkit.store import SCHEMA_VERSION, StoreError, StoreWriter, connect_for_reading
from otelkit.store.writer import SPAN_COLUMNS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def span_row(trace: int, span: int, start: int, *, parent: int | None = None, name: str = "op",
             status: str = "UNSET", session: str | None = None, service: str = "svc") -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
    values.update(
        trace_id=f"{trace:032x}", span_id=f"{span:016x}", parent_span_id=None if parent is None else f"{parent:016x}",
        name=name, kind="INTERNAL", service_name=service, start_ns=start, end_ns=start + 1000,
        status_code=status, attributes=json.dumps({"session.id": session} if session else {}),
    )
    return tuple(values[c] for c in SPAN_COLUMNS)


def test_new_store_is_marked_and_versioned(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    StoreWriter(str(db)).write_spans([span_row(1, 1, 10)])
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = {r[1] for r in conn.execute("PRAGMA table_xinfo(spans)")}
    assert {"trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "start_ns", "end_ns",
            "status_code", "attributes", "operation_type", "model", "input_tokens", "output_tokens",
            "cost_usd", "session_id", "error_category", "duration_ns"} <= cols
    assert connect_for_reading(str(db)).execute("SELECT count(*) FROM spans").fetchone()[0] == 1


def test_foreign_and_missing_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="not an otelkit store"):
        connect_for_reading(str(foreign))
    with pytest.raises(StoreError, match="not an otelkit store"):
        StoreWriter(str(foreign)).write_spans([span_row(1, 1, 1)])
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 100)
    with pytest.raises(StoreError, match="not an otelkit store"):
        connect_for_reading(str(text))
    with pytest.raises(StoreError, match="no otelkit store at"):
        connect_for_reading(str(tmp_path / "missing.db"))


def test_newer_schema_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    StoreWriter(str(db)).write_spans([span_row(1, 1, 1)])
    sqlite3.connect(db).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="upgrade otelkit"):
        connect_for_reading(str(db))


def test_redelivered_batch_stores_nothing_twice(tmp_path: Path) -> None:
    writer = StoreWriter(str(tmp_path / "d.db"))
    first = [span_row(7, i, 100 + i, parent=None if i == 0 else 0) for i in range(5)]
    assert writer.write_spans(first) == 5
    mixed = first[2:] + [span_row(7, 10, 200, parent=0)]
    assert writer.write_spans(mixed, [(f"{7:032x}", f"{10:016x}", 201, "e", "{}"), (f"{7:032x}", f"{2:016x}", 102, "dup", "{}")]) == 1
    conn = connect_for_reading(str(tmp_path / "d.db"))
    assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 6
    assert conn.execute("SELECT count(*) FROM spans WHERE trace_id = ?", (f"{7:032x}",)).fetchone()[0] == 6
    assert [r[0] for r in conn.execute("SELECT name FROM span_events")] == ["e"]


def test_trace_lookup_by_id_uses_the_time_index_when_given_a_window(tmp_path: Path) -> None:
    writer = StoreWriter(str(tmp_path / "l.db"))
    writer.write_spans([span_row(t, s, t * 1000 + s) for t in range(1, 20) for s in range(4)])
    writer.write_spans([span_row(5, 99, 5_050)])
    conn = connect_for_reading(str(tmp_path / "l.db"))
    query = "SELECT span_id FROM spans WHERE trace_id = ? AND start_ns BETWEEN ? AND ?"
    rows = conn.execute(query, (f"{5:032x}", 5_000, 6_000)).fetchall()
    assert sorted(r[0] for r in rows) == sorted([f"{s:016x}" for s in range(4)] + [f"{99:016x}"])
    plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + query, ("x", 0, 1)))
    assert "spans_by_start" in plan


def test_spans_table_has_only_the_time_ordered_index(tmp_path: Path) -> None:
    StoreWriter(str(tmp_path / "i.db")).write_spans([span_row(1, 1, 1)])
    conn = connect_for_reading(str(tmp_path / "i.db"))
    indexes = [r[1] for r in conn.execute("PRAGMA index_list(span_rows)")]
    assert indexes == ["spans_by_start"]
    assert [r[2] for r in conn.execute("PRAGMA index_info(spans_by_start)")] == ["start_ns", "span_id"]


def _write_many(path: str, worker: int, batches: int, per_batch: int) -> None:
    writer = StoreWriter(path, busy_timeout_ms=60_000)
    for b in range(batches):
        base = (worker * batches + b) * per_batch
        writer.write_spans([span_row(worker + 1, base + i + 1, base + i, name=f"w{worker}") for i in range(per_batch)])


def test_many_processes_write_one_store_without_loss(tmp_path: Path) -> None:
    path = str(tmp_path / "mp.db")
    StoreWriter(path).write_spans([span_row(999, 999_999, 0)])
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(path, w, 40, 50)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    conn = connect_for_reading(path)
    assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 4 * 40 * 50 + 1
    assert dict(conn.execute("SELECT name, count(*) FROM spans WHERE name LIKE 'w%' GROUP BY name")) == {
        f"w{w}": 2000 for w in range(4)
    }
    assert conn.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()[0] == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "fork.db")
    writer = StoreWriter(path)
    writer.write_spans([span_row(1, 1, 1, name="parent")])
    parent_conn = writer._conn
    pid = os.fork()
    if pid == 0:
        try:
            writer.write_spans([span_row(2, 2, 2, name="child")])
            os._exit(0 if writer._conn is not parent_conn else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.write_spans([span_row(3, 3, 3, name="parent-again")])
    names = {r[0] for r in connect_for_reading(path).execute("SELECT name FROM spans")}
    assert names == {"parent", "child", "parent-again"}
