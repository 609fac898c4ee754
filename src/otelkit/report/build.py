"""Builds the report document (``docs/report-format.md``) every renderer reads.

The document is plain dicts, lists, numbers and None so it serializes as-is. ``summary`` and
``operations`` keep the shape of otelkit 0.1's report; ``sections`` holds the sections asked
for, each built by :mod:`otelkit.report.sections` from one shared :class:`Context`, so the
window is read once however many sections there are.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Callable, Sequence

from otelkit.pricing import PricingTable, current_table
from otelkit.report.period import Period, parse_period
from otelkit.report.query import PERCENTILES
from otelkit.report.sections import SECTIONS, Context
from otelkit.report.sections.kit import identity, iso
from otelkit.report.sections.operations import operation_rows
from otelkit.report.sections.overview import figures
from otelkit.report.source import EXACT_LIMIT, Source


class SectionError(ValueError):
    """A section name that does not exist; the message is one line and lists the valid ones."""


def parse_sections(text: str | None) -> list[str]:
    """``NAME[,NAME...]`` as a list of known section names (every section when empty)."""
    if not text or not text.strip():
        return list(SECTIONS)
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise SectionError(f"unknown section {unknown[0]!r}: choose from {', '.join(SECTIONS)}")
    return list(dict.fromkeys(names))


def _legacy_operations(ctx: Context) -> list[dict[str, Any]]:
    rows = [
        {"type": r["type"], "name": r["name"], "count": r["count"], "success_rate": r["success_rate"],
         **{f"p{p}_ms": r[f"p{p}_ms"] for p in PERCENTILES}, "time_share": r["time_share"]}
        for r in operation_rows(ctx)
    ]  # fmt: skip
    rows.sort(key=lambda r: (-(r["p95_ms"] or 0.0), r["name"], r["type"]))
    return rows


def _summary(ctx: Context) -> dict[str, Any]:
    values = figures(ctx, ctx.data)
    unpriced = sum(
        stats.unpriced_calls for key, stats in ctx.by_key.items() if stats.unpriced_calls and ctx.unpriced_cost(key, stats) is None
    )
    return {
        "spans": values["spans"],
        "traces": values["traces"],
        "sessions": ctx.session_count,
        "success_rate": values["success_rate"],
        **{f"p{p}_ms": values[f"p{p}_ms"] for p in PERCENTILES},
        "input_tokens": values["input_tokens"],
        "output_tokens": values["output_tokens"],
        "cost_usd": values["cost_usd"],
        "unpriced_llm_calls": round(unpriced),
    }


def build_report(
    conn: sqlite3.Connection,
    period: Period | str,
    now_ns: int | None = None,
    *,
    sections: Sequence[str] | None = None,
    service: str | None = None,
    jaeger_url: str | None = None,
    pricing: PricingTable | None = None,
    scrub: Callable[[str], str] = identity,
    exact: bool | None = None,
    exact_limit: int = EXACT_LIMIT,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The report over ``period`` (a :class:`Period` or its spelling, e.g. ``"7d"``) ending at
    ``now_ns``. ``exact`` forces (True) or forbids (False) reading the window from the spans
    (default: when it holds at most ``exact_limit`` spans); ``scrub`` cleans message text."""
    window = period if isinstance(period, Period) else parse_period(period)
    now = time.time_ns() if now_ns is None else now_ns
    names = list(sections) if sections is not None else list(SECTIONS)
    ctx = Context(
        source=Source(conn, service, exact_limit),
        period=window,
        now_ns=now,
        pricing=pricing or current_table(),
        jaeger_url=jaeger_url,
        scrub=scrub,
        exact=exact,
    )
    if progress:
        progress("reading the window")
    built: dict[str, Any] = {}
    for name in names:
        if progress:
            progress(name)
        built[name] = SECTIONS[name](ctx)
    previous = window.previous(now)
    return {
        "report": {
            "period": window.label,
            "since": iso(ctx.since_ns),
            "until": iso(ctx.until_ns),
            "previous_since": iso(previous[0]) if previous else None,
            "previous_until": iso(previous[1]) if previous else None,
            "service": service,
            "generated_at": iso(now),
            "source": ctx.data.source,
            "jaeger_url": jaeger_url,
            "sections": names,
        },
        "summary": _summary(ctx),
        "operations": _legacy_operations(ctx),
        "sections": built,
    }
