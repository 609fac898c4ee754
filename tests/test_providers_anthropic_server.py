"""The fake Anthropic server answers the way the real `anthropic` client expects, sync and async.

Instrumentation tests trust this server to stand in for the API, so these checks run the real client through
every path they rely on: plain and streamed messages, the stream helper, tool use, errors and timeouts.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import anthropic
import pytest

from providers.anthropic_server import FakeAnthropicServer, FakeUsage, ToolCall

MODEL = "claude-test-model"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "Say hello"}]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(reply_text="Hello there, tester!") as fake:
        yield fake


@pytest.fixture
def client(server: FakeAnthropicServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as sync_client:
        yield sync_client


@pytest.fixture
async def async_client(server: FakeAnthropicServer) -> Any:
    async with anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0) as aclient:
        yield aclient


def test_base_url_and_lifecycle() -> None:
    fake = FakeAnthropicServer()
    fake.start()
    assert fake.base_url == f"http://127.0.0.1:{fake.port}"
    fake.stop()
    with pytest.raises(RuntimeError):
        fake.base_url


def test_create_returns_message_with_usage(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert message.id == "msg_fake_0001"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello there, tester!"  # type: ignore[union-attr]
    assert message.usage.input_tokens == 25
    assert message.usage.output_tokens == 12
    assert message.usage.cache_read_input_tokens == 5
    assert message.usage.cache_creation_input_tokens == 3


def test_requests_are_recorded(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, system="Be brief")

    request = server.last_request
    assert (request.method, request.path, request.query) == ("POST", "/v1/messages", "")
    assert request.headers["authorization"] == "Bearer test"
    assert request.body == {"max_tokens": 64, "messages": MESSAGES, "model": MODEL, "system": "Be brief"}
    server.reset()
    assert server.requests == []


def test_configured_usage_and_stop_reason(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.usage = FakeUsage(
        input_tokens=100, output_tokens=7, cache_read_input_tokens=0, cache_creation_input_tokens=0
    )
    server.stop_reason = "max_tokens"

    message = client.messages.create(model=MODEL, max_tokens=7, messages=MESSAGES)

    assert (message.usage.input_tokens, message.usage.output_tokens) == (100, 7)
    assert message.stop_reason == "max_tokens"


def test_create_stream_yields_real_event_sequence(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.Stream)
    events = list(stream)

    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    start, delta = events[0], events[-2]
    assert start.message.model == MODEL  # type: ignore[union-attr]
    assert start.message.usage.input_tokens == 25  # type: ignore[union-attr]
    assert start.message.usage.cache_read_input_tokens == 5  # type: ignore[union-attr]
    assert delta.usage.output_tokens == 12  # type: ignore[union-attr]
    assert delta.delta.stop_reason == "end_turn"  # type: ignore[union-attr]
    deltas = [event.delta for event in events if event.type == "content_block_delta"]
    assert "".join(delta.text for delta in deltas) == "Hello there, tester!"  # type: ignore[union-attr]


def test_stream_helper(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "Hello there, tester!"
        message = stream.get_final_message()

    assert message.model == MODEL
    assert message.usage.output_tokens == 12
    assert message.usage.input_tokens == 25
    assert server.last_request.body["stream"] is True


def test_tool_use(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.tool_call = ToolCall("get_weather", {"city": "Paris", "days": [1, 2]})

    message = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, tools=[WEATHER_TOOL])

    assert message.stop_reason == "tool_use"
    tool_use = message.content[-1]
    assert tool_use.type == "tool_use"
    assert (tool_use.id, tool_use.name) == ("toolu_fake_0001", "get_weather")
    assert tool_use.input == {"city": "Paris", "days": [1, 2]}


def test_tool_use_streamed_as_input_json_delta(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.reply_text = ""
    server.tool_call = ToolCall("get_weather", {"city": "Paris"}, id="toolu_given")

    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, tools=[WEATHER_TOOL], stream=True)
    events = list(stream)
    deltas = [event.delta for event in events if event.type == "content_block_delta"]
    assert {delta.type for delta in deltas} == {"input_json_delta"}

    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES, tools=[WEATHER_TOOL]) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert [(block.type, block.id, block.input) for block in message.content] == [  # type: ignore[union-attr]
        ("tool_use", "toolu_given", {"city": "Paris"})
    ]


def test_rate_limit(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.fail_next(429, retry_after=7)

    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert caught.value.request_id == "req_fake_0001"
    assert client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES).id == "msg_fake_0002"


def test_server_errors(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.fail_next(500)
    with pytest.raises(anthropic.InternalServerError) as internal:
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert internal.value.body["error"]["type"] == "api_error"  # type: ignore[index]

    server.fail_next(529)
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)


def test_retries_through_queued_failures(server: FakeAnthropicServer) -> None:
    server.fail_next(429, times=2, retry_after=0.01)
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=2) as retrying:
        message = retrying.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert message.id == "msg_fake_0003"
    assert [request.headers["x-stainless-retry-count"] for request in server.requests] == ["0", "1", "2"]


def test_error_event_mid_stream(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.fail_stream_next("overloaded_error")

    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            stream.get_final_message()


def test_delay_trips_client_timeout(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    server.delay_next(5)
    started = time.monotonic()

    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, timeout=0.3)

    assert time.monotonic() - started < 2
    assert client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES).id == "msg_fake_0002"


def test_beta_messages_and_count_tokens(server: FakeAnthropicServer, client: anthropic.Anthropic) -> None:
    message = client.beta.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, betas=["test-beta-2026"])
    assert isinstance(message, anthropic.types.beta.BetaMessage)
    assert message.model == MODEL
    assert server.last_request.path == "/v1/messages"
    assert server.last_request.headers["anthropic-beta"] == "test-beta-2026"

    assert client.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens == 25


async def test_async_create(server: FakeAnthropicServer, async_client: anthropic.AsyncAnthropic) -> None:
    message = await async_client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    assert (message.model, message.usage.output_tokens) == (MODEL, 12)

    stream = await async_client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.AsyncStream)
    types = [event.type async for event in stream]
    assert types[0] == "message_start" and types[-1] == "message_stop"


async def test_async_stream_helper(server: FakeAnthropicServer, async_client: anthropic.AsyncAnthropic) -> None:
    async with async_client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        message = await stream.get_final_message()

    assert text == "Hello there, tester!"
    assert message.usage.cache_creation_input_tokens == 3


async def test_async_tool_use_stream(server: FakeAnthropicServer, async_client: anthropic.AsyncAnthropic) -> None:
    server.tool_call = ToolCall("get_weather", {"city": "Oslo"})

    manager = async_client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES, tools=[WEATHER_TOOL])
    async with manager as stream:
        message = await stream.get_final_message()

    assert message.stop_reason == "tool_use"
    assert message.content[-1].input == {"city": "Oslo"}  # type: ignore[union-attr]


async def test_async_errors_and_timeout(server: FakeAnthropicServer, async_client: anthropic.AsyncAnthropic) -> None:
    server.fail_next(429)
    with pytest.raises(anthropic.RateLimitError):
        await async_client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    server.fail_next(500)
    with pytest.raises(anthropic.InternalServerError):
        await async_client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    server.delay_next(5)
    with pytest.raises(anthropic.APITimeoutError):
        await async_client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, timeout=0.3)
