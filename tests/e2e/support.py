"""What the end-to-end tests run and read: the Collector, Jaeger, ``otelkit serve``, an OTLP sender.

Every wait is a loop bounded in attempts and in time; every process keeps its output where a
failing test shows it (``conftest.py``); everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from otelkit.collector_config import FEATURE_GATES
from receiver_support import Served, start_server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and the binary binding it
T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1 (all held open while choosing, so none repeats)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_until(check: Callable[[], T], what: str, timeout_s: float = 60.0, interval_s: float = 0.2) -> T:
    """The first truthy result of ``check()``; polled at most ``timeout_s / interval_s + 1`` times and
    never past ``timeout_s``, then an AssertionError naming ``what`` and the last result."""
    deadline = time.monotonic() + timeout_s
    result = check()
    for _ in range(int(timeout_s / interval_s)):
        if result or time.monotonic() > deadline:
            break
        time.sleep(interval_s)
        result = check()
    if not result:
        raise AssertionError(f"gave up after {timeout_s:g}s waiting for {what} (last: {result!r})")
    return result


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without OTEL_*/OTELKIT_* variables (each test sets its own), plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL")}
    env.update(settings)
    return env


def get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 (a readiness probe)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Process:
    """A binary under test; its stdout and stderr go to a log file a failing test prints."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.args, self.env, self.log_path = name, args, env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it has not exited within ``timeout_s``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)

    def log(self, lines: int = 150) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start_until(self, ready: Callable[[], bool]) -> None:
        """Start and poll ``ready`` until it holds; an AssertionError with the log if the process
        exits or ``START_TIMEOUT_S`` passes first."""
        self.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for _ in range(int(START_TIMEOUT_S / 0.1)):
            if ready():
                return
            if not self.running() or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"{self.name} did not start:\n{self.log()}")


def start_on_free_ports(start: Callable[[], None], process: Callable[[], Process]) -> None:
    """``start()`` (which picks fresh free ports each time), again while a port was taken meanwhile."""
    for attempt in range(START_ATTEMPTS):
        try:
            start()
            return
        except AssertionError:
            if attempt == START_ATTEMPTS - 1 or "address already in use" not in process().log():
                raise


@dataclass(frozen=True)
class Metrics:
    """One scrape of a Prometheus text endpoint."""

    samples: list[tuple[str, dict[str, str], float]]

    _SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
    _LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

    @classmethod
    def scrape(cls, url: str) -> Metrics:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples = []
        for line in text.splitlines():
            match = cls._SAMPLE.match(line)
            if match and not line.startswith("#"):
                labels = dict(cls._LABEL.findall(match.group(2) or ""))
                samples.append((match.group(1), labels, float(match.group(3))))
        return cls(samples)

    def total(self, name: str, **labels: str) -> float:
        """The sum of ``name`` over every series carrying ``labels``."""
        return sum(
            value
            for sample, have, value in self.samples
            if sample == name and all(have.get(key) == wanted for key, wanted in labels.items())
        )


