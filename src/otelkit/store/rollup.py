"""Rollups: what reports read instead of scanning ``spans``, kept up to date as spans are written.

Every batch :class:`~otelkit.store.writer.StoreWriter` stores is also added up here, in the
same transaction, into four tables (schema version 3, :mod:`otelkit.store.schema`):

- ``rollups``: per time bucket and per operation key (service, operation type, span name,
  provider, model, agent, tool): weighted counts, errors, root spans (traces), durations (sum,
  sum of squares, the longest span and its trace id, a log-bucketed histogram), tokens, cost,
  what could not be priced, template cache hits, condition results.
- ``error_rollups``: failed spans per bucket, key, error category, error type and message
  (numbers, ids and quoted text replaced by placeholders, so one message template is one row).
- ``session_rollups``: one row per ``session.id``: first and last time, spans, traces, errors,
  LLM and tool calls, tokens, cost, and calls per tool.
- ``tool_ngrams``: how often each sequence of 2 to 5 tool calls occurred within a session (or
  a trace, without one), per bucket; ``tool_calls`` holds the calls the sequences are made of.

Buckets exist at three resolutions (:data:`RESOLUTIONS`: a minute, an hour, a day), so a
window of any length is covered by few rows: whole days in the middle, hours and minutes at
the edges (:mod:`otelkit.report.source` does that, and adds the partial minutes at the very
edges from the spans themselves, so sums are exact for any window).

Weights: each span adds its sample rate ``w`` (``otelkit.sample.rate``, at least 1) to every
weighted figure, as :mod:`otelkit.report.query` explains; ``spans`` counts stored rows.

Histogram accuracy: a duration ``d`` (ns, > 0) falls in bin ``ceil(ln d / ln g)`` with
``g = (1 + a) / (1 - a)`` and ``a = HISTOGRAM_ACCURACY`` (1%); a bin reads back as
``2 g^i / (g + 1)``, within ``a`` of every duration in it (the DDSketch scheme). A percentile
read from a histogram is therefore within 1% of the duration at that rank. Zero and negative
durations have a bin of their own that reads back as 0.

Tool sequences follow the calls' start times within each session (or trace), whatever order
they are written in (see :mod:`otelkit.store.tool_sequences`).
"""

from __future__ import annotations

import math
import re
import sqlite3
from typing import Any, Iterable, Mapping, Sequence

import orjson

from otelkit import semconv as sc
from otelkit.store.tool_sequences import ToolCall, ngram_delta

RESOLUTIONS: tuple[int, ...] = (60, 3600, 86400)  # seconds per bucket
MINUTE_NS = 60_000_000_000
HISTOGRAM_ACCURACY = 0.01
_GAMMA = (1 + HISTOGRAM_ACCURACY) / (1 - HISTOGRAM_ACCURACY)
_INV_LN_GAMMA = 1 / math.log(_GAMMA)
ZERO_BIN = -(2**31)  # durations <= 0
OTHER_TYPE = "other"
UNIT_SEPARATOR = "\x1f"  # between provider and model in SessionStats.unpriced keys
MESSAGE_LIMIT = 200
_log, _ceil = math.log, math.ceil

# Row positions in SPAN_COLUMNS (otelkit.store.writer); kept here so the writer's order is the contract.
_TRACE, _SPAN, _PARENT, _NAME, _SERVICE = 0, 1, 2, 3, 5
_START, _END, _STATUS, _MESSAGE, _ERROR_TYPE, _ATTRS = 8, 9, 10, 11, 12, 14

_TYPE_OF_GEN_AI_OP = {name: kind.value for name, kind in sc.GEN_AI_OPERATION_TYPES.items()}
_LLM = sc.OperationType.LLM.value
_TOOL = sc.OperationType.TOOL.value


def histogram_bin(duration_ns: float) -> int:
    """The histogram bin of a duration in ns (see the module docs)."""
    if duration_ns <= 0:
        return ZERO_BIN
    return math.ceil(math.log(duration_ns) * _INV_LN_GAMMA)


