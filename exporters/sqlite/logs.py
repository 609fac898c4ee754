"""SQLiteLogExporter: SDK log records into the store's ``log_records`` table."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from opentelemetry import baggage
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otelkit import semconv as sc
from otelkit.exporters.sqlite._target import RowIds, resolve_writer
from otelkit.store.writer import to_json

_log = logging.getLogger(__name__)


def _body_text(body: Any) -> str | None:
    if body is None or isinstance(body, str):
        return body
    return to_json(body) if isinstance(body, (dict, list, tuple)) else str(body)


class SQLiteLogExporter(LogRecordExporter):
    """Exports log records to an otelkit SQLite store; registered as the ``sqlite`` logs exporter.

    Each record keeps its trace and span ids and the ``session.id`` in effect when it was
    emitted, so logs join traces and sessions with plain SQL.
    """

    def __init__(self, path: str | None = None) -> None:
        self._writer = resolve_writer(path)
        self.path = self._writer.path
        self._ids = RowIds(self._writer)
        self._failed_once = False

    def _row(self, item: ReadableLogRecord) -> tuple[Any, ...]:
        record = item.log_record
        attrs = dict(record.attributes) if record.attributes else {}
        # The correlation fields otelkit's logging instrumentation stamps on records duplicate
        # the row's own trace, span and session columns.
        for field in sc.LOG_CORRELATION_FIELDS:
            attrs.pop(field, None)
        session = attrs.get(sc.SESSION_ID)
        if session is None and record.context is not None:
            session = baggage.get_baggage(sc.BAGGAGE_SESSION_ID, record.context)
        resource_id, service = self._ids.resource(item.resource)
        severity = record.severity_number
        return (
            record.timestamp,
            record.observed_timestamp,
            severity.value if severity is not None else None,
            record.severity_text,
            _body_text(record.body),
            record.event_name or None,
            format(record.trace_id, "032x") if record.trace_id else None,
            format(record.span_id, "016x") if record.span_id else None,
            int(record.trace_flags) if record.trace_flags is not None else None,
            service,
            resource_id,
            self._ids.scope(item.instrumentation_scope),
            str(session) if session is not None else None,
            to_json(attrs),
        )

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            self._writer.write_log_records([self._row(item) for item in batch])
        except Exception as exc:  # never raise into the SDK's worker
            if not self._failed_once:
                _log.error("otelkit: could not write %d log records to %s: %s", len(batch), self.path, exc)
                self._failed_once = True
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
