"""Sessions: how many, how long, how busy (spans, LLM messages, tools), how successful, what
they cost, and how complex each one was.

A session is every span with one ``session.id``; the section covers the sessions that started
in the window, each over its whole life. Counts of spans, messages and tools are weighted by
sample rate; the number of sessions is the distinct ids seen (a lower bound under sampling).

Complexity score (0 to 100), the sum of four capped parts:

- messages (LLM calls): ``35 * min(messages / 20, 1)``
- distinct tools used: ``25 * min(tools / 8, 1)``
- error rate (failed spans / spans): ``20 * min(error_rate / 0.25, 1)``
- duration: ``20 * min(seconds / 600, 1)``

so a session with 20+ LLM calls, 8+ different tools, a quarter of its spans failed and ten
minutes or more scores 100, and a single quick call scores near 2.
"""

from __future__ import annotations

from typing import Any

from otelkit.report.query import percentile_ms
from otelkit.report.sections.kit import Context, chart, col, count, iso, ratio, section, table
from otelkit.store.rollup import UNIT_SEPARATOR, SessionStats

TOP_SESSIONS = 20
_NS = 1_000_000_000


def complexity(stats: SessionStats) -> float:
    """The session's complexity score (see the module docs)."""
    error_rate = stats.errors / stats.weight if stats.weight else 0.0
    seconds = max(stats.last_ns - stats.first_ns, 0) / _NS
    return (
        35 * min(stats.llm_calls / 20, 1.0)
        + 25 * min(len(stats.tools) / 8, 1.0)
        + 20 * min(error_rate / 0.25, 1.0)
        + 20 * min(seconds / 600, 1.0)
    )


def session_cost(ctx: Context, stats: SessionStats) -> float:
    """The session's stored cost plus its calls stored without one, priced now (as the LLM
    section prices them; calls of models with no price add nothing)."""
    extra = 0.0
    for model_key, tokens in stats.unpriced.items():
        provider, _sep, model = model_key.partition(UNIT_SEPARATOR)
        extra += ctx.price_tokens(provider, model, tokens) or 0.0
    return stats.cost_usd + extra


def session_row(ctx: Context, session_id: str, stats: SessionStats) -> dict[str, Any]:
    return {
        "session": session_id,
        "started": iso(stats.first_ns),
        "duration_s": max(stats.last_ns - stats.first_ns, 0) / _NS,
        "spans": count(stats.weight),
        "traces": count(stats.traces),
        "messages": count(stats.llm_calls),
        "tool_calls": count(stats.tool_calls),
        "distinct_tools": len(stats.tools),
        "success_rate": ratio(stats.weight - stats.errors, stats.weight),
        "tokens": count(stats.input_tokens + stats.output_tokens),
        "cost_usd": session_cost(ctx, stats),
        "complexity": complexity(stats),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build(ctx: Context) -> dict[str, Any]:
    rows = [session_row(ctx, sid, stats) for sid, stats in ctx.sessions.items()]
    durations_ns = sorted(int(r["duration_s"] * _NS) for r in rows)
    spans = sum(s.weight for s in ctx.sessions.values())
    errors = sum(s.errors for s in ctx.sessions.values())
    values = {
        "sessions": len(rows),
        "avg_duration_s": _mean([r["duration_s"] for r in rows]),
        "p50_duration_s": percentile_ms(durations_ns, 50) / 1000 if durations_ns else None,
        "p95_duration_s": percentile_ms(durations_ns, 95) / 1000 if durations_ns else None,
        "avg_spans": _mean([r["spans"] for r in rows]),
        "avg_messages": _mean([r["messages"] for r in rows]),
        "avg_tool_calls": _mean([r["tool_calls"] for r in rows]),
        "avg_distinct_tools": _mean([r["distinct_tools"] for r in rows]),
        "success_rate": ratio(spans - errors, spans),
        "avg_tokens": _mean([r["tokens"] for r in rows]),
        "avg_cost_usd": _mean([r["cost_usd"] for r in rows]),
        "avg_complexity": _mean([r["complexity"] for r in rows]),
    }
    by_complexity = sorted(rows, key=lambda r: (-r["complexity"], r["session"]))[:TOP_SESSIONS]
    by_cost = sorted(rows, key=lambda r: (-r["cost_usd"], r["session"]))[:TOP_SESSIONS]
    bands = [("0-20", 0, 20), ("20-40", 20, 40), ("40-60", 40, 60), ("60-80", 60, 80), ("80-100", 80, 100.01)]
    distribution = [
        {"score": label, "sessions": sum(1 for r in rows if low <= r["complexity"] < high)} for label, low, high in bands
    ]
    columns = [
        col("session", "Session"), col("started", "Started", "time"), col("duration_s", "Duration", "duration_s"),
        col("spans", "Spans", "int"), col("messages", "Messages", "int"), col("tool_calls", "Tool calls", "int"),
        col("distinct_tools", "Tools", "int"), col("success_rate", "Success", "rate"), col("tokens", "Tokens", "int"),
        col("cost_usd", "Cost", "usd"), col("complexity", "Complexity", "score"),
    ]  # fmt: skip
    return section(
        "Sessions",
        [col("sessions", "Sessions", "int"), col("avg_duration_s", "Avg duration", "duration_s"),
         col("p95_duration_s", "p95 duration", "duration_s"), col("avg_spans", "Spans per session", "float"),
         col("avg_messages", "Messages per session", "float"), col("avg_distinct_tools", "Tools per session", "float"),
         col("success_rate", "Success", "rate"), col("avg_tokens", "Tokens per session", "float"),
         col("avg_cost_usd", "Cost per session", "usd"), col("avg_complexity", "Avg complexity", "score")],  # fmt: skip
        values,
        {
            "most_complex": table("Most complex sessions", columns, by_complexity),
            "most_expensive": table("Most expensive sessions", columns, by_cost),
            "complexity": table(
                "Complexity distribution", [col("score", "Score"), col("sessions", "Sessions", "int")], distribution
            ),
        },
        [chart("Sessions by complexity score", "histogram", "complexity", "score", ["sessions"])],
        ["Complexity = 35 x min(messages/20, 1) + 25 x min(distinct tools/8, 1) + 20 x min(error rate/0.25, 1) "
         "+ 20 x min(duration/10 min, 1). Messages are LLM calls."],  # fmt: skip
    )
