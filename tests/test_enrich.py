"""The enrich stage: error category, performance category, process memory and cost, on real SDK spans."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otelkit import semconv as sc
from otelkit.config import Policy, parse_policy
from otelkit.enrich_settings import PerformanceThresholds
from otelkit.processors.chain import SpanChain
from otelkit.processors.enrich import ERROR_CATEGORIES, EnrichStage, MemoryReader, error_category


class RateLimitError(Exception):
    """Named like the SDKs' own."""


class APITimeoutError(Exception):
    pass


def finished(make: Any, stage: EnrichStage | None = None) -> ReadableSpan:
    """Run ``make(tracer)`` on a provider whose chain is the enrich stage; the one exported span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanChain([stage or EnrichStage.from_policy(Policy())], SimpleSpanProcessor(exporter)))
    make(provider.get_tracer("t"))
    (span,) = exporter.get_finished_spans()
    return span


def failing(exc: BaseException, **attributes: Any) -> Any:
    def make(tracer: Any) -> None:
        with tracer.start_as_current_span("op", attributes=attributes, record_exception=True, set_status_on_exception=True):
            raise exc

    def run(tracer: Any) -> None:
        try:
            make(tracer)
        except BaseException:
            pass

    return run


@pytest.mark.parametrize(
    ("exc", "attributes", "category"),
    [
        (TimeoutError("slow"), {}, "timeout"),
        (APITimeoutError("Request timed out."), {}, "timeout"),
        (ConnectionRefusedError("refused"), {}, "network"),
        (RateLimitError("slow down"), {}, "rate_limit"),
        (PermissionError("no"), {}, "permission"),
        (FileNotFoundError("gone"), {}, "not_found"),
        (ValueError("bad"), {}, "validation"),
        (MemoryError(), {}, "memory"),
        (RuntimeError("database is locked"), {}, "database"),  # the message, when the type says nothing
        (RuntimeError("upstream said: 401 unauthorized"), {}, "auth"),
        (RuntimeError("tool crashed"), {sc.OPERATION_TYPE: "tool"}, "tool_error"),
        (RuntimeError("no idea"), {}, "unknown"),
    ],
)
def test_error_category_from_type_then_message(exc: BaseException, attributes: dict[str, Any], category: str) -> None:
    span = finished(failing(exc, **attributes))
    assert span.attributes[sc.ERROR_CATEGORY] == category
    assert category in ERROR_CATEGORIES


def test_error_category_from_error_type_and_http_status_without_exception() -> None:
    def make(tracer: Any) -> None:
        with tracer.start_as_current_span("GET", attributes={"http.response.status_code": 429}) as span:
            span.set_status(Status(StatusCode.ERROR))

    assert finished(make).attributes[sc.ERROR_CATEGORY] == "rate_limit"

    def typed(tracer: Any) -> None:
        with tracer.start_as_current_span("call", attributes={sc.ERROR_TYPE: "404"}):
            pass

    assert finished(typed).attributes[sc.ERROR_CATEGORY] == "not_found"


def test_spans_that_did_not_fail_have_no_error_category() -> None:
    def make(tracer: Any) -> None:
        with tracer.start_as_current_span("ok"):
            pass

    span = finished(make)
    assert sc.ERROR_CATEGORY not in span.attributes
    assert error_category(span) is None


@pytest.mark.parametrize(("duration_ms", "category"), [(0.5, "fast"), (2.0, "normal"), (20.0, "slow"), (200.0, "very_slow")])
def test_performance_category_uses_the_thresholds_of_the_operation_type(duration_ms: float, category: str) -> None:
    stage = EnrichStage([PerformanceThresholds("template", 1.0, 10.0, 100.0), PerformanceThresholds("*", 1e6, 1e7, 1e8)], memory=False)

    def make(tracer: Any) -> None:
        span = tracer.start_span("render", attributes={sc.OPERATION_TYPE: "template"}, start_time=1_000_000_000)
        span.end(end_time=1_000_000_000 + int(duration_ms * 1e6))

    assert finished(make, stage).attributes[sc.PERFORMANCE_CATEGORY] == category


def test_untyped_spans_use_the_default_thresholds() -> None:
    def make(tracer: Any) -> None:
        span = tracer.start_span("plain", start_time=0)
        span.end(end_time=2_000_000_000)  # 2 s against the default 100 ms / 1 s / 5 s

    assert finished(make).attributes[sc.PERFORMANCE_CATEGORY] == "slow"


def test_memory_is_recorded_for_commands_and_steps_only() -> None:
    def step(tracer: Any) -> None:
        with tracer.start_as_current_span("build", attributes={sc.OPERATION_TYPE: "step"}):
            pass

    def template(tracer: Any) -> None:
        with tracer.start_as_current_span("render", attributes={sc.OPERATION_TYPE: "template"}):
            pass

    assert finished(step).attributes[sc.PROCESS_MEMORY_RSS] > 1_000_000
    assert sc.PROCESS_MEMORY_RSS not in finished(template).attributes
    quiet = EnrichStage(Policy().enrich.performance, memory=False)
    assert sc.PROCESS_MEMORY_RSS not in finished(step, quiet).attributes


def test_memory_reads_are_throttled() -> None:
    reader = MemoryReader(interval_s=3600)
    first = reader.rss()
    assert first > 0
    assert all(reader.rss() == first for _ in range(100))


def test_cost_is_part_of_the_enrich_stage() -> None:
    def make(tracer: Any) -> None:
        attributes = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
                      sc.GEN_AI_USAGE_INPUT_TOKENS: 1_000_000, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 0}  # fmt: skip
        with tracer.start_as_current_span("chat gpt-4o", attributes=attributes):
            pass

    span = finished(make)
    assert span.attributes[sc.GEN_AI_USAGE_COST] == pytest.approx(2.5) and span.attributes[sc.COST_STATUS] == "priced"


def test_a_token_count_that_cannot_be_priced_leaves_the_rest_of_the_enrichment() -> None:
    def make(tracer: Any) -> None:
        attributes = {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
                      sc.GEN_AI_USAGE_INPUT_TOKENS: float("inf")}  # fmt: skip
        with tracer.start_as_current_span("chat gpt-4o", attributes=attributes) as span:
            span.set_status(Status(StatusCode.ERROR, "rate limit exceeded"))

    span = finished(make)
    assert span.attributes[sc.COST_STATUS] == "unpriced" and sc.GEN_AI_USAGE_COST not in span.attributes
    assert span.attributes[sc.ERROR_CATEGORY] == "rate_limit" and sc.PERFORMANCE_CATEGORY in span.attributes


def test_thresholds_come_from_the_policy() -> None:
    policy = parse_policy("enrich:\n  memory: false\n  performance:\n    - {operation_type: step, normal_ms: 1, slow_ms: 2, very_slow_ms: 3}\n")
    assert policy.enrich.performance[0].slow_ms == 2.0 and policy.enrich.memory is False
    with pytest.raises(Exception, match=r"enrich.performance\[0\].thresholds"):
        parse_policy("enrich:\n  performance:\n    - {normal_ms: 5, slow_ms: 1}\n")
