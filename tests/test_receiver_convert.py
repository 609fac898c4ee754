"""The OTLP receiver's conversion: what ``otelkit serve`` stores equals what the in-process
exporters store for the same telemetry, field by field.

Requests are built the way real senders build them: real SDK spans, logs and metrics through
the official OTLP encoders. The resource and scope row ids come from a fake that records its
calls, so rows are compared through the resource and scope they name.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pytest
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, SummaryDataPoint
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics import Counter as SDKCounter
from opentelemetry.sdk.metrics import Histogram as SDKHistogram
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from otelkit.exporters.receiver.convert import (
    Converted,
    convert_logs,
    convert_metrics,
    convert_traces,
    decode_json,
)
from otelkit.exporters.sqlite import SQLiteLogExporter, SQLiteMetricExporter, SQLiteSpanExporter
from otelkit.exporters.sqlite._target import RowIds
from otelkit.store import connect_for_reading
from otelkit.store.writer import EVENT_COLUMNS, LOG_COLUMNS, METRIC_COLUMNS, SPAN_COLUMNS, StoreWriter

RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment": "test", "host.cpus": 8})
OTHER_RESOURCE = Resource.create({"service.name": "billing"})
SPAN_IDS = (SPAN_COLUMNS.index("resource_id"), SPAN_COLUMNS.index("scope_id"))
METRIC_IDS = (METRIC_COLUMNS.index("resource_id"), METRIC_COLUMNS.index("scope_id"))
LOG_IDS = (LOG_COLUMNS.index("resource_id"), LOG_COLUMNS.index("scope_id"))


class FakeIds:
    """A RowIdSource that records every call and hands out one id per distinct content."""

    def __init__(self) -> None:
        self.resource_calls: list[tuple[str, str | None]] = []
        self.scope_calls: list[tuple[str, str | None, str]] = []
        self.contents: dict[int, tuple[Any, ...]] = {}
        self._ids: dict[tuple[Any, ...], int] = {}

    def _id(self, key: tuple[Any, ...]) -> int:
        if key not in self._ids:
            self._ids[key] = len(self._ids) + 1
            self.contents[self._ids[key]] = key
        return self._ids[key]

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int:
        attrs = json.dumps(dict(attributes), sort_keys=True)
        self.resource_calls.append((attrs, service_name))
        return self._id(("resource", attrs, service_name))

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int:
        attrs = json.dumps(dict(attributes or {}), sort_keys=True)
        # The SDK's tracers say "" for no version, its meters and loggers None, OTLP only "":
        # the store fingerprints them alike, and the receiver passes None.
        version = version or None
        self.scope_calls.append((name, version, attrs))
        return self._id(("scope", name, version, attrs))


def _by_content(rows: Sequence[Sequence[Any]], ids: FakeIds, columns: tuple[int, int]) -> list[tuple[Any, ...]]:
    """Rows with their resource and scope ids replaced by what those ids stand for."""
    out = []
    for row in rows:
        values = list(row)
        for column in columns:
            values[column] = ids.contents[values[column]]
        out.append(tuple(values))
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists (the SDK keeps sequences as tuples, OTLP has only arrays)."""
    return json.loads(json.dumps(value))


def _in_process_spans(spans: Sequence[ReadableSpan]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[Any], FakeIds]:
    ids = FakeIds()
    exporter = SQLiteSpanExporter.__new__(SQLiteSpanExporter)
    exporter._ids = RowIds(ids)  # type: ignore[arg-type]
    rows, events, attributes = exporter._convert(spans)
    return rows, events, list(attributes), ids


def _received(convert: Callable[[Any, Any], Converted], request: Any) -> tuple[Converted, FakeIds]:
    """``request`` through the wire (serialized and parsed again), then converted."""
    parsed = type(request)()
    parsed.ParseFromString(request.SerializeToString())
    ids = FakeIds()
    return convert(parsed, ids), ids


def _tracer_spans(build: Callable[[trace.Tracer], None], resource: Resource = RESOURCE) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("my.lib", "1.2.3"))
    provider.shutdown()
    return list(exporter.get_finished_spans())


