"""Overview: how much ran, how much failed, how fast, what it cost, and how that compares with
the previous window of the same length."""

from __future__ import annotations

from typing import Any

from otelkit.report.formatting import format_value
from otelkit.report.sections.kit import (
    DAY_NS,
    Context,
    change,
    chart,
    col,
    count,
    day,
    percentiles,
    section,
    success_rate,
    table,
)
from otelkit.report.source import WindowData
from otelkit.store.rollup import Stats

_NS = 1_000_000_000


def _traces(data: WindowData, total: Stats) -> float:
    """Exact windows count distinct trace ids; rollup windows count root spans (each trace's
    first span), the same number when every trace's root is stored in the window."""
    return data.traces if data.traces is not None else total.roots


def figures(ctx: Context, data: WindowData) -> dict[str, Any]:
    """The headline figures of one window."""
    total = data.total()
    by_key = data.by_key()
    p = percentiles(data, list(by_key), total)
    return {
        "spans": count(total.weight),
        "traces": count(_traces(data, total)),
        "errors": count(total.errors),
        "success_rate": success_rate(total),
        "p50_ms": p[50],
        "p95_ms": p[95],
        "p99_ms": p[99],
        "input_tokens": count(total.input_tokens),
        "output_tokens": count(total.output_tokens),
        "cache_read_tokens": count(total.cache_read_tokens),
        "cost_usd": total.cost_usd + sum(
            ctx.unpriced_cost(key, stats) or 0.0 for key, stats in by_key.items() if stats.unpriced_calls
        ),
    }


def alerts_fired(ctx: Context, since_ns: int | None, until_ns: int | None) -> int:
    """Alerts that fired in the window (the alerts table has no service: all services count)."""
    low = -(2**63) if since_ns is None else since_ns
    high = 2**63 - 1 if until_ns is None else until_ns
    return int(
        ctx.conn.execute("SELECT count(*) FROM alerts WHERE fired_ns >= ? AND fired_ns < ?", (low, high)).fetchone()[0]
    )


_COMPARED = (
    ("spans", "Spans", "int"),
    ("traces", "Traces", "int"),
    ("errors", "Errors", "int"),
    ("success_rate", "Success rate", "rate"),
    ("p95_ms", "p95 ms", "ms"),
    ("cost_usd", "Cost", "usd"),
    ("input_tokens", "Input tokens", "int"),
    ("output_tokens", "Output tokens", "int"),
    ("alerts_fired", "Alerts fired", "int"),
)


def _days(ctx: Context) -> list[tuple[dict[str, Any], Stats]]:
    """Per UTC day: the day's stats, and its cost with calls stored without one priced now."""
    days: dict[int, tuple[dict[str, Any], Stats]] = {}
    for item in ctx.data.slices:
        start = item.bucket_ns - item.bucket_ns % DAY_NS
        entry = days.get(start)
        if entry is None:
            entry = days[start] = ({"day": day(start), "cost_usd": 0.0}, Stats())
        entry[1].merge(item.stats)
        priced_now = ctx.unpriced_cost(item.key, item.stats) if item.stats.unpriced_calls else 0.0
        entry[0]["cost_usd"] += item.stats.cost_usd + (priced_now or 0.0)
    return [days[start] for start in sorted(days)]


def build(ctx: Context) -> dict[str, Any]:
    values = figures(ctx, ctx.data)
    values["sessions"] = ctx.session_count
    values["alerts_fired"] = alerts_fired(ctx, ctx.since_ns, ctx.until_ns)
    previous: dict[str, Any] | None = None
    if ctx.previous is not None:
        bounds = ctx.period.previous(ctx.now_ns)
        previous = figures(ctx, ctx.previous)
        previous["alerts_fired"] = alerts_fired(ctx, *bounds) if bounds else 0
    for key, _label, _fmt in _COMPARED:
        values[f"{key}_change"] = change(values[key], previous[key]) if previous else None
    comparison = [
        {"metric": label, "now": format_value(values[key], fmt),
         "before": format_value(previous[key], fmt) if previous else None, "change": values[f"{key}_change"],
         "current": values[key], "previous": previous[key] if previous else None}
        for key, label, fmt in _COMPARED
    ]  # fmt: skip
    per_day = [
        {"day": row["day"], "spans": count(stats.weight), "errors": count(stats.errors), "cost_usd": row["cost_usd"]}
        for row, stats in _days(ctx)
    ]
    fields = [
        col("spans", "Spans", "int"), col("traces", "Traces", "int"), col("sessions", "Sessions", "int"),
        col("success_rate", "Success", "rate"), col("p50_ms", "p50 ms", "ms"), col("p95_ms", "p95 ms", "ms"),
        col("p99_ms", "p99 ms", "ms"), col("input_tokens", "Input tokens", "int"),
        col("output_tokens", "Output tokens", "int"), col("cache_read_tokens", "Cached input tokens", "int"),
        col("cost_usd", "Cost", "usd"), col("alerts_fired", "Alerts fired", "int"),
        col("spans_change", "Spans vs previous", "change"), col("cost_usd_change", "Cost vs previous", "change"),
    ]  # fmt: skip
    notes = []
    if previous is None:
        notes.append("No previous window to compare with: the period is unbounded.")
    return section(
        "Overview",
        fields,
        values,
        {
            "comparison": table(
                "Compared with the previous period",
                [col("metric", "Metric"), col("now", "Now"), col("before", "Before"), col("change", "Change", "change")],
                comparison,
            ),
            "per_day": table(
                "Per day",
                [col("day", "Day"), col("spans", "Spans", "int"), col("errors", "Errors", "int"),
                 col("cost_usd", "Cost", "usd")],  # fmt: skip
                per_day,
            ),
        },
        [chart("Spans and errors per day", "line", "per_day", "day", ["spans", "errors"])],
        notes,
    )
