"""A store-writer process: converts export requests into rows and commits them.

Conversion from OTLP messages to rows is pure Python and costs more than the SQLite insert,
so ``otelkit serve`` runs it in worker processes to use every core (threads would share one
interpreter lock). Each worker owns a store connection; an exclusive ``flock`` on a lock file
shared by the workers serializes their transactions, so they never wait in SQLite's busy
loop, and a worker that dies releases it. Everything up to the transaction (parsing,
conversion, ``--sanitize``, the rollup contributions) runs outside the lock, in parallel.

The main process sends a group of jobs ``(signal, body, want_facts)`` over a pipe and gets one
:data:`Result` per job back after the commit: an acknowledged request is on disk.
"""

from __future__ import annotations

import fcntl
import logging
import signal as signals
import sqlite3
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Mapping, Sequence

from otelkit.sanitize_settings import SanitizeSettings
from otelkit.exporters.receiver.convert import Converted, convert_logs, convert_metrics, convert_traces
from otelkit.exporters.receiver.messages import REQUESTS
from otelkit.exporters.receiver.row_ids import CachedIds, RequestIds
from otelkit.exporters.receiver.scrub import RowScrubber
from otelkit.processors.sanitize import Scrubber
from otelkit.store import StoreError, StoreWriter
from otelkit.store.rollup import Accumulator
from otelkit.store.writer import SPAN_COLUMNS

_log = logging.getLogger(__name__)

SIGNALS: tuple[str, ...] = ("traces", "metrics", "logs")
_CONVERTERS: dict[str, Callable[[Any, Any], Converted]] = {
    "traces": convert_traces,
    "metrics": convert_metrics,
    "logs": convert_logs,
}
# Rows committed between two WAL checkpoints (about 15 MB of WAL for typical spans).
CHECKPOINT_ROWS = 20_000
_TRACE, _SPAN, _NAME, _START, _END, _STATUS = (
    SPAN_COLUMNS.index(c) for c in ("trace_id", "span_id", "name", "start_ns", "end_ns", "status_code")
)

# What the alert rules need of one stored span: name, start_ns, end_ns, failed, attributes,
# trace id and span id (hex).
Fact = tuple[str, int, int, bool, Mapping[str, Any], str, str]
Job = tuple[str, bytes, bool]
READY = "ready"  # a worker's first message, once it can take jobs


