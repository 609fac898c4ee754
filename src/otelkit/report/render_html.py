"""Renders a report document (docs/report-format.md) as one self-contained HTML file with charts.

The page needs no network to view: CSS is inline, charts are matplotlib figures embedded as
inline SVG, and the only URLs are the trace links the document carries. User data is escaped
everywhere: the jinja2 template autoescapes, matplotlib escapes the text it writes into SVG
(with mathtext off, so a name holding ``$`` is never read as a formula), and a trace link is
kept only when it is an http(s) URL. Output is deterministic (SVG ids from a fixed salt, no
dates), so a report can be diffed or cached. matplotlib and jinja2 come with the ``html`` extra and are imported lazily,
so the other formats work without them.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otelkit.report.formatting import (
    LABEL_LIMIT,
    MISSING,
    field_key,
    field_label,
    format_value,
    is_numeric_format,
    link_target,
    previous_window_text,
    printable,
    truncate,
    window_text,
)

if TYPE_CHECKING:
    from jinja2 import Environment
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

_TEMPLATE = "report.html.j2"
_TEMPLATES_DIR = Path(__file__).parent / "templates"
_MISSING_DEPENDENCY = "the HTML report needs {name}: pip install 'otelkit[html]'"

_MAX_CATEGORIES = 25
_MAX_LINE_TICKS = 12
_PALETTE = ("#3867a6", "#e0883a", "#4d9a68", "#c4514b", "#7c66ad", "#8a6d50", "#d07fb3", "#6f7b87")
# Formats whose axis ticks read better as the table shows them ($, %, 1h 02m) than as bare numbers.
_TICK_FORMATS = frozenset({"int", "usd", "rate", "share", "change", "duration_s"})
_BAR_KINDS = frozenset({"bar", "hbar", "histogram"})
_KINDS = _BAR_KINDS | {"line"}
# matplotlib names every group (figure_1, axes_1, ...); nothing refers to those names, and with
# several charts on one page they would repeat, so they go (referenced ids are salted, and stay).
_GROUP_ID = re.compile(r'<g id="[^"]*">')


@dataclass(frozen=True)
class Series:
    """One y column of a chart: its label, format and values (NaN where a row has no number)."""

    label: str
    format: str | None
    values: tuple[float, ...]


@dataclass(frozen=True)
class ChartData:
    """What one chart plots, already taken out of its table and made safe to draw."""

    title: str
    kind: str
    x_label: str
    categories: tuple[str, ...]
    series: tuple[Series, ...]


@dataclass(frozen=True)
class ChartView:
    """A chart as the page shows it: its SVG, or a one-line reason there is none, and a caption."""

    title: str
    svg: str | None
    message: str | None
    caption: str | None = None


@dataclass(frozen=True)
class Cell:
    """A formatted table cell; ``href`` is set for a trace cell with a usable link."""

    text: str
    numeric: bool
    href: str | None = None
    code: bool = False


@dataclass(frozen=True)
class TableView:
    """A section table ready for the template."""

    title: str
    headers: tuple[Cell, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class SectionView:
    """A section ready for the template: stat cards, charts, tables and notes."""

    anchor: str
    title: str
    cards: tuple[tuple[str, str], ...]
    charts: tuple[ChartView, ...]
    tables: tuple[TableView, ...]
    notes: tuple[str, ...]


def render_html(document: dict[str, Any]) -> str:
    """``document`` as one self-contained HTML page; RuntimeError when matplotlib or jinja2 is missing."""
    _require("matplotlib")
    environment = _environment()
    meta = document.get("report") or {}
    sections = _section_views(document.get("sections") or {})
    return environment.get_template(_TEMPLATE).render(
        title=f"otelkit report, {meta['period']}" if meta.get("period") else "otelkit report",
        meta=_meta_items(meta),
        generated_at=meta.get("generated_at"),
        sections=sections,
    )


def _require(name: str) -> None:
    """Import ``name`` now, turning its absence into a one-line error that says how to install it."""
    try:
        __import__(name)
    except ImportError as error:
        raise RuntimeError(_MISSING_DEPENDENCY.format(name=name)) from error


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """The jinja2 environment, autoescaping everything: the page shows user data as text."""
    _require("jinja2")
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(_TEMPLATES_DIR),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _meta_items(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """The header's label/value pairs describing what the report covers."""
    items = [("Period", str(meta.get("period", MISSING))), ("Window", window_text(meta))]
    previous = previous_window_text(meta)
    if previous is not None:
        items.append(("Compared with", previous))
    items.append(("Service", str(meta["service"]) if meta.get("service") else "all services"))
    items.append(("Source", str(meta.get("source") or MISSING)))
    return items


