"""The report document: totals, per-operation rows, exact percentiles, period filtering, rendering."""

from __future__ import annotations

import json
import random
import statistics
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from otelkit import semconv as sc
from otelkit.exporters.sqlite import SQLiteSpanExporter
from otelkit.report import PeriodError, build_report, parse_period, render_json, render_table
from otelkit.report.query import percentile_ms
from otelkit.store import StoreWriter, connect_for_reading, connect_for_writing
from otelkit.store.writer import SPAN_COLUMNS

NOW = 1_800_000_000 * 10**9
HOUR = 3600 * 10**9
SUMMARY_KEYS = {"spans", "traces", "sessions", "success_rate", "p50_ms", "p95_ms", "p99_ms",
                "input_tokens", "output_tokens", "cost_usd", "unpriced_llm_calls"}
OPERATION_KEYS = {"type", "name", "count", "success_rate", "p50_ms", "p95_ms", "p99_ms", "time_share"}


def span_row(trace: int, span: int, start: int, duration: int, *, name: str, op_type: str | None,
             status: str = "OK", session: str | None = None) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
    values.update(
        trace_id=f"{trace:032x}", span_id=f"{span:016x}", name=name, kind="INTERNAL", service_name="svc",
        start_ns=start, end_ns=start + duration, status_code=status,
        attributes=json.dumps({k: v for k, v in (("otelkit.operation.type", op_type), ("session.id", session)) if v}),
    )
    return tuple(values[c] for c in SPAN_COLUMNS)


def reference_ms(durations_ns: list[int]) -> dict[int, float]:
    """Type-7 percentiles from the standard library, in exact arithmetic, as ms."""
    if len(durations_ns) == 1:
        return {p: durations_ns[0] / 1e6 for p in (50, 95, 99)}
    cuts = statistics.quantiles([Fraction(d, 10**6) for d in durations_ns], n=100, method="inclusive")
    return {p: float(cuts[p - 1]) for p in (50, 95, 99)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[str, dict[tuple[str, str], list[tuple[int, str, str | None]]]]]:
    """A store with four operations of random durations and statuses inside the last hour.

    Yields the path and, per (type, name), the (duration, status, session) of every span written.
    """
    path = str(tmp_path / "otelkit.db")
    rng = random.Random(7)
    plan = {("llm", "chat gpt-x"): 57, ("tool", "search"): 23, ("other", "setup"): 1, ("step", "render"): 200}
    expected: dict[tuple[str, str], list[tuple[int, str, str | None]]] = {}
    rows = []
    span_id = 0
    for (op_type, name), count in plan.items():
        for _ in range(count):
            span_id += 1
            duration = rng.randrange(1, 5_000_000_000)
            status = rng.choice(["OK", "UNSET", "ERROR", "OK"])
            session = rng.choice(["s1", "s2", "s3", None])
            start = NOW - rng.randrange(1, HOUR)
            rows.append(span_row(span_id % 40, span_id, start, duration, name=name,
                                 op_type=None if op_type == "other" else op_type, status=status, session=session))
            expected.setdefault((op_type, name), []).append((duration, status, session))
    writer = StoreWriter(path)
    writer.write_spans(rows)
    writer.close()
    yield path, expected


def test_totals_and_operations_match_an_independent_computation(store: tuple[str, Any]) -> None:
    path, expected = store
    report = build_report(connect_for_reading(path), "24h", now_ns=NOW)

    everything = [span for spans in expected.values() for span in spans]
    summary = report["summary"]
    assert summary["spans"] == len(everything) == 281
    assert summary["traces"] == 40
    assert summary["sessions"] == 3
    assert summary["success_rate"] == sum(s != "ERROR" for _, s, _ in everything) / len(everything)
    overall = reference_ms([d for d, _, _ in everything])
    assert [summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]] == [overall[50], overall[95], overall[99]]

    total_ns = sum(d for d, _, _ in everything)
    by_key = {(op["type"], op["name"]): op for op in report["operations"]}
    assert set(by_key) == set(expected)
    for key, spans in expected.items():
        op = by_key[key]
        durations = [d for d, _, _ in spans]
        ref = reference_ms(durations)
        assert op["count"] == len(spans)
        assert op["success_rate"] == sum(s != "ERROR" for _, s, _ in spans) / len(spans)
        assert (op["p50_ms"], op["p95_ms"], op["p99_ms"]) == (ref[50], ref[95], ref[99])
        assert op["time_share"] == pytest.approx(sum(durations) / total_ns, rel=1e-12)
    assert sum(op["time_share"] for op in report["operations"]) == pytest.approx(1.0)


