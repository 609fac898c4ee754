"""LLM usage: calls, tokens, cost, latency and errors by model, provider and agent; cost per day;
the models the pricing table cannot price.

Spans that carry tokens but no cost (from other instrumentations, or other languages through
``otelkit serve``) are priced here from the current pricing table; the figures say how much of
the cost was priced this way (``cost_priced_now_usd``)."""

from __future__ import annotations

from typing import Any, Callable

from otelkit.report.sections.kit import (
    DAY_NS,
    Context,
    chart,
    col,
    count,
    day,
    group,
    mean_ms,
    percentiles,
    ratio,
    section,
    table,
)
from otelkit.store.rollup import Key, Stats

_LLM = "llm"


def _is_llm(key: Key, stats: Stats) -> bool:
    return key[1] == _LLM or bool(stats.input_tokens or stats.output_tokens or stats.cost_usd or stats.unpriced_calls)


def _usage_row(ctx: Context, keys: list[Key], stats: Stats, by_key: dict[Key, Stats]) -> dict[str, Any]:
    priced_now = 0.0
    unpriced = 0.0
    for key in keys:
        part = by_key[key]
        if part.unpriced_calls:
            cost = ctx.unpriced_cost(key, part)
            if cost is None:
                unpriced += part.unpriced_calls
            else:
                priced_now += cost
    p = percentiles(ctx.data, keys, stats)
    return {
        "calls": count(stats.weight),
        "error_rate": ratio(stats.errors, stats.weight),
        "input_tokens": count(stats.input_tokens),
        "output_tokens": count(stats.output_tokens),
        "cache_read_tokens": count(stats.cache_read_tokens),
        "cost_usd": stats.cost_usd + priced_now,
        "cost_priced_now_usd": priced_now,
        "unpriced_calls": count(unpriced),
        "avg_ms": mean_ms(stats),
        "p95_ms": p[95],
    }


_USAGE_COLUMNS = [
    col("calls", "Calls", "int"), col("error_rate", "Errors", "share"), col("input_tokens", "Input tokens", "int"),
    col("output_tokens", "Output tokens", "int"), col("cache_read_tokens", "Cached", "int"),
    col("cost_usd", "Cost", "usd"), col("avg_ms", "Avg ms", "ms"), col("p95_ms", "p95 ms", "ms"),
    col("unpriced_calls", "Unpriced", "int"),
]  # fmt: skip