def _rich_spans(tracer: trace.Tracer) -> None:
    """Every kind and status, events, links, trace state and every SDK attribute type."""
    for kind in SpanKind:
        with tracer.start_as_current_span(f"kind {kind.name}", kind=kind):
            pass
    with tracer.start_as_current_span("ok") as ok:
        ok.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("failed", attributes={"error.type": "Timeout"}) as failed:
        failed.set_status(Status(StatusCode.ERROR, "took too long"))
    with tracer.start_as_current_span("raises", record_exception=True, set_status_on_exception=True) as raises:
        raises.add_event("exception", {"note": "an exception event without a type"})
        try:
            raise KeyError("missing")
        except KeyError as exc:
            raises.record_exception(exc)
        raises.record_exception(ValueError("second"))
        raises.set_status(Status(StatusCode.ERROR, "missing"))
    with tracer.start_as_current_span("exception but not failed") as quiet:
        quiet.record_exception(RuntimeError("handled"))
    parent = NonRecordingSpan(
        SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("vendor", "x1"), ("other", "y-2")]),
        )
    )  # fmt: skip
    with tracer.start_as_current_span(
        "child of remote",
        context=trace.set_span_in_context(parent),
        kind=SpanKind.CONSUMER,
        links=[Link(ok.get_span_context(), {"why": "follows", "n": 2}), Link(failed.get_span_context())],
        attributes={
            "str": "text", "int": -42, "big": 2**62, "float": 0.125, "bool": False, "true": True,
            "strs": ("a", "b"), "ints": [1, 2, 3], "floats": (1.5, -2.0), "bools": (True, False), "empty.str": "",
            "session.id": "s-1",
        },
    ) as child:
        child.add_event("retry", {"attempt": 2, "tags": ("x",)})
        child.add_event("plain")


def test_spans_match_the_in_process_exporter() -> None:
    spans = _tracer_spans(_rich_spans)
    expected_rows, expected_events, expected_attrs, expected_ids = _in_process_spans(spans)
    converted, ids = _received(convert_traces, encode_spans(spans))

    assert converted.rejected == 0 and converted.error is None
    assert _by_content(converted.rows, ids, SPAN_IDS) == _by_content(expected_rows, expected_ids, SPAN_IDS)
    assert converted.events == expected_events
    assert _plain(converted.attributes) == _plain(expected_attrs)
    assert all(len(row) == len(SPAN_COLUMNS) for row in converted.rows)
    assert all(len(row) == len(EVENT_COLUMNS) for row in converted.events)

    by_name = {row[3]: dict(zip(SPAN_COLUMNS, row)) for row in converted.rows}
    assert {by_name[f"kind {kind.name}"]["kind"] for kind in SpanKind} == {k.name for k in SpanKind}
    assert by_name["ok"]["status_code"] == "OK" and by_name["ok"]["status_message"] is None
    assert (by_name["failed"]["status_code"], by_name["failed"]["status_message"]) == ("ERROR", "took too long")
    assert by_name["failed"]["error_type"] == "Timeout"
    assert by_name["raises"]["error_type"] == "KeyError"  # the first exception event that names a type
    assert by_name["exception but not failed"]["error_type"] is None
    child = by_name["child of remote"]
    assert child["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert child["parent_span_id"] == "b7ad6b7169203331"
    assert child["trace_state"] == "vendor=x1,other=y-2"
    assert by_name["ok"]["trace_state"] is None and by_name["ok"]["links"] is None
    links = json.loads(child["links"])
    assert links[0] == {
        "trace_id": format(_span(spans, "ok").context.trace_id, "032x"),
        "span_id": format(_span(spans, "ok").context.span_id, "016x"),
        "attributes": {"why": "follows", "n": 2},
    }
    assert links[1]["attributes"] == {}
    assert json.loads(child["attributes"])["big"] == 2**62


def _span(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    return next(span for span in spans if span.name == name)


def test_resource_and_scope_ids_are_looked_up_once_per_group() -> None:
    def build(tracer: trace.Tracer) -> None:
        for i in range(5):
            with tracer.start_as_current_span(f"s{i}"):
                pass

    def build_scoped(provider_resource: Resource) -> list[ReadableSpan]:
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=provider_resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        for tracer in (provider.get_tracer("a"), provider.get_tracer("b", "2.0", attributes={"scope.attr": 1})):
            build(tracer)
        return list(exporter.get_finished_spans())

    spans = build_scoped(RESOURCE) + build_scoped(OTHER_RESOURCE)
    request = encode_spans(spans)
    assert len(request.resource_spans) == 2
    converted, ids = _received(convert_traces, request)
    assert len(converted.rows) == 20
    assert [service for _, service in ids.resource_calls] == ["checkout", "billing"]
    assert [(name, version, attrs) for name, version, attrs in ids.scope_calls] == [
        ("a", None, "{}"), ("b", "2.0", '{"scope.attr": 1}'), ("a", None, "{}"), ("b", "2.0", '{"scope.attr": 1}'),
    ]  # fmt: skip
    expected_rows, _, _, expected_ids = _in_process_spans(spans)
    assert sorted(_by_content(converted.rows, ids, SPAN_IDS)) == sorted(_by_content(expected_rows, expected_ids, SPAN_IDS))


def _row(converted: Converted, columns: tuple[str, ...] = SPAN_COLUMNS, index: int = 0) -> dict[str, Any]:
    return dict(zip(columns, converted.rows[index]))


def _one_span_request(**fields: Any) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    span = resource.scope_spans.add().spans.add()
    span.trace_id = bytes(range(1, 17))
    span.span_id = bytes(range(1, 9))
    span.name = "hand built"
    span.start_time_unix_nano = 1_000
    span.end_time_unix_nano = 2_000
    for name, value in fields.items():
        setattr(span, name, value)
    return request


def _any(**kind: Any) -> AnyValue:
    return AnyValue(**kind)


def test_nested_attribute_values_built_by_hand() -> None:
    request = _one_span_request(kind=0)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.extend(
        [
            KeyValue(key="s", value=_any(string_value="v")),
            KeyValue(key="b", value=_any(bool_value=True)),
            KeyValue(key="i", value=_any(int_value=-7)),
            KeyValue(key="d", value=_any(double_value=2.5)),
            KeyValue(key="raw", value=_any(bytes_value=b"\x00\xffhi")),
            KeyValue(key="none", value=AnyValue()),
            KeyValue(key="zero", value=_any(int_value=0)),
            KeyValue(key="false", value=_any(bool_value=False)),
            KeyValue(
                key="arr",
                value=_any(
                    array_value=ArrayValue(
                        values=[
                            _any(string_value="x"), _any(int_value=1), _any(bytes_value=b"\x01"),
                            _any(array_value=ArrayValue(values=[_any(double_value=0.5)])),
                            _any(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=_any(bool_value=False))])),
                            AnyValue(),
                        ]
                    )
                ),
            ),
            KeyValue(
                key="map",
                value=_any(
                    kvlist_value=KeyValueList(
                        values=[
                            KeyValue(key="inner", value=_any(kvlist_value=KeyValueList(values=[KeyValue(key="deep", value=_any(int_value=3))]))),
                            KeyValue(key="list", value=_any(array_value=ArrayValue())),
                            KeyValue(key="dup", value=_any(string_value="first")),
                            KeyValue(key="dup", value=_any(string_value="second")),
                        ]
                    )
                ),
            ),
            KeyValue(key="s", value=_any(string_value="later wins")),
        ]
    )
    converted, _ = _received(convert_traces, request)
    expected = {
        "s": "later wins", "b": True, "i": -7, "d": 2.5, "raw": base64.b64encode(b"\x00\xffhi").decode(),
        "none": None, "zero": 0, "false": False,
        "arr": ["x", 1, "AQ==", [0.5], {"k": False}, None],
        "map": {"inner": {"deep": 3}, "list": [], "dup": "second"},
    }  # fmt: skip
    assert converted.attributes == [expected]
    row = _row(converted)
    assert json.loads(row["attributes"]) == expected
    assert row["kind"] == "INTERNAL" and row["status_code"] == "UNSET" and row["parent_span_id"] is None
    assert row["service_name"] is None and row["error_type"] is None and row["links"] is None