def _section_views(sections: dict[str, Any]) -> list[SectionView]:
    """Every section in document order, each with a unique anchor for the table of contents."""
    anchors: set[str] = set()
    return [_section_view(str(name), _anchor(str(name), anchors), section) for name, section in sections.items()]


def _anchor(name: str, taken: set[str]) -> str:
    """An HTML id for a section: lowercase letters, digits and dashes, unique within the page."""
    base = "section-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x")
    anchor, suffix = base, 2
    while anchor in taken:
        anchor, suffix = f"{base}-{suffix}", suffix + 1
    taken.add(anchor)
    return anchor


def _section_view(name: str, anchor: str, section: dict[str, Any]) -> SectionView:
    """A section's parts, formatted and drawn; its title falls back to its name."""
    tables = section.get("tables") or {}
    charts = tuple(
        _chart_view(chart, tables, salt=f"otelkit-{anchor}-{index}")
        for index, chart in enumerate(section.get("charts") or [])
    )
    return SectionView(
        anchor=anchor,
        title=str(section.get("title") or name),
        cards=_cards(section.get("fields") or [], section.get("values") or {}),
        charts=charts,
        tables=tuple(_table_view(table) for table in tables.values()),
        notes=tuple(str(note) for note in section.get("notes") or []),
    )


