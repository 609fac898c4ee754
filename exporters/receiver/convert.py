"""Decoded OTLP export requests into the store's row tuples.

The rows follow the column orders of :mod:`otelkit.store.writer` and the value conventions of
the in-process SQLite exporters, so a span stored by ``otelkit serve`` reads exactly like one
stored in-process. Malformed items are skipped and counted rather than failing the batch, as
the OTLP specification's partial success asks. Nothing here touches the database: resource and
scope row ids come from a :class:`RowIdSource`.

This is the receiver's hot path, so the span loop is flat: ids go through ``bytes.hex()``,
the common attribute values are read inline, and the slow checks that name a problem run only
once a cheap test has failed.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otelkit import semconv as sc
from otelkit.store.writer import to_json

__all__ = [
    "Converted",
    "RowIdSource",
    "convert_logs",
    "convert_metrics",
    "convert_traces",
    "decode_json",
]


class RowIdSource(Protocol):
    """Row ids of resources and scopes (``StoreWriter`` has these methods), kept apart so the
    conversion never touches the database itself."""

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int: ...

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int: ...


@dataclass
class Converted:
    """The rows of one export request, and what could not be stored.

    ``rows`` are spans, metric points or log records; ``events`` span events (empty for the
    other signals); ``attributes`` each span row's attribute dict in the same order (the rollups
    read them rather than parsing the JSON back); ``rejected`` counts the malformed items
    skipped and ``error`` names the first of them in one line.
    """

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    attributes: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    error: str | None = None


_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_KINDS: dict[int, str] = {0: "INTERNAL", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUSES: dict[int, str] = {0: "UNSET", 1: "OK", 2: "ERROR"}
_STATUS_ERROR = 2
_TEMPORALITIES: dict[int, str] = {1: "DELTA", 2: "CUMULATIVE"}
# AnyValue cases whose Python value is the field itself: read inline, without a call.
_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value"))


def _any_value(value: Any) -> Any:
    """An OTLP AnyValue as the Python value an SDK attribute would hold (bytes as base64 text)."""
    kind = value.WhichOneof("value")
    if kind in _SCALARS:
        return getattr(value, kind)
    if kind == "array_value":
        items = []
        for item in value.array_value.values:
            item_kind = item.WhichOneof("value")
            items.append(getattr(item, item_kind) if item_kind in _SCALARS else _any_value(item))
        return items
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    """A KeyValue list as a dict; a repeated key keeps its last value, as an SDK would."""
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        out[pair.key] = getattr(value, kind) if kind in _SCALARS else _any_value(value)
    return out


def _service(attributes: Mapping[str, Any]) -> str | None:
    service = attributes.get(sc.SERVICE_NAME)
    return None if service is None else str(service)


def _resource_ids(resource: Any, ids: RowIdSource) -> tuple[int, str | None]:
    """(row id, service.name) of a ResourceSpans/Metrics/Logs' resource: one lookup per resource."""
    attributes = _attributes(resource.attributes)
    service = _service(attributes)
    return ids.resource_id(attributes, service), service


def _scope_id(scope: Any, ids: RowIdSource) -> int:
    """Row id of an instrumentation scope (an empty version is no version, as the SDK meters say)."""
    return ids.scope_id(scope.name, scope.version or None, _attributes(scope.attributes))


def _id_problem(name: str, value: bytes, size: int) -> str | None:
    """Why ``value`` is not a valid id of ``size`` bytes, or None."""
    if len(value) != size:
        return f"{name} must be {size} bytes, got {len(value)}"
    if not any(value):
        return f"{name} must not be all zero"
    return None


def _span_problem(span: Any) -> str:
    """Why a span that failed the fast validity test cannot be stored (the slow path only)."""
    problem = _id_problem("trace_id", span.trace_id, 16) or _id_problem("span_id", span.span_id, 8)
    if problem:
        return problem
    parent = span.parent_span_id
    if parent and len(parent) != 8:
        return f"parent_span_id must be empty or 8 bytes, got {len(parent)}"
    start = span.start_time_unix_nano
    if not start:
        return "start_time_unix_nano must be set"
    return f"end_time_unix_nano {span.end_time_unix_nano} is before start_time_unix_nano {start}"


def count_items(signal: str, request: Message) -> int:
    """How many spans, metric data points or log records ``request`` carries (the unit the
    ingest queue is bounded in and partial successes count)."""
    if signal == "traces":
        return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
    if signal == "logs":
        return sum(len(scope.log_records) for resource in request.resource_logs for scope in resource.scope_logs)
    total = 0
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                total += len(getattr(metric, kind).data_points) if kind else 0
    return total


