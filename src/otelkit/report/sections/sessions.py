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

Everything is computed in SQL over ``session_rollups`` (a store can hold hundreds of thousands
of sessions): calls stored without a cost are priced through a temporary table of the current
prices per provider and model, exactly as :func:`otelkit.pricing.cost_usd` prices a call.
"""

from __future__ import annotations

from typing import Any

from otelkit.report.query import percentile_ms
from otelkit.report.sections.kit import Context, chart, col, count, iso, ratio, section, table
from otelkit.store.rollup import UNIT_SEPARATOR

TOP_SESSIONS = 20
_NS = 1_000_000_000
BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-20", 0, 20), ("20-40", 20, 40), ("40-60", 40, 60), ("60-80", 60, 80), ("80-100", 80, 101),
)  # fmt: skip

COMPLEXITY_SQL = (
    "35 * min(llm_calls / 20.0, 1.0) + 25 * min(distinct_tools / 8.0, 1.0) "
    "+ 20 * min(CASE WHEN weight > 0 THEN errors / weight ELSE 0 END / 0.25, 1.0) "
    "+ 20 * min(max(last_ns - first_ns, 0) / 1e9 / 600.0, 1.0)"
)
def _token_cost(tokens_in: str, tokens_out: str, cached: str, price: str) -> str:
    """SQL for the cost of (input, output, cached) token counts at ``price``'s per-million prices,
    as :func:`otelkit.pricing.cost_usd` computes it (cached input at the cached price)."""
    i, o, c = (f"max(round({t}), 0)" for t in (tokens_in, tokens_out, cached))
    return f"(({i} - min({c}, {i})) * {price}.input + min({c}, {i}) * {price}.cached + {o} * {price}.output) / 1e6"


# The cost of a session's calls stored without one, at the prices in temp.session_prices: the
# main model's tokens (columns) by a key lookup, the others (JSON, rarely present) entry by entry.
_PRICED_NOW_SQL = (
    "(coalesce((SELECT " + _token_cost("s.unpriced_input", "s.unpriced_output", "s.unpriced_cached", "p")
    + " FROM temp.session_prices p WHERE p.model_key = s.unpriced_model), 0.0)"
    + " + CASE WHEN s.unpriced = '{}' THEN 0.0 ELSE coalesce((SELECT sum("
    + _token_cost("json_extract(j.value, '$[0]')", "json_extract(j.value, '$[1]')", "json_extract(j.value, '$[2]')", "p")
    + ") FROM json_each(s.unpriced) j JOIN temp.session_prices p ON p.model_key = j.key), 0.0) END)"
)


def _prepare_prices(ctx: Context) -> None:
    """Fill temp.session_prices with the current price of every model the store has seen
    (``rollup_keys`` is small: one row per operation key)."""
    conn = ctx.conn
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS session_prices (model_key TEXT PRIMARY KEY, input REAL, cached REAL, output REAL)"
    )
    conn.execute("DELETE FROM temp.session_prices")
    rows = []
    for provider, model in conn.execute("SELECT DISTINCT provider, model FROM rollup_keys WHERE model != ''"):
        price = ctx.pricing.lookup(provider or None, model)
        if price is not None:
            cached = price.input if price.cached_input is None else price.cached_input
            rows.append((f"{provider}{UNIT_SEPARATOR}{model}", price.input, cached, price.output))
    conn.executemany("INSERT OR REPLACE INTO temp.session_prices VALUES (?, ?, ?, ?)", rows)


def _duration_percentile_s(ctx: Context, count_: int, percent: int) -> float | None:
    """The type-7 percentile of the sessions' durations, reading only the two ranks it needs."""
    if not count_:
        return None
    j, delta = divmod((count_ - 1) * percent, 100)
    pair = [row[0] for row in ctx.conn.execute("SELECT d FROM temp.window_sessions ORDER BY d LIMIT 2 OFFSET ?", [j])]
    high = pair[1] if delta and len(pair) > 1 else pair[0]
    return percentile_ms([pair[0], high], delta) / 1000 if delta else pair[0] / _NS


def _load_window(ctx: Context, where: str, params: list[Any]) -> None:
    """One pass over the window's sessions into temp.window_sessions, with each one's duration,
    cost (calls stored without one priced now) and complexity, so the rest reads small rows."""
    ctx.conn.execute("DROP TABLE IF EXISTS temp.window_sessions")
    ctx.conn.execute(
        "CREATE TEMP TABLE window_sessions AS SELECT session_id, first_ns, max(last_ns - first_ns, 0) AS d, weight, "
        "traces, llm_calls, tool_calls, distinct_tools, errors, input_tokens + output_tokens AS tokens, "
        f"cost_usd + {_PRICED_NOW_SQL} AS cost, {COMPLEXITY_SQL} AS complexity "
        f"FROM session_rollups s WHERE {where}",
        params,
    )


