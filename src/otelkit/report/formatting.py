"""How a report document's values are shown, shared by the table and HTML renderers.

docs/report-format.md gives each field and column a ``format``; :func:`format_value` is the one
place that turns a raw value into the text a person reads, so the terminal and the HTML page
always agree. JSON and CSV keep raw values and do not use this module's formatting.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_FLOOR, Decimal
from typing import Any
from urllib.parse import urlsplit

MISSING = "-"
"""How null (and a value a format cannot show) reads, in every format."""

NUMERIC_FORMATS = frozenset({"int", "float", "ms", "rate", "share", "change", "usd", "duration_s", "score"})
"""Formats whose values are numbers: right-aligned in tables, plottable in charts."""

LABEL_LIMIT = 40
"""Chart category labels longer than this are cut, so one long name cannot squeeze the plot."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_LINK_SCHEMES = frozenset({"http", "https"})


def format_value(value: Any, fmt: str | None) -> str:
    """``value`` as docs/report-format.md says a ``fmt`` column shows it; null is always ``-``."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    formatter = _FORMATTERS.get(fmt or "text")
    if formatter is None or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return formatter(value)


def is_numeric_format(fmt: str | None) -> bool:
    """Whether a column of this format holds numbers (so it is right-aligned and plottable)."""
    return fmt in NUMERIC_FORMATS


def _int(value: float) -> str:
    return f"{round(value):,}"


def _float(value: float) -> str:
    """Up to 3 decimals: trailing zeros go, so 1.5 reads ``1.5`` and 2.0 reads ``2``."""
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _ms(value: float) -> str:
    return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.2f}"


def _rate(value: float) -> str:
    """Truncated to one decimal, so 0.9999 reads 99.9% and a failure never hides behind 100%.

    The decimal is taken from the float's shortest repr, so 0.29 is 29.0% rather than the
    28.9% its binary approximation (0.28999...) would truncate to.
    """
    tenths = (Decimal(repr(float(value))) * 1000).to_integral_value(rounding=ROUND_FLOOR)
    return f"{tenths / 10:.1f}%"


def _share(value: float) -> str:
    return f"{value:.1%}"


def _change(value: float) -> str:
    return f"{value:+.1%}"


def _usd(value: float) -> str:
    sign = "-" if value < 0 else ""
    amount = abs(value)
    return f"{sign}${amount:,.4f}" if amount < 100 else f"{sign}${amount:,.2f}"


def _duration_s(value: float) -> str:
    """``350ms`` under a second, ``12.3s`` under a minute, ``3m 05s`` under an hour, ``1h 02m`` beyond."""
    if value < 0:
        return "-" + _duration_s(-value)
    if round(value, 3) < 1:
        return f"{value * 1000:.1f}ms" if value < 0.01 else f"{value * 1000:.0f}ms"
    if round(value, 1) < 60:
        return f"{value:.1f}s"
    seconds = round(value)
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(round(value / 60), 60)
    return f"{hours}h {minutes:02d}m"


def _score(value: float) -> str:
    return f"{value:.1f}"


_FORMATTERS = {
    "int": _int,
    "float": _float,
    "ms": _ms,
    "rate": _rate,
    "share": _share,
    "change": _change,
    "usd": _usd,
    "duration_s": _duration_s,
    "score": _score,
}


def link_target(row: dict[str, Any], column: dict[str, Any]) -> str | None:
    """The URL a ``trace`` column's cell links to, or None.

    Only http(s) URLs without control characters or blanks count: a ``javascript:`` URL or an
    escape sequence hidden in stored data must not become a live link in a page or a terminal.
    """
    key = column.get("link")
    url = row.get(key) if key else None
    if not isinstance(url, str) or not url or _CONTROL.search(url) or any(c.isspace() for c in url):
        return None
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        return None
    return url if scheme.lower() in _LINK_SCHEMES else None


def printable(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN``, so stored data cannot drive a terminal."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def truncate(text: str, limit: int = LABEL_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_key(spec: dict[str, Any]) -> str:
    """A field's or column's key, the name its value goes by in ``values`` or a row."""
    return str(spec.get("key", ""))


def field_label(spec: dict[str, Any]) -> str:
    """A field's or column's label, falling back to its key when the builder gave none."""
    return str(spec.get("label") or field_key(spec))


def window_text(meta: dict[str, Any]) -> str:
    """The report window as ``since .. until``; an open end reads ``beginning`` or ``now``."""
    since = meta.get("since") or "beginning"
    until = meta.get("until") or "now"
    return f"{since} .. {until}"


def previous_window_text(meta: dict[str, Any]) -> str | None:
    """The comparison window as ``since .. until``, or None when the report has none."""
    since, until = meta.get("previous_since"), meta.get("previous_until")
    if since is None and until is None:
        return None
    return f"{since or 'beginning'} .. {until or 'now'}"


def heading_text(meta: dict[str, Any]) -> str:
    """One line naming what a report covers: period, window, service and data source."""
    parts = [f"otelkit report, period {meta.get('period', '?')} ({window_text(meta)})"]
    parts.append(f"service {meta['service']}" if meta.get("service") else "all services")
    if meta.get("source"):
        parts.append(f"source {meta['source']}")
    return ", ".join(parts)
