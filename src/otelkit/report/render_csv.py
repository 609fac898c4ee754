"""Renders a report document (docs/report-format.md) as one long-form ("tidy") CSV document.

Sections hold differently shaped tables, and one CSV file can only have one header, so every
value becomes a line of its own::

    section,table,row,column,value
    llm,values,0,calls,1234                 # a section's "values": table "values", row 0
    llm,by_model,0,model,gpt-4o             # then each table's rows, row index from 0,
    llm,by_model,0,cost_usd,0.0123          #   one line per column key in column order,
    llm,by_model,0,trace_url,http://...     #   then any other key of the row (e.g. trace_url)

``section`` and ``table`` are keys of the document (not titles), ``column`` a field or column
key. Values are raw, never formatted: an int as written (``12345``), a float as Python's
shortest exact repr (``0.1``, ``1e-05``, ``nan``), a bool as ``true``/``false``, null as an empty
field (so null and an empty string read the same), a string as is. A key missing from a row
reads as null. A table with no rows has no lines. Lines end with ``\\n``; the csv module quotes
any value with a comma, quote or newline. Load it with e.g. ``pandas.read_csv`` and pivot on
``column`` to get one table back.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

HEADER = ("section", "table", "row", "column", "value")
VALUES_TABLE = "values"
"""The ``table`` a section's headline values are listed under."""


def render_csv(document: dict[str, Any]) -> str:
    """Every value of every section of ``document``, one CSV line each (see the module docstring)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for name, section in (document.get("sections") or {}).items():
        writer.writerows(_section_lines(str(name), section))
    return buffer.getvalue()


def raw_value(value: Any) -> str:
    """A scalar as CSV text, exact and unformatted: JSON's spelling of bools, empty for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _section_lines(name: str, section: dict[str, Any]) -> Iterator[tuple[str, str, int, str, str]]:
    """A section's values as row 0 of table ``values``, then each of its tables."""
    values = section.get("values") or {}
    field_keys = [str(field.get("key")) for field in section.get("fields") or []]
    for key in _ordered_keys(field_keys, values):
        yield name, VALUES_TABLE, 0, key, raw_value(values.get(key))
    for table_name, table in (section.get("tables") or {}).items():
        column_keys = [str(column.get("key")) for column in table.get("columns") or []]
        for index, row in enumerate(table.get("rows") or []):
            for key in _ordered_keys(column_keys, row):
                yield name, str(table_name), index, key, raw_value(row.get(key))


def _ordered_keys(declared: list[str], data: dict[str, Any]) -> list[str]:
    """The declared keys in order (present or not), then the data's undeclared keys in its order."""
    seen = set(declared)
    return [*declared, *(str(key) for key in data if key not in seen)]
