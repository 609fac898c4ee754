"""SQLiteSpanExporter: finished SDK spans into the store's ``spans``, ``span_events``, ``traces``.

This runs on the BatchSpanProcessor's worker thread for every span, so the conversion is one
flat function with no per-span allocation beyond the row itself.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from otelkit import semconv as sc
from otelkit.exporters.sqlite._target import RowIds, resolve_writer
from otelkit.store.writer import to_json

_log = logging.getLogger(__name__)

_UNSEEN = object()


def _exception_type(events: Sequence[Any]) -> str | None:
    """The type of the first recorded exception: the error type of a failed span that names none."""
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

    def _convert(
        self, spans: Sequence[ReadableSpan]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[Mapping[str, Any]]]:
        """Store rows (in ``SPAN_COLUMNS`` order) for the finished spans, their events' rows,
        and each row's attributes (for the rollups, which would otherwise parse the JSON back).

        One flat loop: this is every span's cost, and on a slow core each helper call is a
        noticeable share of it. The columns reports filter on (operation type, model, tokens,
        cost, session...) are not converted here: SQLite derives them from the attributes JSON.
        A batch's spans nearly always share one resource and scope, so their row ids are looked
        up only when the object changes.
        """
        rows: list[tuple[Any, ...]] = []
        event_rows: list[tuple[Any, ...]] = []
        attribute_maps: list[Mapping[str, Any]] = []
        ids = self._ids
        last_resource: Any = _UNSEEN
        last_scope: Any = _UNSEEN
        resource_id = scope_id = service = None
        for span in spans:
            end_time = span.end_time
            if end_time is None:
                continue
            resource = span.resource
            if resource is not last_resource:
                resource_id, service = ids.resource(resource)
                last_resource = resource
            scope = span.instrumentation_scope
            if scope is not last_scope:
                scope_id = ids.scope(scope)
                last_scope = scope
            ctx = span.context
            parent = span.parent
            status = span.status
            status_code = status.status_code
            events = span.events
            links = span.links
            trace_state = ctx.trace_state
            raw = span.attributes
            if raw:
                attrs: dict[str, Any] = raw.copy()  # type: ignore[attr-defined]
                error_type = attrs.get(sc.ERROR_TYPE)
                attrs_json = to_json(attrs)
            else:
                attrs = {}
                error_type = None
                attrs_json = "{}"
            attribute_maps.append(attrs)
            if error_type is not None:
                error_type = str(error_type)
            elif status_code is StatusCode.ERROR:
                error_type = _exception_type(events)
            trace_id = "%032x" % ctx.trace_id
            span_id = "%016x" % ctx.span_id
            rows.append(
                (
                    trace_id, span_id, None if parent is None else "%016x" % parent.span_id, span.name,
                    span.kind._name_, service, resource_id, scope_id, span.start_time, end_time,
                    status_code._name_, status.description, error_type,
                    (trace_state.to_header() or None) if trace_state else None, attrs_json,
                    _links_json(links) if links else None,
                )
            )  # fmt: skip
            if events:
                event_rows.extend(
                    (trace_id, span_id, e.timestamp, e.name, to_json(dict(e.attributes or {}))) for e in events
                )
        return rows, event_rows, attribute_maps

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
