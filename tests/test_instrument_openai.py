"""OpenAI instrumentation with the real ``openai`` client against a local fake of the API."""

from __future__ import annotations

import gc
import json
from typing import Any, AsyncIterator, Iterator

import openai
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otelkit import semconv as sc
from otelkit.instrumentation import openai as openai_instrumentation
from otelkit.instrumentation.openai import OpenAIInstrumentor
from providers.openai_server import FakeOpenAIServer, FakeToolCall, FakeUsage

MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather in Paris?"}]
TOOLS: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
RESPONSE_TOOLS: Any = [{"type": "function", "name": "get_weather", "strict": False, "parameters": {"type": "object", "properties": {}}}]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reply_text="It is sunny in Paris today.") as server:
        yield server


@pytest.fixture
def server(shared_server: FakeOpenAIServer) -> FakeOpenAIServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def instrumented() -> Iterator[OpenAIInstrumentor]:
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


@pytest.fixture
def client(server: FakeOpenAIServer, instrumented: OpenAIInstrumentor) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as sync_client:
        yield sync_client


@pytest.fixture
async def aclient(server: FakeOpenAIServer, instrumented: OpenAIInstrumentor) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as async_client:
        yield async_client


def llm_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if sc.GEN_AI_OPERATION_NAME in (s.attributes or {})]


def only_llm_span(spans: InMemorySpanExporter) -> ReadableSpan:
    (span,) = llm_spans(spans)
    return span


def test_chat_completion_span_follows_the_genai_conventions(
    client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter
) -> None:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature=0.2, max_tokens=50)
    assert reply.choices[0].message.content == "It is sunny in Paris today."
    span = only_llm_span(spans)
    attrs = span.attributes
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    assert attrs[sc.OPERATION_TYPE] == "llm" and attrs[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs[sc.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini" and attrs[sc.GEN_AI_RESPONSE_MODEL] == reply.model
    assert attrs[sc.GEN_AI_RESPONSE_ID] == reply.id
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.GEN_AI_REQUEST_TEMPERATURE] == 0.2 and attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert (attrs[sc.GEN_AI_USAGE_INPUT_TOKENS], attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == (12, 8)
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 4 and attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 2
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == server.port
    # gpt-4o-mini: 8 plain input at $0.15/M, 4 cached at $0.075/M, 8 output at $0.60/M
    assert attrs[sc.GEN_AI_USAGE_COST] == pytest.approx((8 * 0.15 + 4 * 0.075 + 8 * 0.60) / 1e6)
    assert attrs[sc.COST_STATUS] == "priced"
    assert sc.GEN_AI_INPUT_MESSAGES not in attrs and sc.GEN_AI_OUTPUT_MESSAGES not in attrs


def test_genai_metrics_are_recorded(client: openai.OpenAI, spans: InMemorySpanExporter, metric_reader: InMemoryMetricReader) -> None:
    def points(name: str) -> dict[frozenset, Any]:
        data = metric_reader.get_metrics_data()
        return {
            frozenset(p.attributes.items()): p
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics if m.name == name
            for p in m.data.data_points
        }  # fmt: skip

    def count(name: str, **attrs: str) -> int:
        return sum(p.count for key, p in points(name).items() if set(attrs.items()) <= set(key))

    before = (count(sc.METRIC_GEN_AI_TOKEN_USAGE, **{sc.GEN_AI_TOKEN_TYPE: "input", sc.GEN_AI_REQUEST_MODEL: "gpt-4.1"}),
              count(sc.METRIC_GEN_AI_OPERATION_DURATION, **{sc.GEN_AI_REQUEST_MODEL: "gpt-4.1"}))  # fmt: skip
    client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    after = (count(sc.METRIC_GEN_AI_TOKEN_USAGE, **{sc.GEN_AI_TOKEN_TYPE: "input", sc.GEN_AI_REQUEST_MODEL: "gpt-4.1"}),
             count(sc.METRIC_GEN_AI_OPERATION_DURATION, **{sc.GEN_AI_REQUEST_MODEL: "gpt-4.1"}))  # fmt: skip
    assert after == (before[0] + 1, before[1] + 1)


def test_tool_calls_the_model_requests_are_recorded(client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter) -> None:
    server.tool_calls = [FakeToolCall("get_weather", {"city": "Paris"}, call_id="call_1")]
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS)
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"
    attrs = only_llm_span(spans).attributes
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)
    assert attrs[sc.LLM_REQUESTED_TOOLS] == ("get_weather",)


def test_stream_without_usage_is_counted_and_marked_estimated(client: openai.OpenAI, spans: InMemorySpanExporter) -> None:
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "It is sunny in Paris today."
    attrs = only_llm_span(spans).attributes
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True
    assert attrs[sc.COST_STATUS] == "estimated" and attrs[sc.TOKENS_ESTIMATED_BY] == "estimate"
    assert attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 8  # the documented estimate of the reply text
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] > 0 and attrs[sc.GEN_AI_USAGE_COST] > 0
    assert attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)


def test_stream_with_usage_reports_the_providers_counts(client: openai.OpenAI, spans: InMemorySpanExporter) -> None:
    with client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert chunks[-1].usage.prompt_tokens == 12
    attrs = only_llm_span(spans).attributes
    assert (attrs[sc.GEN_AI_USAGE_INPUT_TOKENS], attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == (12, 8)
    assert attrs[sc.COST_STATUS] == "priced" and sc.TOKENS_ESTIMATED_BY not in attrs


def test_stream_usage_setting_asks_the_provider(
    client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    policy = tmp_path / "otelkit.yaml"
    policy.write_text("instrumentation:\n  stream_usage: true\n")
    monkeypatch.setenv("OTELKIT_CONFIG", str(policy))
    list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert server.requests[-1].body["stream_options"] == {"include_usage": True}
    assert only_llm_span(spans).attributes[sc.COST_STATUS] == "priced"


def test_streamed_tool_calls_and_the_stream_helper(client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter) -> None:
    server.tool_calls = [FakeToolCall("get_weather", {"city": "Paris"}, call_id="call_2")]
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES, tools=TOOLS) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'
    attrs = only_llm_span(spans).attributes
    assert attrs[sc.LLM_REQUESTED_TOOLS] == ("get_weather",)
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)


