"""The processor chain and its enrich (cost) stage, on a plain TracerProvider."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelkit import semconv as sc
from otelkit.config import Policy, parse_policy
from otelkit.distro import chain_stages, export_span_processor
from otelkit.enrich_settings import DEFAULT_THRESHOLDS
from otelkit.processors.chain import SpanChain, with_attributes
from otelkit.processors.enrich import CostStage, EnrichStage


def _run(stages: list[Any], attributes: dict[str, Any]) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanChain(stages, SimpleSpanProcessor(exporter)))
    with provider.get_tracer("contrib-like").start_as_current_span("chat gpt-4o", attributes=attributes):
        pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _usage(**extra: Any) -> dict[str, Any]:
    return {
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
        sc.GEN_AI_USAGE_INPUT_TOKENS: 2_000_000,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100_000,
        **extra,
    }


def test_cost_stage_prices_spans_from_other_instrumentors() -> None:
    (span,) = _run([CostStage()], _usage(**{sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1_000_000}))
    # gpt-4o: 1M plain at $2.50, 1M cached at $1.25, 100k output at $10
    assert span.attributes[sc.GEN_AI_USAGE_COST] == pytest.approx(2.5 + 1.25 + 1.0)
    assert span.attributes[sc.COST_STATUS] == "priced"
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 2_000_000


def test_unknown_model_is_unpriced_never_zero() -> None:
    (span,) = _run([CostStage()], _usage(**{sc.GEN_AI_REQUEST_MODEL: "brand-new-model"}))
    assert span.attributes[sc.COST_STATUS] == "unpriced"
    assert sc.GEN_AI_USAGE_COST not in span.attributes


def test_existing_cost_is_kept_and_estimates_stay_estimates() -> None:
    (kept,) = _run([CostStage()], _usage(**{sc.GEN_AI_USAGE_COST: 0.5}))
    assert kept.attributes[sc.GEN_AI_USAGE_COST] == 0.5 and kept.attributes[sc.COST_STATUS] == "priced"
    (estimated,) = _run([CostStage()], _usage(**{sc.COST_STATUS: "estimated"}))
    assert estimated.attributes[sc.COST_STATUS] == "estimated" and estimated.attributes[sc.GEN_AI_USAGE_COST] > 0


def test_spans_without_tokens_pass_through_untouched() -> None:
    seen: list[ReadableSpan] = []

    def spy(span: ReadableSpan) -> ReadableSpan:
        seen.append(span)
        return span

    (span,) = _run([spy, CostStage()], {"plain": 1})
    assert span is seen[0] and dict(span.attributes) == {"plain": 1}


def test_a_failing_stage_is_skipped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(span: ReadableSpan) -> ReadableSpan:
        raise RuntimeError("bug")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanChain([broken, CostStage()], SimpleSpanProcessor(exporter)))
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            with provider.get_tracer("t").start_as_current_span("s", attributes=_usage()):
                pass
    assert len(exporter.get_finished_spans()) == 3
    assert all(s.attributes[sc.COST_STATUS] == "priced" for s in exporter.get_finished_spans())
    assert caplog.text.count("processor stage broken failed") == 1


def test_a_stage_returning_none_drops_the_span() -> None:
    assert _run([lambda span: None, CostStage()], _usage()) == []


def test_with_attributes_copies_everything_else() -> None:
    (span,) = _run([], {"a": 1, "b": 2})
    copy = with_attributes(span, {"c": 3}, removed=("a",))
    assert dict(copy.attributes) == {"b": 2, "c": 3}
    assert (copy.name, copy.context, copy.start_time, copy.end_time, copy.resource, copy.instrumentation_scope) == (
        span.name, span.context, span.start_time, span.end_time, span.resource, span.instrumentation_scope,
    )  # fmt: skip
    assert dict(span.attributes) == {"a": 1, "b": 2}


def test_a_replaced_span_keeps_the_counts_the_sdk_limits_dropped() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2, max_events=1))
    stage = EnrichStage(DEFAULT_THRESHOLDS, memory=False)
    provider.add_span_processor(SpanChain([stage], SimpleSpanProcessor(exporter)))
    with provider.get_tracer("t").start_as_current_span("op", attributes={"a": 1, "b": 2, "c": 3, "d": 4}) as live:
        for index in range(3):
            live.add_event(f"e{index}")
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    assert sc.PERFORMANCE_CATEGORY in span.attributes  # the stage did replace the span
    assert (span.dropped_attributes, span.dropped_events, span.dropped_links) == (2, 2, 0)
    assert with_attributes(span, {"e": 5}).dropped_attributes == 2  # and so does the next stage


def test_the_distro_chain_prices_before_export(tmp_path: Any) -> None:
    from otelkit.exporters.sqlite import SQLiteSpanExporter
    from otelkit.store import connect_for_reading

    assert any(isinstance(stage, EnrichStage) for stage in chain_stages(Policy()))
    provider = TracerProvider()
    provider.add_span_processor(export_span_processor(Policy())(SQLiteSpanExporter(str(tmp_path / "c.db"))))
    with provider.get_tracer("t").start_as_current_span("chat", attributes=_usage()):
        pass
    provider.shutdown()
    conn = connect_for_reading(str(tmp_path / "c.db"))
    assert conn.execute("SELECT cost_status, round(cost_usd, 6) FROM spans").fetchone() == ("priced", 6.0)


def test_one_chain_feeds_every_exporter_and_runs_each_span_once(tmp_path: Any) -> None:
    from otelkit.processors.chain import chain_processors

    seen: list[str] = []

    def count(span: ReadableSpan) -> ReadableSpan:
        seen.append(span.name)
        return span

    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    feed = chain_processors([count, CostStage()], SimpleSpanProcessor)
    provider = TracerProvider()
    provider.add_span_processor(feed(first))
    provider.add_span_processor(feed(second))
    with provider.get_tracer("t").start_as_current_span("chat", attributes=_usage()):
        pass
    provider.shutdown()
    assert seen == ["chat"]
    assert [s.attributes[sc.COST_STATUS] for s in first.get_finished_spans()] == ["priced"]
    assert [s.attributes[sc.COST_STATUS] for s in second.get_finished_spans()] == ["priced"]


class HoldUntilFlush:
    """A stage that holds every span and releases them all on flush (as a tail sampler does)."""

    __name__ = "hold"

    def __init__(self) -> None:
        self.held: list[ReadableSpan] = []

    def __call__(self, span: ReadableSpan) -> None:
        self.held.append(span)
        return None

    def flush(self) -> list[ReadableSpan]:
        released, self.held = self.held, []
        return released


def test_held_spans_are_released_through_later_stages_on_flush_and_shutdown() -> None:
    exporter = InMemorySpanExporter()
    hold = HoldUntilFlush()
    chain = SpanChain([hold, CostStage()], SimpleSpanProcessor(exporter))
    provider = TracerProvider()
    provider.add_span_processor(chain)
    for _ in range(2):
        with provider.get_tracer("t").start_as_current_span("chat", attributes=_usage()):
            pass
    assert exporter.get_finished_spans() == ()
    provider.force_flush()
    assert [s.attributes[sc.COST_STATUS] for s in exporter.get_finished_spans()] == ["priced", "priced"]
    with provider.get_tracer("t").start_as_current_span("late", attributes=_usage()):
        pass
    provider.shutdown()
    assert len(exporter.get_finished_spans()) == 3


def test_a_stage_may_release_several_spans_at_once() -> None:
    exporter = InMemorySpanExporter()
    chain = SpanChain([lambda span: [span, with_attributes(span, {"copy": True})]], SimpleSpanProcessor(exporter))
    provider = TracerProvider()
    provider.add_span_processor(chain)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    assert [dict(s.attributes) for s in exporter.get_finished_spans()] == [{}, {"copy": True}]


def test_a_failing_stage_can_drop_the_span_instead(caplog: pytest.LogCaptureFixture) -> None:
    def broken(span: ReadableSpan) -> ReadableSpan:
        raise RuntimeError("bug")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    policy = parse_policy("chain:\n  on_stage_error: drop\n")
    provider.add_span_processor(SpanChain([broken], SimpleSpanProcessor(exporter), drop_on_error=policy.chain.on_stage_error == "drop"))
    with caplog.at_level(logging.ERROR):
        with provider.get_tracer("t").start_as_current_span("s"):
            pass
    assert exporter.get_finished_spans() == ()
    assert "spans are dropped" in caplog.text
    with pytest.raises(Exception, match="chain.on_stage_error: expected pass or drop"):
        parse_policy("chain:\n  on_stage_error: maybe\n")


def test_an_export_processor_that_raises_does_not_reach_the_program(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("exporter bug")

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SpanChain([], [Exploding(InMemorySpanExporter()), SimpleSpanProcessor(exporter)]))
    with caplog.at_level(logging.ERROR):
        with provider.get_tracer("t").start_as_current_span("s"):
            pass
    assert len(exporter.get_finished_spans()) == 1  # the other exporter still got it
    assert "exporter bug" in caplog.text
