"""The processor chain: small transforms of finished spans, run in order before export.

Each stage is a plain callable, like a structlog processor: it takes a finished
``ReadableSpan`` and returns it, a new span in its place (never a mutated SDK object), or
``None`` to drop it. :class:`SpanChain` runs the stages and hands what is left to the next
``SpanProcessor`` (the exporter's ``BatchSpanProcessor``). A stage that raises is logged once
and skipped for that span, so a bug in a stage never loses a span already finished.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

Stage = Callable[[ReadableSpan], "ReadableSpan | None"]

_log = logging.getLogger(__name__)


def with_attributes(span: ReadableSpan, updates: Mapping[str, Any], removed: Sequence[str] = ()) -> ReadableSpan:
    """A copy of ``span`` whose attributes have ``updates`` applied and ``removed`` keys dropped."""
    attributes = dict(span.attributes or {})
    for key in removed:
        attributes.pop(key, None)
    attributes.update(updates)
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class SpanChain(SpanProcessor):
    """Runs ``stages`` on every finished span, then passes the result to ``downstream``."""

    def __init__(self, stages: Sequence[Stage], downstream: SpanProcessor) -> None:
        self.stages = tuple(stages)
        self.downstream = downstream
        self._failed: set[str] = set()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.downstream.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        current: ReadableSpan | None = span
        for stage in self.stages:
            try:
                current = stage(current)  # type: ignore[arg-type]
            except Exception as exc:  # a stage's bug must not lose the span
                self._report(stage, exc)
                continue
            if current is None:
                return
        self.downstream.on_end(current)  # type: ignore[arg-type]

    def _report(self, stage: Stage, exc: Exception) -> None:
        name = getattr(stage, "__name__", type(stage).__name__)
        if name not in self._failed:
            self._failed.add(name)
            _log.error("otelkit: processor stage %s failed (%s: %s); spans pass it unchanged", name, type(exc).__name__, exc)

    def shutdown(self) -> None:
        self.downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.downstream.force_flush(timeout_millis)
