"""Tools: how often each tool is called, how often it fails, how long it takes, and which
sequences of tool calls recur within a session (or a trace, without one)."""

from __future__ import annotations

from typing import Any

from otelkit.report.sections.kit import (
    Context,
    chart,
    col,
    count,
    group,
    mean_ms,
    percentiles,
    ratio,
    section,
    success_rate,
    table,
)
from otelkit.store.tool_sequences import NGRAM_SIZES

TOP_SEQUENCES = 10


def tool_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for name, (keys, stats) in group(ctx.by_key, lambda k: k[6] if k[1] == "tool" else None).items():
        p = percentiles(ctx.data, keys, stats)
        rows.append(
            {"tool": name, "calls": count(stats.weight), "success_rate": success_rate(stats),
             "error_rate": ratio(stats.errors, stats.weight), "failures": count(stats.errors),
             "avg_ms": mean_ms(stats), "p95_ms": p[95], "total_ms": stats.duration_ns / 1e6}
        )  # fmt: skip
    rows.sort(key=lambda r: (-r["calls"], r["tool"]))
    return rows


def sequence_rows(ctx: Context) -> list[dict[str, Any]]:
    """The most frequent sequences of each length, most frequent first."""
    rows: list[dict[str, Any]] = []
    for n in NGRAM_SIZES:
        ranked = sorted(
            ((seq, weight) for (size, seq), weight in ctx.data.ngrams.items() if size == n),
            key=lambda item: (-item[1], item[0]),
        )
        rows.extend({"length": n, "sequence": seq, "count": count(weight)} for seq, weight in ranked[:TOP_SEQUENCES])
    return rows


def build(ctx: Context) -> dict[str, Any]:
    tools = tool_rows(ctx)
    sequences = sequence_rows(ctx)
    total_calls = sum(r["calls"] for r in tools)
    values = {
        "tools": len(tools),
        "calls": total_calls,
        "most_used": tools[0]["tool"] if tools else None,
        "top_sequence": max((r for r in sequences if r["length"] == 2), key=lambda r: r["count"], default={}).get(
            "sequence"
        ),
    }
    return section(
        "Tools",
        [col("tools", "Tools", "int"), col("calls", "Calls", "int"), col("most_used", "Most used"),
         col("top_sequence", "Most frequent pair")],  # fmt: skip
        values,
        {
            "usage": table(
                "Usage per tool",
                [col("tool", "Tool"), col("calls", "Calls", "int"), col("success_rate", "Success", "rate"),
                 col("failures", "Failures", "int"), col("avg_ms", "Avg ms", "ms"), col("p95_ms", "p95 ms", "ms")],  # fmt: skip
                tools,
            ),
            "sequences": table(
                "Most frequent tool sequences (within a session, else a trace)",
                [col("length", "Length", "int"), col("sequence", "Sequence"), col("count", "Count", "int")],
                sequences,
            ),
        },
        [chart("Calls per tool", "hbar", "usage", "tool", ["calls"])],
        ["A sequence of n calls is counted once for each call that completes it, in the order the calls started."],
    )