def convert_traces(request: ExportTraceServiceRequest, ids: RowIdSource) -> Converted:
    """Span rows (``SPAN_COLUMNS``), their event rows (``EVENT_COLUMNS``) and attribute dicts."""
    rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    attribute_maps: list[dict[str, Any]] = []
    rejected = 0
    error: str | None = None
    add_row = rows.append
    add_attrs = attribute_maps.append
    scalars = _SCALARS
    any_value = _any_value
    attributes = _attributes
    kinds = _KINDS
    statuses = _STATUSES
    zero_trace = _ZERO_TRACE
    zero_span = _ZERO_SPAN
    error_type_key = sc.ERROR_TYPE
    for resource_index, resource_spans in enumerate(request.resource_spans):
        resource_id, service = _resource_ids(resource_spans.resource, ids)
        span_index = -1
        for scope_spans in resource_spans.scope_spans:
            scope_id = _scope_id(scope_spans.scope, ids)
            for span in scope_spans.spans:
                span_index += 1
                trace_bytes = span.trace_id
                span_bytes = span.span_id
                parent_bytes = span.parent_span_id
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                if not (
                    len(trace_bytes) == 16 and len(span_bytes) == 8 and trace_bytes != zero_trace
                    and span_bytes != zero_span and (not parent_bytes or len(parent_bytes) == 8)
                    and start and end >= start
                ):  # fmt: skip
                    rejected += 1
                    if error is None:
                        error = f"span {span_index} of resource {resource_index}: {_span_problem(span)}"
                    continue
                attrs: dict[str, Any] = {}
                for pair in span.attributes:
                    value = pair.value
                    kind = value.WhichOneof("value")
                    attrs[pair.key] = getattr(value, kind) if kind in scalars else any_value(value)
                add_attrs(attrs)
                trace_id = trace_bytes.hex()
                span_id = span_bytes.hex()
                status = span.status
                status_code = status.code
                error_type = attrs.get(error_type_key)
                events = span.events
                if events:
                    event_attrs = [attributes(event.attributes) for event in events]
                    event_rows.extend(
                        (trace_id, span_id, event.time_unix_nano, event.name, to_json(event_attr))
                        for event, event_attr in zip(events, event_attrs)
                    )
                    if error_type is None and status_code == _STATUS_ERROR:
                        for event, event_attr in zip(events, event_attrs):
                            if event.name == "exception":
                                error_type = event_attr.get(sc.EXCEPTION_TYPE)
                                if error_type is not None:
                                    break
                links_json = None
                links = span.links
                if links:
                    kept = [
                        {
                            "trace_id": link.trace_id.hex(),
                            "span_id": link.span_id.hex(),
                            "attributes": attributes(link.attributes),
                        }
                        for link in links
                        if len(link.trace_id) == 16 and len(link.span_id) == 8
                        and link.trace_id != zero_trace and link.span_id != zero_span
                    ]  # fmt: skip
                    if kept:
                        links_json = to_json(kept)
                add_row(
                    (
                        trace_id, span_id,
                        parent_bytes.hex() if parent_bytes and parent_bytes != zero_span else None,
                        span.name, kinds.get(span.kind, "INTERNAL"), service, resource_id, scope_id,
                        start, end, statuses.get(status_code, "UNSET"), status.message or None,
                        None if error_type is None else str(error_type), span.trace_state or None,
                        to_json(attrs) if attrs else "{}", links_json,
                    )
                )  # fmt: skip
    return Converted(rows, event_rows, attribute_maps, rejected, error)


def _temporality(data: Any) -> str | None:
    return _TEMPORALITIES.get(data.aggregation_temporality)


def _number_point(point: Any) -> tuple[Any, ...]:
    """(value, count, sum, min, max, buckets) of a gauge or sum point."""
    which = point.WhichOneof("value")
    return (getattr(point, which) if which else None, None, None, None, None, None)


def _optional(point: Any, name: str) -> Any:
    return getattr(point, name) if point.HasField(name) else None


def _histogram_point(point: Any) -> tuple[Any, ...]:
    buckets = to_json({"bounds": list(point.explicit_bounds), "counts": list(point.bucket_counts)})
    return (None, point.count, _optional(point, "sum"), _optional(point, "min"), _optional(point, "max"), buckets)


def _exponential_point(point: Any) -> tuple[Any, ...]:
    positive = point.positive
    negative = point.negative
    buckets = to_json(
        {
            "scale": point.scale,
            "zero_count": point.zero_count,
            "positive": {"offset": positive.offset, "counts": list(positive.bucket_counts)},
            "negative": {"offset": negative.offset, "counts": list(negative.bucket_counts)},
        }
    )
    return (None, point.count, _optional(point, "sum"), _optional(point, "min"), _optional(point, "max"), buckets)


