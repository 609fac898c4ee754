"""The OTLP message classes per signal, and the responses both protocols send."""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

REQUESTS: dict[str, type[Any]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
RESPONSES: dict[str, type[Any]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}
# The partial-success field that counts each signal's rejected items.
REJECTED_FIELD: dict[str, str] = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}


def success(signal: str, rejected: int = 0, message: str = "") -> Message:
    """The export response: empty on full success, with ``partial_success`` when items were
    rejected (or a warning is worth passing on)."""
    response = RESPONSES[signal]()
    if rejected or message:
        setattr(response.partial_success, REJECTED_FIELD[signal], rejected)
        response.partial_success.error_message = message
    return response


def status(code: int, message: str, retry_after_s: int | None = None) -> status_pb2.Status:
    """A ``google.rpc.Status``: every error body, on both protocols; a retryable one carries
    ``RetryInfo`` with the delay the sender should wait."""
    result = status_pb2.Status(code=code, message=message)
    if retry_after_s is not None:
        info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_after_s))
        result.details.add().Pack(info)
    return result


CODES = code_pb2
