"""The SQLite exporters: every field the store keeps, for spans, metrics and logs."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from opentelemetry import baggage, context
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otelkit.exporters.sqlite import SQLiteLogExporter, SQLiteMetricExporter, SQLiteSpanExporter
from otelkit.store import connect_for_reading

RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment": "test"})


def _rows(db: Path, sql: str) -> list[sqlite3.Row]:
    conn = connect_for_reading(str(db))
    conn.row_factory = sqlite3.Row
    return conn.execute(sql).fetchall()


def test_span_fields_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "spans.db"
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(str(db))))
    tracer = provider.get_tracer("my.lib", "1.2.3")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        root.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span(
        "chat gpt-4o",
        kind=SpanKind.CLIENT,
        links=[Link(root.get_span_context(), {"why": "follows"})],
        attributes={
            "otelkit.operation.type": "llm", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024", "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.cache_read.input_tokens": 100, "gen_ai.usage.cost": 0.0125, "otelkit.cost.status": "priced",
            "session.id": "s-9", "otelkit.error.category": "rate_limit", "otelkit.sample.rate": 4.0,
            "tags": ("a", "b"), "bytes.like": 3.5,
        },
    ) as span:
        span.add_event("retry", {"attempt": 2})
        span.record_exception(ConnectionError("reset"))
        span.set_status(Status(StatusCode.ERROR, "connection reset"))
    provider.shutdown()
    by_name = {r["name"]: r for r in _rows(db, "SELECT * FROM spans")}
    llm, top = by_name["chat gpt-4o"], by_name["root"]
    assert llm["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert llm["span_id"] == format(span.get_span_context().span_id, "016x")
    assert len(llm["trace_id"]) == 32 and llm["trace_id"] == llm["trace_id"].lower()
    assert llm["parent_span_id"] is None and llm["kind"] == "CLIENT" and top["kind"] == "SERVER"
    assert (llm["status_code"], llm["status_message"], top["status_code"]) == ("ERROR", "connection reset", "OK")
    assert llm["service_name"] == "checkout"
    assert (llm["operation_type"], llm["provider"], llm["model"]) == ("llm", "openai", "gpt-4o-2024")
    assert (llm["input_tokens"], llm["output_tokens"], llm["cache_read_tokens"]) == (120, 30, 100)
    assert (llm["cost_usd"], llm["cost_status"], llm["session_id"]) == (0.0125, "priced", "s-9")
    assert (llm["error_type"], llm["error_category"], llm["sample_rate"]) == ("ConnectionError", "rate_limit", 4.0)
    assert llm["duration_ns"] == llm["end_ns"] - llm["start_ns"] > 0
    attrs = json.loads(llm["attributes"])
    assert attrs["tags"] == ["a", "b"] and attrs["gen_ai.request.model"] == "gpt-4o"
    links = json.loads(llm["links"])
    assert links == [{"trace_id": top["trace_id"], "span_id": top["span_id"], "attributes": {"why": "follows"}}]
    events = _rows(db, "SELECT * FROM span_events ORDER BY time_ns")
    assert [e["name"] for e in events] == ["retry", "exception"]
    assert json.loads(events[0]["attributes"]) == {"attempt": 2}
    assert json.loads(events[1]["attributes"])["exception.type"] == "ConnectionError"
    resource = _rows(db, "SELECT * FROM resources")
    assert len(resource) == 1 and json.loads(resource[0]["attributes"])["deployment.environment"] == "test"
    scope = _rows(db, "SELECT * FROM scopes")
    assert [(s["name"], s["version"]) for s in scope] == [("my.lib", "1.2.3")]
    assert top["resource_id"] == resource[0]["id"] and top["scope_id"] == scope[0]["id"]
    assert json.loads(llm["attributes"])["session.id"] == "s-9"
    plain = _rows(db, "SELECT json_extract(attributes, '$.\"gen_ai.usage.input_tokens\"') AS t FROM spans WHERE name = 'chat gpt-4o'")
    assert plain[0]["t"] == 120


def test_gen_ai_operation_name_maps_to_operation_type(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(str(db))))
    tracer = provider.get_tracer("contrib.openai")
    for op in ("chat", "execute_tool", "invoke_agent", "unknown_op"):
        with tracer.start_as_current_span(op, attributes={"gen_ai.operation.name": op}):
            pass
    provider.shutdown()
    got = {r["name"]: r["operation_type"] for r in _rows(db, "SELECT name, operation_type FROM spans")}
    assert got == {"chat": "llm", "execute_tool": "tool", "invoke_agent": "agent", "unknown_op": None}


def test_batch_processor_flushes_everything_on_shutdown(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(SQLiteSpanExporter(str(db)), max_queue_size=20_000, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("t")
    for i in range(5000):
        with tracer.start_as_current_span(f"s{i % 7}"):
            pass
    provider.shutdown()
    assert _rows(db, "SELECT count(*) AS n FROM spans")[0]["n"] == 5000


def test_path_argument_environment_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from otelkit.config import reset_policy_cache

    monkeypatch.chdir(tmp_path)
    assert Path(SQLiteSpanExporter().path) == Path("./otelkit.db")
    monkeypatch.setenv("OTELKIT_SQLITE_PATH", str(tmp_path / "env.db"))
    reset_policy_cache()
    assert SQLiteSpanExporter().path == str(tmp_path / "env.db")
    assert SQLiteSpanExporter("explicit.db").path == "explicit.db"


def test_unwritable_store_fails_export_without_raising(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE x (y)")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(str(foreign))))
    with provider.get_tracer("t").start_as_current_span("lost"):
        pass
    provider.shutdown()
    assert "not an otelkit store" in caplog.text


def test_metric_points_of_every_kind(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    reader = PeriodicExportingMetricReader(SQLiteMetricExporter(str(db)), export_interval_millis=600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("m.lib", "0.1")
    meter.create_counter("jobs", unit="{job}", description="jobs run").add(3, {"queue": "a"})
    meter.create_up_down_counter("inflight").add(-2)
    hist = meter.create_histogram("latency", unit="s")
    for value in (0.1, 0.2, 7.0):
        hist.record(value, {"route": "/x"})
    meter.create_gauge("temp").set(21.5)
    provider.shutdown()
    rows = {r["name"]: r for r in _rows(db, "SELECT * FROM metric_points")}
    assert (rows["jobs"]["kind"], rows["jobs"]["value"], rows["jobs"]["unit"]) == ("sum", 3, "{job}")
    assert rows["jobs"]["is_monotonic"] == 1 and rows["jobs"]["temporality"] == "CUMULATIVE"
    assert json.loads(rows["jobs"]["attributes"]) == {"queue": "a"}
    assert rows["inflight"]["value"] == -2 and rows["inflight"]["is_monotonic"] == 0
    latency = rows["latency"]
    assert (latency["kind"], latency["count"], latency["min"], latency["max"]) == ("histogram", 3, 0.1, 7.0)
    assert latency["sum"] == pytest.approx(7.3)
    buckets = json.loads(latency["buckets"])
    assert sum(buckets["counts"]) == 3 and len(buckets["counts"]) == len(buckets["bounds"]) + 1
    assert (rows["temp"]["kind"], rows["temp"]["value"]) == ("gauge", 21.5)
    assert rows["temp"]["service_name"] == "checkout"


def test_log_records_keep_trace_and_session(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    traces = TracerProvider()
    logs = LoggerProvider(resource=RESOURCE)
    logs.add_log_record_processor(SimpleLogRecordProcessor(SQLiteLogExporter(str(db))))
    logger = logs.get_logger("app.log")
    token = context.attach(baggage.set_baggage("session.id", "s-log"))
    try:
        with traces.get_tracer("t").start_as_current_span("work") as span:
            logger.emit(body="charged card", severity_number=SeverityNumber.WARN, severity_text="WARN",
                        attributes={"order": 12})
    finally:
        context.detach(token)
    logger.emit(body={"structured": [1, 2]}, severity_number=SeverityNumber.INFO, event_name="order.placed")
    logs.shutdown()
    first, second = _rows(db, "SELECT * FROM log_records ORDER BY id")
    assert first["body"] == "charged card" and first["severity_number"] == SeverityNumber.WARN.value
    assert first["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert first["span_id"] == format(span.get_span_context().span_id, "016x")
    assert first["session_id"] == "s-log" and json.loads(first["attributes"]) == {"order": 12}
    assert first["service_name"] == "checkout"
    assert json.loads(second["body"]) == {"structured": [1, 2]} and second["event_name"] == "order.placed"
    assert second["trace_id"] is None and second["session_id"] is None


def test_exporters_share_one_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    db = str(tmp_path / "shared.db")
    assert SQLiteSpanExporter(db)._writer is SQLiteMetricExporter(db)._writer is SQLiteLogExporter(db)._writer
