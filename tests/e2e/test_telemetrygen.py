"""telemetrygen, the Collector project's load client, as an independent OTLP sender into ``otelkit serve``.

A client otelkit did not write (Go SDK, its own batching, both transports) sends traces, metrics
and logs; the store holds exactly what it sent, with the structure it sent, and the server's own
counters agree.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from e2e.support import Metrics, Serve, clean_env

TRACES, CHILDREN, POINTS, LOGS = 40, 3, 30, 25
SIGNALS = ("traces", "metrics", "logs")


def telemetrygen(binary: Path, signal_name: str, serve: Serve, transport: str, *args: str) -> None:
    if transport == "grpc":
        assert serve.grpc is not None
        endpoint = ["--otlp-endpoint", serve.grpc]
    else:
        endpoint = ["--otlp-http", "--otlp-endpoint", serve.http.removeprefix("http://")]
    done = subprocess.run(
        [str(binary), signal_name, "--otlp-insecure", *endpoint, "--rate", "0", *args],
        env=clean_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_telemetrygen_traces_metrics_and_logs_land_in_the_store(telemetrygen_bin: Path, serve: Serve, transport: str) -> None:
    service = f"telemetrygen-{transport}-{uuid.uuid4().hex[:8]}"
    named = ["--service", service]
    telemetrygen(telemetrygen_bin, "traces", serve, transport, *named, "--traces", str(TRACES), "--child-spans", str(CHILDREN))
    telemetrygen(telemetrygen_bin, "metrics", serve, transport, *named, "--metrics", str(POINTS), "--metric-type", "Sum")
    telemetrygen(telemetrygen_bin, "logs", serve, transport, *named, "--logs", str(LOGS), "--body", "generated log line")

    spans = serve.rows("SELECT trace_id, span_id, parent_span_id, name FROM spans WHERE service_name = ?", service)
    assert len(spans) == TRACES * (1 + CHILDREN) and len({row[1] for row in spans}) == len(spans)
    roots = {row[0]: row[1] for row in spans if row[2] is None}
    assert len(roots) == TRACES and {row[3] for row in spans if row[2] is None} == {"lets-go"}
    assert all(row[2] == roots[row[0]] for row in spans if row[2] is not None)  # each child under its trace's root
    assert serve.rows("SELECT count(*), min(kind) FROM metric_points WHERE service_name = ?", service) == [(POINTS, "sum")]
    logs = serve.rows("SELECT count(*), min(body) FROM log_records WHERE service_name = ?", service)
    assert logs == [(LOGS, "generated log line")]

    counted = Metrics.scrape(f"{serve.http}/metrics")  # the server says what it took
    accepted = [counted.total("otelkit_receiver_items_total", signal=kind, outcome="accepted") for kind in SIGNALS]
    assert accepted == [len(spans), POINTS, LOGS]
    assert counted.total("otelkit_receiver_items_total", outcome="rejected") == 0
