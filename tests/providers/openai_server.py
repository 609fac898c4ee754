"""A local fake of the OpenAI HTTP API, for testing instrumentation against the real ``openai`` client.

Standard library only. It speaks the wire format the SDK parses (JSON bodies, SSE streams in
chunked transfer encoding, error bodies and rate-limit headers), so tests exercise the SDK's own
parsing, streaming and retry code rather than mocks of it. Replies are deterministic: the model
is echoed (or replaced by ``response_model``), the text is ``reply_text``, token counts come from
``usage``, and tool calls come from ``tool_calls`` when the request offers tools.

Typical use::

    with FakeOpenAIServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        server.fail_next(429)
        ...
        assert server.requests[-1].body["model"] == "gpt-4o"
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

__all__ = ["FakeOpenAIServer", "FakeToolCall", "FakeUsage", "RecordedRequest", "embedding_for"]

CREATED = 1_700_000_000  # fixed so that whole responses are reproducible
SYSTEM_FINGERPRINT = "fp_fake"
EMBEDDING_DIMENSIONS = 8

ERROR_BODIES: dict[int, dict[str, Any]] = {
    400: {"message": "Invalid request.", "type": "invalid_request_error", "param": None, "code": None},
    401: {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": None,
          "code": "invalid_api_key"},
    404: {"message": "Unknown request URL.", "type": "invalid_request_error", "param": None,
          "code": "unknown_url"},
    429: {"message": "Rate limit reached for requests. Please try again later.", "type": "requests",
          "param": None, "code": "rate_limit_exceeded"},
    500: {"message": "The server had an error while processing your request. Sorry about that!",
          "type": "server_error", "param": None, "code": None},
    503: {"message": "The engine is currently overloaded, please try again later.", "type": "server_error",
          "param": None, "code": None},
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as received, so tests can check what the client actually sent."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # decoded JSON, or None when the body was empty or not JSON


@dataclass
class FakeToolCall:
    """A tool call the fake model makes when the request offers tools."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str = "call_fake_0"

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class FakeUsage:
    """Token counts reported for every generation (per choice for completion tokens)."""

    prompt_tokens: int = 12
    completion_tokens: int = 8
    cached_tokens: int = 4
    reasoning_tokens: int = 2


@dataclass
class _Fault:
    status: int | None  # None: answer normally (after the delay)
    delay: float
    retry_after: float | None


