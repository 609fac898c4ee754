"""The policy's ``sanitize`` section: which secrets and PII are scrubbed, and how.

Owned by the sanitize stage (:mod:`otelkit.processors.sanitize`).
"""

from __future__ import annotations

from dataclasses import dataclass

from otelkit.config_errors import ConfigError

PRESETS = ("strict", "balanced", "off")
MODES = ("redact", "hash", "drop")


@dataclass(frozen=True)
class SanitizeSettings:
    """On by default (``balanced``); ``strict`` scrubs more, ``off`` nothing."""

    preset: str = "balanced"
    mode: str = "redact"
    max_value_length: int = 4096

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: expected one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
