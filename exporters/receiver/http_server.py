"""OTLP/HTTP: ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` in binary protobuf or JSON,
optionally gzipped; ``GET /health`` and ``GET /metrics`` (Prometheus text) beside them.

Every error answers with a ``google.rpc.Status`` body in the request's encoding and the status
code the OTLP specification names: 400 undecodable, 401 bad or missing token, 404 no such
path, 405 wrong method, 411 no length, 413 over the size limit (after decompression), 415
unsupported content type or encoding, 503 with ``Retry-After`` when the store cannot commit
now. 200 means the rows are committed.
"""

from __future__ import annotations

import logging
import ssl
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from otelkit.exporters.receiver.auth import Tokens
from otelkit.exporters.receiver.convert import decode_json
from otelkit.exporters.receiver.messages import CODES, REQUESTS, status, success
from otelkit.exporters.receiver.service import RETRY_AFTER_S, ReceiverService

_log = logging.getLogger(__name__)

ROUTES = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MAX_CONCURRENT_REQUESTS = 64  # beyond it, 503 at once: request bodies in memory stay bounded
DEFAULT_MAX_BODY = 20 * 1024 * 1024  # after decompression, as the Collector's OTLP receiver
_READ_CHUNK = 1 << 16


class BodyTooLarge(Exception):
    """The body (after decompression) is over the limit."""


class BadBody(Exception):
    """The body cannot be read or decompressed; the message is one line."""