def _session_rows(ctx: Context, order: str) -> list[dict[str, Any]]:
    rows = ctx.conn.execute(
        "SELECT session_id, first_ns, d, weight, traces, llm_calls, tool_calls, distinct_tools, errors, tokens, cost, "
        f"complexity FROM temp.window_sessions ORDER BY {order} LIMIT {TOP_SESSIONS}"
    )
    return [
        {"session": sid, "started": iso(first), "duration_s": d / _NS, "spans": count(weight),
         "traces": count(traces), "messages": count(llm), "tool_calls": count(tools), "distinct_tools": distinct,
         "success_rate": ratio(weight - errors, weight), "tokens": count(tokens), "cost_usd": cost,
         "complexity": complexity}
        for sid, first, d, weight, traces, llm, tools, distinct, errors, tokens, cost, complexity in rows
    ]  # fmt: skip


def build(ctx: Context) -> dict[str, Any]:
    where, params = ctx.source.session_filter(ctx.since_ns, ctx.until_ns)
    _prepare_prices(ctx)
    _load_window(ctx, where, params)
    bands_sql = ", ".join(
        f"total(CASE WHEN complexity >= {low} AND complexity < {high} THEN 1 ELSE 0 END)" for _label, low, high in BANDS
    )
    totals = ctx.conn.execute(
        "SELECT count(*), avg(d) / 1e9, avg(weight), avg(llm_calls), avg(tool_calls), avg(distinct_tools), "
        f"total(weight), total(errors), avg(tokens), avg(cost), avg(complexity), {bands_sql} FROM temp.window_sessions"
    ).fetchone()
    sessions, avg_duration, avg_spans, avg_messages, avg_tool_calls, avg_tools, spans, errors = totals[:8]
    bands = {label: int(n) for (label, _low, _high), n in zip(BANDS, totals[11:])}
    values = {
        "sessions": sessions,
        "avg_duration_s": avg_duration,
        "p50_duration_s": _duration_percentile_s(ctx, sessions, 50),
        "p95_duration_s": _duration_percentile_s(ctx, sessions, 95),
        "avg_spans": avg_spans,
        "avg_messages": avg_messages,
        "avg_tool_calls": avg_tool_calls,
        "avg_distinct_tools": avg_tools,
        "success_rate": ratio(spans - errors, spans),
        "avg_tokens": totals[8],
        "avg_cost_usd": totals[9],
        "avg_complexity": totals[10],
    }
    columns = [
        col("session", "Session"), col("started", "Started", "time"), col("duration_s", "Duration", "duration_s"),
        col("spans", "Spans", "int"), col("messages", "Messages", "int"), col("tool_calls", "Tool calls", "int"),
        col("distinct_tools", "Tools", "int"), col("success_rate", "Success", "rate"), col("tokens", "Tokens", "int"),
        col("cost_usd", "Cost", "usd"), col("complexity", "Complexity", "score"),
    ]  # fmt: skip
    result = section(
        "Sessions",
        [col("sessions", "Sessions", "int"), col("avg_duration_s", "Avg duration", "duration_s"),
         col("p95_duration_s", "p95 duration", "duration_s"), col("avg_spans", "Spans per session", "float"),
         col("avg_messages", "Messages per session", "float"), col("avg_distinct_tools", "Tools per session", "float"),
         col("success_rate", "Success", "rate"), col("avg_tokens", "Tokens per session", "float"),
         col("avg_cost_usd", "Cost per session", "usd"), col("avg_complexity", "Avg complexity", "score")],  # fmt: skip
        values,
        {
            "most_complex": table("Most complex sessions", columns, _session_rows(ctx, "complexity DESC, session_id")),
            "most_expensive": table("Most expensive sessions", columns, _session_rows(ctx, "cost DESC, session_id")),
            "complexity": table(
                "Complexity distribution",
                [col("score", "Score"), col("sessions", "Sessions", "int")],
                [{"score": label, "sessions": bands.get(label, 0)} for label, _low, _high in BANDS],
            ),
        },
        [chart("Sessions by complexity score", "histogram", "complexity", "score", ["sessions"])],
        ["Complexity = 35 x min(messages/20, 1) + 25 x min(distinct tools/8, 1) + 20 x min(error rate/0.25, 1) "
         "+ 20 x min(duration/10 min, 1). Messages are LLM calls."],  # fmt: skip
    )
    ctx.conn.execute("DROP TABLE IF EXISTS temp.window_sessions")
    return result
