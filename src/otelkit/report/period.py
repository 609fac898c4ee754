"""The reporting window: ``all``, a length back from now (``90m``, ``24h``, ``7d``, ``2w``), or
two points in time ``SINCE..UNTIL`` (ISO 8601 dates or times; UTC unless they name an offset;
either side may be empty for an open end: ``2026-11-01..``).

Parsing lives apart from querying so every command that takes ``--period`` (report, alerts,
top) accepts the same spellings and refuses the same mistakes with the same one-line message.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

_UNITS: dict[str, int] = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PATTERN = re.compile(r"([0-9]+)([mhdw])")
_INT64_MIN = -(2**63)
_NS = 1_000_000_000


class PeriodError(ValueError):
    """A ``--period`` value that cannot be parsed; the message is one line and names the value."""


@dataclass(frozen=True)
class Period:
    """A window ending now (``seconds`` long, or unbounded when ``seconds`` is None), or between
    two fixed times (``start_ns``/``end_ns``, either None for an open end)."""

    label: str
    seconds: int | None
    start_ns: int | None = None
    end_ns: int | None = None
    fixed: bool = False

    @property
    def description(self) -> str:
        """How the window reads in a sentence: ``the last 24h``, ``the store`` or ``2026-11-01..2026-11-08``."""
        if self.fixed:
            return self.label
        return "the store" if self.seconds is None else f"the last {self.label}"

    def since_ns(self, now_ns: int | None = None) -> int | None:
        """The earliest span start (Unix ns) in the window, None when unbounded; clamped so SQLite can bind it."""
        if self.fixed:
            return self.start_ns
        if self.seconds is None:
            return None
        now = time.time_ns() if now_ns is None else now_ns
        return max(now - self.seconds * _NS, _INT64_MIN)

    def until_ns(self, now_ns: int | None = None) -> int | None:
        """The end of the window (exclusive), None when open: a window back from now has no end,
        so spans stamped a little in the future (clock skew) still count."""
        return self.end_ns if self.fixed else None

    def previous(self, now_ns: int | None = None) -> tuple[int, int] | None:
        """The window of the same length just before this one, for comparisons (None when unbounded)."""
        since = self.since_ns(now_ns)
        if since is None:
            return None
        if self.fixed:
            if self.end_ns is None:
                return None
            length = self.end_ns - since
        else:
            length = (self.seconds or 0) * _NS
        return since - length, since


def _instant(text: str, whole: str) -> int:
    """Unix ns of an ISO 8601 date or date-time (UTC unless it names an offset)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PeriodError(
            f"invalid period {whole!r}: {text!r} is not an ISO 8601 date or time (for example 2026-11-01 or "
            "2026-11-01T08:30)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * _NS + delta.microseconds * 1000


def _fixed(text: str) -> Period:
    since_text, until_text = (part.strip() for part in text.split("..", 1))
    if not since_text and not until_text:
        raise PeriodError(f"invalid period {text!r}: give a start, an end, or both around '..'")
    start = _instant(since_text, text) if since_text else None
    end = _instant(until_text, text) if until_text else None
    if start is not None and end is not None and end <= start:
        raise PeriodError(f"invalid period {text!r}: the end is not after the start")
    return Period(text.strip(), None if start is None or end is None else (end - start) // _NS, start, end, True)


def parse_period(text: str) -> Period:
    """``all``, a positive whole number followed by m, h, d or w, or ``SINCE..UNTIL``; anything
    else is a PeriodError."""
    value = text.strip().lower()
    if value == "all":
        return Period("all", None)
    if ".." in value:
        return _fixed(text)
    match = _PATTERN.fullmatch(value)
    if match is None or int(match.group(1)) == 0:
        raise PeriodError(
            f"invalid period {text!r}: expected 'all', a positive number with a unit m, h, d or w "
            "(for example 90m, 24h, 7d, 2w), or SINCE..UNTIL in ISO 8601 (2026-11-01..2026-11-08)"
        )
    amount, unit = int(match.group(1)), match.group(2)
    return Period(f"{amount}{unit}", amount * _UNITS[unit])