def test_unknown_kind_and_status_numbers_fall_back() -> None:
    request = _one_span_request(kind=9)
    request.resource_spans[0].scope_spans[0].spans[0].status.code = 7  # type: ignore[assignment]
    converted, _ = _received(convert_traces, request)
    assert (_row(converted)["kind"], _row(converted)["status_code"]) == ("INTERNAL", "UNSET")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trace_id": b"\x01" * 5}, "trace_id must be 16 bytes, got 5"),
        ({"trace_id": b""}, "trace_id must be 16 bytes, got 0"),
        ({"trace_id": bytes(16)}, "trace_id must not be all zero"),
        ({"span_id": b"\x01" * 9}, "span_id must be 8 bytes, got 9"),
        ({"span_id": bytes(8)}, "span_id must not be all zero"),
        ({"parent_span_id": b"\x01" * 4}, "parent_span_id must be empty or 8 bytes, got 4"),
        ({"start_time_unix_nano": 1000, "end_time_unix_nano": 999}, "end_time_unix_nano 999 is before start_time_unix_nano 1000"),
        ({"start_time_unix_nano": 0, "end_time_unix_nano": 0}, "start_time_unix_nano must be set"),
        ({"start_time_unix_nano": 0}, "start_time_unix_nano must be set"),
    ],
)
def test_each_span_rejection_rule(fields: dict[str, Any], message: str) -> None:
    def build(tracer: trace.Tracer) -> None:
        for i in range(5):
            tracer.start_span(f"s{i}").end()

    spans = _tracer_spans(build)
    request = encode_spans(spans)
    bad = request.resource_spans[0].scope_spans[0].spans[3]
    for name, value in fields.items():
        setattr(bad, name, value)
    converted, _ = _received(convert_traces, request)
    assert converted.rejected == 1
    assert converted.error == f"span 3 of resource 0: {message}"
    assert [row[3] for row in converted.rows] == ["s0", "s1", "s2", "s4"]
    assert len(converted.attributes) == 4


