"""What keeps telemetry from ever breaking the user's program: failures are logged once and skipped."""

from __future__ import annotations

import logging

_log = logging.getLogger("otelkit.instrumentation")
_warned: set[str] = set()


def warn_once(what: str, exc: BaseException) -> None:
    """Log, once per ``what``, that otelkit failed at something; the program carries on untraced there."""
    if what not in _warned:
        _warned.add(what)
        _log.warning("otelkit: %s failed (%s: %s); the program continues untraced there", what, type(exc).__name__, exc)
