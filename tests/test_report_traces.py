"""Traces in the report: the critical path, and reading a trace back through the time index."""

from __future__ import annotations

import json
from pathlib import Path

from otelkit.report.traces import TraceSpan, critical_path, trace_spans
from otelkit.store import StoreWriter, connect_for_reading
from otelkit.store.writer import SPAN_COLUMNS

MS = 1_000_000


def span(span_id: str, parent: str | None, start: int, end: int, name: str | None = None) -> TraceSpan:
    return TraceSpan(span_id, parent, name or span_id, "step", start * MS, end * MS, False)


def test_critical_path_follows_what_the_end_waited_for() -> None:
    spans = [
        span("root", None, 0, 100),
        span("a", "root", 5, 40),  # sequential: a, then c; b runs beside a and is shorter
        span("b", "root", 10, 30),
        span("c", "root", 45, 90),
        span("c1", "c", 50, 60),
        span("c2", "c", 60, 85),
        span("late", "root", 95, 99),
    ]
    path = [(s.span_id, depth, own // MS) for s, depth, own in critical_path(spans, "root")]
    assert path == [
        ("root", 0, 100 - 35 - 45 - 4),
        ("a", 1, 35),
        ("c", 1, 45 - 10 - 25),
        ("c1", 2, 10),
        ("c2", 2, 25),
        ("late", 1, 4),
    ]


def test_parallel_children_leave_only_the_last_finisher_on_the_path() -> None:
    spans = [span("root", None, 0, 50), span("x", "root", 0, 48), span("y", "root", 0, 45)]
    assert [s.span_id for s, _d, _o in critical_path(spans, "root")] == ["root", "x"]
    assert critical_path(spans, "missing") == []


def test_a_trace_is_read_back_while_its_root_ran(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    base = 1_790_000_000 * 10**9

    def row(trace: str, span_id: str, parent: str | None, start: int, end: int) -> tuple[object, ...]:
        values: dict[str, object] = dict.fromkeys(SPAN_COLUMNS)
        values.update(trace_id=trace, span_id=span_id, parent_span_id=parent, name=span_id, kind="INTERNAL",
                      start_ns=base + start, end_ns=base + end, status_code="UNSET", attributes=json.dumps({}))  # fmt: skip
        return tuple(values[c] for c in SPAN_COLUMNS)

    t1, t2 = "1" * 32, "2" * 32
    StoreWriter(db).write_spans([
        row(t1, "a" * 16, None, 0, 100), row(t1, "b" * 16, "a" * 16, 10, 50), row(t2, "c" * 16, None, 20, 30),
        row(t1, "d" * 16, "a" * 16, 200, 300),  # started after its root ended: not read
    ])  # fmt: skip
    conn = connect_for_reading(db)
    assert [s.span_id for s in trace_spans(conn, t1, base, base + 100)] == ["a" * 16, "b" * 16]
