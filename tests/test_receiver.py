"""``otelkit serve`` in a subprocess, driven by real clients: the official OTLP exporters over
gRPC and HTTP for traces, metrics and logs (stored exactly as the in-process exporters store
the same data), raw HTTP requests and raw gRPC calls for every error the specification names,
tokens, duplicate deliveries, kill -9 after an acknowledgement, and graceful shutdown."""

from __future__ import annotations

import gzip
import json
import signal
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import grpc
import psutil
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from receiver_support import Served, start_server
from test_cli import assert_one_line_error, run

from otelkit.exporters.sqlite import SQLiteLogExporter, SQLiteMetricExporter, SQLiteSpanExporter

SPAN_FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "service_name", "start_ns", "end_ns",
               "status_code", "status_message", "error_type", "trace_state")  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = start_server(tmp_path_factory.mktemp("serve") / "received.db")
    yield server
    assert server.stop() == 0, server.output()


def make_spans(service: str, count: int = 5) -> list[ReadableSpan]:
    """Finished SDK spans of every kind and status, with events, links and nested attributes."""
    provider = TracerProvider(resource=Resource.create({"service.name": service, "host.name": "h1"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.receiver", "1.2.3")
    kinds = list(SpanKind)
    for i in range(count):
        with tracer.start_as_current_span("command run", kind=kinds[i % len(kinds)],
                                          attributes={"otelkit.operation.type": "command", "i": i,
                                                      "ratio": 0.5, "ok": True, "tags": ["a", "b"]}) as root:  # fmt: skip
            with tracer.start_as_current_span("step", links=[Link(root.get_span_context(), {"why": "x"})]) as child:
                child.add_event("checkpoint", {"n": 1})
                if i % 2:
                    try:
                        raise ValueError("boom")
                    except ValueError as exc:
                        child.record_exception(exc)
                    child.set_status(Status(StatusCode.ERROR, "it failed"))
                else:
                    child.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return list(memory.get_finished_spans())


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def stored_spans(db: Path, trace_ids: set[str]) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(trace_ids))
    found = rows(db, f"SELECT {', '.join(SPAN_FIELDS)}, attributes, links FROM spans WHERE trace_id IN ({marks}) "
                 "ORDER BY span_id", tuple(trace_ids))  # fmt: skip
    return [(*r[:-2], json.loads(r[-2]), json.loads(r[-1]) if r[-1] else None) for r in found]


def stored_events(db: Path, trace_ids: set[str]) -> list[tuple[Any, ...]]:
    marks = ",".join("?" * len(trace_ids))
    found = rows(db, f"SELECT trace_id, span_id, time_ns, name, attributes FROM span_events WHERE trace_id IN ({marks}) "
                 "ORDER BY span_id, time_ns", tuple(trace_ids))  # fmt: skip
    return [(*r[:-1], json.loads(r[-1])) for r in found]


def reference_store(tmp_path: Path, spans: list[ReadableSpan]) -> Path:
    """The same spans stored by the in-process SQLite exporter."""
    path = tmp_path / "reference.db"
    assert SQLiteSpanExporter(str(path)).export(spans) is SpanExportResult.SUCCESS
    return path


def trace_ids(spans: list[ReadableSpan]) -> set[str]:
    return {"%032x" % s.context.trace_id for s in spans}


# --- the official exporters --------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["grpc", "http", "http-gzip"])
def test_spans_round_trip_through_the_official_exporters(served: Served, tmp_path: Path, transport: str) -> None:
    spans = make_spans(f"svc-{transport}")
    if transport == "grpc":
        exporter: Any = GrpcSpanExporter(endpoint=served.grpc, insecure=True)
    else:
        compression = Compression.Gzip if transport == "http-gzip" else Compression.NoCompression
        exporter = HttpSpanExporter(endpoint=f"{served.http}/v1/traces", compression=compression)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    exporter.shutdown()
    ids = trace_ids(spans)
    expected = reference_store(tmp_path, spans)
    assert stored_spans(served.db, ids) == stored_spans(expected, ids)
    assert len(stored_spans(served.db, ids)) == len(spans)
    assert stored_events(served.db, ids) == stored_events(expected, ids)
    assert any(r[10] == "ValueError" for r in stored_spans(served.db, ids))  # error type from the exception event
    # resource and scope rows: interned by the writer thread, joined as the SDK exporter's are
    marks = ",".join("?" * len(ids))
    joined = rows(served.db, "SELECT DISTINCT r.service_name, json_extract(r.attributes, '$.\"host.name\"'), c.name, "
                  f"c.version FROM spans s JOIN resources r ON r.id = s.resource_id JOIN scopes c ON c.id = s.scope_id "
                  f"WHERE s.trace_id IN ({marks})", tuple(ids))  # fmt: skip
    assert joined == [(f"svc-{transport}", "h1", "tests.receiver", "1.2.3")]


def test_a_redelivered_batch_stores_nothing_twice(served: Served) -> None:
    spans = make_spans("svc-retry", 3)
    exporter = HttpSpanExporter(endpoint=f"{served.http}/v1/traces")
    for _ in range(3):
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    grpc_exporter = GrpcSpanExporter(endpoint=served.grpc, insecure=True)
    assert grpc_exporter.export(spans) is SpanExportResult.SUCCESS
    ids = trace_ids(spans)
    assert len(stored_spans(served.db, ids)) == len(spans)
    assert len(stored_events(served.db, ids)) == sum(len(s.events) for s in spans)


def _metrics_data(service: str) -> Any:
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    meter = provider.get_meter("tests.receiver")
    meter.create_counter("jobs", unit="1", description="jobs run").add(3, {"queue": "a"})
    meter.create_up_down_counter("active").add(-2)
    meter.create_histogram("latency", unit="ms").record(12.5, {"route": "/x"})
    meter.create_gauge("temperature").set(21.5)
    return reader.get_metrics_data()


METRIC_FIELDS = ("name", "description", "unit", "kind", "temporality", "is_monotonic", "service_name",
                 "start_ns", "time_ns", "attributes", "value", "count", "sum", "min", "max", "buckets")  # fmt: skip


def stored_metrics(db: Path, service: str) -> list[tuple[Any, ...]]:
    return rows(db, f"SELECT {', '.join(METRIC_FIELDS)} FROM metric_points WHERE service_name = ? ORDER BY name",
                (service,))  # fmt: skip


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_metrics_round_trip(served: Served, tmp_path: Path, transport: str) -> None:
    service = f"metrics-{transport}"
    data = _metrics_data(service)
    exporter: Any = (GrpcMetricExporter(endpoint=served.grpc, insecure=True) if transport == "grpc"
                     else HttpMetricExporter(endpoint=f"{served.http}/v1/metrics"))  # fmt: skip
    assert exporter.export(data) is MetricExportResult.SUCCESS
    reference = tmp_path / "reference.db"
    assert SQLiteMetricExporter(str(reference)).export(data) is MetricExportResult.SUCCESS
    got = stored_metrics(served.db, service)
    assert got == stored_metrics(reference, service)
    assert {r[3] for r in got} == {"sum", "histogram", "gauge"}


LOG_FIELDS = ("time_ns", "observed_time_ns", "severity_number", "severity_text", "body", "trace_id", "span_id",
              "trace_flags", "service_name", "session_id", "attributes")  # fmt: skip


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_logs_round_trip(served: Served, tmp_path: Path, transport: str) -> None:
    import logging

    service = f"logs-{transport}"
    memory = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    tracer_provider = TracerProvider()
    from opentelemetry.sdk._logs import LoggingHandler

    logger = logging.getLogger(f"tests.receiver.{transport}")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=logger_provider))
    with tracer_provider.get_tracer("t").start_as_current_span("s"):
        logger.warning("disk at %d%%", 91, extra={"session.id": "sess-1", "disk": "sda"})
    logger.error("plain")
    batch = list(memory.get_finished_logs())
    exporter: Any = (GrpcLogExporter(endpoint=served.grpc, insecure=True) if transport == "grpc"
                     else HttpLogExporter(endpoint=f"{served.http}/v1/logs"))  # fmt: skip
    assert exporter.export(batch) is LogRecordExportResult.SUCCESS
    reference = tmp_path / "reference.db"
    assert SQLiteLogExporter(str(reference)).export(batch) is LogRecordExportResult.SUCCESS
    query = f"SELECT {', '.join(LOG_FIELDS)} FROM log_records WHERE service_name = ? ORDER BY observed_time_ns"
    got = rows(served.db, query, (service,))
    assert got == rows(reference, query, (service,))
    assert [r[4] for r in got] == ["disk at 91%", "plain"]
    assert got[0][5] is not None and got[0][9] == "sess-1"