def test_json_shape_has_exactly_the_documented_keys(store: tuple[str, Any]) -> None:
    path, _ = store
    document = json.loads(render_json(build_report(connect_for_reading(path), "all", now_ns=NOW)))
    assert set(document) == {"report", "summary", "operations", "sections"}
    assert set(document["summary"]) == SUMMARY_KEYS
    assert document["operations"] and all(set(op) == OPERATION_KEYS for op in document["operations"])
    for op in document["operations"]:
        assert isinstance(op["count"], int) and 0 <= op["success_rate"] <= 1 and 0 <= op["time_share"] <= 1
        assert op["p50_ms"] <= op["p95_ms"] <= op["p99_ms"]


def test_operations_are_sorted_slowest_p95_first_ties_by_name(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    rows = [
        span_row(1, 1, NOW - 10, 5_000_000, name="b-medium", op_type="tool"),
        span_row(1, 2, NOW - 10, 5_000_000, name="a-medium", op_type="tool"),
        span_row(1, 3, NOW - 10, 1_000_000, name="fast", op_type="step"),
        span_row(1, 4, NOW - 10, 9_000_000, name="slow", op_type=None),
    ]
    StoreWriter(path).write_spans(rows)
    report = build_report(connect_for_reading(path), "1h", now_ns=NOW)
    assert [op["name"] for op in report["operations"]] == ["slow", "a-medium", "b-medium", "fast"]
    assert report["operations"][0]["type"] == "other"


def test_percentile_interpolates_between_closest_ranks() -> None:
    ms = 1_000_000
    assert percentile_ms([1 * ms, 2 * ms, 3 * ms, 4 * ms], 50) == 2.5
    assert percentile_ms([1 * ms, 2 * ms, 3 * ms, 4 * ms], 95) == pytest.approx(3.85)
    assert percentile_ms([10 * ms, 20 * ms], 99) == pytest.approx(19.9)
    assert percentile_ms([7 * ms], 99) == 7.0
    durations = random.Random(3).sample(range(1, 10**12), 1001)
    for p in (50, 95, 99):
        assert percentile_ms(sorted(durations), p) == reference_ms(durations)[p]


def test_period_excludes_older_spans_and_traces(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    writer = StoreWriter(path)
    writer.write_spans([
        span_row(1, 1, NOW - 30 * 60 * 10**9, 2_000_000, name="recent", op_type="tool", session="new"),
        span_row(2, 2, NOW - 3 * HOUR, 8_000_000, name="old", op_type="tool", status="ERROR", session="old"),
        span_row(3, 3, NOW - 10 * 24 * HOUR, 9_000_000, name="ancient", op_type="llm"),
    ])  # fmt: skip
    conn = connect_for_reading(path)

    last_hour = build_report(conn, "1h", now_ns=NOW)
    assert last_hour["summary"] == {"spans": 1, "traces": 1, "sessions": 1, "success_rate": 1.0,
                                    "p50_ms": 2.0, "p95_ms": 2.0, "p99_ms": 2.0, "input_tokens": 0,
                                    "output_tokens": 0, "cost_usd": 0.0, "unpriced_llm_calls": 0}
    assert [op["name"] for op in last_hour["operations"]] == ["recent"]
    assert last_hour["operations"][0]["time_share"] == 1.0

    assert [op["name"] for op in build_report(conn, "90m", now_ns=NOW)["operations"]] == ["recent"]
    assert {op["name"] for op in build_report(conn, "1d", now_ns=NOW)["operations"]} == {"recent", "old"}
    assert build_report(conn, "1d", now_ns=NOW)["summary"]["success_rate"] == 0.5
    assert build_report(conn, "2w", now_ns=NOW)["summary"]["spans"] == 3
    assert build_report(conn, "all", now_ns=NOW)["summary"]["traces"] == 3


def test_store_with_no_spans_gives_an_empty_report(tmp_path: Path) -> None:
    path = str(tmp_path / "empty.db")
    connect_for_writing(path).close()
    report = build_report(connect_for_reading(path), "all")
    assert {key: report[key] for key in ("summary", "operations")} == {
        "summary": {"spans": 0, "traces": 0, "sessions": 0, "success_rate": None,
                    "p50_ms": None, "p95_ms": None, "p99_ms": None, "input_tokens": 0,
                    "output_tokens": 0, "cost_usd": 0.0, "unpriced_llm_calls": 0},
        "operations": [],
    }  # fmt: skip
    text = render_table(report)
    assert "Overview" in text and "Spans" in text


@pytest.mark.parametrize(("text", "seconds"), [("90m", 5400), ("12h", 43200), ("2d", 172800), ("1w", 604800),
                                                ("30d", 2592000), (" 24H ", 86400), ("all", None)])
def test_period_spellings(text: str, seconds: int | None) -> None:
    assert parse_period(text).seconds == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "-1d", "1.5h", "7 days", "1y", "24h7d", "forever"])