def _summary_point(point: Any) -> tuple[Any, ...]:
    quantiles = [[item.quantile, item.value] for item in point.quantile_values]
    return (None, point.count, point.sum, None, None, to_json({"quantiles": quantiles}))


# Per metric kind: (temporality reader, is_monotonic reader, point values reader).
_METRIC_KINDS: dict[str, tuple[Callable[[Any], str | None], Callable[[Any], int | None], Callable[[Any], tuple[Any, ...]]]] = {
    "gauge": (lambda data: None, lambda data: None, _number_point),
    "sum": (_temporality, lambda data: int(data.is_monotonic), _number_point),
    "histogram": (_temporality, lambda data: None, _histogram_point),
    "exponential_histogram": (_temporality, lambda data: None, _exponential_point),
    "summary": (lambda data: None, lambda data: None, _summary_point),
}


def convert_metrics(request: ExportMetricsServiceRequest, ids: RowIdSource) -> Converted:
    """Metric point rows (``METRIC_COLUMNS``); ``rejected`` counts data points."""
    rows: list[tuple[Any, ...]] = []
    rejected = 0
    error: str | None = None
    for resource_index, resource_metrics in enumerate(request.resource_metrics):
        resource_id, service = _resource_ids(resource_metrics.resource, ids)
        for scope_metrics in resource_metrics.scope_metrics:
            scope_id = _scope_id(scope_metrics.scope, ids)
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                temporality_of, monotonic_of, values_of = _METRIC_KINDS[kind]
                temporality = temporality_of(data)
                monotonic = monotonic_of(data)
                name = metric.name
                description = metric.description or None
                unit = metric.unit or None
                for point_index, point in enumerate(data.data_points):
                    time_ns = point.time_unix_nano
                    if not time_ns:
                        rejected += 1
                        if error is None:
                            error = (
                                f"data point {point_index} of metric {name!r} of resource {resource_index}: "
                                "time_unix_nano must be set"
                            )
                        continue
                    value, count, total, low, high, buckets = values_of(point)
                    rows.append(
                        (
                            name, description, unit, kind, temporality, monotonic, service, resource_id,
                            scope_id, point.start_time_unix_nano or None, time_ns,
                            to_json(_attributes(point.attributes)), value, count, total, low, high, buckets,
                        )
                    )  # fmt: skip
    return Converted(rows, [], [], rejected, error)


def _body_text(body: Any) -> str | None:
    """The body column as the in-process log exporter writes it: text as is, structures as JSON."""
    if body is None or isinstance(body, str):
        return body
    return to_json(body) if isinstance(body, (dict, list, tuple)) else str(body)


def convert_logs(request: ExportLogsServiceRequest, ids: RowIdSource) -> Converted:
    """Log record rows (``LOG_COLUMNS``).

    A record without an observed time gets the time of receipt: the receiver is the collection
    system that observed it, and the store indexes records by that column.
    """
    rows: list[tuple[Any, ...]] = []
    rejected = 0
    error: str | None = None
    correlation_fields = sc.LOG_CORRELATION_FIELDS
    received_ns = 0
    for resource_index, resource_logs in enumerate(request.resource_logs):
        resource_id, service = _resource_ids(resource_logs.resource, ids)
        record_index = -1
        for scope_logs in resource_logs.scope_logs:
            scope_id = _scope_id(scope_logs.scope, ids)
            for record in scope_logs.log_records:
                record_index += 1
                trace_bytes = record.trace_id
                span_bytes = record.span_id
                if (trace_bytes and len(trace_bytes) != 16) or (span_bytes and len(span_bytes) != 8):
                    rejected += 1
                    if error is None:
                        problem = (
                            f"trace_id must be empty or 16 bytes, got {len(trace_bytes)}"
                            if trace_bytes and len(trace_bytes) != 16
                            else f"span_id must be empty or 8 bytes, got {len(span_bytes)}"
                        )
                        error = f"log record {record_index} of resource {resource_index}: {problem}"
                    continue
                attrs = _attributes(record.attributes)
                # The correlation fields otelkit's logging instrumentation stamps on records
                # duplicate the row's own trace, span and session columns.
                for name in correlation_fields:
                    attrs.pop(name, None)
                session = attrs.get(sc.SESSION_ID)
                observed = record.observed_time_unix_nano
                if not observed:
                    observed = record.time_unix_nano or received_ns or time.time_ns()
                    received_ns = received_ns or observed
                rows.append(
                    (
                        record.time_unix_nano or None, observed, record.severity_number or None,
                        record.severity_text or None,
                        _body_text(_any_value(record.body)) if record.HasField("body") else None,
                        record.event_name or None,
                        trace_bytes.hex() if trace_bytes and trace_bytes != _ZERO_TRACE else None,
                        span_bytes.hex() if span_bytes and span_bytes != _ZERO_SPAN else None,
                        record.flags & 0xFF, service, resource_id, scope_id,
                        None if session is None else str(session), to_json(attrs),
                    )
                )  # fmt: skip
    return Converted(rows, [], [], rejected, error)


