"""The ingest queue between the protocol handlers and the store-writer processes.

Handlers hand a request's body to :meth:`Ingest.submit` and answer only when the ticket says
its rows are committed: an acknowledged request is on disk. One link thread per worker
process (:mod:`otelkit.exporters.receiver.worker`) takes every ticket waiting, up to
:data:`MAX_GROUP_ITEMS`, sends them to its worker in one message and hands out the results:
the worker converts them in parallel with the other workers and commits them in one
transaction per signal (group commit), so many small requests cost one commit. The queue is
bounded in items: when it is full a request is refused at once (the handler answers 503 /
UNAVAILABLE and the sender retries), so memory stays bounded under overload and nothing
accepted is dropped. A worker that dies fails its group (retryable) and is started again.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from otelkit.exporters.receiver.worker import READY, SIGNALS, Result, WorkerSettings, run_worker

_log = logging.getLogger(__name__)

DEFAULT_QUEUE_ITEMS = 200_000
# A group takes at most this many items, so one transaction stays short.
MAX_GROUP_ITEMS = 50_000
_RESTART_DELAY_S = 0.5
_START_TIMEOUT_S = 60.0


class WorkerStartError(RuntimeError):
    """A store-writer process did not come up; the message is one line."""


class Refused(Exception):
    """The item cannot be taken now (queue full, or shutting down): the sender should retry."""


@dataclass
class Ticket:
    """One request on its way to the store; ``wait`` returns its :class:`Result` once the
    rows are committed or have failed."""

    signal: str
    body: bytes
    items: int
    want_facts: bool = False
    result: Result | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def finish(self, result: Result) -> None:
        self.result = result
        self._done.set()

    def wait(self, timeout_s: float) -> Result:
        """The outcome (a timeout counts as a failure)."""
        if not self._done.wait(timeout_s) or self.result is None:
            return Result(f"the store did not commit within {timeout_s:g} s")
        return self.result


@dataclass
class Counters:
    """Items per signal: accepted (committed), rejected (malformed, told to the sender as a
    partial success) and refused (not taken or not committed: the sender retries)."""

    accepted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIGNALS, 0))
    requests: int = 0
    worker_restarts: int = 0


class _Link:
    """One worker process and the pipe to it, started again when it dies."""

    def __init__(self, settings: WorkerSettings, index: int) -> None:
        self.settings = settings
        self.index = index
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.spawn()

    def spawn(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process running gRPC threads
        ours, theirs = context.Pipe()
        process = context.Process(target=run_worker, args=(theirs, self.settings),
                                  name=f"otelkit-store-writer-{self.index}", daemon=True)  # fmt: skip
        process.start()
        theirs.close()
        self.process, self.conn = process, ours

    def ready(self) -> None:
        """Wait for the worker's first message; :class:`WorkerStartError` if it never comes."""
        assert self.conn is not None and self.process is not None
        try:
            if self.conn.poll(_START_TIMEOUT_S) and self.conn.recv() == READY:
                return
        except (EOFError, OSError):
            pass
        self.process.join(1)
        code = self.process.exitcode
        self.process.kill()
        raise WorkerStartError(f"a store writer process did not start (exit code {code}); see the messages above")

    def exchange(self, tickets: list[Ticket]) -> list[Result] | str:
        """The worker's results for ``tickets``, or why there are none (the worker died)."""
        assert self.conn is not None and self.process is not None
        try:
            self.conn.send([(t.signal, t.body, t.want_facts) for t in tickets])
            results = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            return f"a store writer process exited (code {self.process.exitcode}); retry"
        return results

    def stop(self, timeout_s: float, graceful: bool) -> None:
        """Let the worker finish and exit; ``graceful`` False (its link thread is stuck
        mid-exchange) terminates it at once."""
        assert self.conn is not None and self.process is not None
        if graceful:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.conn.close()


class Ingest:
    """A bounded queue of tickets and ``workers`` store-writer processes committing them."""

    def __init__(self, settings: WorkerSettings, max_items: int = DEFAULT_QUEUE_ITEMS, workers: int = 2) -> None:
        self.max_items = max_items
        self.counters = Counters()
        self._queue: deque[Ticket] = deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._closing = False
        self._links = [_Link(settings, i) for i in range(workers)]
        try:
            for link in self._links:
                link.ready()
        except WorkerStartError:
            for link in self._links:
                link.stop(1.0, graceful=False)
            raise
        self._threads = [
            threading.Thread(target=self._run, args=(link,), name=f"otelkit-ingest-{link.index}", daemon=True)
            for link in self._links
        ]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._links)

    @property
    def queued_items(self) -> int:
        """Items taken but not yet committed (queued or being written)."""
        return self._queued_items

    def submit(self, ticket: Ticket) -> Ticket:
        """Queue ``ticket``, or raise :class:`Refused`."""
        with self._cond:
            if self._closing:
                raise Refused("the server is shutting down")
            if self._queued_items and self._queued_items + ticket.items > self.max_items:
                raise Refused(f"the ingest queue is full ({self._queued_items:,} items waiting)")
            self._queue.append(ticket)
            self._queued_items += ticket.items
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
            while self._queue and (not group or items + self._queue[0].items <= MAX_GROUP_ITEMS):
                ticket = self._queue.popleft()
                group.append(ticket)
                items += ticket.items
            return group

    def _run(self, link: _Link) -> None:
        while True:
            group = self._take()
            if group is None:
                return
            results = link.exchange(group)
            if isinstance(results, str):
                _log.warning("otelkit serve: %s", results)
                results = [Result(results)] * len(group)
                with self._cond:
                    self.counters.worker_restarts += 1
                time.sleep(_RESTART_DELAY_S)
                link.spawn()
                try:
                    link.ready()
                except WorkerStartError as exc:
                    _log.error("otelkit serve: %s", exc)
            for ticket, result in zip(group, results):
                if result.crash:
                    _log.error("otelkit serve: unexpected error in a store writer:\n%s", result.crash)
                ticket.finish(result)
            with self._cond:  # items count against the bound until committed (or failed)
                self._queued_items -= sum(t.items for t in group)

    def close(self, timeout_s: float = 30.0) -> bool:
        """Stop taking tickets, commit every one already queued and stop the workers; True
        when all were committed in time."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        drained = not any(thread.is_alive() for thread in self._threads)
        for link in self._links:
            link.stop(max(1.0, deadline - time.monotonic()), drained)
        return drained
