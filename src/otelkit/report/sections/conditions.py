"""Conditions: how often each condition was evaluated, how it came out, and the time spent."""

from __future__ import annotations

from typing import Any

from otelkit.report.sections.kit import Context, chart, col, count, group, mean_ms, ratio, section, table


def condition_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for name, (_keys, stats) in group(ctx.by_key, lambda k: k[2] if k[1] == "condition" else None).items():
        decided = stats.true_results + stats.false_results
        rows.append(
            {"condition": name, "evaluations": count(stats.weight), "true": count(stats.true_results),
             "false": count(stats.false_results), "true_share": ratio(stats.true_results, decided),
             "failures": count(stats.errors), "avg_ms": mean_ms(stats), "total_ms": stats.duration_ns / 1e6}
        )  # fmt: skip
    rows.sort(key=lambda r: (-r["evaluations"], r["condition"]))
    return rows


def build(ctx: Context) -> dict[str, Any]:
    rows = condition_rows(ctx)
    values = {
        "conditions": len(rows),
        "evaluations": sum(r["evaluations"] for r in rows),
        "true": sum(r["true"] for r in rows),
        "false": sum(r["false"] for r in rows),
        "total_ms": sum(r["total_ms"] for r in rows),
    }
    return section(
        "Conditions",
        [col("conditions", "Conditions", "int"), col("evaluations", "Evaluations", "int"), col("true", "True", "int"),
         col("false", "False", "int"), col("total_ms", "Time spent ms", "ms")],  # fmt: skip
        values,
        {
            "conditions": table(
                "Per condition",
                [col("condition", "Condition"), col("evaluations", "Evaluations", "int"), col("true", "True", "int"),
                 col("false", "False", "int"), col("true_share", "True share", "share"),
                 col("failures", "Failures", "int"), col("avg_ms", "Avg ms", "ms"), col("total_ms", "Total ms", "ms")],  # fmt: skip
                rows,
            )
        },
        [chart("True and false per condition", "hbar", "conditions", "condition", ["true", "false"])],
        ["An evaluation without a recorded result counts in evaluations but in neither true nor false."],
    )
