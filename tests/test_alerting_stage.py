"""The alerting stage in the processor chain: real SDK spans pass unchanged, alerts reach the
log, the store (at the policy's store path, with no SQLite exporter) and webhooks, and nothing
a sink does blocks or breaks the application."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otelkit import semconv as sc
from otelkit.config import Policy, parse_policy
from otelkit.processors.alert_rules import AlertEvent, SpanFacts
from otelkit.processors.alerting import AlertStage, facts_of
from otelkit.processors.chain import SpanChain
from webhook_receiver import Receiver


def policy(tmp_path: Path, rules: str, extra: str = "") -> Policy:
    return parse_policy(f"version: 1\nstore: {{path: {tmp_path / 'otelkit.db'}}}\nalerts:\n  rules:\n{rules}{extra}")


SLOW_LLM = """\
    - {name: slow-llm, kind: latency, threshold: 0, select: {operation_type: llm}, min_interval_s: 0}
"""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def provider_with(stage: AlertStage, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SpanChain([stage], SimpleSpanProcessor(exporter)))
    return provider


def finished_span(name: str = "chat gpt-4o", attributes: dict[str, object] | None = None,
                  error: bool = False) -> ReadableSpan:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span(name, attributes=attributes or {sc.OPERATION_TYPE: "llm"}) as span:
        if error:
            span.set_status(Status(StatusCode.ERROR, "boom"))
    [finished] = exporter.get_finished_spans()
    return finished


def test_no_rules_means_an_inactive_stage_that_passes_spans(tmp_path: Path) -> None:
    stage = AlertStage.from_policy(parse_policy(f"version: 1\nstore: {{path: {tmp_path / 'x.db'}}}\n"))
    span = finished_span()
    assert not stage.active and stage.sinks == () and stage(span) is span
    assert stage.flush() == [] and stage.evaluate(facts_of(span)) == ()  # type: ignore[arg-type]
    disabled = AlertStage.from_policy(policy(tmp_path, SLOW_LLM, "  enabled: false\n"))
    assert not disabled.active
    stage.shutdown()
    assert not (tmp_path / "x.db").exists()


def test_spans_pass_unchanged_and_alerts_reach_log_and_store(tmp_path: Path, exporter: InMemorySpanExporter,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    stage = AlertStage.from_policy(policy(tmp_path, SLOW_LLM))
    assert stage.active and [sink.name for sink in stage.sinks] == ["log", f"store {tmp_path / 'otelkit.db'}"]
    tracer = provider_with(stage, exporter).get_tracer("t")
    with caplog.at_level(logging.WARNING, logger="otelkit.alerts"):
        with tracer.start_as_current_span("chat gpt-4o", attributes={sc.OPERATION_TYPE: "llm", "user.email": "a@b.c"}):
            pass
        with tracer.start_as_current_span("helper"):
            pass
    stage.shutdown()
    [llm, helper] = exporter.get_finished_spans()
    assert dict(llm.attributes or {}) == {sc.OPERATION_TYPE: "llm", "user.email": "a@b.c"} and helper.name == "helper"
    [record] = caplog.records
    assert record.getMessage().startswith("otelkit alert state=firing rule=slow-llm severity=warning kind=latency")
    assert "a@b.c" not in record.getMessage() and "a@b.c" not in json.dumps(record.otelkit_alert)  # type: ignore[attr-defined]
    assert record.otelkit_alert["trace_id"] == f"{llm.context.trace_id:032x}"  # type: ignore[attr-defined, union-attr]
    rows = sqlite3.connect(tmp_path / "otelkit.db").execute("SELECT rule, state, span_id FROM alerts").fetchall()
    assert rows == [("slow-llm", "firing", f"{llm.context.span_id:016x}")]  # type: ignore[union-attr]


def test_the_stage_returns_the_very_span_it_was_given(tmp_path: Path) -> None:
    stage = AlertStage.from_policy(policy(tmp_path, SLOW_LLM, "  log: false\n  store: false\n"))
    span = finished_span()
    assert stage.sinks == () and stage(span) is span
    assert stage.engine is not None and stage.engine.watermark_ns == span.end_time


def test_error_status_of_sdk_spans_drives_error_rules(tmp_path: Path) -> None:
    stage = AlertStage.from_policy(policy(tmp_path, "    - {name: errs, kind: error_rate, threshold: 0.5, min_count: 2}\n",
                                          "  log: false\n  store: false\n"))
    assert facts_of(finished_span(error=True)).error is True  # type: ignore[union-attr]
    assert facts_of(finished_span()).error is False  # type: ignore[union-attr]
    assert stage.engine is not None
    events = [e for span in (finished_span(error=True), finished_span(error=True))
              for e in stage.engine.evaluate(facts_of(span))]  # type: ignore[arg-type]  # fmt: skip
    assert [e.state for e in events] == ["firing"]


def test_ingested_spans_go_through_evaluate_to_the_sinks(tmp_path: Path) -> None:
    received: list[AlertEvent] = []

    class Collect:
        name = "collect"

        def emit(self, event: AlertEvent) -> None:
            received.append(event)

        def close(self, timeout_s: float) -> None:
            """Nothing queued."""

    stage = AlertStage.from_policy(policy(tmp_path, SLOW_LLM, "  log: false\n  store: false\n"))
    stage.sinks = (Collect(),)
    facts = SpanFacts("chat", 1_000, 2_000_000, False, {sc.GEN_AI_OPERATION_NAME: "chat"}, trace_id=5, span_id=6)
    [fired] = stage.evaluate(facts)
    assert received == [fired] and fired.trace_id == f"{5:032x}"


def test_a_failing_sink_is_logged_once_counted_and_never_raises(tmp_path: Path, exporter: InMemorySpanExporter,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        name = "broken"

        def emit(self, event: AlertEvent) -> None:
            raise OSError("disk full")

        def close(self, timeout_s: float) -> None:
            raise OSError("still full")

    stage = AlertStage.from_policy(policy(tmp_path, SLOW_LLM, "  log: false\n  store: false\n"))
    stage.sinks = (Broken(),)
    tracer = provider_with(stage, exporter).get_tracer("t")
    with caplog.at_level(logging.ERROR, logger="otelkit"):
        for _ in range(3):
            with tracer.start_as_current_span("chat", attributes={sc.OPERATION_TYPE: "llm"}):
                pass
        stage.shutdown()
    assert len(exporter.get_finished_spans()) == 3
    assert stage.failures["broken"] == 4
    assert [r.getMessage() for r in caplog.records] == [
        "otelkit: alerting (broken) failed (OSError: disk full); counted, not logged again"
    ]


@pytest.fixture
def held_receiver() -> Iterator[Receiver]:
    server = Receiver(hold=True)
    yield server
    server.close()


def test_a_slow_webhook_never_holds_up_the_application(tmp_path: Path, exporter: InMemorySpanExporter,
                                                       held_receiver: Receiver) -> None:
    stage = AlertStage.from_policy(policy(
        tmp_path, SLOW_LLM,
        f"  log: false\n  store: false\n  shutdown_timeout_s: 0.2\n  webhooks:\n    - {{url: '{held_receiver.url}', queue_size: 10}}\n",
    ))  # fmt: skip
    tracer = provider_with(stage, exporter).get_tracer("t")
    for _ in range(50):
        with tracer.start_as_current_span("chat", attributes={sc.OPERATION_TYPE: "llm"}):
            pass
    # All 50 spans ended (each one firing or repeating the alert) while the server still holds
    # the first delivery: the application never waited for it.
    assert held_receiver.wait_for(1) and len(held_receiver.requests) == 1 and not held_receiver.release.is_set()
    assert len(exporter.get_finished_spans()) == 50
    stage.shutdown()
    stats = stage.stats()["webhook http://127.0.0.1"]
    assert stats["dropped"] == 49  # type: ignore[index]  # all but the one in flight: overflowed, or queued at shutdown
