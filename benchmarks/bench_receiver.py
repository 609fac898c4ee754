"""Spans per second that ``otelkit serve`` ingests end to end into SQLite, over gRPC and HTTP.

The server runs as ``otelkit serve`` in its own process on 127.0.0.1; this process is the
client. It encodes every request before the clock starts (traces of 10 spans with the
attributes otelkit's instrumentation sets, ``--batch`` spans per request like an SDK's batch
processor), sends them from ``--senders`` connections at once, and stops the clock when the
last acknowledgement arrives, which the server sends only after the commit. Then it checks
that the store holds every span sent, once.

    python benchmarks/bench_receiver.py [--spans 200k] [--batch 512] [--senders 4] [--workers N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from _bench import environment_line, positive_int, verdict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

TARGET = 50_000
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
START_TIMEOUT_S = 30.0
SEND_TIMEOUT_S = 600.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=positive_int, default=200_000, help="spans per protocol (default 200k)")
    parser.add_argument("--batch", type=positive_int, default=512, help="spans per request (default 512)")
    parser.add_argument("--senders", type=positive_int, default=4, help="concurrent connections (default 4)")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="otelkit serve --workers (default: the server's own default)")
    return parser.parse_args(argv)


def _kv(key: str, value: str | int | float) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(double_value=value))


def encode_requests(total: int, batch: int, seed: int) -> list[bytes]:
    """``total`` spans in requests of ``batch``: 10-span traces (a command, steps, an LLM call
    with tokens and cost, a tool call), unique ids, start times one per microsecond."""
    rng = random.Random(seed)
    start = 1_790_000_000 * 10**9 + seed * 10**15
    shapes = [
        ("agent run", 2, [("otelkit.operation.type", "command"), ("otelkit.command.name", "agent run")]),
        ("plan", 1, [("otelkit.operation.type", "step"), ("otelkit.step.type", "plan")]),
        ("chat gpt-4o-mini", 3, [("otelkit.operation.type", "llm"), ("gen_ai.provider.name", "openai"),
                                 ("gen_ai.request.model", "gpt-4o-mini"), ("gen_ai.usage.input_tokens", 812),
                                 ("gen_ai.usage.output_tokens", 96), ("gen_ai.usage.cost", 0.0001794)]),
        ("execute_tool run_tests", 1, [("otelkit.operation.type", "tool"), ("gen_ai.tool.name", "run_tests")]),
    ]  # fmt: skip
    bodies = []
    trace_id = parent = b""
    for first in range(0, total, batch):
        request = ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        resource.resource.attributes.extend([_kv("service.name", "bench-agent"), _kv("host.name", "bench")])
        scope = resource.scope_spans.add()
        scope.scope.name, scope.scope.version = "otelkit", "0.1.0"
        for i in range(first, min(first + batch, total)):
            span = scope.spans.add()
            if i % 10 == 0:
                trace_id, parent = rng.randbytes(16), b""
            span.trace_id, span.span_id = trace_id, rng.randbytes(8)
            if parent:
                span.parent_span_id = parent
            else:
                parent = span.span_id
            name, kind, attributes = shapes[0] if i % 10 == 0 else shapes[1 + i % 3]
            span.name, span.kind = name, kind
            span.start_time_unix_nano = start + i * 1000
            span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000 + (i % 97) * 10_000
            span.attributes.extend(_kv(k, v) for k, v in attributes)
            span.status.code = 1
        bodies.append(request.SerializeToString())
    return bodies


def start_server(db: Path, workers: int | None) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", "from otelkit.cli import main; main()", "serve", "--db", str(db),
         "--grpc-endpoint", "127.0.0.1:0", "--http-endpoint", "127.0.0.1:0",
         *(["--workers", str(workers)] if workers else [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("otelkit serve: grpc "):
        process.kill()
        raise SystemExit(f"otelkit serve did not start: {line.strip()}")
    grpc_at = line.split("grpc ", 1)[1].split(",", 1)[0]
    http_at = line.split("http://", 1)[1].split(";", 1)[0]
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, grpc_at, http_at


def send_http(address: str, bodies: list[bytes], failures: list[str]) -> None:
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=SEND_TIMEOUT_S)
    for body in bodies:
        while True:
            connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            response = connection.getresponse()
            response_body = response.read()
            if response.status == 503:  # what a real sender does: wait, retry
                time.sleep(0.05)
                if response.getheader("Connection") == "close":
                    connection.close()
                continue
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
            elif body := response_body:
                failures.append(f"partial success: {body!r:.120}")
            break
    connection.close()


def send_grpc(address: str, bodies: list[bytes], failures: list[str]) -> None:
    with grpc.insecure_channel(address) as channel:
        export = channel.unary_unary(EXPORT)
        for body in bodies:
            while True:
                try:
                    answer = export(body, timeout=SEND_TIMEOUT_S)
                    if answer:  # an empty response is full success; anything else is a partial one
                        failures.append(f"partial success: {answer!r:.120}")
                except grpc.RpcError as error:
                    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                        time.sleep(0.05)
                        continue
                    failures.append(str(error.code()))
                break


def run(protocol: str, args: argparse.Namespace, seed: int) -> tuple[float, int, int, list[str]]:
    """(spans/s, spans sent, spans stored, failures) for one protocol on a fresh store."""
    bodies = encode_requests(args.spans, args.batch, seed)
    with tempfile.TemporaryDirectory(prefix="otelkit-bench-") as scratch:
        db = Path(scratch) / "received.db"
        process, grpc_at, http_at = start_server(db, args.workers)
        failures: list[str] = []
        target, address = (send_grpc, grpc_at) if protocol == "grpc" else (send_http, http_at)
        senders = [threading.Thread(target=target, args=(address, bodies[i :: args.senders], failures))
                   for i in range(args.senders)]  # fmt: skip
        t0 = time.perf_counter()
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        elapsed = time.perf_counter() - t0
        process.terminate()
        process.wait(60)
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
    return args.spans / elapsed, args.spans, stored, failures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"otelkit serve ingest benchmark: {args.spans:,} spans per protocol, {args.batch} per request, "
          f"{args.senders} senders")  # fmt: skip
    print(f"  {environment_line()}, {os.cpu_count()} CPUs; server and client in separate processes on 127.0.0.1")
    worst = float("inf")
    lost = False
    for seed, protocol in enumerate(("grpc", "http"), 1):
        rate, sent, stored, failures = run(protocol, args, seed)
        worst = min(worst, rate)
        lost |= stored != sent or bool(failures)
        print(f"  {protocol:<5} {rate:>10,.0f} spans/s end to end; stored {stored:,} of {sent:,}"
              + (f"; failures: {sorted(set(failures))}" if failures else ""))  # fmt: skip
    print(f"target: >= {TARGET:,} spans/s on both protocols with nothing lost: {verdict(worst >= TARGET and not lost)} "
          f"(slowest {worst:,.0f} spans/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
