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
# The cost of a session's calls stored without one, at the prices in temp.session_prices (USD
# per million tokens): cached input at the cached price, the rest of the input at the input price.
_PRICED_NOW_SQL = """coalesce((
    SELECT sum((max(round(json_extract(j.value, '$[0]')), 0) - min(max(round(json_extract(j.value, '$[2]')), 0),
                max(round(json_extract(j.value, '$[0]')), 0))) * p.input
               + min(max(round(json_extract(j.value, '$[2]')), 0), max(round(json_extract(j.value, '$[0]')), 0))
                 * p.cached
               + max(round(json_extract(j.value, '$[1]')), 0) * p.output) / 1e6
    FROM json_each(unpriced) j JOIN temp.session_prices p ON p.model_key = j.key
), 0.0)"""


def _prepare_prices(ctx: Context, where: str, params: list[Any]) -> None:
    """Fill temp.session_prices with the current price of every model with unpriced calls."""
    conn = ctx.conn
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS session_prices (model_key TEXT PRIMARY KEY, input REAL, cached REAL, output REAL)"
    )
    conn.execute("DELETE FROM temp.session_prices")
    keys = [row[0] for row in conn.execute(
        f"SELECT DISTINCT j.key FROM session_rollups, json_each(session_rollups.unpriced) j "
        f"WHERE session_rollups.unpriced != '{{}}' AND {where}", params)]  # fmt: skip
    rows = []
    for model_key in keys:
        provider, _sep, model = model_key.partition(UNIT_SEPARATOR)
        price = ctx.pricing.lookup(provider or None, model or None)
        if price is not None:
            cached = price.input if price.cached_input is None else price.cached_input
            rows.append((model_key, price.input, cached, price.output))
    conn.executemany("INSERT INTO temp.session_prices VALUES (?, ?, ?, ?)", rows)


def _session_rows(ctx: Context, where: str, params: list[Any], order: str) -> list[dict[str, Any]]:
    rows = ctx.conn.execute(
        f"SELECT session_id, first_ns, last_ns, weight, traces, llm_calls, tool_calls, distinct_tools, errors, "
        f"input_tokens + output_tokens, cost_usd + {_PRICED_NOW_SQL} AS cost, {COMPLEXITY_SQL} AS complexity "
        f"FROM session_rollups WHERE {where} ORDER BY {order} LIMIT {TOP_SESSIONS}",
        params,
    )
    return [
        {"session": sid, "started": iso(first), "duration_s": max(last - first, 0) / _NS, "spans": count(weight),
         "traces": count(traces), "messages": count(llm), "tool_calls": count(tools), "distinct_tools": distinct,
         "success_rate": ratio(weight - errors, weight), "tokens": count(tokens), "cost_usd": cost,
         "complexity": complexity}
        for sid, first, last, weight, traces, llm, tools, distinct, errors, tokens, cost, complexity in rows
    ]  # fmt: skip


def build(ctx: Context) -> dict[str, Any]:
    where, params = ctx.source.session_filter(ctx.since_ns, ctx.until_ns)
    _prepare_prices(ctx, where, params)
    totals = ctx.conn.execute(
        f"SELECT count(*), avg(max(last_ns - first_ns, 0)) / 1e9, avg(weight), avg(llm_calls), avg(tool_calls), "
        f"avg(distinct_tools), total(weight), total(errors), avg(input_tokens + output_tokens), "
        f"avg(cost_usd + {_PRICED_NOW_SQL}), avg({COMPLEXITY_SQL}) FROM session_rollups WHERE {where}",
        params,
    ).fetchone()
    sessions, avg_duration, avg_spans, avg_messages, avg_tool_calls, avg_tools, spans, errors = totals[:8]
    durations = [row[0] for row in ctx.conn.execute(
        f"SELECT max(last_ns - first_ns, 0) FROM session_rollups WHERE {where} ORDER BY 1", params)]  # fmt: skip
    bands = dict(ctx.conn.execute(
        f"SELECT CASE " + " ".join(f"WHEN c < {high} THEN '{label}'" for label, _low, high in BANDS)
        + f" END, count(*) FROM (SELECT {COMPLEXITY_SQL} AS c FROM session_rollups WHERE {where}) GROUP BY 1",
        params))  # fmt: skip
    values = {
        "sessions": sessions,
        "avg_duration_s": avg_duration,
        "p50_duration_s": percentile_ms(durations, 50) / 1000 if durations else None,
        "p95_duration_s": percentile_ms(durations, 95) / 1000 if durations else None,
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
    return section(
        "Sessions",
        [col("sessions", "Sessions", "int"), col("avg_duration_s", "Avg duration", "duration_s"),
         col("p95_duration_s", "p95 duration", "duration_s"), col("avg_spans", "Spans per session", "float"),
         col("avg_messages", "Messages per session", "float"), col("avg_distinct_tools", "Tools per session", "float"),
         col("success_rate", "Success", "rate"), col("avg_tokens", "Tokens per session", "float"),
         col("avg_cost_usd", "Cost per session", "usd"), col("avg_complexity", "Avg complexity", "score")],  # fmt: skip
        values,
        {
            "most_complex": table("Most complex sessions", columns,
                                  _session_rows(ctx, where, params, "complexity DESC, session_id")),  # fmt: skip
            "most_expensive": table("Most expensive sessions", columns,
                                    _session_rows(ctx, where, params, "cost DESC, session_id")),  # fmt: skip
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