def _table(
    ctx: Context, llm: dict[Key, Stats], label: Callable[[Key], Any], names: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    rows = []
    for name, (keys, stats) in group(llm, label).items():
        values = name if isinstance(name, tuple) else (name,)
        rows.append({**{k: v for (k, _l), v in zip(names, values)}, **_usage_row(ctx, keys, stats, llm)})
    rows.sort(key=lambda r: (-r["cost_usd"], -r["calls"], str(r[names[0][0]])))
    return rows


def _cost_per_day(ctx: Context, llm: dict[Key, Stats]) -> list[dict[str, Any]]:
    """Cost and tokens per UTC day, calls without a cost priced now as in the totals (every
    slice of the window lies within one day, whatever its resolution)."""
    days: dict[int, list[float]] = {}
    for item in ctx.data.slices:
        if item.key not in llm:
            continue
        stats = item.stats
        priced_now = ctx.unpriced_cost(item.key, stats) if stats.unpriced_calls else 0.0
        entry = days.setdefault(item.bucket_ns - item.bucket_ns % DAY_NS, [0.0, 0.0, 0.0, 0.0])
        entry[0] += stats.cost_usd + (priced_now or 0.0)
        entry[1] += stats.input_tokens
        entry[2] += stats.output_tokens
        entry[3] += stats.unpriced_calls if priced_now is None else 0.0
    return [
        {"day": day(bucket), "cost_usd": cost, "input_tokens": count(inputs), "output_tokens": count(outputs),
         "unpriced_calls": count(unpriced)}
        for bucket, (cost, inputs, outputs, unpriced) in sorted(days.items())
    ]  # fmt: skip


def build(ctx: Context) -> dict[str, Any]:
    llm = {key: stats for key, stats in ctx.by_key.items() if _is_llm(key, stats)}
    total = Stats()
    for stats in llm.values():
        total.merge(stats)
    overall = _usage_row(ctx, list(llm), total, llm) if llm else None
    by_model = _table(ctx, llm, lambda k: (k[4] or "(unknown)", k[3] or "(unknown)"),
                      [("model", "Model"), ("provider", "Provider")])  # fmt: skip
    by_provider = _table(ctx, llm, lambda k: k[3] or "(unknown)", [("provider", "Provider")])
    by_agent = _table(ctx, llm, lambda k: k[5] or None, [("agent", "Agent")])
    agents = group(ctx.by_key, lambda k: k[5] or None if k[1] == "agent" else None)
    agent_runs = sorted(
        ({"agent": name, "runs": count(stats.weight), "error_rate": ratio(stats.errors, stats.weight),
          "avg_ms": mean_ms(stats)} for name, (_keys, stats) in agents.items()),
        key=lambda r: (-r["runs"], r["agent"]),
    )  # fmt: skip
    unpriced = [
        {"model": row["model"], "provider": row["provider"], "calls": row["unpriced_calls"],
         "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"]}
        for row in by_model if row["unpriced_calls"]
    ]  # fmt: skip
    top_agent = by_agent[0]["agent"] if by_agent else (agent_runs[0]["agent"] if agent_runs else None)
    values: dict[str, Any] = {
        "calls": overall["calls"] if overall else 0,
        "input_tokens": overall["input_tokens"] if overall else 0,
        "output_tokens": overall["output_tokens"] if overall else 0,
        "cache_read_tokens": overall["cache_read_tokens"] if overall else 0,
        "cost_usd": overall["cost_usd"] if overall else 0.0,
        "cost_priced_now_usd": overall["cost_priced_now_usd"] if overall else 0.0,
        "error_rate": overall["error_rate"] if overall else None,
        "p95_ms": overall["p95_ms"] if overall else None,
        "top_model": by_model[0]["model"] if by_model else None,
        "top_agent": top_agent,
        "unpriced_models": len(unpriced),
    }
    model_cols = [col("model", "Model"), col("provider", "Provider"), *_USAGE_COLUMNS]
    return section(
        "LLM usage",
        [col("calls", "Calls", "int"), col("input_tokens", "Input tokens", "int"),
         col("output_tokens", "Output tokens", "int"), col("cache_read_tokens", "Cached input tokens", "int"),
         col("cost_usd", "Cost", "usd"), col("cost_priced_now_usd", "Of which priced at report time", "usd"),
         col("error_rate", "Error rate", "share"), col("p95_ms", "p95 ms", "ms"), col("top_model", "Top model"),
         col("top_agent", "Top agent"), col("unpriced_models", "Unpriced models", "int")],  # fmt: skip
        values,
        {
            "by_model": table("By model", model_cols, by_model),
            "by_provider": table("By provider", [col("provider", "Provider"), *_USAGE_COLUMNS], by_provider),
            "by_agent": table("By agent (LLM calls made by an agent)", [col("agent", "Agent"), *_USAGE_COLUMNS], by_agent),
            "agent_runs": table(
                "Agent runs",
                [col("agent", "Agent"), col("runs", "Runs", "int"), col("error_rate", "Errors", "share"),
                 col("avg_ms", "Avg ms", "ms")],  # fmt: skip
                agent_runs,
            ),
            "cost_per_day": table(
                "Cost per day",
                [col("day", "Day"), col("cost_usd", "Cost", "usd"), col("input_tokens", "Input tokens", "int"),
                 col("output_tokens", "Output tokens", "int"), col("unpriced_calls", "Unpriced calls", "int")],  # fmt: skip
                _cost_per_day(ctx, llm),
            ),
            "unpriced": table(
                "Models without a price (add them under pricing.models in the policy)",
                [col("model", "Model"), col("provider", "Provider"), col("calls", "Calls", "int"),
                 col("input_tokens", "Input tokens", "int"), col("output_tokens", "Output tokens", "int")],  # fmt: skip
                unpriced,
            ),
        },
        [
            chart("Cost per day", "line", "cost_per_day", "day", ["cost_usd"]),
            chart("Cost by model", "hbar", "by_model", "model", ["cost_usd"]),
        ],
        ["Cost includes calls stored without one, priced now from the current pricing table; "
         "calls whose model has no price are counted as unpriced, never as $0."],  # fmt: skip
    )
