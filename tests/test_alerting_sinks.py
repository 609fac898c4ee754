"""Alert sinks: the key=value log, webhooks against a local HTTP server (JSON and Slack bodies,
retries with backoff, queue overflow, bounded shutdown), and the store's alerts table with its
migration from a version 1 store."""

from __future__ import annotations

import json
import logging
import re
import shlex
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from otelkit.alert_settings import Webhook
from otelkit.processors.alert_rules import AlertEvent
from otelkit.processors.alert_sinks import LogSink, QueuedSink, StoreSink, WebhookSink, alert_line, slack_text
from otelkit.store import APPLICATION_ID, SCHEMA_VERSION, StoreWriter, connect_for_reading
from otelkit.store.schema import MIGRATIONS
from otelkit.store.writer import SPAN_COLUMNS
from webhook_receiver import WAIT_S, Receiver



def event(uid: str = "a1", *, state: str = "firing", notification: int = 1, value: float = 2500.0,
          fired_s: int = 10, message: str = "p95 of 40 spans over 300 s is 2,500 ms > 2,000 ms",
          severity: str = "warning") -> AlertEvent:
    return AlertEvent(
        uid=uid, rule="slow-llm", kind="percentile", severity=severity, state=state, group_key="model=gpt-4o",
        value=value, threshold=2000.0, message=message, started_ns=5 * 10**9, fired_ns=fired_s * 10**9,
        resolved_ns=60 * 10**9 if state == "resolved" else None, notification=notification,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7",
    )  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def webhook(url: str, **fields: Any) -> WebhookSink:
    return WebhookSink(Webhook(url=url, **fields))


def test_webhook_posts_each_alert_as_json_with_the_configured_headers(receiver: Receiver) -> None:
    sink = webhook(receiver.url, headers=("Authorization: Bearer t0k3n", "X-Team: infra"))
    sink.emit(event())
    assert receiver.wait_for(1)
    sink.close(WAIT_S)
    [(_, headers, body)] = receiver.requests
    assert json.loads(body) == event().to_dict()
    assert headers["Authorization"] == "Bearer t0k3n" and headers["X-Team"] == "infra"
    assert headers["Content-Type"] == "application/json"
    assert (sink.stats.delivered, sink.stats.failed, sink.stats.dropped) == (1, 0, 0)


def test_webhook_slack_format_sends_text(receiver: Receiver) -> None:
    sink = webhook(receiver.url, format="slack")
    sink.emit(event())
    sink.emit(event(state="resolved", message="p95 of 40 spans over 300 s is 900 ms <= 2,000 ms"))
    assert receiver.wait_for(2)
    sink.close(WAIT_S)
    assert receiver.bodies() == [
        {"text": "[FIRING] slow-llm (warning): p95 of 40 spans over 300 s is 2,500 ms > 2,000 ms"
                 " trace 4bf92f3577b34da6a3ce929d0e0e4736"},
        {"text": "[RESOLVED] slow-llm (warning): p95 of 40 spans over 300 s is 900 ms <= 2,000 ms"
                 " trace 4bf92f3577b34da6a3ce929d0e0e4736"},
    ]  # fmt: skip
    assert slack_text(event()) == receiver.bodies()[0]["text"]


def test_webhook_retries_server_errors_with_exponential_backoff() -> None:
    server = Receiver(statuses=[500, 503, 200])
    try:
        sink = webhook(server.url, backoff_s=0.2, max_retries=3)
        sink.emit(event())
        assert server.wait_for(3)
        sink.close(WAIT_S)
    finally:
        server.close()
    times = [at for at, _, _ in server.requests]
    assert times[1] - times[0] >= 0.2 and times[2] - times[1] >= 0.4  # waits double
    assert (sink.stats.delivered, sink.stats.retried, sink.stats.failed) == (1, 2, 0)
    assert server.bodies()[0] == server.bodies()[2]


def test_webhook_gives_up_after_max_retries_and_logs_once_without_the_url(caplog: pytest.LogCaptureFixture) -> None:
    server = Receiver(statuses=[500] * 6)
    try:
        sink = webhook(server.url, backoff_s=0.01, max_retries=2)
        with caplog.at_level(logging.ERROR, logger="otelkit"):
            sink.emit(event("a1"))
            assert server.wait_for(3)
            sink.emit(event("a2"))
            assert server.wait_for(6)
            sink.close(WAIT_S)
    finally:
        server.close()
    assert (sink.stats.failed, sink.stats.retried, sink.stats.delivered) == (2, 4, 0)
    [record] = [r for r in caplog.records if "alert sink" in r.getMessage()]
    assert "webhook http://127.0.0.1" in record.getMessage() and "HTTP 500" in record.getMessage()
    assert "secret-token" not in record.getMessage()


