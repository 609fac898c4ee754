"""Renders a report document (see :mod:`otelkit.report`) as JSON or as rich tables.

Renderers return text instead of printing, so the CLI decides where it goes (stdout or
``--output``) and a file never receives terminal escape codes. Cell values are wrapped in
:class:`rich.text.Text`, so operation names such as ``[tool] search`` are shown verbatim
rather than read as rich markup.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from otelkit.report.period import Period

# Wide enough that plain output never wraps a row; tables still take only their natural width.
_PLAIN_WIDTH = 10_000


def render_json(report: dict[str, Any]) -> str:
    """The report as indented JSON, newline-terminated."""
    return json.dumps(report, indent=2) + "\n"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.3f}" if value < 1 else f"{value:,.2f}"


def _rate(value: float | None) -> str:
    """A percentage truncated (never rounded up) to one decimal, so failures never show as 100%."""
    if value is None:
        return "-"
    return f"{math.floor(value * 1000) / 10:.1f}%"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title="Summary", title_justify="left")
    for header in ("Spans", "Traces", "Sessions", "Success", "p50 ms", "p95 ms", "p99 ms", "Tokens in/out", "Cost"):
        table.add_column(header, justify="right")
    table.add_row(
        *(
            Text(cell)
            for cell in (
                f"{summary['spans']:,}",
                f"{summary['traces']:,}",
                f"{summary['sessions']:,}",
                _rate(summary["success_rate"]),
                _ms(summary["p50_ms"]),
                _ms(summary["p95_ms"]),
                _ms(summary["p99_ms"]),
                f"{summary['input_tokens']:,}/{summary['output_tokens']:,}",
                _cost(summary["cost_usd"], summary["unpriced_llm_calls"]),
            )
        )
    )
    return table


def _cost(cost_usd: float, unpriced: int) -> str:
    text = f"${cost_usd:,.4f}" if cost_usd < 100 else f"${cost_usd:,.2f}"
    return f"{text} (+{unpriced:,} unpriced)" if unpriced else text


def _operations_table(operations: list[dict[str, Any]]) -> Table:
    table = Table(title="Operations, slowest (p95) first", title_justify="left")
    table.add_column("Type")
    table.add_column("Name", overflow="fold")
    for header in ("Count", "Success", "p50 ms", "p95 ms", "p99 ms", "Time share"):
        table.add_column(header, justify="right")
    for op in operations:
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    op["type"],
                    op["name"],
                    f"{op['count']:,}",
                    _rate(op["success_rate"]),
                    _ms(op["p50_ms"]),
                    _ms(op["p95_ms"]),
                    _ms(op["p99_ms"]),
                    _share(op["time_share"]),
                )
            )
        )
    return table


def render_table(report: dict[str, Any], period: Period, *, color: bool = False, width: int | None = None) -> str:
    """The report as a summary table and an operations table; plain text (no trailing blanks) unless ``color``."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=color,
        no_color=not color,
        color_system="auto" if color else None,
        width=width or _PLAIN_WIDTH,
        highlight=False,
        emoji=False,
    )
    console.print(Text(f"otelkit report, period {period.label}", style="bold"))
    console.print(_summary_table(report["summary"]))
    if report["operations"]:
        console.print(_operations_table(report["operations"]))
    else:
        console.print(Text(f"no spans in {period.description}"))
    text = buffer.getvalue()
    if color:
        return text
    return "".join(line.rstrip() + "\n" for line in text.splitlines())