def test_bad_periods_are_refused_naming_the_value(text: str) -> None:
    with pytest.raises(PeriodError) as raised:
        parse_period(text)
    assert repr(text) in str(raised.value) and "\n" not in str(raised.value)


def test_table_shows_every_operation_verbatim_without_escape_codes(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    StoreWriter(path).write_spans([
        span_row(1, 1, NOW - 10, 1_500_000, name="[bold]search[/bold]", op_type="tool", status="ERROR"),
        span_row(1, 2, NOW - 10, 3_000_000, name="chat claude", op_type="llm"),
    ])  # fmt: skip
    text = render_table(build_report(connect_for_reading(path), "1h", now_ns=NOW))
    assert "[bold]search[/bold]" in text and "chat claude" in text
    assert "\x1b[" not in text
    assert "0.0%" in text and "100.0%" in text and "1.50" in text and "3.00" in text


def test_spans_from_the_sdk_exporter_are_reported(tmp_path: Path) -> None:
    path = str(tmp_path / "sdk.db")
    exporter = SQLiteSpanExporter(path)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    start = NOW - HOUR // 2
    with tracer.start_as_current_span("agent run", start_time=start, end_on_exit=False,
                                      attributes={sc.OPERATION_TYPE: "agent", sc.SESSION_ID: "sess-1"}) as root:
        for i, millis in enumerate((10, 20, 30, 40)):
            child = tracer.start_span("tool call", start_time=start + i, attributes={sc.OPERATION_TYPE: "tool"})
            if i == 3:
                child.set_status(Status(StatusCode.ERROR, "boom"))
            child.end(end_time=start + i + millis * 1_000_000)
        root.end(end_time=start + 200_000_000)
    provider.shutdown()

    report = build_report(connect_for_reading(path), "1h", now_ns=NOW)
    assert report["summary"]["spans"] == 5 and report["summary"]["traces"] == 1
    assert report["summary"]["sessions"] == 1
    rows = {op["name"]: op for op in report["operations"]}
    assert [op["name"] for op in report["operations"]] == ["agent run", "tool call"]
    assert rows["tool call"]["type"] == "tool" and rows["tool call"]["count"] == 4
    assert rows["tool call"]["success_rate"] == 0.75
    assert rows["tool call"]["p50_ms"] == 25.0 and rows["tool call"]["p95_ms"] == pytest.approx(38.5)
    assert rows["agent run"]["time_share"] == pytest.approx(200 / 300)
