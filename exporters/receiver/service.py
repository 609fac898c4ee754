"""What both protocols do with a decoded export request: queue it, wait for the commit, alert.

The gRPC and HTTP front ends only translate between their wire and :class:`Outcome`, so the
two answer every case the same way. Conversion and storage happen in the store-writer
processes (:mod:`otelkit.exporters.receiver.worker`); the policy's alert rules run here, on
the facts a worker returns for the spans it committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

from google.protobuf.message import Message

from otelkit.exporters.receiver.convert import count_items
from otelkit.exporters.receiver.ingest import Ingest, Refused, Ticket
from otelkit.exporters.receiver.worker import Fact
from otelkit.processors.alert_rules import SpanFacts
from otelkit.processors.alerting import AlertStage

_log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class Outcome:
    """``stored``: committed (with ``rejected`` malformed items and their ``message``);
    otherwise nothing was stored and ``message`` says why. Every failure here is transient (a
    full queue, a busy or failing store), so the front ends answer 503 / UNAVAILABLE."""

    stored: bool
    rejected: int = 0
    message: str = ""


class ReceiverService:
    """Stores export requests through one :class:`Ingest`, and runs the policy's alert rules
    on the spans it stored."""

    def __init__(self, ingest: Ingest, alerts: AlertStage | None = None) -> None:
        self.ingest = ingest
        self.alerts = alerts if alerts is not None and alerts.active else None
        self.alert_failures = 0

    def export(self, signal: str, request: Message, body: bytes | None = None) -> Outcome:
        """Store ``request`` of ``signal`` ("traces", "metrics" or "logs"); ``body`` is its
        protobuf encoding when the caller has it (saves encoding it again)."""
        items = count_items(signal, request)
        if not items:
            self.ingest.count(signal)
            return Outcome(True)
        ticket = Ticket(signal, request.SerializeToString() if body is None else body, items,
                        want_facts=self.alerts is not None and signal == "traces")  # fmt: skip
        try:
            self.ingest.submit(ticket)
        except Refused as exc:
            self.ingest.count(signal, refused=items)
            return Outcome(False, message=str(exc))
        result = ticket.wait(COMMIT_TIMEOUT_S)
        if result.error is not None:
            self.ingest.count(signal, refused=items - result.rejected, rejected=result.rejected)
            return Outcome(False, message=result.error)
        self.ingest.count(signal, accepted=result.stored, rejected=result.rejected)
        if result.facts:
            self._alert(result.facts)
        return Outcome(True, result.rejected, result.message)

    def _alert(self, facts: Sequence[Fact]) -> None:
        """The same rule engine as in-process, on the committed spans (after the commit, so an
        alert never names a span the store lacks). A rule that fails is counted, never raised."""
        assert self.alerts is not None
        try:
            for name, start, end, failed, attrs, trace_id, span_id in facts:
                self.alerts.evaluate(SpanFacts(name, start, end, failed, attrs, int(trace_id, 16), int(span_id, 16)))
        except Exception:  # alerting must never fail an acknowledged request
            self.alert_failures += 1
            _log.exception("otelkit serve: alert rules failed on ingested spans")
