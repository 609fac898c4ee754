"""SQLiteSpanExporter: finished SDK spans into the store's ``spans``, ``span_events``, ``traces``.

This runs on the BatchSpanProcessor's worker thread for every span, so the conversion is one
flat function with no per-span allocation beyond the row itself.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from otelkit import semconv as sc
from otelkit.exporters.sqlite._target import RowIds, resolve_writer
from otelkit.store.writer import to_json

_log = logging.getLogger(__name__)

_NO_USAGE: tuple[None, None, None, None] = (None, None, None, None)

def _int_or_none(value: Any) -> int | None:
    if value is None or type(value) is int:
        return value
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _error_type(status_code: StatusCode, attrs: dict[str, Any], events: Sequence[Any]) -> str | None:
    declared = attrs.get(sc.ERROR_TYPE)
    if declared is not None:
        return str(declared)
    if status_code is not StatusCode.ERROR:
        return None
    for event in events:
        if event.name == "exception" and event.attributes:
            found = event.attributes.get(sc.EXCEPTION_TYPE)
            if found is not None:
                return str(found)
    return None


def _links_json(links: Sequence[Any]) -> str:
    return to_json(
        [
            {
                "trace_id": "%032x" % link.context.trace_id,
                "span_id": "%016x" % link.context.span_id,
                "attributes": dict(link.attributes or {}),
            }
            for link in links
        ]
    )


class SQLiteSpanExporter(SpanExporter):
    """Exports spans to an otelkit SQLite store.

    ``path`` defaults to ``OTELKIT_SQLITE_PATH``, else ``./otelkit.db``. Registered as the
    ``sqlite`` traces exporter, so ``OTEL_TRACES_EXPORTER=otlp,sqlite`` works.
    """

    def __init__(self, path: str | None = None) -> None:
        self._writer = resolve_writer(path)
        self.path = self._writer.path
        self._ids = RowIds(self._writer)
        self._failed_once = False
        self._shutdown = False

    def _row(self, span: ReadableSpan, events: Sequence[Any]) -> tuple[Any, ...]:
        ctx = span.context
        parent = span.parent
        raw = span.attributes
        attrs: dict[str, Any] = raw.copy() if raw else {}  # type: ignore[attr-defined]
        get = attrs.get
        resource_id, service = self._ids.resource(span.resource)
        status = span.status
        status_code = status.status_code
        links = span.links
        trace_state = ctx.trace_state
        if attrs:
            provider = get(sc.GEN_AI_PROVIDER_NAME) or get(sc.GEN_AI_SYSTEM)
            model = get(sc.GEN_AI_RESPONSE_MODEL) or get(sc.GEN_AI_REQUEST_MODEL)
            sample_rate = get(sc.SAMPLE_RATE)
            usage = (
                _int_or_none(get(sc.GEN_AI_USAGE_INPUT_TOKENS)),
                _int_or_none(get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)),
                _int_or_none(get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
                _float_or_none(get(sc.GEN_AI_USAGE_COST)),
            )
        else:
            provider = model = sample_rate = None
            usage = _NO_USAGE
        return (
            "%032x" % ctx.trace_id,
            "%016x" % ctx.span_id,
            "%016x" % parent.span_id if parent is not None else None,
            span.name,
            span.kind._name_,
            service,
            resource_id,
            self._ids.scope(span.instrumentation_scope),
            span.start_time,
            span.end_time,
            status_code._name_,
            status.description,
            sc.operation_type_of(attrs),
            str(provider) if provider is not None else None,
            str(model) if model is not None else None,
            *usage,
            get(sc.COST_STATUS),
            get(sc.SESSION_ID),
            _error_type(status_code, attrs, events),
            get(sc.ERROR_CATEGORY),
            1.0 if sample_rate is None else _float_or_none(sample_rate) or 1.0,
            trace_state.to_header() or None if trace_state else None,
            to_json(attrs),
            _links_json(links) if links else None,
        )

    def _convert(self, spans: Sequence[ReadableSpan]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Store rows for finished spans and their events."""
        rows = []
        events = []
        row_of = self._row
        for span in spans:
            if span.end_time is None:
                continue
            span_events = span.events
            row = row_of(span, span_events)
            rows.append(row)
            if span_events:
                events.extend(
                    (row[0], row[1], e.timestamp, e.name, to_json(dict(e.attributes or {}))) for e in span_events
                )
        return rows, events

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            self._writer.write_spans(*self._convert(spans))
        except Exception as exc:  # the store must never raise into the SDK's worker
            if not self._failed_once:
                _log.error("otelkit: could not write %d spans to %s: %s", len(spans), self.path, exc)
                self._failed_once = True
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