def test_an_abandoned_stream_still_ends_its_span(client: openai.OpenAI, spans: InMemorySpanExporter) -> None:
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    next(iter(stream))
    assert llm_spans(spans) == []
    stream.close()
    del stream
    gc.collect()
    assert only_llm_span(spans).attributes[sc.COST_STATUS] == "estimated"


def test_responses_api_sync_and_streamed(client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter) -> None:
    response = client.responses.create(model="gpt-4.1-mini", input="Weather in Paris?", instructions="Be brief.")
    assert response.output_text == "It is sunny in Paris today."
    server.tool_calls = [FakeToolCall("get_weather", {"city": "Paris"}, call_id="call_3")]
    with client.responses.stream(model="gpt-4.1-mini", input="Weather?", tools=RESPONSE_TOOLS) as stream:
        for _ in stream:
            pass
    plain, streamed = llm_spans(spans)
    assert plain.name == "chat gpt-4.1-mini"
    assert plain.attributes[sc.GEN_AI_RESPONSE_ID] == response.id
    assert plain.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert plain.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12 and plain.attributes[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 4
    assert plain.attributes[sc.COST_STATUS] == "priced"
    assert streamed.attributes[sc.LLM_REQUESTED_TOOLS] == ("get_weather",)
    assert streamed.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_calls",)
    assert streamed.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 8


def test_raw_responses_are_read_too(client: openai.OpenAI, spans: InMemorySpanExporter) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "It is sunny in Paris today."
    attrs = only_llm_span(spans).attributes
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12 and attrs[sc.COST_STATUS] == "priced"


def test_embeddings(client: openai.OpenAI, spans: InMemorySpanExporter) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    span = only_llm_span(spans)
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == result.usage.prompt_tokens
    assert span.attributes[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == len(result.data[0].embedding)
    assert span.attributes[sc.COST_STATUS] == "priced"


async def test_async_chat_and_stream(aclient: openai.AsyncOpenAI, spans: InMemorySpanExporter) -> None:
    reply = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.AsyncStream)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == reply.choices[0].message.content
    await aclient.embeddings.create(model="text-embedding-3-small", input="x")
    plain, streamed, embedded = llm_spans(spans)
    assert plain.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert streamed.attributes[sc.COST_STATUS] == "estimated"
    assert embedded.attributes[sc.GEN_AI_OPERATION_NAME] == "embeddings"


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [(429, openai.RateLimitError, "RateLimitError"), (500, openai.InternalServerError, "InternalServerError")],
)
def test_api_errors_reach_the_caller_and_mark_the_span(
    client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter, status: int, error: type, error_type: str
) -> None:
    server.fail_next(status)
    with pytest.raises(error):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    span = only_llm_span(spans)
    assert span.status.status_code.name == "ERROR" and span.attributes[sc.ERROR_TYPE] == error_type
    assert sc.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes


def test_timeouts_reach_the_caller(client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter) -> None:
    server.delay_next(2.0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.2)
    assert only_llm_span(spans).attributes[sc.ERROR_TYPE] == "APITimeoutError"


def test_retries_are_one_llm_span(server: FakeOpenAIServer, instrumented: OpenAIInstrumentor, spans: InMemorySpanExporter) -> None:
    server.fail_next(429)
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=1) as retrying:
        retrying.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(server.requests) == 2
    assert only_llm_span(spans).status.status_code.name == "UNSET"


def test_content_is_captured_only_when_enabled(
    client: openai.OpenAI, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTELKIT_CAPTURE_CONTENT", "true")
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    attrs = only_llm_span(spans).attributes
    assert json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "What is the weather in Paris?"}]},
    ]
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "It is sunny in Paris today."}], "finish_reason": "stop"}
    ]


def test_uninstrument_restores_openai(server: FakeOpenAIServer, spans: InMemorySpanExporter) -> None:
    from openai.resources.chat.completions import Completions

    original = Completions.create
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument()
    assert Completions.create is not original
    instrumentor.uninstrument()
    assert Completions.create is original
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as plain:
        plain.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert llm_spans(spans) == []


def test_a_failing_instrumentor_never_breaks_the_call(
    client: openai.OpenAI, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("instrumentor bug")

    monkeypatch.setattr(openai_instrumentation, "_describe", broken)
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == "It is sunny in Paris today."
    assert llm_spans(spans) == []


def test_a_failure_reading_the_response_still_ends_the_span(
    client: openai.OpenAI, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(response: object) -> None:
        raise RuntimeError("unexpected response shape")

    monkeypatch.setitem(openai_instrumentation._OUTCOMES, "chat", broken)
    reply = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert reply.choices[0].message.content == "It is sunny in Paris today."
    assert only_llm_span(spans).status.status_code.name == "UNSET"


def test_usage_counts_flow_into_the_unpriced_status(client: openai.OpenAI, server: FakeOpenAIServer, spans: InMemorySpanExporter) -> None:
    server.usage = FakeUsage(100, 10, 0, 0)
    client.chat.completions.create(model="in-house-model", messages=MESSAGES)
    attrs = only_llm_span(spans).attributes
    assert attrs[sc.COST_STATUS] == "unpriced" and sc.GEN_AI_USAGE_COST not in attrs
