"""OTLP/gRPC: the TraceService, MetricsService and LogsService ``Export`` methods.

Requests arrive as raw bytes and are parsed here, so an undecodable body answers
INVALID_ARGUMENT (grpcio's own deserializer would answer INTERNAL). UNAVAILABLE carries a
``google.rpc.Status`` with ``RetryInfo`` in ``grpc-status-details-bin``, as the OTLP exporters
expect; gzip and the message size limit (after decompression) are grpcio's.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from otelkit.exporters.receiver.auth import Tokens
from otelkit.exporters.receiver.messages import REQUESTS, status, success
from otelkit.exporters.receiver.service import RETRY_AFTER_S, ReceiverService

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
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="otelkit-grpc"),
                         options=options, maximum_concurrent_rpcs=workers * 8)  # fmt: skip
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
