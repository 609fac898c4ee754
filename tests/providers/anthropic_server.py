"""A local fake of the Anthropic Messages API, for testing instrumentation against the real `anthropic` client.

Tests need the SDK's own request, retry, streaming and error paths to run unchanged, so this serves real HTTP on
127.0.0.1 rather than patching the client. Replies are deterministic: the model is echoed from the request, the
text, tool call and usage come from the server's configuration, and ids count up per request. What a request meets
(an error status, a delay, a stream cut short by an error event) is queued per test with `fail_next`, `delay_next`
and `fail_stream_next`, and every request is recorded for the test to read back.

Usage::

    with FakeAnthropicServer(reply_text="Hi there") as server:
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)
        server.fail_next(429)
        ...
        assert server.requests[-1].body["model"] == "claude-test"
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import urlsplit

__all__ = ["FakeAnthropicServer", "FakeUsage", "RecordedRequest", "ToolCall", "ERROR_TYPES"]

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""The `error.type` the real API puts in the body of each status, which the SDK reports as `error.type`."""

_DEFAULT_ERROR_MESSAGES: dict[str, str] = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
}


@dataclass(frozen=True)
class ToolCall:
    """The tool call the fake model makes. `id` defaults to one derived from the request's sequence number."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class FakeUsage:
    """The token counts of every reply. Non-zero cache counts, so that tests see each field reported."""

    input_tokens: int = 25
    output_tokens: int = 12
    cache_read_input_tokens: int = 5
    cache_creation_input_tokens: int = 3

    def as_dict(self, *, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
        }


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it. Header names are lowercase; `body` is the decoded JSON or `None`."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class _Plan:
    """What one queued request meets: a delay before answering, then an error status or a stream error event."""

    delay: float = 0.0
    status: int | None = None
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    stream_error: bool = False


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}


def _text_pieces(text: str) -> list[str]:
    """The text split the way a model streams it: one word and its trailing space per delta."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _json_pieces(value: dict[str, Any], size: int = 8) -> list[str]:
    """Tool input as `input_json_delta` fragments. The real API starts with an empty fragment."""
    text = json.dumps(value, separators=(",", ":"))
    return [""] + [text[i : i + size] for i in range(0, len(text), size)]