class Jaeger:
    """Jaeger v2 with ``collector-config/jaeger.yaml`` (in-memory storage), every port moved to a free one."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self.process = Process("jaeger", [], {}, workdir / "jaeger.log")
        self.otlp_grpc_port = self.query_port = 0

    def start(self) -> None:
        def attempt() -> None:
            otlp_grpc, otlp_http, query_http, query_grpc, metrics = free_ports(5)
            self.otlp_grpc_port, self.query_port = otlp_grpc, query_http
            env = clean_env(
                JAEGER_OTLP_GRPC_PORT=str(otlp_grpc), JAEGER_OTLP_HTTP_PORT=str(otlp_http),
                JAEGER_QUERY_HTTP_PORT=str(query_http), JAEGER_QUERY_GRPC_PORT=str(query_grpc),
                JAEGER_METRICS_PORT=str(metrics),
            )  # fmt: skip
            config = REPO / "collector-config" / "jaeger.yaml"
            self.process = Process("jaeger", [str(self.binary), "--config", str(config)], env, self.process.log_path)
            self.process.start_until(lambda: answers(self.url("/api/services")) and port_open(otlp_grpc))

        start_on_free_ports(attempt, lambda: self.process)

    @property
    def otlp_endpoint(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc_port}"

    def url(self, path: str, **params: Any) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"http://127.0.0.1:{self.query_port}{path}{query}"

    def services(self) -> list[str]:
        return list(get_json(self.url("/api/services"))["data"] or [])

    def traces(self, service: str) -> list[dict[str, Any]]:
        """Every trace of ``service`` Jaeger holds (the search API, up to 5000)."""
        return list(get_json(self.url("/api/traces", service=service, limit=5000, lookback="1h"))["data"] or [])

    def trace(self, trace_id: str) -> dict[str, Any]:
        (found,) = get_json(self.url(f"/api/traces/{trace_id}"))["data"]
        return dict(found)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Serve:
    """``otelkit serve`` into one store; after its first start it keeps its gRPC port, so it can be
    stopped and started again where the Collector already sends."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.grpc: str | None = None
        self.runs: list[Served] = []

    def start(self) -> None:
        extra = ("--grpc-endpoint", self.grpc) if self.grpc else ()
        served = start_server(self.db, *extra)
        self.grpc = served.grpc
        self.runs.append(served)

    @property
    def http(self) -> str:
        http = self.runs[-1].http
        assert http is not None
        return http

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the running server with ``sig``; its exit code (negative: killed by that signal)."""
        return self.runs[-1].stop(sig)

    def close(self) -> None:
        for served in self.runs:
            if served.process.poll() is None:
                try:
                    served.stop(signal.SIGTERM, timeout_s=30)
                except subprocess.TimeoutExpired:
                    served.stop(signal.SIGKILL)

    def log(self) -> str:
        return "\n".join(f"--- run {n}:\n{served.output()}" for n, served in enumerate(self.runs, 1))

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a query on the store, read-only while the server writes."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


class Collector:
    """otelcol-otelkit running one rendered config between a Jaeger and an ``otelkit serve``."""

    SENT = {"traces": "otelcol_exporter_sent_spans", "metrics": "otelcol_exporter_sent_metric_points",
            "logs": "otelcol_exporter_sent_log_records"}  # fmt: skip

    def __init__(self, binary: Path, config: Path, workdir: Path, *, jaeger: str, serve: str) -> None:
        self.binary, self.config_path = binary, config
        self.config: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
        self.storage_dir = workdir / "collector-queue"
        self.backends = {"OTELKIT_JAEGER_ENDPOINT": jaeger, "OTELKIT_SERVE_ENDPOINT": serve}
        self.process = Process("collector", [], {}, workdir / "collector.log")
        self.grpc_port = self.metrics_port = 0
        self.before_batch: dict[str, str] = {}  # per pipeline, the processor whose output batch and the exporters get
        for signal_name, pipeline in self.config["service"]["pipelines"].items():
            processors = pipeline["processors"]
            last = processors[processors.index("batch") - 1]
            # tail_sampling reports no item counts, so nothing would tell what it passed on
            assert last != "tail_sampling", f"{config}: {signal_name}: no processor after tail_sampling to count its output"
            self.before_batch[signal_name] = last

    def start(self) -> None:
        def attempt() -> None:
            grpc, http, health, metrics = free_ports(4)
            self.grpc_port, self.metrics_port = grpc, metrics
            env = clean_env(
                OTELKIT_COLLECTOR_GRPC_PORT=str(grpc), OTELKIT_COLLECTOR_HTTP_PORT=str(http),
                OTELKIT_COLLECTOR_HEALTH_PORT=str(health), OTELKIT_COLLECTOR_METRICS_PORT=str(metrics),
                OTELKIT_COLLECTOR_STORAGE_DIR=str(self.storage_dir), **self.backends,
            )  # fmt: skip
            args = [str(self.binary), "--config", str(self.config_path), f"--feature-gates={','.join(FEATURE_GATES)}"]
            self.process = Process("collector", args, env, self.process.log_path)
            self.process.start_until(lambda: answers(f"http://127.0.0.1:{health}/"))

        start_on_free_ports(attempt, lambda: self.process)

    @property
    def endpoint(self) -> str:
        """The OTLP/gRPC endpoint as an SDK's ``OTEL_EXPORTER_OTLP_ENDPOINT`` wants it."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def metrics(self) -> Metrics:
        return Metrics.scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def undelivered(self) -> str | None:
        """What the Collector still holds, from its own metrics; None once every trace it took in
        is decided and every item that left the processors was sent by every exporter."""
        metrics = self.metrics()
        received = metrics.total("otelcol_processor_tail_sampling_new_trace_id_received")
        decided = metrics.total("otelcol_processor_tail_sampling_global_count_traces_sampled")
        if decided < received:
            return f"tail_sampling decided {decided:g} of {received:g} traces"
        for signal_name, pipeline in self.config["service"]["pipelines"].items():
            last = self.before_batch[signal_name]
            out = metrics.total("otelcol_processor_outgoing_items", otel_signal=signal_name, processor=last)
            for exporter in pipeline["exporters"]:
                sent = metrics.total(self.SENT[signal_name], exporter=exporter)
                if sent != out:
                    return f"{exporter} sent {sent:g} of {out:g} {signal_name} items"
        return None

    def queued(self, exporter: str, data_type: str = "traces") -> float:
        """Requests in ``exporter``'s sending queue, those being retried included."""
        return self.metrics().total("otelcol_exporter_queue_size", exporter=exporter, data_type=data_type)

    def retried(self, exporter: str) -> bool:
        """Whether the log shows a failed send by ``exporter`` that the Collector will retry."""
        component = f'"otelcol.component.id": "{exporter}"'
        return any("Will retry" in line and component in line for line in self.process.log(100_000).splitlines())

    def wait_delivered(self, timeout_s: float = 90.0) -> Metrics:
        """Wait until nothing is held (see :meth:`undelivered`); the metrics at that point."""
        last: list[str | None] = []

        def done() -> bool:
            last[:] = [self.undelivered()]
            return last[0] is None

        try:
            wait_until(done, "the Collector to deliver everything", timeout_s, 0.25)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last[0]}") from None
        return self.metrics()


