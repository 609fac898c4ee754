"""Templates: renders per template, how often the compiled template came from the cache, and
which templates are slowest."""

from __future__ import annotations

from typing import Any

from otelkit.report.sections.kit import Context, chart, col, count, group, mean_ms, percentiles, ratio, section, table


def template_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for name, (keys, stats) in group(ctx.by_key, lambda k: k[2] if k[1] == "template" else None).items():
        p = percentiles(ctx.data, keys, stats)
        rows.append(
            {"template": name, "renders": count(stats.weight), "cache_hit_rate": ratio(stats.cache_hits, stats.cache_checks),
             "failures": count(stats.errors), "avg_ms": mean_ms(stats), "p95_ms": p[95],
             "total_ms": stats.duration_ns / 1e6}
        )  # fmt: skip
    rows.sort(key=lambda r: (-r["renders"], r["template"]))
    return rows


def build(ctx: Context) -> dict[str, Any]:
    rows = template_rows(ctx)
    slowest = sorted((r for r in rows if r["p95_ms"] is not None), key=lambda r: (-r["p95_ms"], r["template"]))[:10]
    templates = [stats for key, stats in ctx.by_key.items() if key[1] == "template"]
    hits = sum(stats.cache_hits for stats in templates)
    checked = sum(stats.cache_checks for stats in templates)
    values = {
        "templates": len(rows),
        "renders": sum(r["renders"] for r in rows),
        "cache_hit_rate": ratio(hits, checked),
        "slowest": slowest[0]["template"] if slowest else None,
    }
    columns = [
        col("template", "Template"), col("renders", "Renders", "int"), col("cache_hit_rate", "Cache hits", "share"),
        col("failures", "Failures", "int"), col("avg_ms", "Avg ms", "ms"), col("p95_ms", "p95 ms", "ms"),
        col("total_ms", "Total ms", "ms"),
    ]  # fmt: skip
    return section(
        "Templates",
        [col("templates", "Templates", "int"), col("renders", "Renders", "int"),
         col("cache_hit_rate", "Cache hit rate", "share"), col("slowest", "Slowest (p95)")],  # fmt: skip
        values,
        {"templates": table("Per template", columns, rows), "slowest": table("Slowest templates (p95)", columns, slowest)},
        [chart("Renders per template", "hbar", "templates", "template", ["renders"])],
        ["Cache hit rate counts the renders that reported otelkit.template.cache_hit."],
    )