def bin_value_ns(index: int) -> float:
    """The duration a bin reads back as: within HISTOGRAM_ACCURACY of every duration in it."""
    if index == ZERO_BIN:
        return 0.0
    return 2 * _GAMMA**index / (_GAMMA + 1)


_PLACEHOLDERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"'[^'\n]{0,200}'|\"[^\"\n]{0,200}\"", "<str>"),
        (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<uuid>"),
        (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "<ip>"),
        (r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]*\d[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b(?=[^g-zG-Z]|$)", "<hex>"),
        (r"\d+(?:\.\d+)?", "<n>"),
    )
)


def message_template(message: str | None) -> str:
    """An error message with what varies between occurrences (quoted text, ids, addresses,
    numbers) replaced by placeholders, cut to MESSAGE_LIMIT characters: one row per kind of message."""
    if not message:
        return ""
    text = " ".join(message.split())[: MESSAGE_LIMIT * 2]
    for pattern, replacement in _PLACEHOLDERS:
        text = pattern.sub(replacement, text)
    return text[:MESSAGE_LIMIT]


class Stats:
    """The additive figures of one rollup row (all weighted but ``spans``), plus the histogram."""

    FIELDS: tuple[str, ...] = (
        "spans", "weight", "roots", "errors", "duration_ns", "duration_sq_ms", "max_ns", "max_trace_id",
        "max_span_id", "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd", "priced_calls",
        "unpriced_calls", "unpriced_input_tokens", "unpriced_output_tokens", "unpriced_cache_read_tokens",
        "cache_hits", "cache_checks", "true_results", "false_results",
    )  # fmt: skip
    __slots__ = FIELDS + ("histogram",)

    def __init__(self) -> None:
        self.spans = 0
        self.weight = self.roots = self.errors = self.duration_ns = self.duration_sq_ms = 0.0
        self.max_ns = -1
        self.max_trace_id: str | None = None
        self.max_span_id: str | None = None
        self.input_tokens = self.output_tokens = self.cache_read_tokens = self.cost_usd = 0.0
        self.priced_calls = self.unpriced_calls = 0.0
        self.unpriced_input_tokens = self.unpriced_output_tokens = self.unpriced_cache_read_tokens = 0.0
        self.cache_hits = self.cache_checks = self.true_results = self.false_results = 0.0
        self.histogram: dict[int, float] = {}

    def merge(self, other: "Stats") -> None:
        """Add ``other`` into this one."""
        self.spans += other.spans
        self.weight += other.weight
        self.roots += other.roots
        self.errors += other.errors
        self.duration_ns += other.duration_ns
        self.duration_sq_ms += other.duration_sq_ms
        if other.max_ns > self.max_ns:
            self.max_ns, self.max_trace_id, self.max_span_id = other.max_ns, other.max_trace_id, other.max_span_id
        if other.input_tokens or other.output_tokens or other.priced_calls or other.unpriced_calls:
            for name in _GENAI:
                setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.cache_checks or other.true_results or other.false_results:
            self.cache_hits += other.cache_hits
            self.cache_checks += other.cache_checks
            self.true_results += other.true_results
            self.false_results += other.false_results
        hist = self.histogram
        for index, weight in other.histogram.items():
            hist[index] = hist.get(index, 0.0) + weight

    def row_values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in Stats.FIELDS) + (
            orjson.dumps(self.histogram, option=orjson.OPT_NON_STR_KEYS).decode(),
        )

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> "Stats":
        """Stats from a row's values in ``FIELDS`` order followed by the histogram JSON."""
        stats = cls()
        for name, value in zip(Stats.FIELDS, values):
            setattr(stats, name, value)
        stats.histogram = {int(k): v for k, v in orjson.loads(values[len(Stats.FIELDS)]).items()}
        return stats


