"""The processor chain: small transforms of finished spans, run in order before export.

Each stage is a plain callable, like a structlog processor: it takes a finished
``ReadableSpan`` and returns it, a new span in its place (never a mutated SDK object), ``None``
to drop it, or a sequence of spans (a stage that holds spans back, like the tail sampler,
releases a whole trace at once). A stage may also have ``flush() -> Sequence[ReadableSpan]``,
to release what it holds on ``force_flush``/``shutdown``, and ``shutdown()``. A stage that
raises is logged once, counted, and skipped for that span, so a bug in a stage never loses a
span already finished (or, with ``drop_on_error``, the span is dropped: nothing unchecked leaves).

:class:`SpanChain` runs the stages once per span and fans the result out to every export
processor (one per configured exporter), so rules and samplers see each span exactly once
however many exporters there are. :func:`chain_processors` makes the per-exporter processors
the SDK's configurator asks for.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

StageResult = Union[ReadableSpan, Sequence[ReadableSpan], None]
Stage = Callable[[ReadableSpan], StageResult]

_log = logging.getLogger(__name__)


def with_attributes(span: ReadableSpan, updates: Mapping[str, Any], removed: Sequence[str] = ()) -> ReadableSpan:
    """A copy of ``span`` whose attributes have ``updates`` applied and ``removed`` keys dropped."""
    attributes = dict(span.attributes or {})
    for key in removed:
        attributes.pop(key, None)
    attributes.update(updates)
    return replace_span(span, attributes=attributes)


_SPAN_FIELDS = (
    "name", "context", "parent", "resource", "attributes", "events", "links", "kind", "status",
    "start_time", "end_time", "instrumentation_scope",
)  # fmt: skip


def replace_span(span: ReadableSpan, **fields: Any) -> ReadableSpan:
    """A copy of ``span`` with some of its fields (name, attributes, events, links, status,
    resource) replaced: how a stage hands on a changed span without touching the original.
    Only the fields not replaced are read from the span (each read of a live SDK span copies)."""
    unknown = set(fields).difference(_SPAN_FIELDS)
    if unknown:
        raise TypeError(f"replace_span: not a span field: {', '.join(sorted(unknown))}")
    values = {name: fields[name] if name in fields else getattr(span, name) for name in _SPAN_FIELDS}
    dropped = (span.dropped_attributes, span.dropped_events, span.dropped_links)
    if any(dropped):
        return _CopiedSpan(dropped, **values)
    return ReadableSpan(**values)


class _CopiedSpan(ReadableSpan):
    """A copy that keeps the original's counts of what the SDK's limits dropped: the copied
    attributes, events and links are plain containers, which would report none."""

    def __init__(self, dropped: tuple[int, int, int], **fields: Any) -> None:
        super().__init__(**fields)
        self._dropped = dropped

    @property
    def dropped_attributes(self) -> int:
        return self._dropped[0]

    @property
    def dropped_events(self) -> int:
        return self._dropped[1]

    @property
    def dropped_links(self) -> int:
        return self._dropped[2]


def _stage_name(stage: Stage) -> str:
    return str(getattr(stage, "__name__", type(stage).__name__))


class SpanChain(SpanProcessor):
    """Runs ``stages`` on every finished span, then passes what is left to each downstream processor."""

    def __init__(
        self,
        stages: Sequence[Stage],
        downstream: SpanProcessor | Sequence[SpanProcessor] = (),
        drop_on_error: bool = False,
    ) -> None:
        self.stages = tuple(stages)
        self.drop_on_error = drop_on_error
        self.downstreams: list[SpanProcessor] = (
            [downstream] if isinstance(downstream, SpanProcessor) else list(downstream)
        )
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def downstream(self) -> SpanProcessor:
        """The first downstream processor (the only one for a chain built by hand)."""
        return self.downstreams[0]

    def add_downstream(self, processor: SpanProcessor) -> None:
        self.downstreams.append(processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for downstream in self.downstreams:
            downstream.on_start(span, parent_context=parent_context)

    def _run(self, spans: Iterable[ReadableSpan], first_stage: int) -> list[ReadableSpan]:
        """Spans after stages ``first_stage`` onwards."""
        current = list(spans)
        for stage in self.stages[first_stage:]:
            if not current:
                break
            following: list[ReadableSpan] = []
            for span in current:
                try:
                    result = stage(span)
                except Exception as exc:  # a stage's bug must not reach the program
                    self._report(stage, exc)
                    if not self.drop_on_error:
                        following.append(span)
                    continue
                if result is None:
                    continue
                if isinstance(result, ReadableSpan):
                    following.append(result)
                else:
                    following.extend(result)
            current = following
        return current

    def _deliver(self, spans: Iterable[ReadableSpan]) -> None:
        for span in spans:
            for downstream in self.downstreams:
                try:
                    downstream.on_end(span)
                except Exception as exc:  # an export processor's bug must not reach the program either
                    self._report(downstream.on_end, exc)

    def on_end(self, span: ReadableSpan) -> None:
        self._deliver(self._run((span,), 0))

    def _report(self, stage: Stage, exc: Exception) -> None:
        name = _stage_name(stage)
        with self._lock:
            self.failures[name] += 1
            first = self.failures[name] == 1
        if first:
            outcome = "are dropped" if self.drop_on_error else "pass it unchanged"
            _log.error("otelkit: processor stage %s failed (%s: %s); spans %s", name, type(exc).__name__, exc, outcome)

    def _release_held(self) -> None:
        """Push what stages hold back (tail sampling buffers) through the stages after them."""
        for index, stage in enumerate(self.stages):
            flush = getattr(stage, "flush", None)
            if flush is None:
                continue
            try:
                released = list(flush())
            except Exception as exc:
                self._report(stage, exc)
                continue
            self._deliver(self._run(released, index + 1))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._release_held()
        return all(downstream.force_flush(timeout_millis) for downstream in self.downstreams)

    def shutdown(self) -> None:
        self._release_held()
        for stage in self.stages:
            close = getattr(stage, "shutdown", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    self._report(stage, exc)
        for downstream in self.downstreams:
            downstream.shutdown()


class _ExportTap(SpanProcessor):
    """What the SDK's configurator gets for one exporter: the first tap drives the shared chain
    (which feeds every exporter's processor); the others only flush and shut down their own."""

    def __init__(self, chain: SpanChain, processor: SpanProcessor, drives: bool) -> None:
        self.chain = chain
        self.processor = processor
        self.drives = drives

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.drives:
            self.chain.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if self.drives:
            self.chain.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self.drives:
            return self.chain.force_flush(timeout_millis)
        return self.processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self.drives:
            self.chain.shutdown()


def chain_processors(
    stages: Sequence[Stage], make_export: Callable[[Any], SpanProcessor], drop_on_error: bool = False
) -> Callable[[Any], SpanProcessor]:
    """A factory for the SDK configurator's ``export_span_processor``: one shared chain of
    ``stages``, each exporter fed through ``make_export(exporter)`` from it."""
    chain = SpanChain(stages, drop_on_error=drop_on_error)

    def feed(exporter: Any) -> SpanProcessor:
        processor = make_export(exporter)
        chain.add_downstream(processor)
        return _ExportTap(chain, processor, drives=len(chain.downstreams) == 1)

    return feed
