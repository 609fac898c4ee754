"""Recommendations: rules over the other sections' figures, each with the evidence that fired it.

| rule | fires when | severity |
|---|---|---|
| ``failing_tool`` | a tool with 10+ calls fails 30% of them or more | high |
| ``failing_operation`` | another operation with 20+ spans fails 20% or more | high |
| ``retries`` | LLM and tool calls failing with retryable errors (rate_limit, timeout, network) are 5%+ of those calls, 5+ of them | medium |
| ``dominant_model`` | one model has 70%+ of LLM cost over 20+ calls | medium |
| ``template_cache`` | a template with 20+ renders hits the compile cache under 50% of the time | low |
| ``bottleneck`` | one operation below the commands (not a command or agent) takes 50%+ of all span time, 10+ spans | medium |
| ``unpriced_model`` | a model's calls have tokens but no price | low |
"""

from __future__ import annotations

from typing import Any

from otelkit.report.sections.kit import Context, col, count, section, table
from otelkit.report.sections.llm import build as llm_build
from otelkit.report.sections.operations import operation_rows
from otelkit.report.sections.templates import template_rows
from otelkit.report.sections.tools import tool_rows

RETRYABLE = ("rate_limit", "timeout", "network")
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def rules(ctx: Context) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def add(rule: str, severity: str, subject: str, message: str, evidence: str) -> None:
        found.append({"rule": rule, "severity": severity, "subject": subject, "message": message, "evidence": evidence})

    for tool in tool_rows(ctx):
        if tool["calls"] >= 10 and (tool["error_rate"] or 0) >= 0.3:
            add("failing_tool", "high", tool["tool"],
                f"Tool {tool['tool']} fails {_pct(tool['error_rate'])} of its calls: check its inputs and the service behind it.",
                f"calls={tool['calls']}, failures={tool['failures']}, error_rate={_pct(tool['error_rate'])}")  # fmt: skip
    operations = operation_rows(ctx)
    for op in operations:
        failure = 1 - op["success_rate"] if op["success_rate"] is not None else 0
        if op["type"] != "tool" and op["count"] >= 20 and failure >= 0.2:
            add("failing_operation", "high", op["name"],
                f"{op['type']} {op['name']} fails {_pct(failure)} of the time.",
                f"count={op['count']}, failures={op['failures']}")  # fmt: skip
        if op["type"] not in ("command", "agent", "other") and op["count"] >= 10 and (op["time_share"] or 0) >= 0.5:
            add("bottleneck", "medium", op["name"],
                f"{op['type']} {op['name']} takes {_pct(op['time_share'])} of all span time: the first place to speed up.",
                f"count={op['count']}, total_ms={op['total_ms']:.1f}, p95_ms={op['p95_ms']}")  # fmt: skip
    retryable: dict[str, float] = {}
    for error in ctx.data.errors:
        if error.key[1] in ("llm", "tool") and error.category in RETRYABLE:
            retryable[error.category] = retryable.get(error.category, 0.0) + error.weight
    calls = sum(stats.weight for key, stats in ctx.by_key.items() if key[1] in ("llm", "tool"))
    failed = sum(retryable.values())
    if calls and failed >= 5 and failed / calls >= 0.05:
        add("retries", "medium", "llm and tool calls",
            f"{count(failed)} LLM and tool calls ({_pct(failed / calls)}) failed with retryable errors: "
            "retry with backoff and jitter, or lower the concurrency.",
            ", ".join(f"{c}={count(w)}" for c, w in sorted(retryable.items())))  # fmt: skip
    llm = llm_build(ctx)
    cost = llm["values"]["cost_usd"]
    for row in llm["tables"]["by_model"]["rows"]:
        if cost > 0 and row["calls"] >= 20 and row["cost_usd"] / cost >= 0.7:
            add("dominant_model", "medium", row["model"],
                f"{row['model']} accounts for {_pct(row['cost_usd'] / cost)} of LLM cost: route simpler calls to a cheaper model.",
                f"calls={row['calls']}, cost_usd={row['cost_usd']:.4f}, total_cost_usd={cost:.4f}")  # fmt: skip
    for row in llm["tables"]["unpriced"]["rows"]:
        add("unpriced_model", "low", row["model"],
            f"{row['model']} ({row['provider']}) has no price: add it under pricing.models in the policy.",
            f"unpriced_calls={row['calls']}, input_tokens={row['input_tokens']}")  # fmt: skip
    for template in template_rows(ctx):
        rate = template["cache_hit_rate"]
        if template["renders"] >= 20 and rate is not None and rate < 0.5:
            add("template_cache", "low", template["template"],
                f"Template {template['template']} is compiled anew on {_pct(1 - rate)} of renders: reuse one "
                "Environment (its cache) instead of building templates per call.",
                f"renders={template['renders']}, cache_hit_rate={_pct(rate)}")  # fmt: skip
    found.sort(key=lambda r: (_SEVERITY_ORDER[r["severity"]], r["rule"], r["subject"]))
    return found


def build(ctx: Context) -> dict[str, Any]:
    found = rules(ctx)
    return section(
        "Recommendations",
        [col("recommendations", "Recommendations", "int"), col("high", "High severity", "int")],
        {"recommendations": len(found), "high": sum(1 for r in found if r["severity"] == "high")},
        {
            "recommendations": table(
                "Recommendations",
                [col("severity", "Severity"), col("rule", "Rule"), col("subject", "Subject"),
                 col("message", "Recommendation"), col("evidence", "Evidence")],  # fmt: skip
                found,
            )
        },
        notes=["Rule-based: each line names the rule that fired and the figures that fired it."],
    )