_GENAI = (
    "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd", "priced_calls", "unpriced_calls",
    "unpriced_input_tokens", "unpriced_output_tokens", "unpriced_cache_read_tokens",
)  # fmt: skip

# service, operation type, span name, provider, model, agent, tool ('' where none)
Key = tuple[str, str, str, str, str, str, str]
KEY_COLUMNS: tuple[str, ...] = ("service_name", "operation_type", "name", "provider", "model", "agent", "tool")


class SessionStats:
    """One session's figures (weighted but ``spans``). ``unpriced`` holds the tokens of its
    calls stored without a cost, per ``provider<US>model``, so a report can price them."""

    FIELDS: tuple[str, ...] = (
        "service_name", "first_ns", "last_ns", "spans", "weight", "traces", "errors", "llm_calls", "tool_calls",
        "tool_errors", "input_tokens", "output_tokens", "cost_usd",
    )  # fmt: skip
    __slots__ = FIELDS + ("tools", "unpriced")

    def __init__(self, service_name: str, first_ns: int, last_ns: int) -> None:
        self.service_name = service_name
        self.first_ns, self.last_ns = first_ns, last_ns
        self.spans = 0
        self.weight = self.traces = self.errors = self.llm_calls = self.tool_calls = self.tool_errors = 0.0
        self.input_tokens = self.output_tokens = self.cost_usd = 0.0
        self.tools: dict[str, float] = {}
        self.unpriced: dict[str, list[float]] = {}

    def add_unpriced(self, model_key: str, tokens: Sequence[float]) -> None:
        """Add weighted (input, output, cache read) tokens of calls without a cost."""
        entry = self.unpriced.setdefault(model_key, [0.0, 0.0, 0.0])
        for index, value in enumerate(tokens):
            entry[index] += value

    def merge(self, other: "SessionStats") -> None:
        """Add ``other`` (more of the same session); the service is that of its earliest span."""
        if other.first_ns < self.first_ns:
            self.first_ns, self.service_name = other.first_ns, other.service_name
        self.last_ns = max(self.last_ns, other.last_ns)
        for name in SessionStats.FIELDS[3:]:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for tool, calls in other.tools.items():
            self.tools[tool] = self.tools.get(tool, 0.0) + calls
        for model_key, tokens in other.unpriced.items():
            self.add_unpriced(model_key, tokens)

    def row_values(self) -> tuple[Any, ...]:
        """Values in ``FIELDS`` order, then tools, distinct tools, and the unpriced tokens: the
        model with the most in columns (reports price them with a join, no JSON), the rest as JSON."""
        main = max(self.unpriced, key=lambda k: (sum(self.unpriced[k]), k), default="")
        tokens = self.unpriced.get(main, [0.0, 0.0, 0.0])
        rest = {k: v for k, v in self.unpriced.items() if k != main}
        return tuple(getattr(self, name) for name in SessionStats.FIELDS) + (
            orjson.dumps(self.tools).decode(),
            len(self.tools),
            main,
            *tokens,
            orjson.dumps(rest).decode(),
        )

    @classmethod
    def from_row(cls, values: Sequence[Any]) -> "SessionStats":
        stats = cls(values[0], values[1], values[2])
        for name, value in zip(SessionStats.FIELDS[3:], values[3:]):
            setattr(stats, name, value)
        extra = values[len(SessionStats.FIELDS) :]
        stats.tools = orjson.loads(extra[0])
        stats.unpriced = orjson.loads(extra[6])
        if extra[2]:
            stats.add_unpriced(extra[2], extra[3:6])
        return stats


def _number(value: Any) -> float:
    """A numeric attribute as a float; anything else (text, bools, lists) as 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


def span_weight(attrs: Mapping[str, Any]) -> float:
    """A span's weight: its sample rate, at least 1 (see :mod:`otelkit.report.query`)."""
    rate = attrs.get(sc.SAMPLE_RATE)
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 1 and math.isfinite(rate):
        return float(rate)
    return 1.0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


