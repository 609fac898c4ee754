"""Draws an ``otelkit top`` snapshot (:func:`otelkit.report.live.snapshot`) as rich panels.

The same renderable serves the live terminal view and the plain text printed into a pipe.
Everything that came from the store (operation and session names, services, rules, messages)
is a :class:`rich.text.Text`, never markup, so ``[bold]x`` or ``:smile:`` shows as written.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from otelkit.report.live import SERIES_MINUTES

SPARK_LEVELS = "▁▂▃▄▅▆▇█"
SPARK_ZERO = "·"
_NS_PER_S = 1_000_000_000
_SIDE_BY_SIDE_WIDTH = 110  # below this the figures and the sparkline stack


def sparkline(values: Sequence[float]) -> str:
    """One character per value, block height proportional to the largest; zero shows as a dot."""
    peak = max(values, default=0.0)
    if peak <= 0:
        return SPARK_ZERO * len(values)
    top = len(SPARK_LEVELS)
    return "".join(
        SPARK_ZERO if value <= 0 else SPARK_LEVELS[min(top, max(1, math.ceil(value / peak * top))) - 1]
        for value in values
    )


def describe_window(seconds: int) -> str:
    """``5 minutes``, ``1 hour``, ``90 minutes``: how the window reads in a sentence."""
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            amount = seconds // size
            return f"{amount} {unit}{'' if amount == 1 else 's'}"
    return f"{seconds} seconds"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _rate(value: float) -> str:
    return f"{value:,.1f}"


def _percent(value: float | None, errors: float) -> str:
    """An error rate; a non-zero one never reads as 0.0%."""
    if value is None:
        return "-"
    if errors > 0 and value < 0.0005:
        return "<0.1%"
    return f"{value:.1%}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.3f} ms" if value < 1 else f"{value:,.1f} ms"


def _usd(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _ago(ns: int | None, now_ns: int) -> str:
    """How long before ``now_ns``: ``12s ago``, ``3m ago``, ``2h ago``, ``4d ago``."""
    if ns is None:
        return "-"
    seconds = max(0, (now_ns - ns) // _NS_PER_S)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _scope(snap: Mapping[str, Any]) -> str:
    """Which spans the figures cover, as a phrase: ``in the last 5 minutes``."""
    service = snap["service"]
    where = "" if service is None else f" from service {service!r}"
    return f"{where} in the last {describe_window(snap['window']['seconds'])}"


def _title(snap: Mapping[str, Any]) -> Text:
    clock = time.strftime("%H:%M:%SZ", time.gmtime(snap["now_ns"] / _NS_PER_S))
    service = "all services" if snap["service"] is None else f"service {snap['service']}"
    return Text.assemble(("otelkit top", "bold"), f"  {service}  {clock}")


def _figures(snap: Mapping[str, Any]) -> RenderableType:
    """The headline figures, or the empty state when no span started in the window."""
    if snap["spans"] <= 0:
        return Text(f"no spans{_scope(snap)}", style="yellow")
    cost = _usd(snap["cost_per_hour"])
    if snap["unpriced_llm_calls"] > 0:
        cost += f" (+{_count(snap['unpriced_llm_calls'])} unpriced)"
    cells = (
        ("Requests/min", _rate(snap["requests_per_minute"])),
        ("Error rate", _percent(snap["error_rate"], snap["errors"])),
        ("Tokens/min", _count(snap["tokens_per_minute"])),
        ("Spans/min", _rate(snap["spans_per_minute"])),
        ("p95", _ms(snap["p95_ms"])),
        ("Cost/hour", cost),
        ("Requests", _count(snap["requests"])),
        ("Errors", _count(snap["errors"])),
        ("Cost", _usd(snap["cost_usd"])),
    )
    grid = Table.grid(padding=(0, 2))
    for _ in range(3):
        grid.add_column(style="dim")
        grid.add_column(justify="right", style="bold")
    for row in range(0, len(cells), 3):
        grid.add_row(*(Text(part) for label, value in cells[row : row + 3] for part in (label, value)))
    return grid


def _sparklines(series: Sequence[Mapping[str, Any]]) -> RenderableType:
    """Requests and errors per minute over the last minutes, the current (partial) one last."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column()
    grid.add_column()
    grid.add_column(style="dim")
    for label, key, style in (("requests/min", "requests", "cyan"), ("errors/min", "errors", "red")):
        values = [point[key] for point in series]
        grid.add_row(Text(label), Text(sparkline(values), style=style), Text(f"max {_count(max(values, default=0))}"))
    axis = f"-{SERIES_MINUTES - 1}m".ljust(SERIES_MINUTES - 3) + "now"
    grid.add_row(Text(""), Text(axis, style="dim"), Text(""))
    return grid


