"""Turns window statistics into the report document: the stable shape behind ``--format json``.

The document is plain dicts, lists, numbers and None so it serializes as-is and every renderer
(table, JSON, the HTML report) reads the same keys; :mod:`otelkit.report` documents the shape.
Counts are estimates weighted by each span's sample rate (:mod:`otelkit.report.query`),
rounded to whole numbers so their type stays ``int``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from otelkit.report.period import Period, parse_period
from otelkit.report.query import PERCENTILES, DurationStats, OperationStats, usage_totals, window_stats


def _percentile_fields(stats: DurationStats) -> dict[str, float | None]:
    return {f"p{p}_ms": stats.percentiles_ms.get(p) for p in PERCENTILES}


def _operation(op: OperationStats, total_ns: float) -> dict[str, Any]:
    return {
        "type": op.type,
        "name": op.name,
        "count": round(op.stats.count),
        "success_rate": op.stats.success_rate,
        **_percentile_fields(op.stats),
        "time_share": op.stats.total_ns / total_ns if total_ns else None,
    }


def _slowest_first(entry: dict[str, Any]) -> tuple[float, str, str]:
    return (-entry["p95_ms"], entry["name"], entry["type"])


def build_report(conn: sqlite3.Connection, period: Period | str, now_ns: int | None = None) -> dict[str, Any]:
    """The report over ``period`` (a :class:`Period` or its spelling, e.g. ``"7d"``) ending at ``now_ns``."""
    window = period if isinstance(period, Period) else parse_period(period)
    since_ns = window.since_ns(now_ns)
    stats = window_stats(conn, since_ns)
    usage = usage_totals(conn, since_ns)
    operations = [_operation(op, stats.overall.total_ns) for op in stats.operations]
    operations.sort(key=_slowest_first)
    return {
        "summary": {
            "spans": round(stats.overall.count),
            "traces": round(stats.traces),
            "sessions": stats.sessions,
            "success_rate": stats.overall.success_rate,
            **_percentile_fields(stats.overall),
            "input_tokens": round(usage.input_tokens),
            "output_tokens": round(usage.output_tokens),
            "cost_usd": usage.cost_usd,
            "unpriced_llm_calls": round(usage.unpriced_calls),
        },
        "operations": operations,
    }