def test_webhook_does_not_retry_a_client_error() -> None:
    server = Receiver(statuses=[400, 200])
    try:
        sink = webhook(server.url, backoff_s=0.01, max_retries=3)
        sink.emit(event())
        assert server.wait_for(1)
        sink.close(WAIT_S)
    finally:
        server.close()
    assert len(server.requests) == 1 and (sink.stats.failed, sink.stats.retried) == (1, 0)


def test_webhook_retries_when_nothing_listens() -> None:
    server = Receiver()
    url = server.url
    server.close()  # the port is closed: connection refused
    sink = webhook(url, backoff_s=0.01, max_retries=2)
    sink.emit(event())
    deadline = time.monotonic() + WAIT_S
    while sink.stats.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    sink.close(WAIT_S)
    assert (sink.stats.failed, sink.stats.retried) == (1, 2)


def test_webhook_with_a_malformed_url_fails_without_logging_it(caplog: pytest.LogCaptureFixture) -> None:
    sink = webhook("http://127.0.0.1:9/hooks/T000/secret token", backoff_s=0.01, max_retries=2)
    with caplog.at_level(logging.ERROR, logger="otelkit"):
        sink.emit(event())
        deadline = time.monotonic() + WAIT_S
        while sink.stats.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        sink.close(WAIT_S)
    assert (sink.stats.failed, sink.stats.retried) == (1, 0)  # a bad URL stays bad: no retries
    [record] = [r for r in caplog.records if "alert sink" in r.getMessage()]
    assert "secret" not in record.getMessage() and "InvalidURL" in record.getMessage()


