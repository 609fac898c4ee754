"""The one error the policy and its sections raise (its own module so every section can import it)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A policy file or setting that cannot be used; the message is one line."""