def test_rejections_count_across_resources_and_name_the_first() -> None:
    request = ExportTraceServiceRequest()
    request.MergeFrom(_one_span_request(trace_id=b"\x01"))
    request.MergeFrom(_one_span_request())
    request.MergeFrom(_one_span_request(span_id=b""))
    converted, _ = _received(convert_traces, request)
    assert (converted.rejected, len(converted.rows)) == (2, 1)
    assert converted.error == "span 0 of resource 0: trace_id must be 16 bytes, got 1"


def test_equal_start_and_end_and_zero_parent_are_kept() -> None:
    converted, _ = _received(convert_traces, _one_span_request(end_time_unix_nano=1_000, parent_span_id=bytes(8)))
    assert converted.rejected == 0
    assert _row(converted)["parent_span_id"] is None


def test_links_with_malformed_ids_are_dropped_and_the_span_kept() -> None:
    request = _one_span_request()
    span = request.resource_spans[0].scope_spans[0].spans[0]
    good = span.links.add(trace_id=b"\x02" * 16, span_id=b"\x03" * 8)
    good.attributes.add(key="k", value=_any(string_value="v"))
    span.links.add(trace_id=b"\x02" * 15, span_id=b"\x03" * 8)
    span.links.add(trace_id=b"\x02" * 16, span_id=b"")
    span.links.add(trace_id=bytes(16), span_id=b"\x03" * 8)
    converted, _ = _received(convert_traces, request)
    assert converted.rejected == 0 and converted.error is None
    assert json.loads(_row(converted)["links"]) == [{"trace_id": "02" * 16, "span_id": "03" * 8, "attributes": {"k": "v"}}]

    del span.links[0]
    converted, _ = _received(convert_traces, request)
    assert _row(converted)["links"] is None


def test_span_events_rows() -> None:
    request = _one_span_request()
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.status.code = 2  # type: ignore[assignment]
    event = span.events.add(time_unix_nano=1_500, name="exception")
    event.attributes.add(key="exception.type", value=_any(string_value="OSError"))
    converted, _ = _received(convert_traces, request)
    assert converted.events == [(bytes(range(1, 17)).hex(), bytes(range(1, 9)).hex(), 1_500, "exception", '{"exception.type":"OSError"}')]
    assert _row(converted)["error_type"] == "OSError"


def test_empty_request() -> None:
    converted, ids = _received(convert_traces, ExportTraceServiceRequest())
    assert converted == Converted([], [], [], 0, None)
    assert ids.resource_calls == []


