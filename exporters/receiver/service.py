"""What both protocols do with a decoded export request: convert, queue, wait for the commit.

The gRPC and HTTP front ends only translate between their wire and :class:`Outcome`, so the
two answer every case the same way.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import orjson
from google.protobuf.message import Message

from otelkit.exporters.receiver.convert import Converted, convert_logs, convert_metrics, convert_traces
from otelkit.exporters.receiver.ingest import Ingest, Refused, Ticket
from otelkit.store import StoreError, StoreWriter

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
    otherwise ``retry`` says the failure is transient (503 / UNAVAILABLE)."""

    stored: bool
    rejected: int = 0
    message: str = ""
    retry: bool = False


class CachedIds:
    """Resource and scope row ids by content, in front of the writer.

    The writer's own cache sits behind its lock, which a commit holds; looking ids up here
    keeps the request threads converting while the writer thread commits."""

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer
        self._resources: dict[bytes, int] = {}
        self._scopes: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int:
        key = orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
        found = self._resources.get(key)
        if found is None:
            found = self._writer.resource_id(attributes, service_name)
            with self._lock:
                if len(self._resources) > 10_000:
                    self._resources.clear()
                self._resources[key] = found
        return found

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int:
        key = orjson.dumps([name, version, attributes or {}], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
        found = self._scopes.get(key)
        if found is None:
            found = self._writer.scope_id(name, version, attributes)
            with self._lock:
                if len(self._scopes) > 10_000:
                    self._scopes.clear()
                self._scopes[key] = found
        return found


class ReceiverService:
    """Stores export requests through one :class:`Ingest`."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.ids = CachedIds(ingest.writer)

    def export(self, signal: str, request: Message) -> Outcome:
        """Store ``request`` of ``signal`` ("traces", "metrics" or "logs")."""
        try:
            converted = _CONVERTERS[signal](request, self.ids)
        except (sqlite3.Error, StoreError, OSError) as exc:  # the store could not give a resource id
            self.ingest.count(signal)
            return Outcome(False, message=f"the store could not write: {exc}", retry=True)
        rows = converted.rows
        message = converted.error or ""
        if not rows:
            self.ingest.count(signal, rejected=converted.rejected)
            return Outcome(True, converted.rejected, message)
        ticket = Ticket(signal, rows, converted.events, converted.attributes if signal == "traces" else None)
        try:
            self.ingest.submit(ticket)
        except Refused as exc:
            self.ingest.count(signal, refused=len(rows), rejected=converted.rejected)
            return Outcome(False, message=str(exc), retry=True)
        error = ticket.wait(COMMIT_TIMEOUT_S)
        if error is not None:
            self.ingest.count(signal, refused=len(rows), rejected=converted.rejected)
            return Outcome(False, message=error, retry=True)
        self.ingest.count(signal, accepted=len(rows), rejected=converted.rejected)
        return Outcome(True, converted.rejected, message)
