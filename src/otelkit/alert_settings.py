"""The policy's ``alerts`` section: threshold rules over finished spans and where alerts go.

Owned by the alerting stage (:mod:`otelkit.processors.alerting`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertSettings:
    """No rules by default; alerts go to the log and the store."""

    enabled: bool = True