class FakeOpenAIServer:
    """Fake OpenAI API on 127.0.0.1; start()/stop() or use as a context manager.

    Attributes set between requests change later replies; ``reset()`` restores the defaults so one
    server can be shared by many tests.
    """

    def __init__(self, reply_text: str = "Hello from the fake model.") -> None:
        self._default_reply = reply_text
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget requests and pending faults and restore the default replies."""
        with self._lock:
            self.reply_text = self._default_reply
            self.response_model: str | None = None
            self.tool_calls: list[FakeToolCall] = []
            self.usage = FakeUsage()
            self.stream_chunk_delay = 0.0
            self._faults: list[_Fault] = []
            self._requests: list[RecordedRequest] = []
            self._counter = 0

    # Lifecycle

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections, so pooled clients see a dead server."""
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a delay
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # Per-test control

    def fail_next(self, status: int = 429, *, times: int = 1, retry_after: float | None = 0.01) -> None:
        """Answer the next ``times`` requests with ``status`` and the API's error body.

        ``retry_after`` (seconds) is sent on 429s as the ``retry-after`` header; the real API sends
        whole seconds, the SDK accepts fractions, and a small default keeps retry tests fast.
        """
        with self._lock:
            self._faults.extend(_Fault(status, 0.0, retry_after) for _ in range(times))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` requests ``seconds`` before answering (for client timeouts)."""
        with self._lock:
            self._faults.extend(_Fault(None, seconds, None) for _ in range(times))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> tuple[int, _Fault | None]:
        with self._lock:
            self._requests.append(request)
            self._counter += 1
            return self._counter, (self._faults.pop(0) if self._faults else None)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _HTTPServer(ThreadingHTTPServer):
    """Knows its fake (for the handlers) and its open connections (to cut them on stop)."""

    daemon_threads = True

    def __init__(self, fake: FakeOpenAIServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping connections (timeouts, early stream exits) are expected, not errors."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the reply builders; HTTP/1.1 so the client's connection pool is used."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        """Send small writes at once: with Nagle's algorithm a body written after its headers
        waits for the client's delayed ACK, and every call would take ~40 ms."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        headers = {name.lower(): value for name, value in self.headers.items()}
        number, fault = self.fake._record(RecordedRequest(self.command, path, headers, body))
        try:
            if fault is not None:
                self.fake._sleep(fault.delay)
                if fault.status is not None:
                    self._send_error(fault.status, number, fault.retry_after)
                    return
            self._route(path.removeprefix("/v1"), body if isinstance(body, dict) else {}, number)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _route(self, path: str, body: dict[str, Any], number: int) -> None:
        fake = self.fake
        if self.command == "POST" and path == "/chat/completions":
            if body.get("stream"):
                self._send_sse(number, ((None, chunk) for chunk in _chat_chunks(fake, body, number)))
            else:
                self._send_json(_chat_completion(fake, body, number), number)
        elif self.command == "POST" and path == "/responses":
            if body.get("stream"):
                self._send_sse(number, ((event["type"], event) for event in _response_events(fake, body, number)),
                               done_marker=False)
            else:
                self._send_json(_response(fake, body, number), number)
        elif self.command == "POST" and path == "/embeddings":
            self._send_json(_embeddings(fake, body), number)
        else:
            self._send_error(404, number, None)

    def _common_headers(self, number: int) -> None:
        self.send_header("x-request-id", f"req_fake_{number}")
        self.send_header("openai-processing-ms", "1")

    def _send_json(self, payload: dict[str, Any], number: int, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self._common_headers(number)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, number: int, retry_after: float | None) -> None:
        error = ERROR_BODIES.get(status, {"message": f"Error {status}.", "type": "server_error", "param": None,
                                          "code": None})
        data = json.dumps({"error": error}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self._common_headers(number)
        if status == 429 and retry_after is not None:
            self.send_header("retry-after", f"{retry_after:g}")
            self.send_header("x-ratelimit-remaining-requests", "0")
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, number: int, events: Iterator[tuple[str | None, dict[str, Any]]], *,
                  done_marker: bool = True) -> None:
        """Chat streams end with ``data: [DONE]``; Responses streams name each event and have no marker."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self._common_headers(number)
        self.end_headers()
        for name, payload in events:
            prefix = f"event: {name}\n" if name else ""
            self._write_chunk(f"{prefix}data: {json.dumps(payload)}\n\n".encode())
            self.fake._sleep(self.fake.stream_chunk_delay)
        if done_marker:
            self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


# Reply builders: pure functions of the server settings and the request body.


def _words(text: str) -> list[str]:
    """Stream pieces, each word with its trailing space, so the pieces join back to the text."""
    return re.findall(r"\S+\s*", text) or [text]


def _limited_reply(fake: FakeOpenAIServer, limit: Any) -> tuple[str, bool]:
    """Cut the reply to ``limit`` words (one word = one token here); True when it was cut."""
    words = _words(fake.reply_text)
    if isinstance(limit, int) and 0 < limit < len(words):
        return "".join(words[:limit]).rstrip(), True
    return fake.reply_text, False


def _model(fake: FakeOpenAIServer, body: dict[str, Any]) -> str:
    return fake.response_model or str(body.get("model", "unknown-model"))


def _chat_wants_tools(fake: FakeOpenAIServer, body: dict[str, Any]) -> bool:
    """Call tools when offered, unless the last message already carries a tool result (agent loop)."""
    messages = body.get("messages") or []
    answered = bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool"
    return bool(fake.tool_calls and body.get("tools")) and not answered


def _chat_usage(fake: FakeOpenAIServer, choices: int) -> dict[str, Any]:
    u = fake.usage
    completion = u.completion_tokens * choices
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": u.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _chat_completion(fake: FakeOpenAIServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    n = int(body.get("n") or 1)
    tools = _chat_wants_tools(fake, body)
    text, cut = _limited_reply(fake, body.get("max_completion_tokens", body.get("max_tokens")))
    choices = []
    for index in range(n):
        message: dict[str, Any] = {"role": "assistant", "content": None if tools else text, "refusal": None,
                                   "annotations": []}
        if tools:
            message["tool_calls"] = [
                {"id": call.call_id, "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments_json}}
                for call in fake.tool_calls
            ]
        finish = "tool_calls" if tools else "length" if cut else "stop"
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": finish})
    return {
        "id": f"chatcmpl-fake-{number}", "object": "chat.completion", "created": CREATED,
        "model": _model(fake, body), "choices": choices, "usage": _chat_usage(fake, n),
        "service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _chat_chunks(fake: FakeOpenAIServer, body: dict[str, Any], number: int) -> Iterator[dict[str, Any]]:
    """Chunks as the API sends them; usage only in a final, choice-less chunk when include_usage is set."""
    n = int(body.get("n") or 1)
    tools = _chat_wants_tools(fake, body)
    text, cut = _limited_reply(fake, body.get("max_completion_tokens", body.get("max_tokens")))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    base = {"id": f"chatcmpl-fake-{number}", "object": "chat.completion.chunk", "created": CREATED,
            "model": _model(fake, body), "service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        payload = {**base, "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            payload["usage"] = None
        return payload

    for index in range(n):
        if tools:
            for position, call in enumerate(fake.tool_calls):
                opening: dict[str, Any] = {"tool_calls": [{"index": position, "id": call.call_id, "type": "function",
                                                           "function": {"name": call.name, "arguments": ""}}]}
                if position == 0:
                    opening = {"role": "assistant", "content": None, "refusal": None, **opening}
                yield chunk(index, opening)
                arguments = call.arguments_json
                for start in range(0, len(arguments), 8):
                    yield chunk(index, {"tool_calls": [
                        {"index": position, "function": {"arguments": arguments[start:start + 8]}}]})
            yield chunk(index, {}, "tool_calls")
        else:
            yield chunk(index, {"role": "assistant", "content": "", "refusal": None})
            for piece in _words(text):
                yield chunk(index, {"content": piece})
            yield chunk(index, {}, "length" if cut else "stop")
    if include_usage:
        yield {**base, "choices": [], "usage": _chat_usage(fake, n)}


def _responses_wants_tools(fake: FakeOpenAIServer, body: dict[str, Any]) -> bool:
    """Call tools when offered, unless the input ends with a function result (agent loop)."""
    items = body.get("input")
    answered = (isinstance(items, list) and bool(items) and isinstance(items[-1], dict)
                and items[-1].get("type") == "function_call_output")
    return bool(fake.tool_calls and body.get("tools")) and not answered


def _response_usage(fake: FakeOpenAIServer) -> dict[str, Any]:
    u = fake.usage
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    }


def _response_items(fake: FakeOpenAIServer, body: dict[str, Any], number: int) -> tuple[list[dict[str, Any]], bool]:
    """The completed output items, and whether max_output_tokens cut the text."""
    if _responses_wants_tools(fake, body):
        return [{"id": f"fc_fake_{number}_{i}", "type": "function_call", "status": "completed",
                 "call_id": call.call_id, "name": call.name, "arguments": call.arguments_json}
                for i, call in enumerate(fake.tool_calls)], False
    text, cut = _limited_reply(fake, body.get("max_output_tokens"))
    message = {"id": f"msg_fake_{number}", "type": "message", "role": "assistant",
               "status": "incomplete" if cut else "completed",
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
    return [message], cut


def _response_object(fake: FakeOpenAIServer, body: dict[str, Any], number: int, output: list[dict[str, Any]],
                     status: str, cut: bool) -> dict[str, Any]:
    done = status != "in_progress"
    return {
        "id": f"resp_fake_{number}", "object": "response", "created_at": CREATED, "status": status,
        "completed_at": CREATED + 1 if status == "completed" else None, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut and done else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": _model(fake, body), "output": output, "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
        "service_tier": "default", "store": True, "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}}, "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "usage": _response_usage(fake) if done else None, "user": None, "metadata": body.get("metadata") or {},
    }


def _response(fake: FakeOpenAIServer, body: dict[str, Any], number: int) -> dict[str, Any]:
    output, cut = _response_items(fake, body, number)
    return _response_object(fake, body, number, output, "incomplete" if cut else "completed", cut)


def _response_events(fake: FakeOpenAIServer, body: dict[str, Any], number: int) -> Iterator[dict[str, Any]]:
    """The event sequence of a streamed response, each with its ``type`` and ``sequence_number``."""
    output, cut = _response_items(fake, body, number)
    events: list[dict[str, Any]] = []

    def emit(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    start = _response_object(fake, body, number, [], "in_progress", cut)
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    for position, item in enumerate(output):
        ids = {"item_id": item["id"], "output_index": position}
        if item["type"] == "function_call":
            emit("response.output_item.added", output_index=position,
                 item={**item, "status": "in_progress", "arguments": ""})
            arguments = item["arguments"]
            for begin in range(0, len(arguments), 8):
                emit("response.function_call_arguments.delta", **ids, delta=arguments[begin:begin + 8])
            emit("response.function_call_arguments.done", **ids, arguments=arguments, name=item["name"])
        else:
            part = item["content"][0]
            emit("response.output_item.added", output_index=position,
                 item={**item, "status": "in_progress", "content": []})
            emit("response.content_part.added", **ids, content_index=0, part={**part, "text": ""})
            for piece in _words(part["text"]):
                emit("response.output_text.delta", **ids, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", **ids, content_index=0, text=part["text"], logprobs=[])
            emit("response.content_part.done", **ids, content_index=0, part=part)
        emit("response.output_item.done", output_index=position, item=item)
    final = "incomplete" if cut else "completed"
    emit(f"response.{final}", response=_response_object(fake, body, number, output, final, cut))
    return iter(events)


def embedding_for(item: str | list[int], dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The vector the fake returns for one input: floats in [0, 1) from its SHA-256, exact in float32."""
    text = item if isinstance(item, str) else json.dumps(item)
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[i % len(digest)] / 256 for i in range(dimensions)]


def _embeddings(fake: FakeOpenAIServer, body: dict[str, Any]) -> dict[str, Any]:
    """Vectors per input; base64 little-endian float32 unless ``encoding_format`` is float (the SDK asks base64)."""
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
    dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
    data = []
    for index, item in enumerate(items):
        vector = embedding_for(item, dimensions)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = fake.usage.prompt_tokens
    return {"object": "list", "data": data, "model": _model(fake, body),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