def test_webhook_retries_a_garbled_http_response() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT_S)
    bodies: list[bytes] = []

    def serve() -> None:
        for answer in (b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"):
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(WAIT_S)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536) or b"\r\n\r\n"
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
                while len(body) < length:
                    body += connection.recv(65536) or b" " * length
                bodies.append(body)
                connection.sendall(answer)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        sink = webhook(f"http://127.0.0.1:{listener.getsockname()[1]}/hook", backoff_s=0.01, max_retries=2)
        sink.emit(event())
        server.join(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while sink.stats.delivered + sink.stats.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        sink.close(WAIT_S)
    finally:
        listener.close()
    assert (sink.stats.delivered, sink.stats.retried, sink.stats.failed) == (1, 1, 0)
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_full_queue_drops_the_oldest_waiting_alert_and_counts_it() -> None:
    server = Receiver(hold=True)
    try:
        sink = webhook(server.url, queue_size=3)
        sink.emit(event("e0"))
        assert server.wait_for(1)  # e0 is in flight, held by the server
        for index in range(1, 6):
            sink.emit(event(f"e{index}"))
        assert sink.stats.dropped == 2 and sink.pending() == 3
        server.release.set()
        assert server.wait_for(4)
        sink.close(WAIT_S)
    finally:
        server.close()
    assert [body["id"] for body in server.bodies()] == ["e0", "e3", "e4", "e5"]
    assert (sink.stats.delivered, sink.stats.dropped) == (4, 2)


def test_a_sender_thread_that_could_not_start_is_started_on_the_next_alert(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:  # as at a thread limit, or interpreter shutdown
        raise RuntimeError("can't start new thread")

    sink = webhook(receiver.url)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError):
        sink.emit(event("e0"))  # the alert stage counts this failure
    monkeypatch.setattr(threading.Thread, "start", start)
    sink.emit(event("e1"))
    assert receiver.wait_for(2)
    sink.close(WAIT_S)
    assert sorted(body["id"] for body in receiver.bodies()) == ["e0", "e1"]


def test_shutdown_is_bounded_while_the_server_hangs() -> None:
    server = Receiver(hold=True)
    try:
        sink = webhook(server.url, timeout_s=30)
        for index in range(3):
            sink.emit(event(f"e{index}"))
        assert server.wait_for(1)
        started = time.monotonic()
        sink.close(0.3)
        assert time.monotonic() - started < WAIT_S / 2  # not the server's 10 s, nor the 30 s timeout
        assert sink.stats.dropped == 2  # the two still queued
        sink.emit(event("late"))
        assert sink.stats.dropped == 3  # after shutdown nothing is queued
    finally:
        server.close()


def test_sink_threads_run_with_instrumentation_suppressed() -> None:
    seen: list[bool] = []

    class Probe(QueuedSink):
        name = "probe"

        def deliver(self, batch: list[AlertEvent]) -> None:
            seen.append(is_instrumentation_enabled())

    sink = Probe(queue_size=4)
    sink.emit(event())
    sink.close(WAIT_S)
    assert seen == [False] and is_instrumentation_enabled()  # the sink's HTTP and SQLite calls make no spans


def test_log_sink_writes_one_key_value_line_with_a_json_extra(caplog: pytest.LogCaptureFixture) -> None:
    sink = LogSink()
    tricky = event(message="span 'deploy\nprod' took 2 s > 1 s", severity="critical")
    with caplog.at_level(logging.INFO, logger="otelkit.alerts"):
        sink.emit(tricky)
        sink.emit(event(state="resolved"))
    firing, resolved = caplog.records
    assert firing.name == "otelkit.alerts" and firing.levelno == logging.ERROR and resolved.levelno == logging.INFO
    line = firing.getMessage()
    assert "\n" not in line and line == alert_line(tricky)
    fields = dict(item.split("=", 1) for item in shlex.split(line.removeprefix("otelkit alert ")))
    assert fields["state"] == "firing" and fields["rule"] == "slow-llm" and fields["group"] == "model=gpt-4o"
    assert fields["value"] == "2500" and fields["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert json.loads(json.dumps(firing.otelkit_alert)) == tricky.to_dict()  # type: ignore[attr-defined]


def alert_rows(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM alerts ORDER BY id")]
    finally:
        conn.close()


def test_store_sink_keeps_one_row_per_alert_through_repeats_and_resolution(tmp_path: Path) -> None:
    path = tmp_path / "otelkit.db"
    sink = StoreSink(StoreWriter(str(path)))
    sink.emit(event("a1"))
    sink.emit(event("a1", notification=2, value=2700.0, fired_s=40))
    sink.emit(event("b2"))
    sink.emit(event("a1", state="resolved", notification=2, value=900.0, message="p95 ... <= 2,000 ms"))
    sink.close(WAIT_S)
    assert sink.stats.delivered == 4
    first, second = alert_rows(path)
    assert (first["uid"], first["state"], first["notifications"]) == ("a1", "resolved", 2)
    assert (first["fired_ns"], first["resolved_ns"], first["started_ns"]) == (40 * 10**9, 60 * 10**9, 5 * 10**9)
    assert first["value"] == 2700.0 and first["message"].endswith("> 2,000 ms")  # what fired, kept
    assert (first["trace_id"], first["group_key"], first["kind"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "model=gpt-4o", "percentile")
    assert (second["uid"], second["state"], second["acknowledged_at"]) == ("b2", "firing", None)


def test_store_sink_on_a_foreign_file_logs_once_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    foreign = tmp_path / "other.db"
    sqlite3.connect(foreign).execute("CREATE TABLE customers (id INTEGER)")
    sink = StoreSink(StoreWriter(str(foreign)))
    with caplog.at_level(logging.ERROR, logger="otelkit"):
        sink.emit(event("a1"))
        sink.close(WAIT_S)
        sink2 = StoreSink(StoreWriter(str(foreign)))
        sink2.emit(event("a1"))
        sink2.emit(event("a2"))
        sink2.close(WAIT_S)
    assert sink.stats.failed == 1 and sink2.stats.failed == 2
    assert sum("not an otelkit store" in r.getMessage() for r in caplog.records) == 2  # once per sink


def make_v1_store(path: Path) -> None:
    """A store as otelkit wrote it before alerting (schema version 1), holding one span."""
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    values = dict.fromkeys(SPAN_COLUMNS)
    values.update(trace_id="1" * 32, span_id="2" * 16, name="old", kind="INTERNAL", start_ns=1, end_ns=2,
                  status_code="OK", attributes="{}")  # fmt: skip
    conn.execute(f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) VALUES ({', '.join('?' * len(SPAN_COLUMNS))})",
                 [values[c] for c in SPAN_COLUMNS])  # fmt: skip
    conn.commit()
    conn.close()


def test_a_version_1_store_migrates_on_first_write_open(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    make_v1_store(path)
    StoreWriter(str(path)).write_alerts([])  # nothing to write: the store is not even opened
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    sink = StoreSink(StoreWriter(str(path)))
    sink.emit(event("a1"))
    sink.close(WAIT_S)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT name FROM spans").fetchall() == [("old",)]
    assert [row["uid"] for row in alert_rows(path)] == ["a1"]
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(alerts)")}
    assert "alerts_by_state" in indexes
    assert conn.execute("SELECT spans FROM rollups WHERE resolution_s = 60").fetchall() == [(1,)]


def test_a_version_1_store_is_upgraded_when_read(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    make_v1_store(path)
    reader = connect_for_reading(str(path))  # reports need the rollups: the store is upgraded first
    assert reader.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert reader.execute("SELECT sum(spans) FROM rollups WHERE resolution_s = 86400").fetchone()[0] == 1


def test_acknowledge_records_who_and_when_once(tmp_path: Path) -> None:
    writer = StoreWriter(str(tmp_path / "s.db"))
    sink = StoreSink(writer)
    sink.emit(event("a1"))
    sink.close(WAIT_S)
    [row] = alert_rows(tmp_path / "s.db")
    assert writer.acknowledge_alert(row["id"], "alice", 123) == ("slow-llm", "alice", 123)
    assert writer.acknowledge_alert(row["id"], "bob", 456) == ("slow-llm", "alice", 123)
    assert writer.acknowledge_alert(row["id"] + 1, "bob", 456) is None