def gunzip(data: bytes, limit: int) -> bytes:
    """``data`` decompressed, or :class:`BodyTooLarge` as soon as the output passes ``limit``:
    a gzip bomb costs at most ``limit`` bytes of memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    parts: list[bytes] = []
    size = 0
    pending = data
    try:
        while pending:
            chunk = inflater.decompress(pending, limit + 1 - size)
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            parts.append(chunk)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
            if not chunk and not pending:
                break
        if not inflater.eof:
            raise BadBody("the gzip body is truncated")
    except zlib.error as exc:
        raise BadBody(f"the body is not valid gzip: {exc}") from None
    return b"".join(parts)


class ReceiverHTTPServer(ThreadingHTTPServer):
    """The HTTP front end of one :class:`ReceiverService`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        service: ReceiverService,
        tokens: Tokens,
        max_body: int = DEFAULT_MAX_BODY,
        ssl_context: ssl.SSLContext | None = None,
        metrics_text: Callable[[], str] | None = None,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.tokens = tokens
        self.max_body = max_body
        self.metrics_text = metrics_text or (lambda: "")
        self.healthy = healthy or (lambda: True)
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A broken connection or TLS handshake is the client's problem: one line, no traceback."""
        _log.debug("otelkit serve: connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: ReceiverHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "otelkit"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Requests are counted on /metrics, not logged: a log line could carry a header."""

    # --- answers -------------------------------------------------------------------------------
    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _message(self, code: int, message: Message, as_json: bool, headers: dict[str, str] | None = None) -> None:
        if as_json:
            body = json_format.MessageToJson(message, indent=None).encode()
            self._send(code, body, JSON, headers)
        else:
            self._send(code, message.SerializeToString(), PROTOBUF, headers)

    def _error(self, http_code: int, rpc_code: int, text: str, as_json: bool = False, *,
               retry: bool = False, close: bool = False, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        if close:
            self.close_connection = True
        extra = dict(headers or {})
        if retry:
            extra["Retry-After"] = str(RETRY_AFTER_S)
        self._message(http_code, status(rpc_code, text, RETRY_AFTER_S if retry else None), as_json, extra)

    # --- methods -------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        if not self.server.slots.acquire(blocking=False):
            self._error(503, CODES.UNAVAILABLE, f"over {MAX_CONCURRENT_REQUESTS} requests in progress", retry=True,
                        close=True)  # fmt: skip
            return
        try:
            self._post()
        finally:
            self.server.slots.release()

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        signal = ROUTES.get(path)
        if signal is None:
            self._error(404, CODES.NOT_FOUND, f"no OTLP endpoint at {path}: use /v1/traces, /v1/metrics or /v1/logs",
                        close=True)  # fmt: skip
            return
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        as_json = content_type == JSON
        if not self.server.tokens.allows(self.headers.get("Authorization")):
            self._error(401, CODES.UNAUTHENTICATED, "a valid bearer token is required", as_json, close=True,
                        headers={"WWW-Authenticate": 'Bearer realm="otelkit"'})  # fmt: skip
            return
        if content_type not in (PROTOBUF, JSON):
            self._error(415, CODES.INVALID_ARGUMENT,
                        f"unsupported Content-Type {content_type or '(none)'!r}: use {PROTOBUF} or {JSON}", close=True)  # fmt: skip
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("gzip", "identity"):
            self._error(415, CODES.INVALID_ARGUMENT, f"unsupported Content-Encoding {encoding!r}: use gzip or none",
                        as_json, close=True)  # fmt: skip
            return
        try:
            body = self._read_body()
            if encoding == "gzip":
                body = gunzip(body, self.server.max_body)
        except BodyTooLarge:
            self._error(413, CODES.RESOURCE_EXHAUSTED,
                        f"the request body is over the {self.server.max_body:,}-byte limit", as_json, close=True)  # fmt: skip
            return
        except BadBody as exc:
            self._error(400, CODES.INVALID_ARGUMENT, str(exc), as_json, close=True)
            return
        try:
            request = decode_json(signal, body) if as_json else _decode_protobuf(signal, body)
        except ValueError as exc:
            self._error(400, CODES.INVALID_ARGUMENT, str(exc), as_json)
            return
        outcome = self.server.service.export(signal, request, None if as_json else body)
        if outcome.stored:
            self._message(200, success(signal, outcome.rejected, outcome.message), as_json)
        else:
            self._error(503, CODES.UNAVAILABLE, outcome.message, as_json, retry=True)

    def _read_body(self) -> bytes:
        limit = self.server.max_body
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise BadBody("the request has neither Content-Length nor chunked Transfer-Encoding")
        try:
            length = int(length_text)
        except ValueError:
            raise BadBody(f"Content-Length {length_text!r} is not a number") from None
        if length < 0:
            raise BadBody(f"Content-Length {length} is negative")
        if length > limit:
            raise BodyTooLarge
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadBody(f"the body ended after {len(body):,} of {length:,} bytes")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                chunk_size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadBody("malformed chunked body") from None
            if chunk_size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            size += chunk_size
            if size > limit:
                raise BodyTooLarge
            data = self.rfile.read(chunk_size)
            if len(data) != chunk_size:
                raise BadBody("the chunked body ended early")
            parts.append(data)
            self.rfile.readline(8)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        if path == "/health":
            healthy = self.server.healthy()
            body = b'{"status":"ok"}' if healthy else b'{"status":"shutting down"}'
            self._send(200 if healthy else 503, body, JSON)
        elif path == "/metrics":
            self._send(200, self.server.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._wrong_method(path)

    def _wrong_method(self, path: str | None = None) -> None:
        path = path or self.path.split("?", 1)[0]
        if path in ROUTES:
            self._error(405, CODES.UNIMPLEMENTED, f"{self.command} is not allowed on {path}: use POST", close=True,
                        headers={"Allow": "POST"})  # fmt: skip
        else:
            self._error(404, CODES.NOT_FOUND, f"no endpoint at {path}", close=True)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _wrong_method  # noqa: N815


def _decode_protobuf(signal: str, body: bytes) -> Message:
    message = REQUESTS[signal]()
    try:
        message.ParseFromString(body)
    except (DecodeError, RuntimeWarning) as exc:
        raise ValueError(f"the body is not a valid {type(message).__name__} in protobuf: {exc}") from None
    return message
