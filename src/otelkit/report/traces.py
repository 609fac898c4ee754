"""Whole traces for the report, read through the time index, and their critical paths.

The store has no index on ``trace_id`` (see :mod:`otelkit.store.schema`), so a trace is read
as the spans with its id among those that started while its root ran (a range scan of
``spans_by_start``). A child that starts after its root ended (fire-and-forget work) is not
part of what this returns.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Sequence



@dataclass(frozen=True)
class TraceSpan:
    span_id: str
    parent_span_id: str | None
    name: str
    operation_type: str
    start_ns: int
    end_ns: int
    failed: bool

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def trace_spans(conn: sqlite3.Connection, trace_id: str, start_ns: int, end_ns: int) -> list[TraceSpan]:
    """The spans of ``trace_id`` that started between ``start_ns`` and ``end_ns`` (inclusive)."""
    return [
        TraceSpan(row[0], row[1], row[2], row[3] or "other", row[4], row[5], bool(row[6]))
        for row in conn.execute(
            "SELECT span_id, parent_span_id, name, operation_type, start_ns, end_ns, status_code = 'ERROR' "
            "FROM spans WHERE start_ns >= ? AND start_ns <= ? AND trace_id = ? ORDER BY start_ns",
            (start_ns, end_ns, trace_id),
        )
    ]


def critical_path(spans: Sequence[TraceSpan], root_id: str) -> list[tuple[TraceSpan, int, int]]:
    """The spans the trace's end waited for, as (span, depth, own ns), root first, in time order.

    Walking back from a span's end, its critical children are the child that ended last, then
    the child that ended last before that one started, and so on; whatever time no critical
    child covers is the span's own. Each critical child is walked the same way (the approach
    of Jaeger's critical path). Children running beside a critical one are left out."""
    by_id = {span.span_id: span for span in spans}
    children: dict[str, list[TraceSpan]] = {}
    for span in spans:
        if span.parent_span_id is not None:
            children.setdefault(span.parent_span_id, []).append(span)
    path: list[tuple[TraceSpan, int, int]] = []
    root = by_id.get(root_id)
    if root is None:
        return path
    stack: list[tuple[TraceSpan, int]] = [(root, 0)]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        if span.span_id in seen:
            continue
        seen.add(span.span_id)
        chain: list[TraceSpan] = []
        cursor = span.end_ns
        for kid in sorted(children.get(span.span_id, ()), key=lambda s: s.end_ns, reverse=True):
            if kid.end_ns <= cursor and kid.start_ns >= span.start_ns:
                chain.append(kid)
                cursor = kid.start_ns
        covered = sum(kid.duration_ns for kid in chain)
        path.append((span, depth, max(span.duration_ns - covered, 0)))
        stack.extend((kid, depth + 1) for kid in chain)  # chain is latest first: pops earliest first
    return path
