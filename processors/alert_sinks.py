"""Where alert events go: the ``otelkit.alerts`` log, webhooks, and the store's ``alerts`` table.

A sink's :meth:`~AlertSink.emit` runs on the application's thread, inside span processing,
so it must never block: the log sink formats one line; the webhook and store sinks only
append to a bounded queue that a background thread of their own drains. When a queue is
full the oldest waiting event is dropped and counted (the newest alerts matter most to
whoever is looking now). A failing sink logs once and counts; it never raises into the
application. :meth:`~AlertSink.close` waits at most the given time for queued deliveries.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.instrumentation.utils import suppress_instrumentation

from otelkit.alert_settings import Webhook
from otelkit.processors.alert_rules import FIRING, AlertEvent
from otelkit.store.writer import StoreWriter

ALERT_LOGGER = "otelkit.alerts"
ALERT_RECORD_FIELD = "otelkit_alert"  # the log record attribute holding the event's dict
STORE_QUEUE_SIZE = 10_000
_STORE_BATCH = 256
_MAX_BACKOFF_S = 60.0
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}

_log = logging.getLogger("otelkit")


class AlertSink(Protocol):
    """Receives alert events; ``emit`` never blocks and ``close`` is bounded by ``timeout_s``."""

    name: str

    def emit(self, event: AlertEvent) -> None: ...

    def close(self, timeout_s: float) -> None: ...


@dataclass
class SinkStats:
    """What a queued sink did: delivered, failed (gave up), dropped (queue full or shut down), retried."""

    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retried: int = 0


def _field(value: object) -> str:
    """A key=value field value: bare when it is one plain word, else JSON-quoted (one line, always)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if text and all(ch.isalnum() or ch in "._:-/$%" for ch in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def alert_line(event: AlertEvent) -> str:
    """The one-line ``key=value`` form of an event (the log sink's message)."""
    fields = {
        "state": event.state,
        "rule": event.rule,
        "severity": event.severity,
        "kind": event.kind,
        "group": event.group_key or None,
        "value": event.value,
        "threshold": event.threshold,
        "id": event.uid,
        "notification": event.notification,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "message": event.message,
    }
    return "otelkit alert " + " ".join(f"{key}={_field(value)}" for key, value in fields.items())


class LogSink:
    """One log record per event on the ``otelkit.alerts`` logger: a key=value line, and the
    event as a JSON-serializable dict in ``extra["otelkit_alert"]`` for structured handlers.
    Firing alerts log at their severity (info, warning, critical as ERROR); resolved at INFO."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(ALERT_LOGGER)

    def emit(self, event: AlertEvent) -> None:
        level = _LEVELS.get(event.severity, logging.WARNING) if event.state == FIRING else logging.INFO
        if self._logger.isEnabledFor(level):
            self._logger.log(level, "%s", alert_line(event), extra={ALERT_RECORD_FIELD: event.to_dict()})

    def close(self, timeout_s: float) -> None:
        """Nothing is queued."""


class QueuedSink:
    """A bounded queue drained by a daemon thread, started on first use (and again in a forked
    child, which drops what its parent had queued so nothing is delivered twice)."""

    name = "queued"
    batch_size = 1  # events handed to one deliver() call

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.stats = SinkStats()
        self._reported = False
        self._setup()

    def _setup(self) -> None:
        self._queue: deque[AlertEvent] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._closing = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def emit(self, event: AlertEvent) -> None:
        if self._pid != os.getpid():
            self._setup()
        with self._cond:
            if self._closing:
                self.stats.dropped += 1
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.stats.dropped += 1
            self._queue.append(event)
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=f"otelkit-alerts-{self.name}", daemon=True)
                thread.start()  # may raise (a thread limit): the next alert tries again
                self._thread = thread
            self._cond.notify()

    def _run(self) -> None:
        # The sink's own HTTP requests and SQLite writes are not the application's work: traced,
        # their spans would reach the alert rules again (and could alert about alerting).
        with suppress_instrumentation():
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch_size))]
            if self._closing and time.monotonic() >= self._deadline:
                with self._cond:
                    self.stats.dropped += len(batch)
                continue
            try:
                self.deliver(batch)
            except Exception as exc:  # never let the thread die with events still coming
                self.stats.failed += len(batch)
                self.report(f"{type(exc).__name__}: {exc}")

    def deliver(self, batch: list[AlertEvent]) -> None:
        """Deliver events, counting them in :attr:`stats`."""
        raise NotImplementedError

    def wait_before_retry(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless shutting down; False when retrying should stop."""
        if self._closing:
            return False
        return not self._stop.wait(seconds)

    def remaining_s(self) -> float | None:
        """Seconds left before the shutdown deadline (None when not shutting down)."""
        return None if not self._closing else max(0.0, self._deadline - time.monotonic())

    def report(self, reason: str) -> None:
        """Log the first failure of this sink only; later ones are only counted."""
        if not self._reported:
            self._reported = True
            _log.error("otelkit: alert sink %s failed (%s); failures are counted and not logged again", self.name, reason)

    def pending(self) -> int:
        """Events waiting in the queue."""
        with self._cond:
            return len(self._queue)

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued (no further retries) for at most ``timeout_s``; the rest is dropped."""
        if self._pid != os.getpid():
            return
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout_s
            self._stop.set()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout_s))
        with self._cond:
            self.stats.dropped += len(self._queue)
            self._queue.clear()


class WebhookSink(QueuedSink):
    """POSTs each event as JSON (``format: json``: the event's dict; ``slack``: ``{"text": ...}``),
    retrying connection errors, timeouts, 408/425/429 and 5xx with exponential backoff."""

    def __init__(self, settings: Webhook) -> None:
        self.settings = settings
        self.name = f"webhook {settings.host}"
        self._headers = {"Content-Type": "application/json", "User-Agent": "otelkit-alerts"}
        self._headers.update(dict(settings.header_pairs()))
        super().__init__(settings.queue_size)

    def body(self, event: AlertEvent) -> bytes:
        if self.settings.format == "slack":
            return json.dumps({"text": slack_text(event)}, ensure_ascii=False).encode()
        return json.dumps(event.to_dict(), ensure_ascii=False).encode()

    def deliver(self, batch: list[AlertEvent]) -> None:
        for event in batch:
            self._deliver_one(event)

    def _deliver_one(self, event: AlertEvent) -> None:
        body = self.body(event)
        attempt = 0
        while True:
            retry, reason = self._post(body)
            if reason is None:
                self.stats.delivered += 1
                return
            if not retry or attempt >= self.settings.max_retries:
                break
            delay = min(_MAX_BACKOFF_S, self.settings.backoff_s * 2**attempt)
            if not self.wait_before_retry(delay):
                break
            attempt += 1
            self.stats.retried += 1
        self.stats.failed += 1
        self.report(reason)

    def _post(self, body: bytes) -> tuple[bool, str | None]:
        """One attempt: (whether to retry, the failure) with failure None on success."""
        timeout = self.settings.timeout_s
        left = self.remaining_s()
        if left is not None:
            if left <= 0:
                return False, "shutdown deadline passed"
            timeout = min(timeout, left)
        request = urllib.request.Request(self.settings.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read(65536)
            return False, None
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code in _RETRY_STATUSES, f"HTTP {exc.code}"
        except (ValueError, http.client.InvalidURL) as exc:  # the message quotes the URL, a secret
            return False, type(exc).__name__
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # HTTPException: a garbled answer
            reason = getattr(exc, "reason", exc)
            return True, f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)


def slack_text(event: AlertEvent) -> str:
    """The Slack-style one-liner: state, severity, rule, message, and the trace to open."""
    state = "FIRING" if event.state == FIRING else "RESOLVED"
    text = f"[{state}] {event.rule} ({event.severity}): {event.message}"
    if event.trace_id:
        text += f" trace {event.trace_id}"
    return text


def alert_row(event: AlertEvent) -> tuple[object, ...]:
    """An event as a row for :meth:`StoreWriter.write_alerts` (columns: ``ALERT_COLUMNS``)."""
    payload = event.to_dict()  # NaN and infinities as None
    return (
        event.uid, event.rule, event.kind, event.severity, event.state, event.group_key,
        event.started_ns, event.fired_ns, event.resolved_ns, payload["value"], payload["threshold"],
        event.message, event.trace_id, event.span_id, event.notification,
    )  # fmt: skip


class StoreSink(QueuedSink):
    """Writes events to the store's ``alerts`` table (one row per alert, updated as it repeats
    and resolves) from its own thread, so a store busy with another process's transaction
    never stalls the application. The file is opened (and created) on the first alert."""

    batch_size = _STORE_BATCH

    def __init__(self, writer: StoreWriter, queue_size: int = STORE_QUEUE_SIZE) -> None:
        self.writer = writer
        self.name = f"store {writer.path}"
        super().__init__(queue_size)

    def deliver(self, batch: list[AlertEvent]) -> None:
        self.writer.write_alerts([alert_row(event) for event in batch])
        self.stats.delivered += len(batch)
