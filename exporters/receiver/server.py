"""``otelkit serve``: both OTLP front ends over one ingest queue and store, and their lifecycle.

Shutdown (SIGTERM, SIGINT or :meth:`Receiver.stop`) stops taking requests, gives gRPC calls in
flight a grace period, commits everything queued, and only then closes the store. An HTTP
request still being read or converted at that moment is answered 503 (the sender retries);
none is ever acknowledged without its commit.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from otelkit.exporters.receiver.auth import Tokens
from otelkit.exporters.receiver.grpc_server import build_grpc_server
from otelkit.exporters.receiver.http_server import DEFAULT_MAX_BODY, ReceiverHTTPServer
from otelkit.exporters.receiver.ingest import DEFAULT_QUEUE_ITEMS, SIGNALS, Ingest, WorkerStartError
from otelkit.exporters.receiver.service import ReceiverService
from otelkit.exporters.receiver.worker import WorkerSettings
from otelkit.config import Policy
from otelkit.processors.alerting import AlertStage
from otelkit.store import connect_for_writing


class EndpointError(ValueError):
    """An endpoint, TLS setting or store writer that cannot be used; the message is one line."""


@dataclass(frozen=True)
class TLSFiles:
    cert: str
    key: str
    client_ca: str | None = None


@dataclass
class ReceiverSettings:
    db: str
    grpc_endpoint: str | None = "127.0.0.1:4317"
    http_endpoint: str | None = "127.0.0.1:4318"
    tokens: Tokens = field(default_factory=Tokens)
    tls: TLSFiles | None = None
    max_body: int = DEFAULT_MAX_BODY
    queue_items: int = DEFAULT_QUEUE_ITEMS
    busy_timeout_ms: int = 30_000
    cache_size_mib: int = 64
    policy: Policy | None = None  # its alert rules run on ingested spans
    sanitize: bool = False  # scrub with the policy's sanitize rules before storage
    workers: int = field(default_factory=lambda: default_workers())


def default_workers() -> int:
    """One store-writer process per core, up to 4 (past that the commit itself is the limit)."""
    return max(1, min(os.cpu_count() or 1, 4))


def split_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as (host, port); port 0 picks a free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise EndpointError(f"endpoint {text!r} must be HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise EndpointError(f"endpoint {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise EndpointError(f"endpoint {text!r}: port {port} is out of range")
    return host.strip("[]"), port


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise EndpointError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def _ssl_context(tls: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(tls.cert, tls.key)
        if tls.client_ca:
            context.load_verify_locations(tls.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (ssl.SSLError, OSError) as exc:
        raise EndpointError(f"cannot use the TLS certificate or key: {exc}") from None
    return context


def _grpc_credentials(tls: TLSFiles) -> grpc.ServerCredentials:
    pair = (_read(tls.key, "TLS key"), _read(tls.cert, "TLS certificate"))
    if tls.client_ca:
        return grpc.ssl_server_credentials([pair], root_certificates=_read(tls.client_ca, "client CA"),
                                           require_client_auth=True)  # fmt: skip
    return grpc.ssl_server_credentials([pair])


class Receiver:
    """The running server: :meth:`start`, then :meth:`stop` (or :meth:`wait`)."""

    def __init__(self, settings: ReceiverSettings) -> None:
        if settings.grpc_endpoint is None and settings.http_endpoint is None:
            raise EndpointError("nothing to serve: give a gRPC or an HTTP endpoint")
        self.settings = settings
        # A foreign or unreadable file fails here, before any port is bound.
        connect_for_writing(settings.db, settings.busy_timeout_ms, settings.cache_size_mib).close()
        if settings.workers < 1:
            raise EndpointError(f"--workers must be at least 1, not {settings.workers}")
        self.alerts = AlertStage.from_policy(settings.policy, settings.db) if settings.policy is not None else None
        # The store writers take turns through an flock on this file (released if one dies).
        handle, self._lock_path = tempfile.mkstemp(prefix="otelkit-serve-", suffix=".lock")
        os.close(handle)
        sanitize = (settings.policy or Policy()).sanitize if settings.sanitize else None
        worker = WorkerSettings(settings.db, self._lock_path, settings.busy_timeout_ms, settings.cache_size_mib, sanitize)
        try:
            self.ingest = Ingest(worker, settings.queue_items, settings.workers)
        except WorkerStartError as exc:
            os.unlink(self._lock_path)
            raise EndpointError(str(exc)) from None
        self.service = ReceiverService(self.ingest, self.alerts)
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc: grpc.Server | None = None
        self._http: ReceiverHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    def start(self) -> None:
        s = self.settings
        try:
            if s.grpc_endpoint is not None:
                split_endpoint(s.grpc_endpoint)
                credentials = _grpc_credentials(s.tls) if s.tls else None
                try:
                    self._grpc, self.grpc_port = build_grpc_server(
                        self.service, s.tokens, s.max_body, credentials=credentials, endpoint=s.grpc_endpoint
                    )
                except RuntimeError as exc:  # grpcio's "Failed to bind"
                    raise EndpointError(f"cannot listen for gRPC on {s.grpc_endpoint}: {exc}") from None
                except OSError as exc:
                    raise EndpointError(str(exc)) from None
            if s.http_endpoint is not None:
                host, port = split_endpoint(s.http_endpoint)
                context = _ssl_context(s.tls) if s.tls else None
                try:
                    self._http = ReceiverHTTPServer((host, port), self.service, s.tokens, s.max_body, context,
                                                    self.metrics_text, lambda: not self._stopping.is_set())  # fmt: skip
                except OSError as exc:
                    raise EndpointError(f"cannot listen for HTTP on {s.http_endpoint}: {exc.strerror or exc}") from None
                self.http_port = self._http.server_address[1]
        except BaseException:
            self._close_listeners()
            self._close_store()
            raise
        if self._grpc is not None:
            self._grpc.start()
        if self._http is not None:
            self._http_thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2},
                                                 name="otelkit-http", daemon=True)  # fmt: skip
            self._http_thread.start()

    def _close_listeners(self) -> None:
        if self._http is not None:
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(0)

    def stop(self, grace_s: float = 10.0) -> bool:
        """Stop serving, finish the requests in flight, commit what was accepted; True when
        everything accepted was committed."""
        if self._stopping.is_set():
            self._stopped.wait()
            return True
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()  # no new requests; handler threads finish theirs
        grpc_done = self._grpc.stop(grace_s) if self._grpc is not None else None
        if grpc_done is not None:
            grpc_done.wait(grace_s + 1)
        if self._http is not None:
            self._http.server_close()  # joins the handler threads still answering
        committed = self._close_store(max(grace_s, 30.0))
        if self.alerts is not None:
            self.alerts.shutdown()  # delivers the alerts still queued for webhooks and the store
        self._stopped.set()
        return committed

    def _close_store(self, timeout_s: float = 30.0) -> bool:
        committed = self.ingest.close(timeout_s)
        try:
            os.unlink(self._lock_path)
        except OSError:
            pass
        return committed

    def wait(self) -> None:
        self._stopped.wait()

    def metrics_text(self) -> str:
        """The receiver's counters in the Prometheus text format."""
        counters = self.ingest.counters
        lines = [
            "# HELP otelkit_receiver_items_total Items received, by signal and outcome "
            "(accepted: committed; rejected: malformed; refused: not stored, the sender retries).",
            "# TYPE otelkit_receiver_items_total counter",
        ]
        for outcome, values in (("accepted", counters.accepted), ("rejected", counters.rejected),
                                ("refused", counters.refused)):  # fmt: skip
            for signal in SIGNALS:
                lines.append(f'otelkit_receiver_items_total{{signal="{signal}",outcome="{outcome}"}} {values[signal]}')
        lines += [
            "# HELP otelkit_receiver_requests_total Export requests answered.",
            "# TYPE otelkit_receiver_requests_total counter",
            f"otelkit_receiver_requests_total {counters.requests}",
            "# HELP otelkit_receiver_queue_items Items waiting to be committed.",
            "# TYPE otelkit_receiver_queue_items gauge",
            f"otelkit_receiver_queue_items {self.ingest.queued_items}",
            "# HELP otelkit_receiver_queue_capacity_items The ingest queue's bound.",
            "# TYPE otelkit_receiver_queue_capacity_items gauge",
            f"otelkit_receiver_queue_capacity_items {self.ingest.max_items}",
            "# HELP otelkit_receiver_store_writers Store-writer processes (otelkit serve --workers).",
            "# TYPE otelkit_receiver_store_writers gauge",
            f"otelkit_receiver_store_writers {self.ingest.workers}",
            "# HELP otelkit_receiver_store_writer_restarts_total Store-writer processes that died and were started again.",
            "# TYPE otelkit_receiver_store_writer_restarts_total counter",
            f"otelkit_receiver_store_writer_restarts_total {counters.worker_restarts}",
        ]
        return "\n".join(lines) + "\n"
