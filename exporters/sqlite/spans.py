"""SQLiteSpanExporter: finished SDK spans into the store's ``spans``, ``span_events``, ``traces``.

This runs on the BatchSpanProcessor's worker thread for every span, so the conversion is one
flat function with no per-span allocation beyond the row itself.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from otelkit import semconv as sc
from otelkit.exporters.sqlite._target import RowIds, resolve_writer
from otelkit.store.writer import to_json

_log = logging.getLogger(__name__)

_KIND = {kind: kind.name for kind in SpanKind}
_STATUS = {code: code.name for code in StatusCode}


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _error_type(span: ReadableSpan, attrs: dict[str, Any]) -> str | None:
    declared = attrs.get(sc.ERROR_TYPE)
    if declared is not None:
        return str(declared)
    if span.status.status_code is not StatusCode.ERROR:
        return None
    for event in span.events:
        if event.name == "exception" and event.attributes:
            found = event.attributes.get(sc.EXCEPTION_TYPE)
            if found is not None:
                return str(found)
    return None


def _links_json(span: ReadableSpan) -> str | None:
    if not span.links:
        return None
    return to_json(
        [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
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

    def _row(self, span: ReadableSpan) -> tuple[Any, ...]:
        ctx = span.context
        parent = span.parent
        attrs = dict(span.attributes) if span.attributes else {}
        resource_id, service = self._ids.resource(span.resource)
        status = span.status
        trace_state = ctx.trace_state.to_header() if ctx.trace_state else None
        op_type = sc.operation_type_of(attrs)
        model = attrs.get(sc.GEN_AI_RESPONSE_MODEL) or attrs.get(sc.GEN_AI_REQUEST_MODEL)
        provider = attrs.get(sc.GEN_AI_PROVIDER_NAME) or attrs.get(sc.GEN_AI_SYSTEM)
        sample_rate = _float_or_none(attrs.get(sc.SAMPLE_RATE))
        return (
            format(ctx.trace_id, "032x"),
            format(ctx.span_id, "016x"),
            format(parent.span_id, "016x") if parent is not None else None,
            span.name,
            _KIND[span.kind],
            service,
            resource_id,
            self._ids.scope(span.instrumentation_scope),
            span.start_time,
            span.end_time,
            _STATUS[status.status_code],
            status.description,
            op_type,
            str(provider) if provider is not None else None,
            str(model) if model is not None else None,
            _int_or_none(attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS)),
            _int_or_none(attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS)),
            _int_or_none(attrs.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
            _float_or_none(attrs.get(sc.GEN_AI_USAGE_COST)),
            attrs.get(sc.COST_STATUS),
            attrs.get(sc.SESSION_ID),
            _error_type(span, attrs),
            attrs.get(sc.ERROR_CATEGORY),
            sample_rate if sample_rate is not None else 1.0,
            trace_state or None,
            to_json(attrs),
            _links_json(span),
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            rows = []
            events = []
            for span in spans:
                if span.end_time is None:
                    continue
                rows.append(self._row(span))
                if span.events:
                    trace_id, span_id = rows[-1][0], rows[-1][1]
                    events.extend(
                        (trace_id, span_id, e.timestamp, e.name, to_json(dict(e.attributes or {})))
                        for e in span.events
                    )
            self._writer.write_spans(rows, events)
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
