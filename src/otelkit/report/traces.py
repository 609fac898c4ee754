"""Whole traces for the report: found from a rollup exemplar, read through the time index.

The store has no index on ``trace_id`` (see :mod:`otelkit.store.schema`), so a trace is read in
two range scans of ``spans_by_start``: its root span is found among the spans that started in
the exemplar's bucket (the index holds ``span_id``, so this touches index pages only), and its
spans among those that started while the root ran. A child that starts after its root ended
(fire-and-forget work) is not part of what this returns.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Sequence

_NS = 1_000_000_000


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


def locate(
    conn: sqlite3.Connection, span_id: str, bucket_ns: int, resolution_s: int
) -> tuple[str, int, int] | None:
    """(trace id, start, end) of span ``span_id`` that started in the bucket, or None."""
    width = max(resolution_s, 60) * _NS
    row = conn.execute(
        "SELECT trace_id, start_ns, end_ns FROM spans WHERE start_ns >= ? AND start_ns < ? AND span_id = ?",
        (bucket_ns, bucket_ns + width, span_id),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


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


def critical_path(spans: Sequence[TraceSpan], root_id: str) -> list[tuple[TraceSpan, int]]:
    """The chain of spans that decided when the trace finished, each with the time on the path
    that was its own (not spent in the next span of the chain).

    From the root, repeatedly step into the child that ended last: the work the parent was
    waiting for at its end. Own time is the span's duration minus the part of it the next
    span of the chain covers."""
    by_id = {span.span_id: span for span in spans}
    children: dict[str, list[TraceSpan]] = {}
    for span in spans:
        if span.parent_span_id is not None:
            children.setdefault(span.parent_span_id, []).append(span)
    path: list[tuple[TraceSpan, int]] = []
    current = by_id.get(root_id)
    seen: set[str] = set()
    while current is not None and current.span_id not in seen:
        seen.add(current.span_id)
        kids = children.get(current.span_id, [])
        last = max(kids, key=lambda s: (s.end_ns, s.duration_ns), default=None)
        covered = 0
        if last is not None:
            covered = max(0, min(last.end_ns, current.end_ns) - max(last.start_ns, current.start_ns))
        path.append((current, max(current.duration_ns - covered, 0)))
        current = last
    return path
