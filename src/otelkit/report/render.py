"""Renders a report document (docs/report-format.md) as JSON or as rich terminal tables.

Renderers return text instead of printing, so the CLI decides where it goes (stdout or
``--output``) and a file never receives terminal escape codes. Every cell, title and header is a
:class:`rich.text.Text`, so user data such as an operation named ``[tool] search`` is shown
verbatim rather than read as rich markup. Charts are drawn only by the HTML renderer.
"""

from __future__ import annotations

import io
import json
from typing import Any

from rich.console import Console, JustifyMethod
from rich.style import Style
from rich.table import Table
from rich.text import Text

from otelkit.report.formatting import (
    MISSING,
    field_key,
    field_label,
    format_value,
    heading_text,
    is_numeric_format,
    link_target,
    printable,
)

# Wide enough that plain output never wraps a row; tables still take only their natural width.
_PLAIN_WIDTH = 10_000

# Above this many fields a section's values read better as label/value lines than as one wide row.
_ONE_ROW_FIELDS = 8


def render_json(report: dict[str, Any]) -> str:
    """The report as indented JSON, newline-terminated."""
    return json.dumps(report, indent=2) + "\n"


def render_table(document: dict[str, Any], *, color: bool = False, width: int | None = None) -> str:
    """Every section of ``document`` as rich tables; plain text (no trailing blanks) unless ``color``."""
    buffer = io.StringIO()
    console = _console(buffer, color=color, width=width)
    console.print(_text(heading_text(document.get("report", {})), "bold"))
    sections = document.get("sections", {})
    if not sections:
        console.print(_text("no sections"))
    for name, section in sections.items():
        _print_section(console, str(name), section, color=color)
    text = buffer.getvalue()
    if color:
        return text
    return "".join(line.rstrip() + "\n" for line in text.splitlines())


def _console(buffer: io.StringIO, *, color: bool, width: int | None) -> Console:
    """A console writing into ``buffer``: escape codes only with ``color``, never markup or emoji."""
    return Console(
        file=buffer,
        force_terminal=color,
        no_color=not color,
        color_system="auto" if color else None,
        width=width or _PLAIN_WIDTH,
        highlight=False,
        emoji=False,
    )


def _text(value: str, style: str | Style = "") -> Text:
    """User data as a literal Text: never markup, control characters made visible."""
    return Text(printable(value), style=style)


def _print_section(console: Console, name: str, section: dict[str, Any], *, color: bool) -> None:
    """A section's title (its name when it has none), values, tables and notes, in that order."""
    console.print()
    console.print(_text(str(section.get("title") or name), "bold underline"))
    values = section.get("values") or {}
    if values:
        console.print(_values_table(section.get("fields") or [], values))
    for table in (section.get("tables") or {}).values():
        if table.get("rows"):
            console.print(_rows_table(table, color=color))
        else:
            console.print(_text(f"{table.get('title', '')}: none"))
    for note in section.get("notes") or []:
        console.print(_text(f"note: {note}", "dim"))


def _value_specs(fields: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields to show: those the builder described (other values are for JSON and CSV)."""
    return list(fields)


def _values_table(fields: list[dict[str, Any]], values: dict[str, Any]) -> Table:
    """Headline values: one row under labelled columns, or label/value lines when there are many."""
    specs = _value_specs(fields, values)
    if len(specs) <= _ONE_ROW_FIELDS:
        table = Table()
        for spec in specs:
            table.add_column(_text(field_label(spec)), justify=_justify(spec))
        table.add_row(*(_text(format_value(values.get(field_key(spec)), spec.get("format"))) for spec in specs))
        return table
    table = Table(show_header=False)
    table.add_column()
    table.add_column(justify="right")
    for spec in specs:
        table.add_row(_text(field_label(spec)), _text(format_value(values.get(field_key(spec)), spec.get("format"))))
    return table


def _rows_table(table: dict[str, Any], *, color: bool) -> Table:
    """One of a section's tables, columns labelled and numbers right-aligned."""
    columns = table.get("columns") or []
    rendered = Table(title=_text(str(table.get("title", ""))), title_justify="left")
    for column in columns:
        rendered.add_column(_text(field_label(column)), justify=_justify(column), overflow="fold")
    for row in table.get("rows") or []:
        rendered.add_row(*(_cell(row, column, color=color) for column in columns))
    return rendered


def _cell(row: dict[str, Any], column: dict[str, Any], *, color: bool) -> Text:
    """One formatted cell; a ``trace`` cell is a terminal hyperlink when colour is on and it has a URL."""
    value = row.get(field_key(column))
    shown = format_value(value, column.get("format"))
    if color and column.get("format") == "trace" and shown != MISSING:
        url = link_target(row, column)
        if url is not None:
            return _text(shown, Style(link=url))
    return _text(shown)


def _justify(spec: dict[str, Any]) -> JustifyMethod:
    return "right" if is_numeric_format(spec.get("format")) else "left"
