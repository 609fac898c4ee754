"""The reporting window: ``all`` or a count of minutes, hours, days or weeks (``90m``, ``24h``, ``7d``, ``2w``).

Parsing lives apart from querying so every command that takes ``--period`` (report, alerts,
top) accepts the same spellings and refuses the same mistakes with the same one-line message.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

_UNITS: dict[str, int] = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_PATTERN = re.compile(r"([0-9]+)([mhdw])")
_INT64_MIN = -(2**63)


class PeriodError(ValueError):
    """A ``--period`` value that cannot be parsed; the message is one line and names the value."""


@dataclass(frozen=True)
class Period:
    """A window ending now: ``seconds`` long, or unbounded when ``seconds`` is None."""

    label: str
    seconds: int | None

    @property
    def description(self) -> str:
        """How the window reads in a sentence: ``the last 24h`` or ``the store`` (for ``all``)."""
        return "the store" if self.seconds is None else f"the last {self.label}"

    def since_ns(self, now_ns: int | None = None) -> int | None:
        """The earliest span start (Unix ns) in the window, None when unbounded; clamped so SQLite can bind it."""
        if self.seconds is None:
            return None
        now = time.time_ns() if now_ns is None else now_ns
        return max(now - self.seconds * 1_000_000_000, _INT64_MIN)


def parse_period(text: str) -> Period:
    """``all``, or a positive whole number followed by m, h, d or w; anything else is a PeriodError."""
    value = text.strip().lower()
    if value == "all":
        return Period("all", None)
    match = _PATTERN.fullmatch(value)
    if match is None or int(match.group(1)) == 0:
        raise PeriodError(
            f"invalid period {text!r}: expected 'all' or a positive number with a unit m, h, d or w "
            "(for example 90m, 24h, 7d, 2w)"
        )
    amount, unit = int(match.group(1)), match.group(2)
    return Period(f"{amount}{unit}", amount * _UNITS[unit])