_OP = sc.OPERATION_TYPE
_GEN_AI_OP = sc.GEN_AI_OPERATION_NAME
_PROVIDER, _SYSTEM = sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM
_RESPONSE_MODEL, _REQUEST_MODEL = sc.GEN_AI_RESPONSE_MODEL, sc.GEN_AI_REQUEST_MODEL
_TOOL_NAME, _AGENT_NAME = sc.GEN_AI_TOOL_NAME, sc.GEN_AI_AGENT_NAME
_INPUT, _OUTPUT = sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS
_CACHED, _COST = sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.GEN_AI_USAGE_COST
_CACHE_HIT, _RESULT = sc.TEMPLATE_CACHE_HIT, sc.CONDITION_RESULT
_CATEGORY, _SESSION, _RATE = sc.ERROR_CATEGORY, sc.SESSION_ID, sc.SAMPLE_RATE
_TEMPLATE, _CONDITION = sc.OperationType.TEMPLATE.value, sc.OperationType.CONDITION.value


def span_key(row: Sequence[Any], attrs: Mapping[str, Any]) -> Key:
    """The rollup key of a span row and its attributes."""
    op_type = attrs.get(_OP)
    if op_type.__class__ is not str:
        op_type = _TYPE_OF_GEN_AI_OP.get(attrs.get(_GEN_AI_OP), OTHER_TYPE)  # type: ignore[arg-type]
    provider = model = tool = ""
    if op_type == _LLM or _PROVIDER in attrs or _SYSTEM in attrs:
        provider = _text(attrs.get(_PROVIDER) or attrs.get(_SYSTEM))
        model = _text(attrs.get(_RESPONSE_MODEL) or attrs.get(_REQUEST_MODEL))
    elif op_type == _TOOL:
        tool = _text(attrs.get(_TOOL_NAME)) or row[_NAME]
    agent = attrs.get(_AGENT_NAME)
    service = row[_SERVICE]
    return (
        service if service.__class__ is str else _text(service),
        op_type,
        row[_NAME],
        provider,
        model,
        "" if agent is None else _text(agent),
        tool,
    )