def _stored(db: Path, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows of ``table`` with the resource and scope ids replaced by their stored content."""
    conn = connect_for_reading(str(db))
    try:
        selected = ", ".join(
            "(SELECT service_name || ' ' || attributes FROM resources r WHERE r.id = t.resource_id)" if c == "resource_id"
            else "(SELECT name || ' ' || coalesce(version, '') || ' ' || attributes FROM scopes s WHERE s.id = t.scope_id)"
            if c == "scope_id" else c
            for c in columns
        )  # fmt: skip
        return sorted(conn.execute(f"SELECT {selected} FROM {table} t").fetchall(), key=repr)
    finally:
        conn.close()


def test_spans_stored_by_both_paths_are_equal(tmp_path: Path) -> None:
    spans = _tracer_spans(_rich_spans)
    in_process = tmp_path / "in_process.db"
    exporter = SQLiteSpanExporter(str(in_process))
    assert exporter.export(spans).name == "SUCCESS"

    received = tmp_path / "received.db"
    writer = StoreWriter(str(received))
    request = encode_spans(spans)
    converted = convert_traces(request, writer)
    assert writer.write_spans(converted.rows, converted.events, converted.attributes) == len(spans)

    assert _stored(received, "spans", SPAN_COLUMNS) == _stored(in_process, "spans", SPAN_COLUMNS)
    assert _stored(received, "span_events", EVENT_COLUMNS) == _stored(in_process, "span_events", EVENT_COLUMNS)


# --- metrics --------------------------------------------------------------------------------


def _metrics_data(temporality: AggregationTemporality) -> MetricsData:
    reader = InMemoryMetricReader(
        preferred_temporality={SDKCounter: temporality, SDKHistogram: temporality},
    )
    provider = MeterProvider(
        resource=RESOURCE,
        metric_readers=[reader],
        views=[
            View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation(max_size=20)),
        ],
    )
    meter = provider.get_meter("my.meter", "0.1", attributes={"meter.attr": "m"})
    requests = meter.create_counter("requests", unit="1", description="Requests served")
    requests.add(3, {"route": "/a"})
    requests.add(4, {"route": "/b", "ok": True})
    meter.create_counter("cost").add(0.25, {"model": "m"})
    meter.create_up_down_counter("queue.depth").add(-2)
    latency = meter.create_histogram("latency", unit="ms")
    for value in (1, 7, 40, 900):
        latency.record(value, {"route": "/a"})
    float_latency = meter.create_histogram("latency.float", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0])
    float_latency.record(0.5)
    float_latency.record(2.5)
    exp = meter.create_histogram("latency.exp")
    for sample in (0.001, 0.5, 3, 3, 1e6, 0):
        exp.record(sample)
    meter.create_gauge("temperature").set(21.5, {"room": "lab"})
    meter.create_gauge("connections").set(12)
    meter.create_observable_gauge("memory", callbacks=[lambda options: iter([_observation(1024)])])
    meter.create_observable_counter("cpu.time", callbacks=[lambda options: iter([_observation(2.5)])])
    data = reader.get_metrics_data()
    assert data is not None
    return data


def _observation(value: float) -> Any:
    from opentelemetry.metrics import Observation

    return Observation(value, {"source": "callback"})


def _in_process_metrics(data: MetricsData) -> tuple[list[tuple[Any, ...]], FakeIds]:
    ids = FakeIds()
    exporter = SQLiteMetricExporter.__new__(SQLiteMetricExporter)
    exporter._ids = RowIds(ids)  # type: ignore[arg-type]
    return list(exporter._rows(data)), ids


@pytest.mark.parametrize("temporality", [AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA])
def test_metrics_match_the_in_process_exporter(temporality: AggregationTemporality) -> None:
    data = _metrics_data(temporality)
    expected, expected_ids = _in_process_metrics(data)
    converted, ids = _received(convert_metrics, encode_metrics(data))

    assert converted.rejected == 0 and converted.error is None
    assert converted.events == [] and converted.attributes == []
    assert _by_content(converted.rows, ids, METRIC_IDS) == _by_content(expected, expected_ids, METRIC_IDS)
    kinds = {row[0]: dict(zip(METRIC_COLUMNS, row)) for row in converted.rows}
    assert {row["kind"] for row in kinds.values()} == {"sum", "gauge", "histogram", "exponential_histogram"}
    assert kinds["requests"]["temporality"] == temporality.name and kinds["requests"]["is_monotonic"] == 1
    assert kinds["queue.depth"]["is_monotonic"] == 0
    assert kinds["temperature"]["temporality"] is None and kinds["temperature"]["is_monotonic"] is None
    assert kinds["latency"]["is_monotonic"] is None
    assert json.loads(kinds["latency.float"]["buckets"]) == {"bounds": [0.1, 1.0], "counts": [0, 1, 1]}
    assert set(json.loads(kinds["latency.exp"]["buckets"])) == {"scale", "zero_count", "positive", "negative"}
    assert ids.scope_calls == [("my.meter", "0.1", '{"meter.attr": "m"}')]


def _hand_built_metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name", value=_any(string_value="svc"))
    scope = resource.scope_metrics.add()
    scope.scope.name = "hand"
    summary = Metric(name="rpc.duration", unit="ms")
    summary.summary.data_points.append(
        SummaryDataPoint(
            start_time_unix_nano=10, time_unix_nano=20, count=4, sum=10.5,
            quantile_values=[SummaryDataPoint.ValueAtQuantile(quantile=0.5, value=2.0),
                             SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=7.5)],
            attributes=[KeyValue(key="method", value=_any(string_value="Get"))],
        )
    )  # fmt: skip
    summary.summary.data_points.add(time_unix_nano=30)
    scope.metrics.append(summary)
    gauge = scope.metrics.add(name="g")
    gauge.gauge.data_points.add(time_unix_nano=5, as_int=3)
    gauge.gauge.data_points.add(time_unix_nano=0, as_double=1.0)
    gauge.gauge.data_points.add(time_unix_nano=6)
    scope.metrics.add(name="no data")
    histogram = scope.metrics.add(name="h")
    histogram.histogram.aggregation_temporality = 0
    histogram.histogram.data_points.add(time_unix_nano=7, count=2, bucket_counts=[2], explicit_bounds=[])
    return request


def test_summary_and_hand_built_points() -> None:
    converted, ids = _received(convert_metrics, _hand_built_metrics())
    rows = [dict(zip(METRIC_COLUMNS, row)) for row in converted.rows]
    summary, empty_summary, gauge, unset_gauge, histogram = rows
    assert {k: v for k, v in summary.items() if k not in ("resource_id", "scope_id")} == {
        "name": "rpc.duration", "description": None, "unit": "ms", "kind": "summary", "temporality": None,
        "is_monotonic": None, "service_name": "svc", "start_ns": 10, "time_ns": 20,
        "attributes": '{"method":"Get"}', "value": None, "count": 4, "sum": 10.5, "min": None, "max": None,
        "buckets": '{"quantiles":[[0.5,2.0],[0.99,7.5]]}',
    }  # fmt: skip
    assert empty_summary["buckets"] == '{"quantiles":[]}' and empty_summary["start_ns"] is None
    assert (gauge["value"], unset_gauge["value"]) == (3, None)
    assert histogram["temporality"] is None and histogram["sum"] is None and histogram["min"] is None
    assert converted.rejected == 1
    assert converted.error == "data point 1 of metric 'g' of resource 0: time_unix_nano must be set"
    assert ids.resource_calls == [('{"service.name": "svc"}', "svc")]


def test_metrics_stored_by_both_paths_are_equal(tmp_path: Path) -> None:
    data = _metrics_data(AggregationTemporality.DELTA)
    in_process = tmp_path / "in_process.db"
    assert SQLiteMetricExporter(str(in_process)).export(data).name == "SUCCESS"
    received = tmp_path / "received.db"
    writer = StoreWriter(str(received))
    writer.write_metric_points(convert_metrics(encode_metrics(data), writer).rows)
    assert _stored(received, "metric_points", METRIC_COLUMNS) == _stored(in_process, "metric_points", METRIC_COLUMNS)


# --- logs -----------------------------------------------------------------------------------


def _log_records() -> list[ReadableLogRecord]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("my.logger", "3.0")
    tracer_provider = TracerProvider(resource=RESOURCE)
    tracer = tracer_provider.get_tracer("t")
    logger.emit(body="plain text", severity_number=SeverityNumber.INFO, severity_text="INFO", timestamp=1_000)
    logger.emit(
        body={"event": "login", "user": {"id": 7, "roles": ["a", "b"]}, "ok": True},
        severity_number=SeverityNumber.WARN,
        attributes={"session.id": "sess-1", "trace_id": "stamped", "span_id": "stamped", "session_id": "x", "n": 1},
        event_name="user.login",
    )
    with tracer.start_as_current_span("work"):
        logger.emit(body=42, severity_number=SeverityNumber.ERROR, attributes={"nested": {"k": [1, 2]}, "f": 1.5})
        logger.emit(body=["a", 1, None], attributes={"session.id": 99})
    logger.emit(body=True)
    logger.emit(body=None, severity_text="custom")
    provider.shutdown()
    tracer_provider.shutdown()
    return list(exporter.get_finished_logs())


def _in_process_logs(records: Sequence[ReadableLogRecord]) -> tuple[list[tuple[Any, ...]], FakeIds]:
    ids = FakeIds()
    exporter = SQLiteLogExporter.__new__(SQLiteLogExporter)
    exporter._ids = RowIds(ids)  # type: ignore[arg-type]
    return [exporter._row(record) for record in records], ids


def test_logs_match_the_in_process_exporter() -> None:
    records = _log_records()
    expected, expected_ids = _in_process_logs(records)
    converted, ids = _received(convert_logs, encode_logs(records))
    assert converted.rejected == 0 and converted.error is None
    assert _by_content(converted.rows, ids, LOG_IDS) == _by_content(expected, expected_ids, LOG_IDS)

    rows = [dict(zip(LOG_COLUMNS, row)) for row in converted.rows]
    assert [row["body"] for row in rows] == [
        "plain text", '{"event":"login","user":{"id":7,"roles":["a","b"]},"ok":true}', "42", '["a",1,null]', "True", None,
    ]  # fmt: skip
    login = rows[1]
    assert login["session_id"] == "sess-1" and login["event_name"] == "user.login"
    assert json.loads(login["attributes"]) == {"session.id": "sess-1", "n": 1}
    correlated = rows[2]
    assert len(correlated["trace_id"]) == 32 and len(correlated["span_id"]) == 16 and correlated["trace_flags"] & 1
    assert rows[3]["session_id"] == "99"
    assert rows[0]["trace_id"] is None and rows[0]["span_id"] is None
    assert rows[5]["severity_number"] is None and rows[5]["severity_text"] == "custom"
    assert len(ids.resource_calls) == 1 and ids.scope_calls == [("my.logger", "3.0", "{}")]


def test_logs_stored_by_both_paths_are_equal(tmp_path: Path) -> None:
    records = _log_records()
    in_process = tmp_path / "in_process.db"
    assert SQLiteLogExporter(str(in_process)).export(records).name == "SUCCESS"
    received = tmp_path / "received.db"
    writer = StoreWriter(str(received))
    writer.write_log_records(convert_logs(encode_logs(records), writer).rows)
    assert _stored(received, "log_records", LOG_COLUMNS) == _stored(in_process, "log_records", LOG_COLUMNS)


def _one_log_request(**fields: Any) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for i in range(3):
        record = scope_logs.log_records.add(time_unix_nano=100 + i, observed_time_unix_nano=200 + i)
        record.body.string_value = f"r{i}"
    for name, value in fields.items():
        setattr(scope_logs.log_records[1], name, value)
    return request


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trace_id": b"\x01" * 5}, "trace_id must be empty or 16 bytes, got 5"),
        ({"span_id": b"\x01" * 16}, "span_id must be empty or 8 bytes, got 16"),
        ({"trace_id": b"\x01" * 16, "span_id": b"\x01"}, "span_id must be empty or 8 bytes, got 1"),
    ],
)
def test_log_rejection_rules(fields: dict[str, Any], message: str) -> None:
    converted, _ = _received(convert_logs, _one_log_request(**fields))
    assert converted.rejected == 1
    assert converted.error == f"log record 1 of resource 0: {message}"
    assert [row[LOG_COLUMNS.index("body")] for row in converted.rows] == ["r0", "r2"]


def test_log_fields_without_sender_values() -> None:
    request = _one_log_request(trace_id=bytes(16), span_id=b"\x05" * 8, flags=0x101)
    request.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano = 0
    request.resource_logs[0].scope_logs[0].log_records[0].observed_time_unix_nano = 0
    request.resource_logs[0].scope_logs[0].log_records[2].observed_time_unix_nano = 0
    request.resource_logs[0].scope_logs[0].log_records[2].body.bytes_value = b"\x00\x01"
    converted, _ = _received(convert_logs, request)
    rows = [dict(zip(LOG_COLUMNS, row)) for row in converted.rows]
    assert converted.rejected == 0
    assert rows[0]["time_ns"] is None and rows[0]["observed_time_ns"] > 1_600_000_000 * 10**9  # time of receipt
    assert rows[1]["trace_id"] is None and rows[1]["span_id"] == "05" * 8 and rows[1]["trace_flags"] == 1
    assert rows[2]["observed_time_ns"] == 102 and rows[2]["body"] == "AAE="


# --- OTLP/JSON ------------------------------------------------------------------------------

SPEC_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeSpans": [
                {
                    "scope": {"name": "my.library", "version": "1.0.0"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC60C",
                            "spanId": "EEE19B7EC3C1B174",
                            "parentSpanId": "EEE19B7EC3C1B173",
                            "name": "I'm a server span",
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": "1544712661000000000",
                            "kind": 2,
                            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
                        }
                    ],
                }
            ],
        }
    ]
}


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def test_json_spec_example() -> None:
    request = decode_json("traces", _json(SPEC_EXAMPLE))
    assert isinstance(request, ExportTraceServiceRequest)
    ids = FakeIds()
    converted = convert_traces(request, ids)
    row = _row(converted)
    assert {k: v for k, v in row.items() if k not in ("resource_id", "scope_id")} == {
        "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
        "parent_span_id": "eee19b7ec3c1b173", "name": "I'm a server span", "kind": "SERVER",
        "service_name": "my.service", "start_ns": 1544712660000000000, "end_ns": 1544712661000000000,
        "status_code": "UNSET", "status_message": None, "error_type": None, "trace_state": None,
        "attributes": '{"my.span.attr":"some value"}', "links": None,
    }  # fmt: skip
    assert ids.scope_calls == [("my.library", "1.0.0", "{}")]
    assert ids.resource_calls == [('{"service.name": "my.service"}', "my.service")]


def test_json_snake_case_enum_names_numbers_and_unknown_fields() -> None:
    body = {
        "resource_spans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"string_value": "svc"}}], "futureField": 1},
                "scope_spans": [
                    {
                        "scope": {"name": "lib"},
                        "spans": [
                            {
                                "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331",
                                "parent_span_id": "", "name": "s", "start_time_unix_nano": 1544712660000000000,
                                "end_time_unix_nano": "1544712661000000000", "kind": "SPAN_KIND_CLIENT",
                                "status": {"code": "STATUS_CODE_ERROR", "message": "bad"}, "newThing": {"x": [1]},
                                "events": [{"time_unix_nano": "5", "name": "e", "attributes": [{"key": "n", "value": {"intValue": "12"}}]}],
                                "links": [{"traceId": "0AF7651916CD43DD8448EB211C80319C", "spanId": "00F067AA0BA902B7",
                                           "attributes": [{"key": "b", "value": {"bytesValue": "AAE="}}]}],
                            },
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203332",
                                "name": "t", "startTimeUnixNano": "1", "endTimeUnixNano": 2, "kind": 4,
                                "status": {"code": 1}, "traceState": "a=b",
                            },
                        ],
                    }
                ],
            }
        ],
        "unknownTopLevel": True,
    }  # fmt: skip
    converted = convert_traces(decode_json("traces", _json(body)), FakeIds())
    first, second = (_row(converted, index=i) for i in range(2))
    assert (first["kind"], first["status_code"], first["status_message"]) == ("CLIENT", "ERROR", "bad")
    assert (first["start_ns"], first["end_ns"], first["parent_span_id"]) == (1544712660000000000, 1544712661000000000, None)
    assert json.loads(first["links"]) == [{"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "00f067aa0ba902b7", "attributes": {"b": "AAE="}}]
    assert converted.events == [("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 5, "e", '{"n":12}')]
    assert (second["kind"], second["status_code"], second["trace_state"], second["end_ns"]) == ("PRODUCER", "OK", "a=b", 2)


def _hex_dict(obj: Any) -> Any:
    """protobuf's JSON (base64 ids) turned into OTLP/JSON (hex ids), as a sender writes it."""
    if isinstance(obj, list):
        return [_hex_dict(item) for item in obj]
    if isinstance(obj, dict):
        return {
            key: base64.b64decode(value).hex() if key in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id") else _hex_dict(value)
            for key, value in obj.items()
        }
    return obj


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
@pytest.mark.parametrize("snake_case", [False, True])
def test_json_round_trip_of_real_requests(signal: str, snake_case: bool) -> None:
    if signal == "traces":
        request: Any = encode_spans(_tracer_spans(_rich_spans))
    elif signal == "metrics":
        request = encode_metrics(_metrics_data(AggregationTemporality.CUMULATIVE))
        exemplar = request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].exemplars.add()
        exemplar.time_unix_nano, exemplar.as_int = 9, 1
        exemplar.trace_id, exemplar.span_id = b"\x0a" * 16, b"\x0b" * 8
    else:
        request = encode_logs(_log_records())
    as_dict = _hex_dict(json_format.MessageToDict(request, preserving_proto_field_name=snake_case))
    decoded = decode_json(signal, _json(as_dict))
    assert decoded == request


