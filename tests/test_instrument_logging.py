"""Log correlation: stdlib records and structlog events carry trace_id, span_id and session_id."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelkit
from otelkit.instrumentation import logging as logging_instrumentation
from otelkit.instrumentation.logging import LoggingCorrelationInstrumentor

FORMAT = "%(levelname)s trace=%(trace_id)s span=%(span_id)s session=%(session_id)s %(message)s"


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def instrumented() -> Iterator[LoggingCorrelationInstrumentor]:
    instrumentor = LoggingCorrelationInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


@pytest.fixture
def handler() -> Iterator[ListHandler]:
    handler = ListHandler()
    logger = logging.getLogger("otelkit.tests.app")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def test_stdlib_records_carry_trace_span_and_session(
    instrumented: LoggingCorrelationInstrumentor, handler: ListHandler, spans: InMemorySpanExporter
) -> None:
    log = logging.getLogger("otelkit.tests.app")
    log.info("before")
    with otelkit.session("sess-7"), otelkit.step("build") as step:
        log.info("inside")
        ctx = step.span.get_span_context()
    assert handler.lines[0] == f"INFO trace={'0' * 32} span={'0' * 16} session= before"
    assert handler.lines[1] == f"INFO trace={ctx.trace_id:032x} span={ctx.span_id:016x} session=sess-7 inside"


def test_structlog_events_carry_the_same_keys(instrumented: LoggingCorrelationInstrumentor, spans: InMemorySpanExporter) -> None:
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[capture])  # configured after instrumentation, as apps do
    try:
        with otelkit.session("sess-8"), otelkit.tool("search") as call:
            structlog.get_logger().info("searching", query="q")
            ctx = call.span.get_span_context()
        (event,) = capture.entries
        assert event["trace_id"] == f"{ctx.trace_id:032x}" and event["span_id"] == f"{ctx.span_id:016x}"
        assert event["session_id"] == "sess-8" and event["query"] == "q"
    finally:
        structlog.reset_defaults()


def test_uninstrument_restores_logging_and_structlog(handler: ListHandler) -> None:
    original_factory = logging.getLogRecordFactory()
    original_configure = structlog.configure
    instrumentor = LoggingCorrelationInstrumentor()
    instrumentor.instrument()
    assert logging.getLogRecordFactory() is not original_factory
    assert logging_instrumentation.add_correlation in structlog.get_config()["processors"]
    instrumentor.uninstrument()
    assert logging.getLogRecordFactory() is original_factory
    assert structlog.configure is original_configure
    assert logging_instrumentation.add_correlation not in structlog.get_config()["processors"]
    record = logging.getLogger("otelkit.tests.app").makeRecord("n", logging.INFO, "f", 1, "m", None, None)
    assert not hasattr(record, "trace_id")


def test_a_failing_instrumentor_never_breaks_logging(
    instrumented: LoggingCorrelationInstrumentor, handler: ListHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("instrumentor bug")

    monkeypatch.setattr(logging_instrumentation, "correlation", broken)
    with otelkit.step("build"):
        logging.getLogger("otelkit.tests.app").info("still logged")
    # the fields are still there (uncorrelated), so a format that names them keeps working
    assert handler.lines == [f"INFO trace={'0' * 32} span={'0' * 16} session= still logged"]