class Accumulator:
    """Adds span rows up into per-minute rollup stats, error groups, sessions and tool calls.

    ``exact=True`` also keeps every (duration, weight) per key, for reports over small windows
    that compute exact percentiles instead of reading the histogram.
    """

    def __init__(self, exact: bool = False) -> None:
        self.groups: dict[tuple[int, Key], Stats] = {}
        self.errors: dict[tuple[int, Key, str, str, str], list[Any]] = {}
        self.sessions: dict[str, SessionStats] = {}
        self.tool_calls: list[ToolCall] = []
        self.exact = exact
        self.durations: dict[Key, list[tuple[int, float]]] = {}
        self.traces: dict[str, float] = {}

    def add(self, row: Sequence[Any], attrs: Mapping[str, Any]) -> None:
        """Add one span row (``SPAN_COLUMNS`` order) with its attributes."""
        key = span_key(row, attrs)
        start, end = row[_START], row[_END]
        duration = end - start
        rate = attrs.get(_RATE)
        w = span_weight(attrs) if rate is not None else 1.0
        minute = start - start % MINUTE_NS
        stats = self.groups.get((minute, key))
        if stats is None:
            stats = self.groups[(minute, key)] = Stats()
        failed = row[_STATUS] == "ERROR"
        root = row[_PARENT] is None
        stats.spans += 1
        stats.weight += w
        if root:
            stats.roots += w
        if failed:
            stats.errors += w
        stats.duration_ns += w * duration
        stats.duration_sq_ms += w * (duration / 1e6) ** 2
        if duration > stats.max_ns:
            stats.max_ns, stats.max_trace_id, stats.max_span_id = duration, row[_TRACE], row[_SPAN]
        index = _ceil(_log(duration) * _INV_LN_GAMMA) if duration > 0 else ZERO_BIN
        histogram = stats.histogram
        histogram[index] = histogram.get(index, 0.0) + w
        if self.exact:
            self.durations.setdefault(key, []).append((duration, w))
            seen = self.traces.get(row[_TRACE])
            if seen is None or w < seen:
                self.traces[row[_TRACE]] = w
        op_type = key[1]
        inputs = outputs = cost = 0.0
        unpriced: tuple[float, float, float] | None = None
        if op_type == _LLM or _INPUT in attrs or _OUTPUT in attrs:
            inputs = _number(attrs.get(_INPUT))
            outputs = _number(attrs.get(_OUTPUT))
            cached = _number(attrs.get(_CACHED))
            stats.input_tokens += w * inputs
            stats.output_tokens += w * outputs
            stats.cache_read_tokens += w * cached
            raw_cost = attrs.get(_COST)
            if isinstance(raw_cost, (int, float)) and not isinstance(raw_cost, bool) and math.isfinite(raw_cost):
                cost = float(raw_cost)
                stats.cost_usd += w * cost
                stats.priced_calls += w
            elif inputs or outputs:
                unpriced = (w * inputs, w * outputs, w * cached)
                stats.unpriced_calls += w
                stats.unpriced_input_tokens += w * inputs
                stats.unpriced_output_tokens += w * outputs
                stats.unpriced_cache_read_tokens += w * cached
        if op_type == _TEMPLATE:
            hit = attrs.get(_CACHE_HIT)
            if hit.__class__ is bool:
                stats.cache_checks += w
                if hit:
                    stats.cache_hits += w
        elif op_type == _CONDITION:
            result = attrs.get(_RESULT)
            if result.__class__ is bool:
                if result:
                    stats.true_results += w
                else:
                    stats.false_results += w
        if failed:
            category = _text(attrs.get(_CATEGORY)) or "unknown"
            error_type = _text(row[_ERROR_TYPE])
            error_key = (minute, key, category, error_type, message_template(row[_MESSAGE]))
            entry = self.errors.get(error_key)
            if entry is None:
                self.errors[error_key] = [1, w, row[_TRACE], start]
            else:
                entry[0] += 1
                entry[1] += w
                if start >= entry[3]:
                    entry[2], entry[3] = row[_TRACE], start
        session_id = attrs.get(_SESSION)
        session: SessionStats | None = None
        if session_id.__class__ is str and session_id:
            session = self.sessions.get(session_id)
            if session is None:
                session = self.sessions[session_id] = SessionStats(key[0], start, end)
            else:
                if start < session.first_ns:
                    session.first_ns, session.service_name = start, key[0]
                session.last_ns = max(session.last_ns, end)
            session.spans += 1
            session.weight += w
            if root:
                session.traces += w
            if failed:
                session.errors += w
            if op_type == _LLM:
                session.llm_calls += w
            session.input_tokens += w * inputs
            session.output_tokens += w * outputs
            session.cost_usd += w * cost
            if unpriced is not None:
                session.add_unpriced(f"{key[3]}{UNIT_SEPARATOR}{key[4]}", unpriced)
        if op_type == _TOOL:
            tool = key[6]
            if session is not None:
                session.tool_calls += w
                session.tools[tool] = session.tools.get(tool, 0.0) + w
                if failed:
                    session.tool_errors += w
                sequence_key = "s:" + str(session_id)
            else:
                sequence_key = "t:" + row[_TRACE]
            self.tool_calls.append(ToolCall(sequence_key, start, row[_SPAN], tool, w, key[0]))

    def add_rows(self, rows: Iterable[Sequence[Any]], attributes: Iterable[Mapping[str, Any]] | None = None) -> None:
        """Add span rows; their attributes are parsed from the rows' JSON unless given."""
        if attributes is None:
            for row in rows:
                self.add(row, _parse(row[_ATTRS]))
        else:
            for row, attrs in zip(rows, attributes):
                self.add(row, attrs)


