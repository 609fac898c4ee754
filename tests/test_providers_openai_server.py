"""The fake OpenAI server answers the real ``openai`` client the way the API does."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Iterator

import openai
import pytest

from providers.openai_server import FakeOpenAIServer, FakeToolCall, embedding_for

MESSAGES: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
CHAT_TOOLS: Any = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
RESPONSE_TOOLS: Any = [{"type": "function", "name": "get_weather", "strict": False,
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
WEATHER = FakeToolCall("get_weather", {"city": "Paris"}, call_id="call_weather")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FakeOpenAIServer) -> FakeOpenAIServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as sync_client:
        yield sync_client


@pytest.fixture
async def aclient(server: FakeOpenAIServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as async_client:
        yield async_client


# Chat completions


def test_chat_create_echoes_model_and_reports_detailed_usage(server: FakeOpenAIServer,
                                                             client: openai.OpenAI) -> None:
    server.reply_text = "It is sunny."
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, n=2, temperature=0.3)
    assert completion.model == "gpt-4o" and completion.id.startswith("chatcmpl-")
    assert [c.message.content for c in completion.choices] == ["It is sunny.", "It is sunny."]
    assert [c.finish_reason for c in completion.choices] == ["stop", "stop"]
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (12, 16, 28)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 2
    sent = server.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer test"
    assert sent.body == {"model": "gpt-4o", "messages": MESSAGES, "n": 2, "temperature": 0.3}


def test_chat_response_model_and_length_finish(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.response_model = "gpt-4o-2024-08-06"
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=2)
    assert completion.model == "gpt-4o-2024-08-06"
    assert completion.choices[0].message.content == "Hello from"
    assert completion.choices[0].finish_reason == "length"


def test_chat_stream_without_usage_unless_asked(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)
    assert all(chunk.usage is None and chunk.model == "gpt-4o" for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == server.reply_text
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert len({chunk.id for chunk in chunks}) == 1
    assert server.requests[-1].body["stream"] is True


def test_chat_stream_with_usage_ends_with_choiceless_usage_chunk(client: openai.OpenAI) -> None:
    with client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                        stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (12, 8)
    assert last.usage.prompt_tokens_details and last.usage.prompt_tokens_details.cached_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_chat_tool_calls_then_answer_after_tool_result(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.tool_calls = [WEATHER, FakeToolCall("get_time", '{"tz": "CET"}', call_id="call_time")]
    first = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=CHAT_TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [  # type: ignore[union-attr]
        ("call_weather", "get_weather", '{"city": "Paris"}'), ("call_time", "get_time", '{"tz": "CET"}')]
    follow_up = [*MESSAGES, choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": "call_weather", "content": "sunny"}]
    second = client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=CHAT_TOOLS)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content == server.reply_text


def test_chat_stream_tool_call_deltas_accumulate(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.tool_calls = [WEATHER]
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=CHAT_TOOLS, stream=True))
    deltas = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert deltas[0].id == "call_weather" and deltas[0].function and deltas[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas if d.function) == '{"city": "Paris"}'
    assert len(deltas) > 2 and chunks[-1].choices[0].finish_reason == "tool_calls"
    with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES, tools=CHAT_TOOLS) as helper:
        final = helper.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'  # type: ignore[index]


# Responses API


def test_responses_create_text_and_function_call(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-5", input="Hi", instructions="Be brief.")
    assert response.id.startswith("resp_") and response.model == "gpt-5" and response.status == "completed"
    assert response.output_text == server.reply_text
    usage = response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (12, 8, 20)
    assert usage.input_tokens_details.cached_tokens == 4 and usage.output_tokens_details.reasoning_tokens == 2
    assert server.requests[-1].path == "/v1/responses" and server.requests[-1].body["instructions"] == "Be brief."

    server.tool_calls = [WEATHER]
    called = client.responses.create(model="gpt-5", input="Weather?", tools=RESPONSE_TOOLS)
    item = called.output[0]
    assert item.type == "function_call" and (item.call_id, item.name, item.arguments) == (
        "call_weather", "get_weather", '{"city": "Paris"}')
    answered = client.responses.create(model="gpt-5", tools=RESPONSE_TOOLS, input=[
        {"role": "user", "content": "Weather?"}, item.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": "call_weather", "output": "sunny"}])
    assert answered.output_text == server.reply_text


def test_responses_incomplete_on_max_output_tokens(client: openai.OpenAI) -> None:
    response = client.responses.create(model="gpt-5", input="Hi", max_output_tokens=3)
    assert response.status == "incomplete" and response.output_text == "Hello from the"
    assert response.incomplete_details and response.incomplete_details.reason == "max_output_tokens"


def test_responses_stream_events(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    events = list(client.responses.create(model="gpt-5", input="Hi", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == server.reply_text
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    assert completed.response.usage.input_tokens_details.cached_tokens == 4
    assert events[0].type == "response.created" and events[0].response.usage is None


def test_responses_stream_helper_function_call(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.tool_calls = [WEATHER]
    with client.responses.stream(model="gpt-5", input="Weather?", tools=RESPONSE_TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    assert final.output[0].type == "function_call" and final.output[0].arguments == '{"city": "Paris"}'


# Embeddings


def test_embeddings_base64_default_and_float(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert server.requests[-1].body["encoding_format"] == "base64"  # the SDK asks for base64 and decodes it
    assert [d.embedding for d in result.data] == [embedding_for("alpha"), embedding_for("beta")]
    assert result.model == "text-embedding-3-small" and result.usage.prompt_tokens == 12
    floats = client.embeddings.create(model="text-embedding-3-small", input="alpha", encoding_format="float",
                                      dimensions=4)
    assert floats.data[0].embedding == embedding_for("alpha", 4)


# Errors and timing


def test_rate_limit_error_with_body_and_retry_after(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fail_next(429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.status_code == 429 and caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.request_id and caught.value.request_id.startswith("req_fake_")
    assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].finish_reason == "stop"


def test_rate_limit_is_retried_by_the_client(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fail_next(429)
    completion = client.with_options(max_retries=1).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == server.reply_text
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]


def test_server_error(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.fail_next(500)
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model="gpt-5", input="Hi")
    assert caught.value.status_code == 500 and caught.value.type == "server_error"


def test_delay_makes_client_time_out(server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.delay_next(2)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.2)
    assert time.monotonic() - started < 1.5
    assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content


def test_unknown_path_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.list()


def test_stopped_server_refuses_connections() -> None:
    with FakeOpenAIServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client.embeddings.create(model="m", input="x")
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="m", input="x")


# Async client


async def test_async_chat_create_and_stream_with_usage(server: FakeOpenAIServer,
                                                       aclient: openai.AsyncOpenAI) -> None:
    completion = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == server.reply_text
    stream = await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True,
                                                   stream_options={"include_usage": True})
    assert isinstance(stream, openai.AsyncStream)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == server.reply_text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


async def test_async_tool_call_stream_helper(server: FakeOpenAIServer, aclient: openai.AsyncOpenAI) -> None:
    server.tool_calls = [WEATHER]
    async with aclient.chat.completions.stream(model="gpt-4o", messages=MESSAGES, tools=CHAT_TOOLS) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"


async def test_async_responses_and_embeddings(server: FakeOpenAIServer, aclient: openai.AsyncOpenAI) -> None:
    response = await aclient.responses.create(model="gpt-5", input="Hi")
    assert response.output_text == server.reply_text
    async with aclient.responses.stream(model="gpt-5", input="Hi") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[-1] == "response.completed" and final.usage and final.usage.total_tokens == 20
    embeddings = await aclient.embeddings.create(model="text-embedding-3-small", input="alpha")
    assert embeddings.data[0].embedding == embedding_for("alpha")


async def test_async_errors_and_timeout(server: FakeOpenAIServer, aclient: openai.AsyncOpenAI) -> None:
    server.fail_next(429)
    with pytest.raises(openai.RateLimitError):
        await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    server.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        await aclient.embeddings.create(model="text-embedding-3-small", input="alpha")
    server.delay_next(2)
    with pytest.raises(openai.APITimeoutError):
        await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.2)
    assert (await aclient.responses.create(model="gpt-5", input="Hi")).status == "completed"
