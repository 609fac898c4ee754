"""Zero-code: unmodified programs run under ``opentelemetry-instrument`` in a subprocess."""

from __future__ import annotations

import gzip
import subprocess
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otelkit.store import connect_for_reading

LIBRARY = '''
import time

class Pipeline:
    def run_stage(self, n):
        time.sleep(0.001)
        return n * 2

    @staticmethod
    def describe():
        return "pipeline"

def run_all(count):
    pipeline = Pipeline()
    return [pipeline.run_stage(i) for i in range(count)] + [Pipeline.describe()]

def helper():
    return 1
'''

APP = '''
import sys
import jobs
print(jobs.run_all(3), jobs.helper())
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
'''


@pytest.fixture
def program(tmp_path: Path) -> Path:
    (tmp_path / "jobs.py").write_text(textwrap.dedent(LIBRARY))
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    return app


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_autowrap_traces_unmodified_program_into_sqlite(program: Path, subprocess_env: dict[str, str]) -> None:
    db = program.parent / "auto.db"
    env = {**subprocess_env, "OTELKIT_SQLITE_PATH": str(db),
           "OTELKIT_AUTOWRAP": "jobs:run_*,jobs:Pipeline.*,jobs:nothing_*", "OTEL_SERVICE_NAME": "jobs-app"}
    done = _run(["opentelemetry-instrument", "python", str(program)], env, program.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 2, 4, 'pipeline'] 1"
    assert done.stderr.count("matched nothing") == 1 and "nothing_*" in done.stderr
    conn = connect_for_reading(str(db))
    spans = conn.execute("SELECT name, operation_type, span_id, parent_span_id, service_name FROM spans").fetchall()
    names = sorted(s[0] for s in spans)
    assert names == ["jobs.Pipeline.describe"] + ["jobs.Pipeline.run_stage"] * 3 + ["jobs.run_all"]
    assert {s[1] for s in spans} == {"function"} and {s[4] for s in spans} == {"jobs-app"}
    root = next(s for s in spans if s[0] == "jobs.run_all")
    assert root[3] is None and all(s[3] == root[2] for s in spans if s is not root)
    durations = conn.execute(
        "SELECT sum(count) FROM metric_points WHERE name = 'otelkit.operation.duration' AND kind = 'histogram'"
    ).fetchone()
    assert durations[0] == 5


def test_exit_code_and_explicit_exporter_flag(program: Path, subprocess_env: dict[str, str]) -> None:
    db = program.parent / "flag.db"
    env = {**subprocess_env, "OTELKIT_SQLITE_PATH": str(db), "OTELKIT_AUTOWRAP": "jobs:helper"}
    done = _run(["opentelemetry-instrument", "--traces_exporter", "sqlite", "--metrics_exporter", "none",
                 "python", str(program), "3"], env, program.parent)
    assert done.returncode == 3, done.stderr
    conn = connect_for_reading(str(db))
    assert [r[0] for r in conn.execute("SELECT name FROM spans")] == ["jobs.helper"]
    assert conn.execute("SELECT count(*) FROM metric_points").fetchone()[0] == 0


def test_bad_policy_file_does_not_stop_the_program(program: Path, subprocess_env: dict[str, str]) -> None:
    policy = program.parent / "bad.yaml"
    policy.write_text("store:\n  pathh: x.db\n")
    db = program.parent / "fallback.db"
    env = {**subprocess_env, "OTELKIT_CONFIG": str(policy), "OTELKIT_SQLITE_PATH": str(db), "OTELKIT_AUTOWRAP": "jobs:helper"}
    done = _run(["opentelemetry-instrument", "python", str(program)], env, program.parent)
    assert done.returncode == 0
    assert "unknown key 'store.pathh' (line 2)" in done.stderr
    assert "Traceback" not in done.stderr
    assert connect_for_reading(str(db)).execute("SELECT count(*) FROM spans").fetchone()[0] == 1


class _Collector(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            type(self).received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def otlp_http() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.received
    server.shutdown()
    server.server_close()


def test_otlp_and_sqlite_both_receive(program: Path, subprocess_env: dict[str, str], otlp_http: tuple[str, list[ExportTraceServiceRequest]]) -> None:
    endpoint, received = otlp_http
    db = program.parent / "both.db"
    env = {**subprocess_env, "OTELKIT_SQLITE_PATH": str(db), "OTELKIT_AUTOWRAP": "jobs:run_all",
           "OTEL_TRACES_EXPORTER": "otlp,sqlite", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    done = _run(["opentelemetry-instrument", "python", str(program)], env, program.parent)
    assert done.returncode == 0, done.stderr
    otlp_names = [s.name for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert otlp_names == ["jobs.run_all"]
    stored = connect_for_reading(str(db)).execute("SELECT name, span_id FROM spans").fetchall()
    sent = received[0].resource_spans[0].scope_spans[0].spans[0]
    assert stored == [("jobs.run_all", sent.span_id.hex())]