def _parse(text: Any) -> Mapping[str, Any]:
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _bucket(start_ns: int, resolution_s: int) -> int:
    return start_ns - start_ns % (resolution_s * 1_000_000_000)


class RollupWriter:
    """Writes an :class:`Accumulator` into the rollup tables, inside the caller's transaction."""

    def __init__(self) -> None:
        self._key_ids: dict[Key, int] = {}

    def reset(self) -> None:
        """Forget cached key ids (after the connection changed, e.g. in a forked child)."""
        self._key_ids.clear()

    def key_id(self, conn: sqlite3.Connection, key: Key) -> int:
        cached = self._key_ids.get(key)
        if cached is not None:
            return cached
        conn.execute(
            f"INSERT OR IGNORE INTO rollup_keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' * len(KEY_COLUMNS))})",
            key,
        )
        found = conn.execute(
            f"SELECT id FROM rollup_keys WHERE {' AND '.join(f'{c} = ?' for c in KEY_COLUMNS)}", key
        ).fetchone()[0]
        self._key_ids[key] = found
        return found

    def write(self, conn: sqlite3.Connection, acc: Accumulator) -> None:
        self._write_rollups(conn, acc)
        self._write_errors(conn, acc)
        self._write_sessions(conn, acc)
        self._write_ngrams(conn, acc)

    def _write_rollups(self, conn: sqlite3.Connection, acc: Accumulator) -> None:
        """Merge the batch's minute groups into minute, hour and day rows: the rows the batch
        touches are read in one range query per resolution, merged here, and written back."""
        if not acc.groups:
            return
        for resolution in RESOLUTIONS:
            merged: dict[tuple[int, int], Stats] = {}
            for (minute, key), stats in acc.groups.items():
                slot = (_bucket(minute, resolution), self.key_id(conn, key))
                target = merged.get(slot)
                if target is None:
                    merged[slot] = stats if resolution == RESOLUTIONS[0] else _copy(stats)
                else:
                    target.merge(stats)
            buckets = [bucket for bucket, _key in merged]
            for row in conn.execute(
                f"SELECT bucket_ns, key_id, {', '.join(Stats.FIELDS)}, histogram FROM rollups "
                "WHERE resolution_s = ? AND bucket_ns >= ? AND bucket_ns <= ?",
                (resolution, min(buckets), max(buckets)),
            ):
                new = merged.get((row[0], row[1]))
                if new is not None:
                    old = Stats.from_row(row[2:])
                    old.merge(new)
                    merged[(row[0], row[1])] = old
            conn.executemany(
                _ROLLUP_REPLACE,
                [(resolution, bucket, key_id, *stats.row_values()) for (bucket, key_id), stats in merged.items()],
            )

    def _write_errors(self, conn: sqlite3.Connection, acc: Accumulator) -> None:
        if not acc.errors:
            return
        for resolution in RESOLUTIONS:
            merged: dict[tuple[int, int, str, str, str], list[Any]] = {}
            for (minute, key, category, error_type, message), (spans, weight, trace_id, last) in acc.errors.items():
                slot = (_bucket(minute, resolution), self.key_id(conn, key), category, error_type, message)
                entry = merged.get(slot)
                if entry is None:
                    merged[slot] = [spans, weight, trace_id, last]
                else:
                    entry[0] += spans
                    entry[1] += weight
                    if last >= entry[3]:
                        entry[2], entry[3] = trace_id, last
            conn.executemany(
                "INSERT INTO error_rollups (resolution_s, bucket_ns, key_id, category, error_type, message, spans, "
                "weight, last_trace_id, last_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "spans = spans + excluded.spans, weight = weight + excluded.weight, "
                "last_trace_id = CASE WHEN excluded.last_ns >= last_ns THEN excluded.last_trace_id ELSE last_trace_id END, "
                "last_ns = max(last_ns, excluded.last_ns)",
                [(resolution, *slot, *entry) for slot, entry in merged.items()],
            )

    def _write_sessions(self, conn: sqlite3.Connection, acc: Accumulator) -> None:
        for session_id, stats in acc.sessions.items():
            old = conn.execute(
                f"SELECT {', '.join(SessionStats.FIELDS)}, {', '.join(SESSION_EXTRA_COLUMNS)} FROM session_rollups "
                "WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            if old is not None:
                previous = SessionStats.from_row(old)
                previous.merge(stats)
                stats = previous
            conn.execute(_SESSION_UPSERT, (session_id, *stats.row_values()))

    def _write_ngrams(self, conn: sqlite3.Connection, acc: Accumulator) -> None:
        if not acc.tool_calls:
            return
        merged: dict[tuple[int, int, str, int, str], float] = {}
        for (start, service, n, sequence), w in ngram_delta(conn, acc.tool_calls).items():
            for resolution in RESOLUTIONS[1:]:
                slot = (resolution, _bucket(start, resolution), service, n, sequence)
                merged[slot] = merged.get(slot, 0.0) + w
        conn.executemany(
            "INSERT INTO tool_ngrams (resolution_s, bucket_ns, service_name, n, sequence, weight) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET weight = weight + excluded.weight",
            [(*slot, weight) for slot, weight in merged.items()],
        )


def _copy(stats: Stats) -> Stats:
    copy = Stats()
    copy.merge(stats)
    return copy


_ROLLUP_REPLACE = (
    f"INSERT OR REPLACE INTO rollups (resolution_s, bucket_ns, key_id, {', '.join(Stats.FIELDS)}, histogram) "
    f"VALUES ({', '.join('?' * (len(Stats.FIELDS) + 4))})"
)
SESSION_EXTRA_COLUMNS: tuple[str, ...] = (
    "tools", "distinct_tools", "unpriced_model", "unpriced_input", "unpriced_output", "unpriced_cached", "unpriced",
)  # fmt: skip
_SESSION_UPSERT = (
    f"INSERT OR REPLACE INTO session_rollups (session_id, {', '.join(SessionStats.FIELDS)}, "
    f"{', '.join(SESSION_EXTRA_COLUMNS)}) VALUES ({', '.join('?' * (len(SessionStats.FIELDS) + 8))})"
)


BACKFILL_CHUNK = 20_000


def backfill(conn: sqlite3.Connection) -> int:
    """Build the rollups of every span already in the store (the migration to version 3);
    returns how many spans were added. Runs inside the caller's transaction."""
    from otelkit.store.writer import SPAN_COLUMNS

    select = f"SELECT id, {', '.join(SPAN_COLUMNS)} FROM spans WHERE id > ? ORDER BY id LIMIT {BACKFILL_CHUNK}"
    writer = RollupWriter()
    last = 0
    total = 0
    while True:
        chunk = conn.execute(select, (last,)).fetchall()
        if not chunk:
            return total
        accumulator = Accumulator()
        accumulator.add_rows(row[1:] for row in chunk)
        writer.write(conn, accumulator)
        last = chunk[-1][0]
        total += len(chunk)


def histogram_percentile_ms(histogram: Mapping[int, float], percent: float) -> float | None:
    """The ``percent`` percentile (0-100), in ms, of a weighted histogram: the value of the bin
    holding the position ``(W - 1) * percent / 100`` among the ``W`` weighted durations (the
    rank type 7 interpolates at, rounded down), so within HISTOGRAM_ACCURACY of the duration at
    that rank. None for an empty histogram."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    position = max(total, 1.0) - 1.0
    target = position * percent / 100
    running = 0.0
    bins = sorted(histogram)
    for index in bins:
        running += histogram[index]
        if running > target:
            return bin_value_ns(index) / 1e6
    return bin_value_ns(bins[-1]) / 1e6
