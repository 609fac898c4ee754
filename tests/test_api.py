"""The instrumentation API: spans, attributes, errors, sessions and metrics of each operation."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import otelkit
from otelkit import semconv as sc
from otelkit.instrumentation.threads import ThreadContextInstrumentor


def _by_name(exporter: InMemorySpanExporter) -> dict[str, object]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_each_operation_has_its_type_and_semantic_attributes(spans: InMemorySpanExporter) -> None:
    with otelkit.command("deploy"):
        with otelkit.step("build", step_id="b-1"):
            pass
        with otelkit.template("email.html"):
            pass
        with otelkit.tool("search"):
            pass
        with otelkit.agent("planner"):
            pass
        with otelkit.llm("gpt-4o", "openai"):
            pass
    found = _by_name(spans)
    assert found["deploy"].attributes[sc.OPERATION_TYPE] == "command"
    assert found["deploy"].attributes[sc.COMMAND_NAME] == "deploy"
    assert found["build"].attributes[sc.STEP_TYPE] == "build"
    assert found["build"].attributes[sc.STEP_ID] == "b-1"
    assert found["email.html"].attributes[sc.TEMPLATE_NAME] == "email.html"
    tool = found["execute_tool search"]
    assert tool.attributes[sc.OPERATION_TYPE] == "tool"
    assert tool.attributes[sc.GEN_AI_TOOL_NAME] == "search"
    assert tool.attributes[sc.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert found["invoke_agent planner"].attributes[sc.GEN_AI_AGENT_NAME] == "planner"
    chat = found["chat gpt-4o"]
    assert chat.kind is SpanKind.CLIENT
    assert chat.attributes[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert chat.attributes[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o"
    root = found["deploy"]
    assert all(s.parent.span_id == root.context.span_id for n, s in found.items() if n != "deploy")
    assert len({s.context.trace_id for s in found.values()}) == 1


def test_decorated_function_keeps_return_value_and_metadata(spans: InMemorySpanExporter) -> None:
    @otelkit.step("transform")
    def transform(value: int, *, scale: int = 2) -> int:
        """Doubles."""
        return value * scale

    assert transform(21) == 42
    assert transform(1, scale=3) == 3
    assert transform.__name__ == "transform" and transform.__doc__ == "Doubles."
    assert [s.name for s in spans.get_finished_spans()] == ["transform", "transform"]


def test_exception_passes_through_unchanged_and_marks_error(spans: InMemorySpanExporter) -> None:
    class QuotaError(RuntimeError):
        pass

    error = QuotaError("quota exceeded")

    @otelkit.tool("fetch")
    def fetch() -> None:
        raise error

    with pytest.raises(QuotaError) as caught:
        fetch()
    assert caught.value is error
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "test_exception_passes_through_unchanged_and_marks_error.<locals>.QuotaError"
    assert span.events[0].name == "exception"
    assert "quota exceeded" in span.status.description


def test_system_exit_zero_is_success_nonzero_is_error(spans: InMemorySpanExporter) -> None:
    for code in (0, 3):
        with pytest.raises(SystemExit):
            with otelkit.command(f"exit{code}"):
                raise SystemExit(code)
    found = _by_name(spans)
    assert found["exit0"].status.status_code is StatusCode.UNSET
    assert found["exit3"].status.status_code is StatusCode.ERROR


async def test_async_decorator_and_async_context_manager(spans: InMemorySpanExporter) -> None:
    @otelkit.tool("lookup")
    async def lookup(key: str) -> str:
        await asyncio.sleep(0)
        with otelkit.step("inner"):
            return key.upper()

    async with otelkit.agent("bot"):
        results = await asyncio.gather(lookup("a"), lookup("b"))
    assert results == ["A", "B"]
    finished = spans.get_finished_spans()
    agent = next(s for s in finished if s.name == "invoke_agent bot")
    tools = [s for s in finished if s.name == "execute_tool lookup"]
    inners = [s for s in finished if s.name == "inner"]
    assert len(tools) == 2 and len(inners) == 2
    assert all(t.parent.span_id == agent.context.span_id for t in tools)
    assert {i.parent.span_id for i in inners} == {t.context.span_id for t in tools}


async def test_async_exception_is_recorded(spans: InMemorySpanExporter) -> None:
    @otelkit.llm("claude-x", "anthropic")
    async def ask() -> None:
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        await ask()
    (span,) = spans.get_finished_spans()
    assert span.attributes[sc.ERROR_TYPE] == "TimeoutError"


def test_generator_functions_are_refused_with_a_clear_message() -> None:
    with pytest.raises(TypeError, match="cannot decorate generator"):

        @otelkit.step("gen")
        def produce():  # type: ignore[no-untyped-def]
            yield 1


def test_condition_records_result_and_branch(spans: InMemorySpanExporter) -> None:
    with otelkit.condition("retries > 3", branches=("give_up", "retry")) as check:
        assert check.check(5 > 3) is True

    @otelkit.condition("cache is fresh")
    def fresh() -> bool:
        return False

    assert fresh() is False
    with otelkit.condition("manual") as check:
        check.check(1, branch="left")
    found = _by_name(spans)
    assert found["retries > 3"].attributes[sc.CONDITION_RESULT] is True
    assert found["retries > 3"].attributes[sc.CONDITION_BRANCH] == "give_up"
    assert found["retries > 3"].attributes[sc.CONDITION_EXPRESSION] == "retries > 3"
    assert found["cache is fresh"].attributes[sc.CONDITION_RESULT] is False
    assert sc.CONDITION_BRANCH not in found["cache is fresh"].attributes
    assert found["manual"].attributes[sc.CONDITION_BRANCH] == "left"


def test_llm_handle_records_tokens_response_and_cost_status(spans: InMemorySpanExporter) -> None:
    with otelkit.llm("gpt-4o", "in-house") as call:
        call.set_response(model="gpt-4o-2024-08-06", response_id="r-1", finish_reasons=["stop"])
        call.record_usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1000)

    @otelkit.llm("gpt-4o-mini", "openai")
    def priced() -> str:
        otelkit.current_operation().record_usage(10, 5, cost_usd=0.25)
        return "ok"

    assert priced() == "ok"
    found = _by_name(spans)
    unpriced = found["chat gpt-4o"].attributes  # a provider the pricing table does not know
    assert unpriced[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert unpriced[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 300
    assert unpriced[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 1000
    assert unpriced[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    assert unpriced[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert unpriced[sc.COST_STATUS] == "unpriced"
    assert sc.GEN_AI_USAGE_COST not in unpriced
    paid = found["chat gpt-4o-mini"].attributes
    assert paid[sc.GEN_AI_USAGE_COST] == 0.25 and paid[sc.COST_STATUS] == "priced"


def test_llm_handle_prices_from_the_table_by_response_model(spans: InMemorySpanExporter) -> None:
    with otelkit.llm("gpt-4o", "openai") as call:
        call.set_response(model="gpt-4o-mini-2024-07-18")
        call.record_usage(input_tokens=1_000_000, output_tokens=1_000_000, cache_read_tokens=400_000)
    with otelkit.llm("claude-sonnet-4-5", "anthropic") as streamed:
        streamed.record_usage(input_tokens=1_000_000, output_tokens=0, estimated=True, cache_creation_tokens=1_000_000)
    found = _by_name(spans)
    mini = found["chat gpt-4o"].attributes
    # gpt-4o-mini: 600k plain input at $0.15/M, 400k cached at $0.075/M, 1M output at $0.60/M
    assert mini[sc.GEN_AI_USAGE_COST] == pytest.approx(0.09 + 0.03 + 0.60)
    assert mini[sc.COST_STATUS] == "priced"
    sonnet = found["chat claude-sonnet-4-5"].attributes
    assert sonnet[sc.GEN_AI_USAGE_COST] == pytest.approx(3.75)  # every input token written to the cache
    assert sonnet[sc.COST_STATUS] == "estimated"
    assert sonnet[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 1_000_000


def test_current_operation_is_innermost_and_cleared_after(spans: InMemorySpanExporter) -> None:
    assert otelkit.current_operation() is None
    with otelkit.command("outer") as outer:
        assert otelkit.current_operation() is outer
        with otelkit.step("inner") as inner:
            assert otelkit.current_operation() is inner
        assert otelkit.current_operation() is outer
    assert otelkit.current_operation() is None


def test_failure_inside_otelkit_does_not_break_the_call(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from otelkit.instrumentation import api

    class Broken:
        def start_span(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("tracer exploded")

    monkeypatch.setattr(api, "_tracer", Broken())

    @otelkit.step("resilient")
    def work() -> int:
        return 7

    assert work() == 7
    with otelkit.step("resilient") as handle:
        handle.set_attribute("x", 1)
    assert spans.get_finished_spans() == ()
    assert "tracer exploded" in caplog.text


def test_session_id_on_every_span_including_foreign_ones(spans: InMemorySpanExporter) -> None:
    from opentelemetry import trace

    foreign = trace.get_tracer("some.other.library")
    with otelkit.session("s-42"):
        with otelkit.command("run"):
            with foreign.start_as_current_span("http GET"):
                pass
    with otelkit.step("outside"):
        pass
    found = _by_name(spans)
    assert found["run"].attributes[sc.SESSION_ID] == "s-42"
    assert found["http GET"].attributes[sc.SESSION_ID] == "s-42"
    assert sc.SESSION_ID not in found["outside"].attributes
    assert otelkit.current_session_id() is None


async def test_session_crosses_asyncio_tasks(spans: InMemorySpanExporter) -> None:
    @otelkit.session("s-async")
    async def handler() -> None:
        async def child() -> None:
            with otelkit.step("in-task"):
                await asyncio.sleep(0)

        await asyncio.create_task(child())

    await handler()
    (span,) = spans.get_finished_spans()
    assert span.attributes[sc.SESSION_ID] == "s-async"


def test_session_crosses_threads_with_thread_context_instrumentation(spans: InMemorySpanExporter) -> None:
    instrumentor = ThreadContextInstrumentor()
    instrumentor.instrument()
    try:
        with otelkit.session("s-thread"):
            with otelkit.command("parent"):
                with ThreadPoolExecutor(max_workers=2) as pool:
                    pool.submit(otelkit.step("pooled")(lambda: None)).result()
                worker = threading.Thread(target=lambda: otelkit.step("threaded")(lambda: None)())
                worker.start()
                worker.join()
    finally:
        instrumentor.uninstrument()
    found = _by_name(spans)
    for name in ("threaded", "pooled"):
        assert found[name].attributes[sc.SESSION_ID] == "s-thread"
        assert found[name].parent.span_id == found["parent"].context.span_id
    spans.clear()
    with otelkit.session("s-after"):
        worker = threading.Thread(target=lambda: otelkit.step("bare")(lambda: None)())
        worker.start()
        worker.join()
    assert sc.SESSION_ID not in spans.get_finished_spans()[0].attributes


def test_session_copied_context_runs_in_plain_thread(spans: InMemorySpanExporter) -> None:
    with otelkit.session("s-copy"):
        ctx = contextvars.copy_context()
    worker = threading.Thread(target=ctx.run, args=(otelkit.step("copied")(lambda: None),))
    worker.start()
    worker.join()
    (span,) = spans.get_finished_spans()
    assert span.attributes[sc.SESSION_ID] == "s-copy"


def test_session_travels_in_w3c_baggage_header() -> None:
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    with otelkit.session("s-remote"):
        inject(carrier)
    assert "session.id=s-remote" in carrier["baggage"]


def test_session_rejects_empty_id() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        otelkit.session("")


def _points(reader: InMemoryMetricReader, name: str) -> dict[frozenset, object]:
    data = reader.get_metrics_data()
    found: dict[frozenset, object] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        found[frozenset(point.attributes.items())] = point
    return found


def test_duration_histogram_per_type_name_outcome(spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader) -> None:
    for fail in (False, False, True):
        try:
            with otelkit.step("metric-step"):
                if fail:
                    raise ValueError
        except ValueError:
            pass
    points = _points(metric_reader, sc.METRIC_OPERATION_DURATION)
    ok = points[frozenset({sc.OPERATION_TYPE: "step", sc.OPERATION_NAME: "metric-step", sc.OPERATION_OUTCOME: "success"}.items())]
    bad = points[frozenset({sc.OPERATION_TYPE: "step", sc.OPERATION_NAME: "metric-step", sc.OPERATION_OUTCOME: "error"}.items())]
    assert ok.count == 2 and bad.count == 1
    from otelkit.instrumentation.metrics import DURATION_BUCKETS_S

    assert tuple(ok.explicit_bounds) == DURATION_BUCKETS_S
    assert sum(ok.bucket_counts[: DURATION_BUCKETS_S.index(0.01) + 1]) == 2  # sub-10 ms steps, finely bucketed


def test_token_and_cost_metrics(spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader) -> None:
    with otelkit.llm("metric-model", "acme") as call:
        call.record_usage(input_tokens=100, output_tokens=40, cost_usd=0.5)
    tokens = _points(metric_reader, sc.METRIC_GEN_AI_TOKEN_USAGE)
    base = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "acme", sc.GEN_AI_REQUEST_MODEL: "metric-model"}
    assert tokens[frozenset({**base, sc.GEN_AI_TOKEN_TYPE: "input"}.items())].sum == 100
    assert tokens[frozenset({**base, sc.GEN_AI_TOKEN_TYPE: "output"}.items())].sum == 40
    assert _points(metric_reader, sc.METRIC_GEN_AI_COST)[frozenset(base.items())].value == 0.5
    assert _points(metric_reader, sc.METRIC_GEN_AI_OPERATION_DURATION)[frozenset(base.items())].count == 1


def test_metrics_switch_off_records_no_metrics(
    spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otelkit.config import reset_policy_cache

    monkeypatch.setenv("OTELKIT_METRICS", "false")
    reset_policy_cache()
    with otelkit.step("quiet-step"):
        pass
    with otelkit.llm("quiet-model", "acme") as call:
        call.record_usage(input_tokens=5, output_tokens=1, cost_usd=0.1)
    assert [s.name for s in spans.get_finished_spans()] == ["quiet-step", "chat quiet-model"]
    durations = _points(metric_reader, sc.METRIC_OPERATION_DURATION)
    assert not [k for k in durations if (sc.OPERATION_NAME, "quiet-step") in k]
    assert not [k for k in _points(metric_reader, sc.METRIC_GEN_AI_TOKEN_USAGE) if (sc.GEN_AI_REQUEST_MODEL, "quiet-model") in k]


def test_operations_before_and_after_a_provider_is_set() -> None:
    """Spans started before any provider exists are no-ops; once one is set, they record."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import otelkit
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        with otelkit.step("early") as early:
            assert not early.span.is_recording()
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        with otelkit.step("late"):
            pass
        from otelkit.instrumentation import api
        resolved = api._tracer
        with otelkit.step("later"):
            pass
        assert api._tracer is resolved and not isinstance(resolved, trace.ProxyTracer)
        print([s.name for s in exporter.get_finished_spans()])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['late', 'later']"