# --- raw HTTP ------------------------------------------------------------------------------------
def post(url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body if method == "POST" else None, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def rpc_status(body: bytes) -> status_pb2.Status:
    parsed = status_pb2.Status()
    parsed.ParseFromString(body)
    return parsed


PB = {"Content-Type": "application/x-protobuf"}


def test_http_errors_are_google_rpc_statuses(served: Served) -> None:
    good = encode_spans(make_spans("svc-errors", 1)).SerializeToString()
    code, _, body = post(f"{served.http}/v1/nothing", good, PB)
    assert code == 404 and "no OTLP endpoint" in rpc_status(body).message
    code, headers, body = post(f"{served.http}/v1/traces", b"", {}, method="GET")
    assert code == 405 and headers["Allow"] == "POST"
    code, _, body = post(f"{served.http}/v1/traces", good, {"Content-Type": "text/plain"})
    assert code == 415 and "Content-Type" in rpc_status(body).message
    code, _, body = post(f"{served.http}/v1/traces", good, {**PB, "Content-Encoding": "br"})
    assert code == 415 and "Content-Encoding" in rpc_status(body).message
    code, _, body = post(f"{served.http}/v1/traces", b"\xff\xff\xff garbage", PB)
    assert code == 400 and rpc_status(body).code == code_pb2.INVALID_ARGUMENT
    code, _, body = post(f"{served.http}/v1/traces", b"not gzip", {**PB, "Content-Encoding": "gzip"})
    assert code == 400 and "gzip" in rpc_status(body).message
    code, _, body = post(f"{served.http}/v1/traces", b"{not json", {"Content-Type": "application/json"})
    assert code == 400
    assert json.loads(body)["code"] == code_pb2.INVALID_ARGUMENT  # a JSON request gets a JSON Status


def test_http_body_limits_hold_after_decompression(tmp_path: Path) -> None:
    server = start_server(tmp_path / "small.db", "--max-body-mib", "1")
    try:
        bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros in ~64 KiB
        assert len(bomb) < 1024 * 1024
        code, _, body = post(f"{server.http}/v1/traces", bomb, {**PB, "Content-Encoding": "gzip"})
        assert code == 413 and rpc_status(body).code == code_pb2.RESOURCE_EXHAUSTED
        code, _, _ = post(f"{server.http}/v1/traces", b"\0" * (2 * 1024 * 1024), PB)
        assert code == 413
        code, _, _ = post(f"{server.http}/health", b"", {}, method="GET")
        assert code == 200  # still serving
    finally:
        assert server.stop() == 0


def test_partial_success_names_the_malformed_spans(served: Served) -> None:
    request = encode_spans(make_spans("svc-partial", 2))
    bad = request.resource_spans[0].scope_spans[0].spans[0]
    bad.trace_id = b"\x01\x02\x03"
    code, _, body = post(f"{served.http}/v1/traces", request.SerializeToString(), PB)
    assert code == 200
    response = trace_service_pb2.ExportTraceServiceResponse()
    response.ParseFromString(body)
    assert response.partial_success.rejected_spans == 1
    assert "trace_id" in response.partial_success.error_message
    total = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    assert rows(served.db, "SELECT count(*) FROM spans WHERE service_name = 'svc-partial'")[0][0] == total - 1


def test_otlp_json_in_and_out(served: Served) -> None:
    payload = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
               "scopeSpans": [{"scope": {"name": "my.library", "version": "1.0.0"}, "spans": [{
                   "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
                   "parentSpanId": "EEE19B7EC3C1B173", "name": "I'm a server span",
                   "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": 1544712661000000000, "kind": 2,
                   "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
                   "someFutureField": {"ignored": True}}]}]}]}  # fmt: skip
    code, headers, body = post(f"{served.http}/v1/traces", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {}
    stored = rows(served.db, "SELECT trace_id, span_id, parent_span_id, kind, start_ns, attributes FROM spans "
                  "WHERE service_name = 'json-svc'")  # fmt: skip
    assert stored == [("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173", "SERVER",
                       1544712660000000000, '{"my.span.attr":"some value"}')]  # fmt: skip


def test_health_and_prometheus_metrics(served: Served) -> None:
    code, _, body = post(f"{served.http}/health", b"", {}, method="GET")
    assert code == 200 and json.loads(body) == {"status": "ok"}
    code, headers, body = post(f"{served.http}/metrics", b"", {}, method="GET")
    text = body.decode()
    assert code == 200 and headers["Content-Type"].startswith("text/plain")
    accepted = next(line for line in text.splitlines()
                    if line.startswith('otelkit_receiver_items_total{signal="traces",outcome="accepted"}'))  # fmt: skip
    assert int(accepted.rsplit(" ", 1)[1]) > 0
    assert "otelkit_receiver_queue_items " in text
    assert "otelkit_receiver_store_writer_restarts_total 0" in text


# --- raw gRPC ------------------------------------------------------------------------------------
def test_grpc_undecodable_request_is_invalid_argument(served: Served) -> None:
    assert served.grpc is not None
    with grpc.insecure_channel(served.grpc) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as caught:
            export(b"\xff\xff\xff garbage", timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT


# --- tokens --------------------------------------------------------------------------------------
def test_bearer_tokens_on_both_protocols(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# rotated monthly\nold-token-123\nnew-token-456\n")
    server = start_server(tmp_path / "auth.db", "--token-file", str(tokens))
    try:
        spans = make_spans("svc-auth", 1)
        good = encode_spans(spans).SerializeToString()
        code, headers, body = post(f"{server.http}/v1/traces", good, PB)
        assert code == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert rpc_status(body).code == code_pb2.UNAUTHENTICATED
        code, _, body = post(f"{server.http}/v1/traces", good, {**PB, "Authorization": "Bearer wrong"})
        assert code == 401 and b"wrong" not in body
        for token in ("old-token-123", "new-token-456"):
            code, _, _ = post(f"{server.http}/v1/traces", good, {**PB, "Authorization": f"Bearer {token}"})
            assert code == 200
        denied = GrpcSpanExporter(endpoint=server.grpc, insecure=True, timeout=5)
        assert denied.export(spans) is SpanExportResult.FAILURE
        allowed = GrpcSpanExporter(endpoint=server.grpc, insecure=True, headers={"authorization": "Bearer new-token-456"})
        assert allowed.export(spans) is SpanExportResult.SUCCESS
    finally:
        assert server.stop() == 0
    assert "token-" not in server.output()


# --- durability and lifecycle -------------------------------------------------------------------
def store_writers(server: Served) -> list[psutil.Process]:
    """The server's store-writer processes (not multiprocessing's resource tracker)."""
    return [child for child in psutil.Process(server.process.pid).children()
            if any("spawn_main" in part for part in child.cmdline())]  # fmt: skip


def test_kill_9_after_an_acknowledgement_loses_nothing(tmp_path: Path) -> None:
    server = start_server(tmp_path / "killed.db", "--workers", "2")
    acknowledged = []
    for i in range(5):
        spans = make_spans(f"svc-kill-{i}", 4)
        code, _, _ = post(f"{server.http}/v1/traces", encode_spans(spans).SerializeToString(), PB)
        assert code == 200
        acknowledged += spans
    writers = store_writers(server)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(writers) == 2  # --workers 2
    ids = trace_ids(acknowledged)
    assert len(stored_spans(server.db, ids)) == len(acknowledged)
    _, alive = psutil.wait_procs(writers, timeout=30)
    assert not alive  # the store writers see their pipe close and exit


def test_sigterm_stops_gracefully(tmp_path: Path) -> None:
    server = start_server(tmp_path / "graceful.db")
    spans = make_spans("svc-term", 2)
    assert HttpSpanExporter(endpoint=f"{server.http}/v1/traces").export(spans) is SpanExportResult.SUCCESS
    assert server.stop(signal.SIGTERM) == 0
    assert f"committed {len(spans):,} spans" in server.output()


# --- the command's own errors ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--grpc-endpoint", "nonsense"], "HOST:PORT"),
        (["--http-endpoint", "127.0.0.1:99999"], "out of range"),
        (["--token-file", "/no/such/file"], "cannot read the token file"),
        (["--tls-cert", "/no/cert.pem"], "--tls-cert and --tls-key go together"),
        (["--grpc-endpoint", "none", "--http-endpoint", "none"], "nothing to serve"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run("serve", "--db", str(tmp_path / "x.db"), *args)
    assert_one_line_error(result, fragment)


def test_serve_refuses_a_foreign_database(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    result = run("serve", "--db", str(foreign), "--grpc-endpoint", "127.0.0.1:0", "--http-endpoint", "127.0.0.1:0")
    assert_one_line_error(result, "not an otelkit store")


def test_retry_info_is_attached_to_unavailable() -> None:
    """The UNAVAILABLE status carries RetryInfo (what the OTLP exporters read for the delay)."""
    from otelkit.exporters.receiver.messages import status

    detail = status(code_pb2.UNAVAILABLE, "busy", 1)
    info = error_details_pb2.RetryInfo()
    assert detail.details[0].Unpack(info) and info.retry_delay.seconds == 1


# --- a busy store and a flood: 503 and retry, never loss -------------------------------------------
def _policy(tmp_path: Path, busy_timeout_ms: int) -> dict[str, str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"store:\n  busy_timeout_ms: {busy_timeout_ms}\n")
    return {"OTELKIT_CONFIG": str(policy)}


def _body(service: str, count: int = 4) -> tuple[bytes, list[ReadableSpan]]:
    spans = make_spans(service, count)
    return encode_spans(spans).SerializeToString(), spans


def test_a_locked_store_answers_503_then_stores_the_retry(tmp_path: Path) -> None:
    server = start_server(tmp_path / "locked.db", env=_policy(tmp_path, 200))
    try:
        body, spans = _body("svc-locked")
        blocker = sqlite3.connect(server.db, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            code, headers, answer = post(f"{server.http}/v1/traces", body, PB)
            assert code == 503 and headers["Retry-After"] == "1"
            status = rpc_status(answer)
            assert status.code == code_pb2.UNAVAILABLE and "could not write" in status.message
            info = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(info) and info.retry_delay.seconds == 1
            with grpc.insecure_channel(server.grpc) as channel:  # type: ignore[arg-type]
                export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
                with pytest.raises(grpc.RpcError) as caught:
                    export(body, timeout=30)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        code, _, _ = post(f"{server.http}/v1/traces", body, PB)  # the sender's retry
        assert code == 200
    finally:
        assert server.stop() == 0
    assert len(stored_spans(server.db, trace_ids(spans))) == len(spans)


def test_a_flood_beyond_the_queue_gets_503_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """With the writer stuck behind a lock, requests fill the bounded queue; the rest are
    refused at once with 503. Every acknowledged span is stored once the lock is gone."""
    import concurrent.futures
    import time

    server = start_server(tmp_path / "flood.db", "--queue-items", "1000", env=_policy(tmp_path, 20_000))
    bodies = [_body(f"svc-flood-{i}", 50) for i in range(12)]  # 100 spans each: 10 fill the queue
    blocker = sqlite3.connect(server.db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            futures = [pool.submit(post, f"{server.http}/v1/traces", body, PB) for body, _ in bodies]
            deadline = time.monotonic() + 20
            while sum(f.done() for f in futures) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            refused_early = [f.result()[0] for f in futures if f.done()]
            blocker.execute("ROLLBACK")
            results = [f.result()[0] for f in futures]
    finally:
        blocker.close()
    assert refused_early and set(refused_early) == {503}  # refused while the store was locked
    assert set(results) <= {200, 503} and results.count(200) >= 1
    acknowledged = [spans for (code, (_, spans)) in zip(results, bodies) if code == 200]
    assert server.stop() == 0
    for spans in acknowledged:
        assert len(stored_spans(server.db, trace_ids(spans))) == len(spans)
    code_lines = [line for line in server.output().splitlines() if "committed" in line]
    assert code_lines and f"committed {sum(len(s) for s in acknowledged):,} spans" in code_lines[0]


def test_grpc_calls_beyond_the_handler_threads_get_unavailable_with_retry_info(tmp_path: Path) -> None:
    """More concurrent calls than the server works on are refused retryably (UNAVAILABLE with
    RetryInfo), never with grpcio's RESOURCE_EXHAUSTED that OTLP senders treat as permanent."""
    import concurrent.futures
    import time

    server = start_server(tmp_path / "calls.db", env=_policy(tmp_path, 20_000))
    assert server.grpc is not None
    bodies = [_body(f"svc-calls-{i}", 1) for i in range(100)]
    blocker = sqlite3.connect(server.db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")

    def send(body: bytes) -> tuple[grpc.StatusCode, int | None]:
        with grpc.insecure_channel(server.grpc) as channel:  # type: ignore[arg-type]
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            try:
                export(body, timeout=60)
            except grpc.RpcError as error:
                details = dict(error.trailing_metadata() or ()).get("grpc-status-details-bin")  # type: ignore[attr-defined]
                delay = None
                if details:
                    info = error_details_pb2.RetryInfo()
                    status = status_pb2.Status.FromString(details)
                    delay = info.retry_delay.seconds if status.details and status.details[0].Unpack(info) else None
                return error.code(), delay  # type: ignore[attr-defined]
            return grpc.StatusCode.OK, None

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            futures = [pool.submit(send, body) for body, _ in bodies]
            time.sleep(3)  # every call has arrived and waits behind the locked store
            blocker.execute("ROLLBACK")
            results = [f.result() for f in futures]
    finally:
        blocker.close()
    codes = [code for code, _ in results]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    assert codes.count(grpc.StatusCode.UNAVAILABLE) >= len(bodies) - 64  # 8 handler threads x 8
    assert all(delay == 1 for code, delay in results if code is grpc.StatusCode.UNAVAILABLE)
    acknowledged = [spans for (code, _), (_, spans) in zip(results, bodies) if code is grpc.StatusCode.OK]
    assert acknowledged
    assert server.stop() == 0
    for spans in acknowledged:
        assert len(stored_spans(server.db, trace_ids(spans))) == len(spans)


def test_a_store_writer_that_dies_is_replaced_and_nothing_acknowledged_is_lost(tmp_path: Path) -> None:
    import time

    server = start_server(tmp_path / "writer.db", "--workers", "1")
    acknowledged: list[ReadableSpan] = []
    try:
        (writer,) = store_writers(server)
        body, spans = _body("svc-before")
        assert post(f"{server.http}/v1/traces", body, PB)[0] == 200
        acknowledged += spans
        writer.kill()  # a zombie until the server notices and reaps it
        codes = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the sender retries until the new writer takes it
            body, spans = _body("svc-after")
            code, headers, answer = post(f"{server.http}/v1/traces", body, PB)
            codes.append(code)
            if code == 200:
                acknowledged += spans
                break
            assert code == 503 and headers["Retry-After"] == "1" and "store writer" in rpc_status(answer).message
            time.sleep(0.2)
        assert codes[-1] == 200
        (replacement,) = store_writers(server)
        assert replacement.pid != writer.pid
        text = post(f"{server.http}/metrics", b"", {}, method="GET")[2].decode()
        assert "otelkit_receiver_store_writer_restarts_total 1" in text
    finally:
        assert server.stop() == 0
    for spans in (acknowledged,):
        assert len(stored_spans(server.db, trace_ids(spans))) == len(spans)


def test_workers_must_be_a_positive_number(tmp_path: Path) -> None:
    result = run("serve", "--db", str(tmp_path / "w.db"), "--workers", "0")
    assert_one_line_error(result, "--workers")


# --- TLS -----------------------------------------------------------------------------------------
def test_tls_and_client_certificates_on_both_protocols(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("client.example")
    client_pem = tmp_path / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    server = start_server(tmp_path / "tls.db", "--tls-cert", str(cert), "--tls-key", str(key),
                          "--tls-client-ca", str(ca_file))  # fmt: skip
    try:
        assert server.http is not None and server.http.startswith("https://")
        body, spans = _body("svc-tls", 2)
        context = ssl.create_default_context(cafile=str(ca_file))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(urllib.request.Request(f"{server.http}/v1/traces", body, PB), context=context,
                                   timeout=10).read()  # fmt: skip
        context.load_cert_chain(str(client_pem))
        with urllib.request.urlopen(urllib.request.Request(f"{server.http}/v1/traces", body, PB), context=context,
                                    timeout=10) as response:  # fmt: skip
            assert response.status == 200
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca.cert_pem.bytes(), private_key=client.private_key_pem.bytes(),
            certificate_chain=client.cert_chain_pems[0].bytes(),
        )  # fmt: skip
        exporter = GrpcSpanExporter(endpoint=server.grpc, credentials=credentials)
        grpc_spans = make_spans("svc-tls-grpc", 2)
        assert exporter.export(grpc_spans) is SpanExportResult.SUCCESS
    finally:
        assert server.stop() == 0
    assert len(stored_spans(server.db, trace_ids(spans))) == len(spans)
    assert len(stored_spans(server.db, trace_ids(grpc_spans))) == len(grpc_spans)


# --- alert rules on ingested spans ---------------------------------------------------------------
def test_the_policy_alert_rules_run_on_ingested_spans(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("alerts:\n  rules:\n    - {name: burst, kind: error_burst, threshold: 3, window_s: 600}\n"
                      "  log: false\n  store: true\n")  # fmt: skip
    server = start_server(tmp_path / "alerts.db", env={"OTELKIT_CONFIG": str(policy)})
    try:
        spans = make_spans("svc-alerting", 8)  # 4 of the 8 step spans fail
        failing = {"%032x" % s.context.trace_id for s in spans if s.status.status_code is StatusCode.ERROR}
        assert GrpcSpanExporter(endpoint=server.grpc, insecure=True).export(spans) is SpanExportResult.SUCCESS
    finally:
        assert server.stop() == 0
    alerts = rows(server.db, "SELECT rule, kind, state, trace_id FROM alerts")
    assert len(alerts) == 1
    rule, kind, state, trace_id = alerts[0]
    assert (rule, kind, state) == ("burst", "error_burst", "firing") and trace_id in failing


# --- sanitization before storage -------------------------------------------------------------------
SECRET = "sk-proj-Xa12bC34dE56fG78hI90jK12lM34nO56pQ78"


def _planted(service: str) -> tuple[list[ReadableSpan], Any, list[Any]]:
    """Spans, metrics and logs carrying one secret in every place a sender can put it."""
    resource = Resource.create({"service.name": service, "deploy.note": f"key {SECRET}"})
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.planted")
    with tracer.start_as_current_span("root") as root:
        with tracer.start_as_current_span(f"call {SECRET}", attributes={"prompt": f"use {SECRET} please"},
                                          links=[Link(root.get_span_context(), {"why": SECRET})]) as span:  # fmt: skip
            span.add_event(f"sent {SECRET}", {"payload": SECRET})
            span.set_status(Status(StatusCode.ERROR, f"rejected {SECRET}"))
    reader = InMemoryMetricReader()
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meters.get_meter("tests.planted").create_counter("calls").add(1, {"note": f"key={SECRET}"})
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    from opentelemetry._logs import LogRecord

    logger_provider.get_logger("tests.planted").emit(LogRecord(body=f"token {SECRET}", attributes={"note": SECRET}))
    return list(memory.get_finished_spans()), reader.get_metrics_data(), list(logs.get_finished_logs())


def test_sanitize_scrubs_every_place_before_storage(tmp_path: Path) -> None:
    server = start_server(tmp_path / "scrubbed.db", "--sanitize")
    try:
        spans, metrics, logs = _planted("svc-planted")
        assert GrpcSpanExporter(endpoint=server.grpc, insecure=True).export(spans) is SpanExportResult.SUCCESS
        assert HttpMetricExporter(endpoint=f"{server.http}/v1/metrics").export(metrics) is MetricExportResult.SUCCESS
        assert HttpLogExporter(endpoint=f"{server.http}/v1/logs").export(logs) is LogRecordExportResult.SUCCESS
    finally:
        assert server.stop() == 0
    with sqlite3.connect(server.db) as conn:
        dump = "\n".join(conn.iterdump())
    assert SECRET not in dump and "[REDACTED:" in dump
    for path in server.db.parent.glob(server.db.name + "*"):  # the file, its WAL, anything left
        assert SECRET.encode() not in path.read_bytes(), path
    counted = rows(server.db, "SELECT name, json_extract(attributes, '$.\"otelkit.sanitize.redacted\"') FROM spans")
    assert all(count and count >= 1 for _, count in counted)  # the resource's secret counts on every span
    assert len(counted) == 2


def test_without_sanitize_the_receiver_stores_what_it_was_sent(served: Served) -> None:
    spans, _, _ = _planted("svc-unscrubbed")
    assert GrpcSpanExporter(endpoint=served.grpc, insecure=True).export(spans) is SpanExportResult.SUCCESS
    stored = rows(served.db, "SELECT attributes FROM spans WHERE service_name = 'svc-unscrubbed'")
    assert any(SECRET in attributes for (attributes,) in stored)
