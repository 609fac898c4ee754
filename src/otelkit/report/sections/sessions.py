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
of sessions): calls stored without a cost are priced at the current prices per provider and
model, exactly as :func:`otelkit.pricing.cost_usd` prices a call.
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

# The same formula, each capped part folded into one min(); errors / weight is NULL only for an
# empty session, which never exists, and then counts 0.
COMPLEXITY_SQL = (
    "min(llm_calls * 1.75, 35.0) + min(distinct_tools * 3.125, 25.0) + ifnull(min(errors * 80.0 / weight, 20.0), 0.0) "
    "+ min(max(last_ns - first_ns, 0) / 3e10, 20.0)"
)


Price = tuple[float, float, float]  # per million tokens: input, cached input, output


def _current_prices(ctx: Context) -> dict[str, Price]:
    """The current price of every model the store has seen, keyed as ``session_rollups`` keys
    unpriced tokens (``rollup_keys`` is small: one row per operation key)."""
    prices: dict[str, Price] = {}
    for provider, model in ctx.conn.execute("SELECT DISTINCT provider, model FROM rollup_keys WHERE model != ''"):
        price = ctx.pricing.lookup(provider or None, model)
        if price is not None:
            cached = price.input if price.cached_input is None else price.cached_input
            prices[f"{provider}{UNIT_SEPARATOR}{model}"] = (price.input, cached, price.output)
    return prices


def _token_cost(tokens_in: str, tokens_out: str, cached: str) -> str:
    """SQL for the cost of (input, output, cached) token counts at the per-million prices bound
    next (input, cached, output), as :func:`otelkit.pricing.cost_usd` computes it."""
    i, o, c = (f"max(round({t}), 0)" for t in (tokens_in, tokens_out, cached))
    return f"(({i} - min({c}, {i})) * ? + min({c}, {i}) * ? + {o} * ?) / 1e6"


def _priced_now(prices: dict[str, Price]) -> tuple[str, list[Any]]:
    """SQL (and its parameters) for the cost of a session's calls stored without one, at
    ``prices``: the main model's tokens (columns) and the others (JSON, rarely present) entry by
    entry. The prices are bound into a CASE per model, far cheaper per row than a lookup."""
    if not prices:
        return "0.0", []
    main, main_params = "CASE s.unpriced_model", []
    other, other_params = "CASE j.key", []
    columns = _token_cost("s.unpriced_input", "s.unpriced_output", "s.unpriced_cached")
    entries = _token_cost("json_extract(j.value, '$[0]')", "json_extract(j.value, '$[1]')", "json_extract(j.value, '$[2]')")
    for key, price in prices.items():
        main += f" WHEN ? THEN {columns}"
        main_params += [key, *price]
        other += f" WHEN ? THEN {entries}"
        other_params += [key, *price]
    sql = (
        f"({main} ELSE 0.0 END + CASE WHEN s.unpriced = '{{}}' THEN 0.0 ELSE "
        f"coalesce((SELECT total({other} ELSE 0.0 END) FROM json_each(s.unpriced) j), 0.0) END)"
    )
    return sql, main_params + other_params


def _duration_percentiles_s(ctx: Context, percents: tuple[int, ...]) -> list[float | None]:
    """Type-7 percentiles of the window's session durations: one read of the durations, sorted
    in Python (far cheaper than one SQL sort per percentile over a large window)."""
    durations = sorted(row[0] for row in ctx.conn.execute("SELECT d FROM temp.window_sessions"))
    if not durations:
        return [None for _ in percents]
    return [percentile_ms(durations, percent) / 1000 for percent in percents]


def _load_window(ctx: Context, where: str, params: list[Any]) -> None:
    """One pass over the window's sessions into temp.window_sessions, with each one's duration,
    cost (calls stored without one priced now) and complexity, so the rest reads small rows."""
    priced_now, price_params = _priced_now(_current_prices(ctx))
    ctx.conn.execute("DROP TABLE IF EXISTS temp.window_sessions")
    ctx.conn.execute(
        "CREATE TEMP TABLE window_sessions AS SELECT session_id, first_ns, max(last_ns - first_ns, 0) AS d, weight, "
        "traces, llm_calls, tool_calls, distinct_tools, errors, input_tokens + output_tokens AS tokens, "
        f"cost_usd + {priced_now} AS cost, {COMPLEXITY_SQL} AS complexity "
        f"FROM session_rollups s WHERE {where}",
        price_params + params,
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
    _load_window(ctx, where, params)
    bands_sql = ", ".join(
        f"total(CASE WHEN complexity >= {low} AND complexity < {high} THEN 1 ELSE 0 END)" for _label, low, high in BANDS
    )
    totals = ctx.conn.execute(
        "SELECT count(*), avg(d) / 1e9, avg(weight), avg(llm_calls), avg(tool_calls), avg(distinct_tools), "
        f"total(weight), total(errors), avg(tokens), avg(cost), avg(complexity), {bands_sql} FROM temp.window_sessions"
    ).fetchone()
    sessions, avg_duration, avg_spans, avg_messages, avg_tool_calls, avg_tools, spans, errors = totals[:8]
    p50, p95 = _duration_percentiles_s(ctx, (50, 95))
    bands = {label: int(n) for (label, _low, _high), n in zip(BANDS, totals[11:])}
    values = {
        "sessions": sessions,
        "avg_duration_s": avg_duration,
        "p50_duration_s": p50,
        "p95_duration_s": p95,
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