async def test_one_operation_instance_shared_by_concurrent_tasks(spans: InMemorySpanExporter) -> None:
    """Exits must end the span their own task entered, whatever the interleaving."""
    shared = otelkit.tool("shared")
    a_entered, b_entered = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with shared as handle:
            handle.set_attribute("who", "A")
            a_entered.set()
            await b_entered.wait()
        # A leaves while B is still inside

    async def second() -> None:
        await a_entered.wait()
        async with shared as handle:
            handle.set_attribute("who", "B")
            b_entered.set()
            await asyncio.sleep(0.01)

    await asyncio.gather(first(), second())
    ends = {s.attributes["who"]: s.end_time for s in spans.get_finished_spans()}
    assert ends["A"] < ends["B"]


async def test_one_session_instance_shared_by_concurrent_tasks(spans: InMemorySpanExporter) -> None:
    shared = otelkit.session("s-shared")
    a_in, b_in = asyncio.Event(), asyncio.Event()

    async def first() -> str | None:
        async with shared:
            a_in.set()
            await b_in.wait()
        return otelkit.current_session_id()

    async def second() -> str | None:
        await a_in.wait()
        async with shared:
            b_in.set()
            await asyncio.sleep(0.01)
            with otelkit.step("inside-b"):
                pass
        return otelkit.current_session_id()

    assert await asyncio.gather(first(), second()) == [None, None]
    (span,) = spans.get_finished_spans()
    assert span.attributes[sc.SESSION_ID] == "s-shared"
