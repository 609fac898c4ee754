"""Anthropic instrumentation with the real ``anthropic`` client against a local fake of the API."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator

import anthropic
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otelkit import semconv as sc
from otelkit.instrumentation import anthropic as anthropic_instrumentation
from otelkit.instrumentation.anthropic import AnthropicInstrumentor
from providers.anthropic_server import FakeAnthropicServer, ToolCall

MODEL = "claude-haiku-4-5"
MESSAGES: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOLS: Any = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}]


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(reply_text="Sunny in Paris.") as fake:
        yield fake


@pytest.fixture
def instrumented() -> Iterator[AnthropicInstrumentor]:
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


@pytest.fixture
def client(server: FakeAnthropicServer, instrumented: AnthropicInstrumentor) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as sync_client:
        yield sync_client


@pytest.fixture
async def aclient(server: FakeAnthropicServer, instrumented: AnthropicInstrumentor) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0) as async_client:
        yield async_client


def llm_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if sc.GEN_AI_OPERATION_NAME in (s.attributes or {})]


def only_llm_span(spans: InMemorySpanExporter) -> ReadableSpan:
    (span,) = llm_spans(spans)
    return span


def test_messages_create_is_one_genai_span_in_place_of_the_sdks(
    client: anthropic.Anthropic, server: FakeAnthropicServer, spans: InMemorySpanExporter
) -> None:
    message = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, system="Be brief.")
    assert message.content[0].text == "Sunny in Paris."
    span = only_llm_span(spans)  # the SDK's own anthropic.messages.create span is not there
    attrs = span.attributes
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope.name == "otelkit"
    assert attrs[sc.GEN_AI_PROVIDER_NAME] == "anthropic" and attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] == 100
    assert attrs[sc.GEN_AI_RESPONSE_ID] == message.id and attrs[sc.GEN_AI_RESPONSE_MODEL] == message.model
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",)
    # input 25 + cache read 5 + cache write 3, per the conventions
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 33 and attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
    assert attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 5 and attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 3
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1" and attrs[sc.SERVER_PORT] == server.port
    # claude-haiku-4-5: 25 at $1/M, 5 cache reads at $0.10/M, 3 cache writes at $1.25/M, 12 out at $5/M
    assert attrs[sc.GEN_AI_USAGE_COST] == pytest.approx((25 * 1 + 5 * 0.1 + 3 * 1.25 + 12 * 5) / 1e6)
    assert attrs[sc.COST_STATUS] == "priced"
    # the SDK would have sent a traceparent: it still goes out, from otelkit's span
    traceparent = server.last_request.headers["traceparent"]
    assert traceparent.split("-")[1] == f"{span.context.trace_id:032x}"
    assert traceparent.split("-")[2] == f"{span.context.span_id:016x}"


def test_tool_use_and_streaming_with_the_helper(
    client: anthropic.Anthropic, server: FakeAnthropicServer, spans: InMemorySpanExporter
) -> None:
    server.tool_call = ToolCall("get_weather", {"city": "Paris"})
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES, tools=TOOLS) as stream:
        final = stream.get_final_message()
    assert final.content[-1].name == "get_weather"
    attrs = only_llm_span(spans).attributes
    assert attrs[sc.LLM_REQUESTED_TOOLS] == ("get_weather",)
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("tool_use",)
    assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 33 and attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
    assert attrs[sc.GEN_AI_REQUEST_STREAM] is True and attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] >= 0


def test_raw_stream_events(client: anthropic.Anthropic, spans: InMemorySpanExporter) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    text = "".join(e.delta.text for e in stream if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == "Sunny in Paris."
    attrs = only_llm_span(spans).attributes
    assert attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("end_turn",) and attrs[sc.COST_STATUS] == "priced"


async def test_async_create_and_stream(aclient: anthropic.AsyncAnthropic, spans: InMemorySpanExporter) -> None:
    message = await aclient.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    async with aclient.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        text = "".join([piece async for piece in stream.text_stream])
    assert text == message.content[0].text
    plain, streamed = llm_spans(spans)
    assert plain.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == streamed.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 12


def test_beta_messages_and_raw_responses(client: anthropic.Anthropic, spans: InMemorySpanExporter) -> None:
    client.beta.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert raw.parse().content[0].text == "Sunny in Paris."
    beta, raw_span = llm_spans(spans)
    assert beta.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 33
    assert raw_span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 33
    client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert len(llm_spans(spans)) == 2  # counting tokens is not an LLM call


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [(429, anthropic.RateLimitError, "RateLimitError"), (500, anthropic.InternalServerError, "InternalServerError"),
     (529, anthropic.OverloadedError, "OverloadedError")],
)  # fmt: skip
def test_api_errors_reach_the_caller_and_mark_the_span(
    client: anthropic.Anthropic, server: FakeAnthropicServer, spans: InMemorySpanExporter, status: int, error: type, error_type: str
) -> None:
    server.fail_next(status, retry_after=0.01)
    with pytest.raises(error):
        client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    span = only_llm_span(spans)
    assert span.status.status_code.name == "ERROR" and span.attributes[sc.ERROR_TYPE] == error_type


def test_timeouts_and_mid_stream_errors(client: anthropic.Anthropic, server: FakeAnthropicServer, spans: InMemorySpanExporter) -> None:
    server.delay_next(2.0)
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, timeout=0.2)
    server.fail_stream_next("overloaded_error")
    with pytest.raises(anthropic.APIStatusError):
        for _ in client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, stream=True):
            pass
    timed_out, broken_stream = llm_spans(spans)
    assert timed_out.attributes[sc.ERROR_TYPE] == "APITimeoutError"
    assert broken_stream.status.status_code.name == "ERROR"


def test_content_capture(client: anthropic.Anthropic, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, system="Be brief.")
    attrs = only_llm_span(spans).attributes
    assert json.loads(attrs[sc.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is the weather in Paris?"}]}
    ]
    assert json.loads(attrs[sc.GEN_AI_SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attrs[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"] == [{"type": "text", "content": "Sunny in Paris."}]


def test_uninstrument_brings_back_the_sdks_own_span(server: FakeAnthropicServer, spans: InMemorySpanExporter) -> None:
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument()
    instrumentor.uninstrument()
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as plain:
        plain.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    (span,) = llm_spans(spans)
    assert span.name == "anthropic.messages.create" and span.instrumentation_scope.name != "otelkit"


def test_a_failing_instrumentor_never_breaks_the_call(
    client: anthropic.Anthropic, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("instrumentor bug")

    monkeypatch.setattr(anthropic_instrumentation, "_describe", broken)
    assert client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES).content[0].text == "Sunny in Paris."
    assert [s.name for s in llm_spans(spans)] == ["anthropic.messages.create"]  # the SDK's own span, untouched
