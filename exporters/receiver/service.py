"""What both protocols do with a decoded export request: convert, queue, wait for the commit.

The gRPC and HTTP front ends only translate between their wire and :class:`Outcome`, so the
two answer every case the same way.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import orjson
from google.protobuf.message import Message

from otelkit.exporters.receiver.convert import Converted, convert_logs, convert_metrics, convert_traces
from otelkit.exporters.receiver.ingest import Ingest, Refused, Ticket
from otelkit.exporters.receiver.scrub import RowScrubber
from otelkit.processors.alert_rules import SpanFacts
from otelkit.processors.alerting import AlertStage
from otelkit.processors.sanitize import Scrubber
from otelkit.store import StoreWriter
from otelkit.store.writer import LOG_COLUMNS, METRIC_COLUMNS, SPAN_COLUMNS

_log = logging.getLogger(__name__)

COMMIT_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1

_CONVERTERS: dict[str, Callable[[Any, Any], Converted]] = {
    "traces": convert_traces,
    "metrics": convert_metrics,
    "logs": convert_logs,
}


@dataclass(frozen=True)
class Outcome:
    """``stored``: committed (with ``rejected`` malformed items and their ``message``);
    otherwise nothing was stored and ``message`` says why. Every failure here is transient (a
    full queue, a busy or failing store), so the front ends answer 503 / UNAVAILABLE."""

    stored: bool
    rejected: int = 0
    message: str = ""


_ID_COLUMNS: dict[str, tuple[int, int]] = {
    "traces": (SPAN_COLUMNS.index("resource_id"), SPAN_COLUMNS.index("scope_id")),
    "metrics": (METRIC_COLUMNS.index("resource_id"), METRIC_COLUMNS.index("scope_id")),
    "logs": (LOG_COLUMNS.index("resource_id"), LOG_COLUMNS.index("scope_id")),
}
_TRACE, _SPAN, _NAME, _START, _END, _STATUS = (
    SPAN_COLUMNS.index(c) for c in ("trace_id", "span_id", "name", "start_ns", "end_ns", "status_code")
)
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class CachedIds:
    """Resource and scope row ids by content, handed out without touching the store.

    A resource or scope seen for the first time gets a provisional (negative) id at once; the
    writer thread turns it into a real row id inside its own commit (:meth:`resolve`). So a
    request thread never waits on the store: when the store is locked, requests queue (or are
    refused with 503) instead of piling up in handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[bytes, int] = {}  # content -> real id, or provisional until resolved
        self._pending: dict[int, tuple[bytes, Callable[[StoreWriter], int]]] = {}
        self._resolved: dict[int, int] = {}  # provisional -> real, for rows queued before
        self._next = -1

    def _id(self, key: bytes, intern: Callable[[StoreWriter], int]) -> int:
        found = self._ids.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._ids.get(key)
            if found is None:
                found = self._ids[key] = self._next
                self._pending[found] = (key, intern)
                self._next -= 1
        return found

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int:
        key = b"r" + orjson.dumps(attributes, option=_SORTED, default=str)
        return self._id(key, lambda writer: writer.resource_id(attributes, service_name))

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int:
        key = b"s" + orjson.dumps([name, version, attributes or {}], option=_SORTED, default=str)
        return self._id(key, lambda writer: writer.scope_id(name, version, attributes))

    def resolve(self, writer: StoreWriter, signal: str, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """``rows`` with their provisional ids replaced by real ones (interning what is new);
        called by the writer thread only."""
        with self._lock:
            pending = list(self._pending.items())
        for provisional, (key, intern) in pending:
            real = intern(writer)
            with self._lock:
                self._resolved[provisional] = real
                self._ids[key] = real
                self._pending.pop(provisional, None)
        resolved = self._resolved
        r, s = _ID_COLUMNS[signal]
        out: list[Sequence[Any]] = []
        for row in rows:
            if row[r] is not None and row[r] < 0 or row[s] is not None and row[s] < 0:
                fixed = list(row)
                if fixed[r] is not None and fixed[r] < 0:
                    fixed[r] = resolved[fixed[r]]
                if fixed[s] is not None and fixed[s] < 0:
                    fixed[s] = resolved[fixed[s]]
                out.append(tuple(fixed))
            else:
                out.append(row)
        return out


class _RequestIds:
    """The ids one request's conversion asks for, noting whether any is provisional; with
    ``--sanitize``, resources and scopes are scrubbed before they are interned."""

    def __init__(self, ids: CachedIds, scrub: RowScrubber | None) -> None:
        self._ids = ids
        self._scrub = scrub
        self.provisional = False

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int:
        hits: list[str] = []
        if self._scrub is not None:
            scrubbed, hits = self._scrub.attributes(attributes)
            attributes = attributes if scrubbed is None else scrubbed
        found = self._ids.resource_id(attributes, service_name)
        if self._scrub is not None:
            self._scrub.resource_hits[found] = tuple(hits)
        self.provisional |= found < 0
        return found

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int:
        if self._scrub is not None and attributes:
            scrubbed, _hits = self._scrub.attributes(attributes)
            attributes = attributes if scrubbed is None else scrubbed
        found = self._ids.scope_id(name, version, attributes)
        self.provisional |= found < 0
        return found


class ReceiverService:
    """Stores export requests through one :class:`Ingest`, and runs the policy's alert rules
    on the spans it stored."""

    def __init__(self, ingest: Ingest, alerts: AlertStage | None = None, scrubber: Scrubber | None = None) -> None:
        self.ingest = ingest
        self.scrub = RowScrubber(scrubber) if scrubber is not None and scrubber.active else None
        self.alerts = alerts if alerts is not None and alerts.active else None
        self.alert_failures = 0
        self.ids = CachedIds()
        ingest.resolve = self.ids.resolve

    def export(self, signal: str, request: Message) -> Outcome:
        """Store ``request`` of ``signal`` ("traces", "metrics" or "logs")."""
        ids = _RequestIds(self.ids, self.scrub)
        converted = _CONVERTERS[signal](request, ids)
        if self.scrub is not None:
            self.scrub.rows(signal, converted)
        rows = converted.rows
        message = converted.error or ""
        if not rows:
            self.ingest.count(signal, rejected=converted.rejected)
            return Outcome(True, converted.rejected, message)
        ticket = Ticket(signal, rows, converted.events, converted.attributes if signal == "traces" else None,
                        provisional=ids.provisional)  # fmt: skip
        try:
            self.ingest.submit(ticket)
        except Refused as exc:
            self.ingest.count(signal, refused=len(rows), rejected=converted.rejected)
            return Outcome(False, message=str(exc))
        error = ticket.wait(COMMIT_TIMEOUT_S)
        if error is not None:
            self.ingest.count(signal, refused=len(rows), rejected=converted.rejected)
            return Outcome(False, message=error)
        self.ingest.count(signal, accepted=len(rows), rejected=converted.rejected)
        if self.alerts is not None and signal == "traces":
            self._alert(rows, converted.attributes)
        return Outcome(True, converted.rejected, message)

    def _alert(self, rows: Sequence[Sequence[Any]], attributes: Sequence[Mapping[str, Any]]) -> None:
        """The same rule engine as in-process, on the committed spans (after the commit, so an
        alert never names a span the store lacks). A rule that fails is counted, never raised."""
        assert self.alerts is not None
        try:
            for row, attrs in zip(rows, attributes):
                self.alerts.evaluate(SpanFacts(row[_NAME], row[_START], row[_END], row[_STATUS] == "ERROR", attrs,
                                               int(row[_TRACE], 16), int(row[_SPAN], 16)))  # fmt: skip
        except Exception:  # alerting must never fail an acknowledged request
            self.alert_failures += 1
            _log.exception("otelkit serve: alert rules failed on ingested spans")
