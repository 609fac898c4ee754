"""The ingest queue between the protocol handlers and the store.

Handlers convert a request into rows, hand them to :meth:`Ingest.submit` and answer only when
the ticket says the rows are committed: an acknowledged request is on disk. One writer thread
drains the queue and commits everything waiting in one transaction per signal (group commit),
so many small requests cost one commit. The queue is bounded in items: when it is full a
request is refused at once (the handler answers 503 / UNAVAILABLE and the sender retries),
so memory stays bounded under overload and nothing accepted is dropped.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from otelkit.store import StoreError, StoreWriter

_log = logging.getLogger(__name__)

SIGNALS: tuple[str, ...] = ("traces", "metrics", "logs")
DEFAULT_QUEUE_ITEMS = 200_000
# A group commit takes at most this many items, so one transaction stays short.
MAX_GROUP_ITEMS = 50_000


class Refused(Exception):
    """The item cannot be taken now (queue full, or shutting down): the sender should retry."""


@dataclass
class Ticket:
    """One request's rows on their way to the store; ``wait`` returns once they are committed
    (None) or failed (the one-line reason)."""

    signal: str
    rows: Sequence[Sequence[Any]]
    events: Sequence[Sequence[Any]] = ()
    attributes: Sequence[Mapping[str, Any]] | None = None
    provisional: bool = False  # rows hold provisional resource or scope ids (see service.CachedIds)
    error: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def finish(self, error: str | None) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout_s: float) -> str | None:
        """None once committed; the failure otherwise (a timeout counts as one)."""
        if not self._done.wait(timeout_s):
            return f"the store did not commit within {timeout_s:g} s"
        return self.error


@dataclass
class Counters:
    """Items per signal: accepted (committed), rejected (malformed, told to the sender as a
    partial success) and refused (not taken or not committed: the sender retries)."""

    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    requests: int = 0


class Ingest:
    """A bounded queue of tickets and the thread that commits them to ``writer``."""

    def __init__(self, writer: StoreWriter, max_items: int = DEFAULT_QUEUE_ITEMS) -> None:
        self.writer = writer
        self.max_items = max_items
        self.counters = Counters()
        self._queue: deque[Ticket] = deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._closing = False
        # Turns provisional resource and scope ids into row ids, in the writer thread.
        self.resolve: Callable[[StoreWriter, str, Sequence[Sequence[Any]]], Sequence[Sequence[Any]]] | None = None
        self._thread = threading.Thread(target=self._run, name="otelkit-ingest", daemon=True)
        self._thread.start()

    @property
    def queued_items(self) -> int:
        """Items taken but not yet committed (queued or being written)."""
        return self._queued_items

    def submit(self, ticket: Ticket) -> Ticket:
        """Queue ``ticket`` (its rows count as items), or raise :class:`Refused`."""
        items = len(ticket.rows)
        with self._cond:
            if self._closing:
                raise Refused("the server is shutting down")
            if self._queued_items and self._queued_items + items > self.max_items:
                raise Refused(f"the ingest queue is full ({self._queued_items:,} items waiting)")
            self._queue.append(ticket)
            self._queued_items += items
            self._cond.notify()
        return ticket

    def count(self, signal: str, accepted: int = 0, rejected: int = 0, refused: int = 0) -> None:
        with self._cond:
            self.counters.accepted[signal] += accepted
            self.counters.rejected[signal] += rejected
            self.counters.refused[signal] += refused
            self.counters.requests += 1

    def _take(self) -> list[Ticket] | None:
        """The next group of waiting tickets (None once closed and drained)."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            group: list[Ticket] = []
            items = 0
            while self._queue and (not group or items + len(self._queue[0].rows) <= MAX_GROUP_ITEMS):
                ticket = self._queue.popleft()
                group.append(ticket)
                items += len(ticket.rows)
            return group

    def _run(self) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            for signal in SIGNALS:
                tickets = [t for t in group if t.signal == signal]
                if tickets:
                    self._commit(signal, tickets)
            with self._cond:  # items count against the bound until committed (or failed)
                self._queued_items -= sum(len(t.rows) for t in group)

    def _commit(self, signal: str, tickets: list[Ticket]) -> None:
        error: str | None = None
        try:
            if self.resolve is not None:
                for ticket in tickets:
                    if ticket.provisional:
                        ticket.rows = self.resolve(self.writer, signal, ticket.rows)
                        ticket.provisional = False
            if signal == "traces":
                rows = [row for t in tickets for row in t.rows]
                events = [event for t in tickets for event in t.events]
                attributes = None
                if all(t.attributes is not None for t in tickets):
                    attributes = [a for t in tickets for a in t.attributes or ()]
                self.writer.write_spans(rows, events, attributes)
            elif signal == "metrics":
                self.writer.write_metric_points([row for t in tickets for row in t.rows])
            else:
                self.writer.write_log_records([row for t in tickets for row in t.rows])
        except (sqlite3.Error, StoreError, OSError) as exc:  # busy, locked, disk full: retryable
            error = f"the store could not write: {exc}"
            _log.warning("otelkit serve: %s", error)
        except Exception as exc:  # a bug must fail these requests, never the writer thread
            error = f"the store could not write: {type(exc).__name__}: {exc}"
            _log.exception("otelkit serve: unexpected error while writing %s", signal)
        for ticket in tickets:
            ticket.finish(error)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop taking tickets and commit every one already queued; True when all were."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