class _HTTPServer(ThreadingHTTPServer):
    """Carries the `FakeAnthropicServer` to its handlers. Handler threads never hold up `stop()`."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: FakeAnthropicServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    """Answers one request per connection, so a client timeout or a stopped server leaves no connection behind."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        """Send small writes at once: with Nagle's algorithm a body written after its headers
        waits for the client's delayed ACK, and every call would take ~40 ms."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: test output should show only what the tests print."""

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        url = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query=url.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            self.server.fake._respond(self, request)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client gave up first, as a client timeout does.
            pass
        self.close_connection = True

    def send_json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def start_events(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def send_event(self, event: str, data: dict[str, Any]) -> None:
        chunk = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()

    def end_events(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeAnthropicServer:
    """A fake Anthropic API on 127.0.0.1 at a free port; `start()`/`stop()` or use it as a context manager.

    Attributes may be changed between requests: `reply_text`, `tool_call` (made on every reply while set, with
    `stop_reason` "tool_use"), `usage`, `stop_reason` (to force one, e.g. "max_tokens") and `event_delay`
    (seconds between streamed events, to give time-to-first-token a measurable value).
    """

    def __init__(
        self,
        *,
        reply_text: str = "Hello from the fake Anthropic server.",
        tool_call: ToolCall | None = None,
        usage: FakeUsage | None = None,
        stop_reason: str | None = None,
        event_delay: float = 0.0,
    ) -> None:
        self.reply_text = reply_text
        self.tool_call = tool_call
        self.usage = usage or FakeUsage()
        self.stop_reason = stop_reason
        self.event_delay = event_delay
        self._lock = threading.Lock()
        self._plans: deque[_Plan] = deque()
        self._requests: list[RecordedRequest] = []
        self._sequence = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeAnthropicServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving. Requests still sleeping in a delay wake and answer at once."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeAnthropicServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the fake Anthropic server is not started")
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self._requests[-1]

    def reset(self) -> None:
        """Forgets recorded requests and queued behaviour, keeping the reply configuration."""
        with self._lock:
            self._requests.clear()
            self._plans.clear()

    def fail_next(
        self,
        status: int = 429,
        *,
        times: int = 1,
        error_type: str | None = None,
        message: str | None = None,
        retry_after: float | None = 1,
        delay: float = 0.0,
    ) -> None:
        """Makes the next `times` requests answer `status` with the API's error body.

        `retry-after` (seconds) is sent on 429 and 529 unless `retry_after` is None; the SDK waits that long before
        a retry, so tests that let it retry should pass a small value.
        """
        plan = _Plan(
            delay=delay,
            status=status,
            error_type=error_type or ERROR_TYPES.get(status, "api_error"),
            message=message,
            retry_after=retry_after if status in (429, 529) else None,
        )
        self._queue(plan, times)

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Makes the next `times` requests wait `seconds` before answering normally, to trip client timeouts."""
        self._queue(_Plan(delay=seconds), times)

    def fail_stream_next(self, error_type: str = "overloaded_error", *, message: str | None = None) -> None:
        """Makes the next streamed reply send an `error` event after its first delta, as the API does mid-stream.

        A non-streaming request that meets this plan answers normally.
        """
        self._queue(_Plan(stream_error=True, error_type=error_type, message=message), 1)

    def _queue(self, plan: _Plan, times: int) -> None:
        with self._lock:
            self._plans.extend([plan] * times)

    def _respond(self, handler: _Handler, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._sequence += 1
            sequence = self._sequence
            plan = self._plans.popleft() if self._plans else _Plan()
        request_id = f"req_fake_{sequence:04d}"
        headers = {"request-id": request_id, "anthropic-organization-id": "org_fake"}

        if plan.delay:
            self._stopping.wait(plan.delay)
        if plan.status is not None:
            error_type = plan.error_type or "api_error"
            message = plan.message or _DEFAULT_ERROR_MESSAGES.get(error_type, error_type)
            if plan.retry_after is not None:
                headers["retry-after"] = f"{plan.retry_after:g}"
            handler.send_json(plan.status, _error_body(error_type, message, request_id), headers)
            return

        if request.method != "POST" or request.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            body = _error_body("not_found_error", f"Not found: {request.method} {request.path}", request_id)
            handler.send_json(404, body, headers)
            return
        if request.path == "/v1/messages/count_tokens":
            handler.send_json(200, {"input_tokens": self.usage.input_tokens}, headers)
            return

        body = request.body if isinstance(request.body, dict) else {}
        message = self._message(body, sequence)
        if body.get("stream") is True:
            handler.start_events(headers)
            for event, data in self._events(message, plan, request_id):
                handler.send_event(event, data)
                if self.event_delay:
                    self._stopping.wait(self.event_delay)
            handler.end_events()
        else:
            handler.send_json(200, message, headers)

    def _message(self, body: dict[str, Any], sequence: int) -> dict[str, Any]:
        """The complete Message the request gets, from the configuration and the request's model."""
        content: list[dict[str, Any]] = []
        if self.reply_text:
            content.append({"type": "text", "text": self.reply_text})
        tool = self.tool_call
        if tool is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": tool.id or f"toolu_fake_{sequence:04d}",
                    "name": tool.name,
                    "input": tool.input,
                }
            )
        stop_reason = self.stop_reason or ("tool_use" if tool is not None else "end_turn")
        usage = {**self.usage.as_dict(), "service_tier": "standard"}
        return {
            "id": f"msg_fake_{sequence:04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    def _events(self, message: dict[str, Any], plan: _Plan, request_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The events of the reply; a `stream_error` plan cuts them after the first delta with an `error` event."""
        for event, data in self._message_events(message):
            yield event, data
            if plan.stream_error and event == "content_block_delta":
                error_type = plan.error_type or "overloaded_error"
                text = plan.message or _DEFAULT_ERROR_MESSAGES.get(error_type, error_type)
                yield "error", _error_body(error_type, text, request_id)
                return

    def _message_events(self, message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        """The real event sequence for `message`: usage in `message_start`, final counts in `message_delta`."""
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**message["usage"], "output_tokens": 1},
        }
        yield "message_start", {"type": "message_start", "message": start}
        yield "ping", {"type": "ping"}
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                opening: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in _text_pieces(block["text"])]
            else:
                opening = {**block, "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in _json_pieces(block["input"])]
            yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": opening}
            for delta in deltas:
                yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
        yield "message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": self.usage.as_dict(),
        }
        yield "message_stop", {"type": "message_stop"}