@dataclass(frozen=True)
class Result:
    """One job's outcome. ``error`` None: ``stored`` rows committed, ``rejected`` malformed
    items told to the sender with ``message``; otherwise nothing was stored (the sender retries)."""

    error: str | None
    stored: int = 0
    rejected: int = 0
    message: str = ""
    facts: Sequence[Fact] = ()
    crash: str | None = None  # a traceback, for the main process's log


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker needs; plain data, so it crosses to a spawned process."""

    db: str
    lock_path: str
    busy_timeout_ms: int = 30_000
    cache_size_mib: int = 64
    sanitize: SanitizeSettings | None = None  # the policy's rules, when ``--sanitize`` is on


class _Converted:
    """One job converted, waiting for the transaction."""

    def __init__(self, signal: str, converted: Converted, provisional: bool, want_facts: bool) -> None:
        self.signal = signal
        self.converted = converted
        self.provisional = provisional
        self.want_facts = want_facts
        self.error: str | None = None


class StoreWorker:
    """Converts and commits job groups; one per worker process (usable in-process in tests)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        # Checkpoints run after the lock is released, so the other workers keep committing.
        self.writer = StoreWriter(settings.db, settings.busy_timeout_ms, settings.cache_size_mib, autocheckpoint=False)
        self._since_checkpoint = 0
        self.ids = CachedIds()
        scrubber = Scrubber.from_settings(settings.sanitize) if settings.sanitize is not None else None
        self.scrub = RowScrubber(scrubber) if scrubber is not None and scrubber.active else None
        self._lock_file = open(settings.lock_path, "ab")  # noqa: SIM115 - held for the process's life

    def close(self) -> None:
        self.writer.close()
        self._lock_file.close()

    def _convert(self, job: Job) -> _Converted | Result:
        signal, body, want_facts = job
        try:
            request = REQUESTS[signal].FromString(body)
            ids = RequestIds(self.ids, self.scrub)
            converted = _CONVERTERS[signal](request, ids)
            if self.scrub is not None:
                self.scrub.rows(signal, converted)
        except Exception as exc:  # a bug must fail this request, never the worker
            return Result(f"the receiver could not convert the request: {type(exc).__name__}: {exc}",
                          crash=traceback.format_exc())  # fmt: skip
        return _Converted(signal, converted, ids.provisional, want_facts)

    def run(self, jobs: Sequence[Job]) -> list[Result]:
        """Convert ``jobs``, commit their rows (one transaction per signal), and say how each went."""
        done: list[_Converted | Result] = [self._convert(job) for job in jobs]
        pending = [item for item in done if isinstance(item, _Converted) and item.converted.rows]
        rollups: Accumulator | None = None
        spans = [item for item in pending if item.signal == "traces"]
        if spans:
            rollups = Accumulator()
            for item in spans:
                rollups.add_rows(item.converted.rows, item.converted.attributes)
        if pending:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            try:
                for signal in SIGNALS:
                    group = [item for item in pending if item.signal == signal]
                    if group:
                        self._commit(signal, group, rollups)
            finally:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._since_checkpoint += sum(len(item.converted.rows) for item in pending if item.error is None)
            if self._since_checkpoint >= CHECKPOINT_ROWS:
                self._checkpoint()
        return [item if isinstance(item, Result) else self._result(item) for item in done]

    def _commit(self, signal: str, group: list[_Converted], rollups: Accumulator | None) -> None:
        error: str | None = None
        try:
            rows: list[Sequence[Any]] = []
            for item in group:
                if item.provisional:
                    item.converted.rows = self.ids.resolve(self.writer, signal, item.converted.rows)
                    item.provisional = False
                rows.extend(item.converted.rows)
            if signal == "traces":
                events = [event for item in group for event in item.converted.events]
                attributes = [a for item in group for a in item.converted.attributes]
                self.writer.write_spans(rows, events, attributes, rollups)
            elif signal == "metrics":
                self.writer.write_metric_points(rows)
            else:
                self.writer.write_log_records(rows)
        except (sqlite3.Error, StoreError, OSError) as exc:  # busy, locked, disk full: retryable
            error = f"the store could not write: {exc}"
            _log.warning("otelkit serve: %s", error)
        except Exception as exc:  # a bug must fail these requests, never the worker
            error = f"the store could not write: {type(exc).__name__}: {exc}"
            _log.exception("otelkit serve: unexpected error while writing %s", signal)
        for item in group:
            item.error = error

    def _checkpoint(self) -> None:
        try:
            self.writer.checkpoint()
        except (sqlite3.Error, StoreError, OSError) as exc:  # committed data is safe; try again later
            _log.warning("otelkit serve: WAL checkpoint failed: %s", exc)
        self._since_checkpoint = 0

    @staticmethod
    def _result(item: _Converted) -> Result:
        converted = item.converted
        message = converted.error or ""
        if item.error is not None:
            return Result(item.error, rejected=converted.rejected, message=message)
        facts: list[Fact] = []
        if item.want_facts:
            facts = [(row[_NAME], row[_START], row[_END], row[_STATUS] == "ERROR", attrs, row[_TRACE], row[_SPAN])
                     for row, attrs in zip(converted.rows, converted.attributes)]  # fmt: skip
        return Result(None, len(converted.rows), converted.rejected, message, facts)


def run_worker(conn: Connection, settings: WorkerSettings) -> None:
    """A worker process's main loop: job groups in, results out, until the main process sends
    None or goes away (then the worker exits; a group in progress is committed first)."""
    signals.signal(signals.SIGINT, signals.SIG_IGN)  # the main process decides when to stop
    signals.signal(signals.SIGTERM, signals.SIG_IGN)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    worker = StoreWorker(settings)
    try:
        conn.send(READY)
        while True:
            try:
                jobs = conn.recv()
            except (EOFError, OSError):
                return
            if jobs is None:
                return
            results = worker.run(jobs)
            try:
                conn.send(results)
            except OSError:
                return
    finally:
        worker.close()
