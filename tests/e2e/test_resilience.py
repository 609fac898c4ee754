"""Restarts lose nothing, with the Collector's retries and its persistent queue (file_storage).

``otelkit serve`` is stopped while traffic flows through the Collector and started again on the
same port with the same store: every span arrives, each exactly once. It is stopped gracefully
(SIGTERM) and killed (SIGKILL): a kill can lose the acknowledgement of a request the server had
committed, so the Collector sends it again, and the store must not keep it twice. Then the
Collector itself is restarted while it holds spans for a stopped ``otelkit serve``: what it
queued on disk is sent by the next Collector.
"""

from __future__ import annotations

import signal
import threading
import uuid
from pathlib import Path
from typing import Callable

import pytest

from e2e.support import Collector, Jaeger, Sender, Serve, render_config, wait_until

POLICY = "sampling:\n  tail: {keep_ratio: 1.0}\n"  # keep every trace: every span sent must arrive
OTELKIT = "otlp_grpc/otelkit"
SPANS_PER_TRACE = 5
MAX_TRACES = 5000  # the traffic loop's bound; it is stopped long before


def send_trace(sender: Sender) -> None:
    with sender.tracer.start_as_current_span("job"):
        for step in range(SPANS_PER_TRACE - 1):
            with sender.tracer.start_as_current_span(f"step {step}"):
                pass


def traffic(sender: Sender, stop: threading.Event) -> None:
    """Small traces, steadily, until told to stop."""
    for _ in range(MAX_TRACES):
        if stop.wait(0.01):
            return
        send_trace(sender)


def stored_ids(serve: Serve, service: str) -> list[str]:
    """The span ids of ``service`` in the store, one per row (a span stored twice appears twice)."""
    return [row[0] for row in serve.rows("SELECT span_id FROM spans WHERE service_name = ?", service)]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_every_span_arrives_exactly_once_across_a_restart_of_otelkit_serve(
    start_collector: Callable[[Path], Collector], jaeger: Jaeger, serve: Serve, tmp_path: Path, stop_signal: int
) -> None:
    config, rendered = render_config(tmp_path, POLICY)
    exporter = rendered["exporters"]["otlp_grpc/otelkit"]
    assert exporter["sending_queue"]["storage"] == "file_storage" and exporter["retry_on_failure"]["max_elapsed_time"] == "0s"
    collector = start_collector(config)
    service = f"jobs-{uuid.uuid4().hex[:8]}"
    sender = Sender(collector.endpoint, service)
    stop = threading.Event()
    thread = threading.Thread(target=traffic, args=(sender, stop), daemon=True)
    thread.start()

    def produced() -> int:
        return len(sender.recorded.get_finished_spans())

    try:
        wait_until(lambda: len(stored_ids(serve, service)) >= 100, "the first spans in the store")
        assert serve.stop(stop_signal) == (0 if stop_signal == signal.SIGTERM else -signal.SIGKILL)
        down_at = produced()
        wait_until(lambda: produced() >= down_at + 300, "traffic while otelkit serve is down")
        # the Collector keeps what it could not send in its queue, and retries
        wait_until(lambda: collector.queued(OTELKIT) >= 2 and collector.retried(OTELKIT), "the Collector to queue and retry")
        during_outage = produced() - down_at
        serve.start()  # the same gRPC port, the same store
        up_at = produced()
        wait_until(lambda: produced() >= up_at + 200, "traffic after the restart")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    sender.close()
    collector.wait_delivered()

    sent = sender.span_ids()
    assert len(sent) > during_outage >= 300
    ids = stored_ids(serve, service)
    assert len(ids) == len(set(ids)) == len(sent) and set(ids) == sent  # every span, none twice


def test_spans_queued_on_disk_survive_a_restart_of_the_collector(
    start_collector: Callable[[Path], Collector], jaeger: Jaeger, serve: Serve, tmp_path: Path
) -> None:
    config, _ = render_config(tmp_path, POLICY)
    first = start_collector(config)
    assert serve.stop() == 0  # the backend is down before any traffic
    service = f"queued-{uuid.uuid4().hex[:8]}"
    sender = Sender(first.endpoint, service)
    for _ in range(200):
        send_trace(sender)
    sender.close()
    sent = sender.span_ids()
    assert len(sent) == 200 * SPANS_PER_TRACE

    def all_queued() -> bool:
        """Batch has let every span go (Jaeger, which is up, has them all) and otelkit's are retried."""
        jaeger_sent = first.metrics().total("otelcol_exporter_sent_spans", exporter="otlp_grpc/jaeger")
        return jaeger_sent == len(sent) and first.retried(OTELKIT)

    wait_until(all_queued, "every span in the queue for the stopped otelkit serve")
    first.process.stop()
    assert first.process.process is not None and first.process.process.returncode == 0
    assert stored_ids(serve, service) == []

    serve.start()  # the same port and store, and a new Collector on the same queue directory
    second = start_collector(config)
    wait_until(lambda: len(stored_ids(serve, service)) >= len(sent), "the queued spans in the store", timeout_s=90)
    wait_until(lambda: second.queued(OTELKIT) == 0, "the queue to empty")
    ids = stored_ids(serve, service)
    assert len(ids) == len(set(ids)) == len(sent) and set(ids) == sent