def _operations(snap: Mapping[str, Any]) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("Type", no_wrap=True)
    table.add_column("Name", overflow="ellipsis", no_wrap=True)
    for header in ("Spans", "/min", "Error rate", "p95"):
        table.add_column(header, justify="right", no_wrap=True)
    for op in snap["operations"]:
        cells = (
            op["type"], op["name"], _count(op["count"]), _rate(op["per_minute"]),
            _percent(op["error_rate"], op["errors"]), _ms(op["p95_ms"]),
        )  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    return table


def _sessions(snap: Mapping[str, Any]) -> RenderableType:
    if not snap["recent_sessions"]:
        return Text(f"no sessions active{_scope(snap)}", style="dim")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("Session", overflow="ellipsis", no_wrap=True)
    table.add_column("Service", overflow="ellipsis", no_wrap=True)
    for header in ("Spans", "Tool calls", "Errors", "Cost", "Last seen"):
        table.add_column(header, justify="right", no_wrap=True)
    for session in snap["recent_sessions"]:
        cells = (
            session["id"], session["service"], _count(session["spans"]), _count(session["tool_calls"]),
            _count(session["errors"]), _usd(session["cost_usd"]), _ago(session["last_ns"], snap["now_ns"]),
        )  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    return table


_SEVERITY_STYLES = {"critical": "bold red", "error": "red", "warning": "yellow"}


def _alerts(snap: Mapping[str, Any]) -> RenderableType:
    if not snap["latest_alerts"]:
        return Text("no alerts in the store", style="dim")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in ("Fired", "State", "Severity", "Rule"):
        table.add_column(header, no_wrap=True)
    table.add_column("Message", overflow="ellipsis", no_wrap=True)
    for alert in snap["latest_alerts"]:
        table.add_row(
            Text(_ago(alert["fired_ns"], snap["now_ns"])),
            Text(alert["state"], style="bold" if alert["state"] == "firing" else "dim"),
            Text(alert["severity"], style=_SEVERITY_STYLES.get(alert["severity"], "")),
            Text(alert["rule"]),
            Text(alert["message"]),
        )
    return table


def _panel(body: RenderableType, title: str, width: int | None) -> Panel:
    return Panel(body, title=Text(title), title_align="left", width=width, box=box.ROUNDED)


def _top_row(snap: Mapping[str, Any], width: int | None) -> RenderableType:
    """The figures and, when any minute of the series saw spans, the sparkline: side by side if wide."""
    minutes = snap["window"]["seconds"] // 60
    figures_title = f"Last {describe_window(snap['window']['seconds'])} ({minutes} whole + the current minute)"
    if not any(point["spans"] > 0 for point in snap["per_minute"]):
        return _panel(_figures(snap), figures_title, width)
    spark_title = f"Per minute, last {SERIES_MINUTES} minutes"
    if width is not None and width < _SIDE_BY_SIDE_WIDTH:
        return Group(
            _panel(_figures(snap), figures_title, width), _panel(_sparklines(snap["per_minute"]), spark_title, width)
        )
    row = Table.grid(expand=True, padding=(0, 1))
    row.width = width
    row.add_column(ratio=3)
    row.add_column(ratio=2)
    row.add_row(
        _panel(_figures(snap), figures_title, None), _panel(_sparklines(snap["per_minute"]), spark_title, None)
    )
    return row


def render_snapshot(snap: Mapping[str, Any], *, width: int | None = None) -> RenderableType:
    """The whole view: title, figures and sparkline, top operations, active sessions, latest alerts."""
    parts: list[RenderableType] = [_title(snap), _top_row(snap, width)]
    if snap["operations"]:
        parts.append(_panel(_operations(snap), "Top operations (most spans)", width))
    sessions_title = f"Active sessions: {snap['active_sessions']:,}"
    if snap["active_sessions"] > len(snap["recent_sessions"]):
        sessions_title += f" ({len(snap['recent_sessions'])} most recent)"
    parts.append(_panel(_sessions(snap), sessions_title, width))
    parts.append(_panel(_alerts(snap), "Latest alerts", width))
    return Group(*parts)
