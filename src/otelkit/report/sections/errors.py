"""Errors: by category and type, their trend per day, the most frequent messages (as templates:
numbers, ids and quoted text replaced, then scrubbed of secrets), the operations where they
concentrate, and bursts: runs of consecutive minutes (hours, in windows over two days read from
the rollups) whose error count stands out."""

from __future__ import annotations

import math
from typing import Any

from otelkit.report.sections.kit import (
    Context,
    chart,
    col,
    count,
    day,
    detail_resolution,
    iso,
    ratio,
    section,
    table,
    trace_cells,
    trace_col,
)

TREND_CATEGORIES = 5
TOP_MESSAGES = 15
BURST_SIGMAS = 3.0
BURST_MIN_ERRORS = 3.0


def bursts(ctx: Context) -> list[dict[str, Any]]:
    """Runs of adjacent buckets whose errors reach ``max(mean + 3 sd, 3)`` of the window's buckets."""
    resolution = detail_resolution(ctx)
    series = ctx.error_series(resolution)
    if len(series) < 2:
        return []
    counts = [errors for errors, _spans in series.values()]
    mean = sum(counts) / len(counts)
    sd = math.sqrt(sum((c - mean) ** 2 for c in counts) / len(counts))
    threshold = max(mean + BURST_SIGMAS * sd, BURST_MIN_ERRORS)
    step = resolution * 1_000_000_000
    found: list[dict[str, Any]] = []
    current: list[tuple[int, float, float]] = []
    for bucket, (errors, spans) in series.items():
        if errors >= threshold and errors > mean:
            if current and bucket != current[-1][0] + step:
                found.append(_burst(current, step, mean))
                current = []
            current.append((bucket, errors, spans))
        elif current:
            found.append(_burst(current, step, mean))
            current = []
    if current:
        found.append(_burst(current, step, mean))
    found.sort(key=lambda b: -b["errors"])
    return found


def _burst(run: list[tuple[int, float, float]], step: int, mean: float) -> dict[str, Any]:
    errors = sum(e for _b, e, _s in run)
    spans = sum(s for _b, _e, s in run)
    return {
        "start": iso(run[0][0]),
        "end": iso(run[-1][0] + step),
        "buckets": len(run),
        "errors": count(errors),
        "peak": count(max(e for _b, e, _s in run)),
        "baseline": mean,
        "error_rate": ratio(errors, spans),
    }


def build(ctx: Context) -> dict[str, Any]:
    total = ctx.data.total()
    by_category: dict[str, float] = {}
    by_type: dict[tuple[str, str], float] = {}
    per_day: dict[str, dict[str, float]] = {}
    messages: dict[tuple[str, str, str], list[Any]] = {}
    hotspots: dict[tuple[str, str, str], float] = {}
    for bucket, key, category, error_type, message, _spans, weight, trace_id, last_ns in ctx.data.errors:
        by_category[category] = by_category.get(category, 0.0) + weight
        by_type[(error_type or "(none)", category)] = by_type.get((error_type or "(none)", category), 0.0) + weight
        daily = per_day.setdefault(day(bucket), {})
        daily[category] = daily.get(category, 0.0) + weight
        entry = messages.setdefault((message, error_type, category), [0.0, None, -(2**63)])
        entry[0] += weight
        if last_ns >= entry[2]:
            entry[1], entry[2] = trace_id, last_ns
        hot = (key[1], key[2], category)
        hotspots[hot] = hotspots.get(hot, 0.0) + weight
    errors = sum(by_category.values())
    categories = sorted(by_category, key=lambda c: (-by_category[c], c))
    trend_categories = categories[:TREND_CATEGORIES]
    trend = []
    for name in sorted(per_day):
        row: dict[str, Any] = {"day": name, "errors": count(sum(per_day[name].values()))}
        for category in trend_categories:
            row[f"category_{category}"] = count(per_day[name].get(category, 0.0))
        trend.append(row)
    op_weight: dict[tuple[str, str], float] = {}
    for key, stats in ctx.by_key.items():
        op_weight[(key[1], key[2])] = op_weight.get((key[1], key[2]), 0.0) + stats.weight
    top_messages = [
        {"message": ctx.scrub(message) or "(no message)", "type": error_type or "(none)", "category": category,
         "errors": count(weight), **trace_cells(ctx, trace_id, "last_trace_id")}
        for (message, error_type, category), (weight, trace_id, _b) in sorted(
            messages.items(), key=lambda kv: (-kv[1][0], kv[0]))[:TOP_MESSAGES]
    ]  # fmt: skip
    hotspot_rows = [
        {"type": op_type, "name": name, "category": category, "errors": count(weight),
         "error_rate": ratio(weight, op_weight.get((op_type, name), 0.0))}
        for (op_type, name, category), weight in sorted(hotspots.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    ]  # fmt: skip
    burst_rows = bursts(ctx)
    values = {
        "errors": count(errors),
        "error_rate": ratio(total.errors, total.weight),
        "categories": len(categories),
        "top_category": categories[0] if categories else None,
        "bursts": len(burst_rows),
    }
    return section(
        "Errors",
        [col("errors", "Errors", "int"), col("error_rate", "Error rate", "share"),
         col("categories", "Categories", "int"), col("top_category", "Top category"), col("bursts", "Bursts", "int")],  # fmt: skip
        values,
        {
            "by_category": table(
                "By category",
                [col("category", "Category"), col("errors", "Errors", "int"), col("share", "Share", "share")],
                [{"category": c, "errors": count(by_category[c]), "share": ratio(by_category[c], errors)}
                 for c in categories],  # fmt: skip
            ),
            "by_type": table(
                "By type",
                [col("type", "Type"), col("category", "Category"), col("errors", "Errors", "int")],
                [{"type": t, "category": c, "errors": count(w)}
                 for (t, c), w in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))],  # fmt: skip
            ),
            "trend": table(
                "Errors per day",
                [col("day", "Day"), col("errors", "Errors", "int"), *(col(f"category_{c}", c, "int") for c in trend_categories)],
                trend,
            ),
            "messages": table(
                "Top error messages",
                [col("message", "Message"), col("type", "Type"), col("category", "Category"),
                 col("errors", "Errors", "int"), trace_col("last_trace_id", "Last trace")],  # fmt: skip
                top_messages,
            ),
            "hotspots": table(
                "Hotspots (operation x category)",
                [col("type", "Type"), col("name", "Operation"), col("category", "Category"),
                 col("errors", "Errors", "int"), col("error_rate", "Error rate", "share")],  # fmt: skip
                hotspot_rows,
            ),
            "bursts": table(
                "Error bursts",
                [col("start", "From", "time"), col("end", "To", "time"), col("errors", "Errors", "int"),
                 col("peak", "Peak per bucket", "int"), col("baseline", "Mean per bucket", "float"),
                 col("error_rate", "Error rate", "share")],  # fmt: skip
                burst_rows,
            ),
        },
        [chart("Errors per day by category", "line", "trend", "day", ["errors", *(f"category_{c}" for c in trend_categories)])],
        ["A burst is a run of adjacent buckets with at least max(mean + 3 sd, 3) errors, mean and sd taken "
         "over the window's buckets that hold spans."],  # fmt: skip
    )