def _cards(fields: list[dict[str, Any]], values: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Stat cards (label, formatted value) of the described fields (other values are for JSON and CSV)."""
    return tuple((field_label(field), format_value(values.get(field_key(field)), field.get("format"))) for field in fields)


def _table_view(table: dict[str, Any]) -> TableView:
    """A table's labelled columns and formatted rows, numbers flagged for right alignment."""
    columns = table.get("columns") or []
    headers = tuple(Cell(field_label(column), is_numeric_format(column.get("format"))) for column in columns)
    rows = tuple(tuple(_cell(row, column) for column in columns) for row in table.get("rows") or [])
    return TableView(title=str(table.get("title", "")), headers=headers, rows=rows)


def _cell(row: dict[str, Any], column: dict[str, Any]) -> Cell:
    """A formatted cell; a trace id links to its row's URL when that is a usable http(s) link."""
    fmt = column.get("format")
    text = format_value(row.get(field_key(column)), fmt)
    if fmt != "trace" or text == MISSING:
        return Cell(text, is_numeric_format(fmt))
    return Cell(text, numeric=False, href=link_target(row, column), code=True)


def _chart_view(chart: dict[str, Any], tables: dict[str, Any], *, salt: str) -> ChartView:
    """A chart spec drawn as SVG, or the reason it cannot be drawn (unknown table or kind, no rows)."""
    title = str(chart.get("title", ""))
    table = tables.get(str(chart.get("table")))
    if table is None:
        return ChartView(title, None, f"no table {chart.get('table')!r} to chart")
    if chart.get("kind") not in _KINDS:
        return ChartView(title, None, f"unknown chart kind {chart.get('kind')!r}")
    data = chart_data(chart, table)
    if not data.categories:
        return ChartView(title, None, "no data")
    total = len(table.get("rows") or [])
    caption = f"first {len(data.categories)} of {total:,} rows" if total > len(data.categories) else None
    return ChartView(title, chart_svg(data, salt=salt), None, caption)


def chart_data(chart: dict[str, Any], table: dict[str, Any]) -> ChartData:
    """The x labels and y series a chart plots; category charts keep their first 25 rows."""
    kind = str(chart.get("kind"))
    rows = list(table.get("rows") or [])
    if kind in _BAR_KINDS:
        rows = rows[:_MAX_CATEGORIES]
    columns = {field_key(column): column for column in table.get("columns") or []}
    x_key = str(chart.get("x"))
    x_column = columns.get(x_key, {"key": x_key})
    categories = tuple(_label(format_value(row.get(x_key), x_column.get("format"))) for row in rows)
    series = tuple(_series(rows, columns.get(str(key), {"key": key})) for key in chart.get("y") or [])
    return ChartData(
        title=_label(str(chart.get("title", "")), limit=90),
        kind=kind,
        x_label=_label(field_label(x_column)),
        categories=categories,
        series=series,
    )


def _series(rows: list[dict[str, Any]], column: dict[str, Any]) -> Series:
    """One y column of ``rows`` as numbers, labelled as its table labels it."""
    values = tuple(_number(row.get(field_key(column))) for row in rows)
    return Series(_label(field_label(column)), column.get("format"), values)


def _number(value: Any) -> float:
    """A cell as a plottable number; anything that is not one (null, text) is a gap."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _label(text: str, limit: int = LABEL_LIMIT) -> str:
    """Text fit for a chart: short, with control characters visible (SVG is XML, which forbids them)."""
    return truncate(printable(text), limit)


def chart_svg(data: ChartData, *, salt: str) -> str:
    """``data`` drawn with matplotlib as an inline ``<svg>`` element, byte-identical across runs."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_style(salt)), warnings.catch_warnings():
        # A glyph the bundled font lacks (CJK, emoji) still reaches the SVG as text; no need to warn.
        warnings.simplefilter("ignore")
        figure = Figure(figsize=_figure_size(data), layout="constrained")
        _draw(figure, data)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buffer.getvalue()
    return _GROUP_ID.sub("<g>", svg[svg.index("<svg") :]).strip()


def _style(salt: str) -> dict[RcKeyType, Any]:
    """rcParams for a clean, deterministic chart; ``salt`` keeps SVG ids unique across the page."""
    return {
        "svg.hashsalt": salt,
        "svg.fonttype": "none",
        "text.parse_math": False,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
        "font.size": 9,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.edgecolor": "#9aa5b1",
        "axes.labelcolor": "#3e4c59",
        "axes.axisbelow": True,
        "grid.color": "#e4e7eb",
        "xtick.color": "#52606d",
        "ytick.color": "#52606d",
        "legend.frameon": False,
        "figure.facecolor": "white",
    }


def _figure_size(data: ChartData) -> tuple[float, float]:
    """Inches: wide and short, growing with what the labels need so the plot is never squeezed.

    An hbar grows with its categories; a vertical chart with rotated labels grows by the
    height its longest label takes at 45 degrees (about 0.053 inch per character at 9 pt).
    """
    if data.kind == "hbar":
        return 8.0, max(2.4, 0.3 * len(data.categories) + 1.2)
    if _crowded(list(data.categories)):
        return 8.0, 3.2 + 0.053 * max(len(label) for label in data.categories)
    return 8.0, 3.6


def _crowded(labels: list[str]) -> bool:
    """Whether category labels must be rotated so neighbours do not overlap."""
    return len(labels) > 8 or any(len(label) > 10 for label in labels)


def _draw(figure: Figure, data: ChartData) -> None:
    """One titled axes with the chart's kind; a legend only when several series share it."""
    axes = figure.add_subplot()
    axes.set_title(data.title)
    if data.kind == "line":
        _draw_line(axes, data)
    elif data.kind == "hbar":
        _draw_hbar(axes, data)
    else:
        _draw_bars(axes, data)
    if len(data.series) > 1:
        axes.legend(loc="best")


def _draw_line(axes: Axes, data: ChartData) -> None:
    """One line per series along the rows' order, x labels thinned to about a dozen."""
    positions = list(range(len(data.categories)))
    marker = "o" if len(positions) <= 60 else None
    for index, series in enumerate(data.series):
        axes.plot(
            positions,
            series.values,
            marker=marker,
            markersize=3,
            linewidth=1.8,
            color=_color(index),
            label=series.label,
        )
    step = max(1, math.ceil(len(positions) / _MAX_LINE_TICKS))
    _category_axis(axes.xaxis, positions[::step], list(data.categories[::step]))
    axes.grid(axis="y")
    axes.set_xlabel(data.x_label)
    _value_axis(axes.yaxis, data)
    axes.set_ylabel(_value_label(data))


def _draw_bars(axes: Axes, data: ChartData) -> None:
    """Vertical bars, grouped when there are several series; a histogram's bars touch."""
    positions = list(range(len(data.categories)))
    group = 0.95 if data.kind == "histogram" else 0.8
    width = group / max(1, len(data.series))
    for index, series in enumerate(data.series):
        offsets = [position + _offset(index, len(data.series), width) for position in positions]
        axes.bar(offsets, series.values, width=width, color=_color(index), label=series.label)
    _category_axis(axes.xaxis, positions, list(data.categories))
    axes.grid(axis="y")
    axes.set_xlabel(data.x_label)
    _value_axis(axes.yaxis, data)
    axes.set_ylabel(_value_label(data))


def _draw_hbar(axes: Axes, data: ChartData) -> None:
    """Horizontal bars, the first row on top, labels unrotated on the left."""
    positions = list(range(len(data.categories)))
    height = 0.8 / max(1, len(data.series))
    for index, series in enumerate(data.series):
        offsets = [position + _offset(index, len(data.series), height) for position in positions]
        axes.barh(offsets, series.values, height=height, color=_color(index), label=series.label)
    axes.set_yticks(positions, labels=list(data.categories))
    axes.invert_yaxis()
    axes.grid(axis="x")
    axes.set_ylabel(data.x_label)
    _value_axis(axes.xaxis, data)
    axes.set_xlabel(_value_label(data))


def _offset(index: int, count: int, width: float) -> float:
    """Where series ``index`` of ``count`` sits within a group of bars centred on its category."""
    return (index - (count - 1) / 2) * width


def _category_axis(axis: Axis, positions: list[int], labels: list[str]) -> None:
    """Category ticks, rotated when long or many so neighbours do not overlap."""
    axis.set_ticks(positions, labels=labels)
    if _crowded(labels):
        for tick in axis.get_ticklabels():
            tick.set_rotation(45)
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")


def _value_axis(axis: Axis, data: ChartData) -> None:
    """Value ticks shown in the first series' format ($, %, durations), whole numbers for counts."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fmt = data.series[0].format if data.series else None
    if fmt == "int":
        axis.set_major_locator(MaxNLocator(integer=True))
    if fmt in _TICK_FORMATS:
        axis.set_major_formatter(FuncFormatter(lambda value, _position: _label(_tick_text(value, fmt))))


def _tick_text(value: float, fmt: str) -> str:
    """A tick label: as the table shows it, except money drops the zeros a table keeps ($20, not $20.0000)."""
    if fmt == "usd":
        sign = "-" if value < 0 else ""
        return sign + "$" + f"{abs(value):,.4f}".rstrip("0").rstrip(".")
    return format_value(value, fmt)


def _value_label(data: ChartData) -> str:
    """The value axis names the series when there is one; several are named by the legend."""
    return data.series[0].label if len(data.series) == 1 else ""


def _color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]
