"""OTLP/gRPC: the TraceService, MetricsService and LogsService ``Export`` methods.

Requests arrive as raw bytes and are parsed here, so an undecodable body answers
INVALID_ARGUMENT (grpcio's own deserializer would answer INTERNAL). UNAVAILABLE carries a
``google.rpc.Status`` with ``RetryInfo`` in ``grpc-status-details-bin``, as the OTLP exporters
expect; gzip and the message size limit (after decompression) are grpcio's.

Calls beyond what the handler threads can work through are answered UNAVAILABLE with
RetryInfo by :class:`_Admission`, not by grpcio's own ``maximum_concurrent_rpcs``: that one
answers RESOURCE_EXHAUSTED without RetryInfo, which OTLP senders treat as permanent and drop
the data. grpcio's limit stays, far higher, only as a bound on memory in a pathological flood.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent import futures
from typing import Any, Callable

import grpc
from google.protobuf.message import DecodeError

from otelkit.exporters.receiver.auth import Tokens
from otelkit.exporters.receiver.messages import REQUESTS, status, success
from otelkit.exporters.receiver.service import COMMIT_TIMEOUT_S, RETRY_AFTER_S, ReceiverService

SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, retry: bool = False) -> None:
    detail = status(code.value[0], message, RETRY_AFTER_S if retry else None)
    context.set_trailing_metadata((("grpc-status-details-bin", detail.SerializeToString()),))
    context.abort(code, message)


class _Export:
    """The ``Export`` method of one signal's service."""

    def __init__(self, signal: str, service: ReceiverService, tokens: Tokens) -> None:
        self.signal = signal
        self.service = service
        self.tokens = tokens

    def __call__(self, body: bytes, context: grpc.ServicerContext) -> bytes:
        if self.tokens.required:
            metadata = dict(context.invocation_metadata() or ())
            if not self.tokens.allows(metadata.get("authorization")):
                _abort(context, grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required")
        request = REQUESTS[self.signal]()
        try:
            request.ParseFromString(body)
        except (DecodeError, RuntimeWarning) as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"not a valid {type(request).__name__}: {exc}")
        outcome = self.service.export(self.signal, request, body)
        if not outcome.stored:
            _abort(context, grpc.StatusCode.UNAVAILABLE, outcome.message, retry=True)
        return success(self.signal, outcome.rejected, outcome.message).SerializeToString()


class _Admission(grpc.ServerInterceptor):
    """Counts Export calls from arrival (before they wait for a handler thread) to their answer;
    a call arriving when ``limit`` are in progress is answered UNAVAILABLE with RetryInfo.

    grpcio never runs the handler of a call cancelled while it waits, so such a call would
    never be uncounted: an entry older than ``stale_s`` (longer than any answer takes) is
    dropped as one of those."""

    def __init__(self, limit: int, stale_s: float) -> None:
        self.limit = limit
        self.stale_s = stale_s
        self._lock = threading.Lock()
        self._active: dict[int, float] = {}  # call number -> arrival, oldest first
        self._numbers = itertools.count()

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        now = time.monotonic()
        with self._lock:
            while self._active:
                oldest, since = next(iter(self._active.items()))
                if now - since < self.stale_s:
                    break
                del self._active[oldest]
            admitted = len(self._active) < self.limit
            number = next(self._numbers)
            if admitted:
                self._active[number] = now
        behavior = handler.unary_unary

        def run(body: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                if not admitted:
                    _abort(context, grpc.StatusCode.UNAVAILABLE,
                           f"the server is busy ({self.limit} requests in progress); retry", retry=True)  # fmt: skip
                return behavior(body, context)
            finally:
                with self._lock:
                    self._active.pop(number, None)

        return grpc.unary_unary_rpc_method_handler(run)


def build_grpc_server(
    service: ReceiverService,
    tokens: Tokens,
    max_message: int,
    workers: int = 8,
    credentials: grpc.ServerCredentials | None = None,
    endpoint: str = "127.0.0.1:4317",
) -> tuple[grpc.Server, int]:
    """A started-ready (not yet started) server bound to ``endpoint``, and the port it bound."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message),
        ("grpc.so_reuseport", 0),
    ]
    admission = _Admission(limit=workers * 8, stale_s=COMMIT_TIMEOUT_S * 2 + 30)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otelkit-grpc"),
                         interceptors=[admission], options=options, maximum_concurrent_rpcs=workers * 512)  # fmt: skip
    handlers = [
        grpc.method_handlers_generic_handler(
            name, {"Export": grpc.unary_unary_rpc_method_handler(_Export(signal, service, tokens))}
        )
        for signal, name in SERVICES.items()
    ]
    server.add_generic_rpc_handlers(handlers)
    if credentials is None:
        port = server.add_insecure_port(endpoint)
    else:
        port = server.add_secure_port(endpoint, credentials)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {endpoint}")
    return server, port