_REQUESTS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
_METRIC_DATA_KEYS = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


def _items(obj: Mapping[str, Any], camel: str, snake: str, path: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """The objects of the list under ``camel`` (or ``snake``) with their paths; anything of the
    wrong shape is left for ``ParseDict`` to reject with its own message."""
    for key in (camel, snake) if camel != snake else (camel,):
        found = obj.get(key)
        if isinstance(found, list):
            for index, item in enumerate(found):
                if isinstance(item, dict):
                    yield f"{path}{key}[{index}].", item


def _hex_ids(obj: dict[str, Any], path: str) -> None:
    """Rewrite ``obj``'s hex trace and span ids to the base64 ``ParseDict`` expects for bytes."""
    for camel, snake in (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id")):
        for key in (camel, snake):
            text = obj.get(key)
            if isinstance(text, str) and text:
                try:
                    raw = bytes.fromhex(text)
                except ValueError:
                    raise ValueError(f"{path}{key} is not valid hex: {text[:80]!r}") from None
                if len(text) != 2 * len(raw):  # fromhex skips whitespace between bytes
                    raise ValueError(f"{path}{key} is not valid hex: {text[:80]!r}")
                obj[key] = binascii.b2a_base64(raw, newline=False).decode("ascii")


def _rewrite_ids(signal: str, root: dict[str, Any]) -> None:
    """Walk only where OTLP/JSON carries ids: spans and their links, log records, exemplars."""
    if signal == "traces":
        for path, resource in _items(root, "resourceSpans", "resource_spans", ""):
            for path2, scope in _items(resource, "scopeSpans", "scope_spans", path):
                for path3, span in _items(scope, "spans", "spans", path2):
                    _hex_ids(span, path3)
                    for path4, link in _items(span, "links", "links", path3):
                        _hex_ids(link, path4)
    elif signal == "logs":
        for path, resource in _items(root, "resourceLogs", "resource_logs", ""):
            for path2, scope in _items(resource, "scopeLogs", "scope_logs", path):
                for path3, record in _items(scope, "logRecords", "log_records", path2):
                    _hex_ids(record, path3)
    else:
        for path, resource in _items(root, "resourceMetrics", "resource_metrics", ""):
            for path2, scope in _items(resource, "scopeMetrics", "scope_metrics", path):
                for path3, metric in _items(scope, "metrics", "metrics", path2):
                    for data_key in _METRIC_DATA_KEYS:
                        data = metric.get(data_key)
                        if not isinstance(data, dict):
                            continue
                        data_path = f"{path3}{data_key}."
                        for path4, point in _items(data, "dataPoints", "data_points", data_path):
                            for path5, exemplar in _items(point, "exemplars", "exemplars", path4):
                                _hex_ids(exemplar, path5)


def decode_json(signal: str, body: bytes) -> Message:
    """An OTLP/JSON export request of ``signal`` ("traces", "metrics" or "logs") as its message.

    OTLP/JSON differs from protobuf's JSON mapping in one way: trace and span ids are hex, not
    base64; they are rewritten before ``ParseDict``, which does the rest (camelCase or
    snake_case names, enums as integers or names, 64-bit integers as strings or numbers).
    Unknown fields are ignored, as the specification requires. Raises ``ValueError`` with a
    one-line message for a body that is not a valid request.
    """
    message_class = _REQUESTS.get(signal)
    if message_class is None:
        raise ValueError(f"unknown signal {signal!r}: expected traces, metrics or logs")
    try:
        root = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise ValueError("the JSON body is nested too deeply") from None
    if not isinstance(root, dict):
        raise ValueError(f"the JSON body must be an object, got {type(root).__name__}")
    _rewrite_ids(signal, root)
    try:
        return json_format.ParseDict(root, message_class(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        text = " ".join(str(exc).split())
        raise ValueError(f"the body is not a valid OTLP/JSON {message_class.__name__}: {text}") from None
    except RecursionError:
        raise ValueError("the JSON body is nested too deeply") from None
