"""Tool-call sequences: the n-grams (2 to 5 calls) of each session's tool calls in start order,
kept correct whatever order the calls are written in.

Every tool call is stored in ``tool_calls`` under its sequence key (``s:<session id>``, or
``t:<trace id>`` for a call outside sessions), ordered by start. A batch's new calls of one
sequence are merged into it: the calls stored after the first new one, plus the four before it
for context, are read back, and ``tool_ngrams`` is adjusted by the difference between the
n-grams that end after that point with and without the new calls. An n-gram counts with the
weight of the call that completes it, in the bucket where that call started, so a sequence's
counts do not depend on which process wrote which call first.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Iterable, Iterator, NamedTuple, Sequence

NGRAM_SIZES: tuple[int, ...] = (2, 3, 4, 5)
CONTEXT = max(NGRAM_SIZES) - 1
SEPARATOR = " > "


class ToolCall(NamedTuple):
    sequence_key: str
    start_ns: int
    span_id: str
    tool: str
    weight: float
    service_name: str


def ngrams_from(calls: Sequence[ToolCall], first: int) -> Iterator[tuple[ToolCall, int, str]]:
    """(completing call, n, sequence) of every n-gram of ``calls`` (in start order) that ends at
    position ``first`` or later; the calls before ``first`` are context only."""
    for end in range(max(first, 1), len(calls)):
        for n in NGRAM_SIZES:
            if end + 1 >= n:
                yield calls[end], n, SEPARATOR.join(call.tool for call in calls[end + 1 - n : end + 1])


def _order(call: ToolCall) -> tuple[int, str]:
    return call.start_ns, call.span_id


def by_sequence(calls: Iterable[ToolCall]) -> dict[str, list[ToolCall]]:
    """Calls grouped by sequence key, each group in start order."""
    groups: dict[str, list[ToolCall]] = {}
    for call in calls:
        groups.setdefault(call.sequence_key, []).append(call)
    for group in groups.values():
        group.sort(key=_order)
    return groups


def context_before(conn: sqlite3.Connection, first: ToolCall) -> list[ToolCall]:
    """The (up to) four stored calls of ``first``'s sequence just before it, in start order."""
    rows = conn.execute(
        "SELECT sequence_key, start_ns, span_id, tool, weight, service_name FROM tool_calls "
        "WHERE sequence_key = ? AND (start_ns < ? OR (start_ns = ? AND span_id < ?)) "
        f"ORDER BY start_ns DESC, span_id DESC LIMIT {CONTEXT}",
        (first.sequence_key, first.start_ns, first.start_ns, first.span_id),
    ).fetchall()
    return [ToolCall(*row) for row in reversed(rows)]


def _stored_after(conn: sqlite3.Connection, first: ToolCall) -> list[ToolCall]:
    rows = conn.execute(
        "SELECT sequence_key, start_ns, span_id, tool, weight, service_name FROM tool_calls "
        "WHERE sequence_key = ? AND (start_ns > ? OR (start_ns = ? AND span_id > ?)) ORDER BY start_ns, span_id",
        (first.sequence_key, first.start_ns, first.start_ns, first.span_id),
    ).fetchall()
    return [ToolCall(*row) for row in rows]


def _stored_keys(conn: sqlite3.Connection, keys: list[str]) -> set[str]:
    """Which of ``keys`` already have calls in ``tool_calls``, in a few IN queries."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found.update(
            row[0]
            for row in conn.execute(
                f"SELECT DISTINCT sequence_key FROM tool_calls WHERE sequence_key IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
        )
    return found


def ngram_delta(conn: sqlite3.Connection, calls: Iterable[ToolCall]) -> dict[tuple[int, str, int, str], float]:
    """Store new tool calls and return how ``tool_ngrams`` changes: weight per (start of the
    completing call, service, n, sequence), negative for n-grams the new calls break up."""
    delta: defaultdict[tuple[int, str, int, str], float] = defaultdict(float)
    new_rows: list[ToolCall] = []
    groups = by_sequence(calls)
    stored = _stored_keys(conn, list(groups))
    for key, group in groups.items():
        first = group[0]
        # A sequence with no stored call (a new trace or session: the usual case) needs no reads.
        before = context_before(conn, first) if key in stored else []
        after = _stored_after(conn, first) if key in stored else []
        old = before + after
        new = sorted(before + after + group, key=_order)
        for call, n, sequence in ngrams_from(old, len(before)):
            delta[(call.start_ns, call.service_name, n, sequence)] -= call.weight
        for call, n, sequence in ngrams_from(new, len(before)):
            delta[(call.start_ns, call.service_name, n, sequence)] += call.weight
        new_rows.extend(group)
    conn.executemany(
        "INSERT OR IGNORE INTO tool_calls (sequence_key, start_ns, span_id, tool, weight, service_name) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        new_rows,
    )
    return {slot: weight for slot, weight in delta.items() if weight}


def window_ngrams(conn: sqlite3.Connection, calls: Iterable[ToolCall]) -> dict[tuple[int, str], float]:
    """Weighted (n, sequence) counts of the n-grams completed by ``calls`` (every call of their
    sequences in some window), with the stored calls before each sequence's first as context."""
    counts: defaultdict[tuple[int, str], float] = defaultdict(float)
    for group in by_sequence(calls).values():
        before = context_before(conn, group[0])
        for call, n, sequence in ngrams_from(before + group, len(before)):
            counts[(n, sequence)] += call.weight
    return dict(counts)