@pytest.mark.parametrize(
    ("signal", "body", "message"),
    [
        ("traces", b"{not json", "the body is not valid JSON"),
        ("traces", b"\xff\xfe\x00", "the body is not valid"),
        ("traces", b"[1, 2]", "the JSON body must be an object, got list"),
        ("logs", b'"text"', "the JSON body must be an object, got str"),
        ("traces", _json({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}),
         "resourceSpans[0].scopeSpans[0].spans[0].traceId is not valid hex: 'zz'"),
        ("traces", _json({"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "ab c"}]}]}]}),
         "resourceSpans[0].scopeSpans[0].spans[0].spanId is not valid hex"),
        ("traces", _json({"resource_spans": [{"scope_spans": [{"spans": [{"links": [{"span_id": "a b"}]}]}]}]}),
         "resource_spans[0].scope_spans[0].spans[0].links[0].span_id is not valid hex"),
        ("logs", _json({"resourceLogs": [{"scopeLogs": [{"logRecords": [{}, {"traceId": "abc"}]}]}]}),
         "resourceLogs[0].scopeLogs[0].logRecords[1].traceId is not valid hex: 'abc'"),
        ("metrics", _json({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": {"dataPoints": [{"exemplars": [{"spanId": "q"}]}]}}]}]}]}),
         "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].exemplars[0].spanId is not valid hex"),
        ("traces", _json({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}),
         "the body is not a valid OTLP/JSON ExportTraceServiceRequest"),
        ("traces", _json({"resourceSpans": 5}), "the body is not a valid OTLP/JSON ExportTraceServiceRequest"),
        ("metrics", _json({"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"sum": {"dataPoints": [{"asInt": 1.5}]}}]}]}]}),
         "the body is not a valid OTLP/JSON ExportMetricsServiceRequest"),
        ("traces", b"[" * 100_000 + b"]" * 100_000, "the JSON body is nested too deeply"),
        ("spans", b"{}", "unknown signal 'spans'"),
    ],
)
def test_json_errors_are_one_line_value_errors(signal: str, body: bytes, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        decode_json(signal, body)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_json_empty_ids_and_empty_request() -> None:
    assert decode_json("metrics", b"{}") == ExportMetricsServiceRequest()
    request = decode_json("logs", _json({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "", "spanId": "", "body": {"intValue": "5"}}]}]}]}))
    converted = convert_logs(request, FakeIds())  # type: ignore[arg-type]
    row = dict(zip(LOG_COLUMNS, converted.rows[0]))
    assert (row["trace_id"], row["span_id"], row["body"]) == (None, None, "5")


def test_receiver_rows_insert_into_a_real_store(tmp_path: Path) -> None:
    writer = StoreWriter(str(tmp_path / "s.db"))
    converted = convert_traces(decode_json("traces", _json(SPEC_EXAMPLE)), writer)  # type: ignore[arg-type]
    assert writer.write_spans(converted.rows, converted.events, converted.attributes) == 1
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT trace_id, kind, json_extract(attributes, '$.\"my.span.attr\"') FROM spans").fetchall() == [
        ("5b8efff798038103d269b633813fc60c", "SERVER", "some value")
    ]