def render_config(workdir: Path, policy_text: str, mode: str = "agent") -> tuple[Path, dict[str, Any]]:
    """The Collector config the real ``otelkit collector-config`` command renders from this
    policy: the file the test's Collector runs is exactly what a user would run."""
    policy = workdir / "otelkit.yaml"
    policy.write_text(policy_text, encoding="utf-8")
    out = workdir / f"{mode}.yaml"
    done = subprocess.run(
        [str(BIN / "otelkit"), "collector-config", "--policy", str(policy), "--mode", mode, "--output", str(out)],
        env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out, yaml.safe_load(out.read_text(encoding="utf-8"))


class Sender:
    """An SDK in this process exporting over OTLP/gRPC, recording every span it ends (the truth
    the backends are checked against)."""

    def __init__(self, endpoint: str, service: str) -> None:
        self.recorded = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.recorded))
        # a queue that never overflows and frequent exports: traffic flows steadily, nothing is dropped here
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        self.provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000, schedule_delay_millis=100))
        self.tracer: Tracer = self.provider.get_tracer("otelkit-e2e")

    def close(self) -> None:
        """Export everything still queued, then stop."""
        assert self.provider.force_flush(60_000), "the sender could not export everything to the Collector"
        self.provider.shutdown()

    def span_ids(self) -> set[str]:
        return {f"{span.context.span_id:016x}" for span in self.recorded.get_finished_spans()}
