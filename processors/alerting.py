"""Alert stage: threshold rules over finished spans, with alerts sent to the log, webhooks and the store.

The stage only reads spans (it returns each one unchanged); the rules live in
:mod:`.alert_rules` (which reads :class:`SpanFacts`, not SDK spans, so ``otelkit serve`` can
feed ingested spans through :meth:`AlertStage.evaluate`) and the sinks in :mod:`.alert_sinks`.
With no rules the stage costs one attribute test per span; a failing rule or sink logs once
and is counted, and nothing here raises into the application or waits on I/O on its thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otelkit.alert_settings import AlertSettings
from otelkit.processors.alert_rules import AlertEvent, RuleEngine, SpanFacts
from otelkit.processors.alert_sinks import AlertSink, LogSink, QueuedSink, StoreSink, WebhookSink
from otelkit.store.writer import shared_writer

if TYPE_CHECKING:
    from otelkit.config import Policy

__all__ = ["AlertEvent", "AlertStage", "RuleEngine", "SpanFacts", "facts_of"]

_log = logging.getLogger("otelkit")
_ERROR = StatusCode.ERROR


class _ReadableSpanFacts(SpanFacts):
    """The facts of an SDK span, with the name and ids read only when a rule asks for them.

    Most spans are only counted: their ids matter only when they trigger an alert, and their
    name only to rules that select or group by it, while every property read of an SDK span
    is a Python call on every span.
    """

    __slots__ = ("_span",)

    def __init__(self, span: ReadableSpan, end_ns: int) -> None:
        self._span = span
        self.start_ns = span.start_time or end_ns
        self.end_ns = end_ns
        self.error = span.status.status_code is _ERROR
        # A plain dict: each lookup in the SDK's BoundedAttributes runs Python code; the copy is C.
        self.attributes = span.attributes.copy()  # type: ignore[union-attr]
        self._operation_type = None

    @property  # type: ignore[override]
    def name(self) -> str:
        return self._span.name

    @property  # type: ignore[override]
    def trace_id(self) -> int:
        context = self._span.context
        return context.trace_id if context is not None else 0

    @property  # type: ignore[override]
    def span_id(self) -> int:
        context = self._span.context
        return context.span_id if context is not None else 0


def facts_of(span: ReadableSpan) -> SpanFacts | None:
    """What the rules read of an SDK span (None for a span that has not ended)."""
    end = span.end_time
    return None if end is None else _ReadableSpanFacts(span, end)


class AlertStage:
    """The chain stage: feeds each finished span to the rule engine and its events to the sinks."""

    __name__ = "alerting"

    def __init__(
        self, engine: RuleEngine | None, sinks: Sequence[AlertSink] = (), shutdown_timeout_s: float = 5.0
    ) -> None:
        self.engine = engine if engine is not None and engine.rules else None
        self.sinks: tuple[AlertSink, ...] = tuple(sinks)
        self.shutdown_timeout_s = shutdown_timeout_s
        self.failures: Counter[str] = Counter()
        self._failures_lock = threading.Lock()

    @classmethod
    def from_policy(cls, policy: Policy, store_path: str | None = None) -> AlertStage:
        """The stage for ``policy.alerts``; alerts are stored in ``store_path`` (default: the
        policy's store path) whether or not the SQLite exporter is configured."""
        settings: AlertSettings = policy.alerts
        if not settings.enabled or not settings.rules:
            return cls(None)
        sinks: list[AlertSink] = []
        if settings.log:
            sinks.append(LogSink())
        if settings.store:
            store = policy.store
            writer = shared_writer(store_path or store.path, store.busy_timeout_ms, store.cache_size_mib)
            sinks.append(StoreSink(writer))
        sinks.extend(WebhookSink(webhook) for webhook in settings.webhooks)
        return cls(RuleEngine(settings.rules, settings.max_groups), sinks, settings.shutdown_timeout_s)

    @property
    def active(self) -> bool:
        """Whether there is anything to evaluate (a stage that is not active may be left out of the chain)."""
        return self.engine is not None

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        if self.engine is None:
            return span
        try:
            facts = facts_of(span)
            if facts is not None:
                events = self.engine.evaluate(facts)
                if events:
                    self.dispatch(events)
        except Exception as exc:  # alerting must never cost the application a span
            self._failed("engine", exc)
        return span

    def evaluate(self, facts: SpanFacts) -> Sequence[AlertEvent]:
        """Evaluate a span from any source (``otelkit serve``'s ingested spans) and send its events."""
        if self.engine is None:
            return ()
        events = self.engine.evaluate(facts)
        if events:
            self.dispatch(events)
        return events

    def dispatch(self, events: Sequence[AlertEvent]) -> None:
        """Hand events to every sink; a sink that raises is logged once and counted."""
        for event in events:
            for sink in self.sinks:
                try:
                    sink.emit(event)
                except Exception as exc:
                    self._failed(sink.name, exc)

    def flush(self) -> list[ReadableSpan]:
        """Alerting holds no spans back."""
        return []

    def shutdown(self) -> None:
        """Give queued webhook and store deliveries at most ``shutdown_timeout_s`` in all."""
        deadline = time.monotonic() + self.shutdown_timeout_s
        for sink in self.sinks:
            try:
                sink.close(max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                self._failed(sink.name, exc)

    def stats(self) -> dict[str, object]:
        """Counters for diagnostics: late spans, dropped groups, failures, and each queued sink's."""
        result: dict[str, object] = {"failures": dict(self.failures)}
        if self.engine is not None:
            result.update(late=self.engine.late, dropped_groups=self.engine.dropped_groups)
        for sink in self.sinks:
            if isinstance(sink, QueuedSink):
                result[sink.name] = vars(sink.stats).copy()
        return result

    def _failed(self, where: str, exc: Exception) -> None:
        with self._failures_lock:
            self.failures[where] += 1
            first = self.failures[where] == 1
        if first:
            _log.error("otelkit: alerting (%s) failed (%s: %s); counted, not logged again", where, type(exc).__name__, exc)
