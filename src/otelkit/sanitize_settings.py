"""The policy's ``sanitize`` section: which secrets and PII are scrubbed, and how.

Owned by the sanitize stage (:mod:`otelkit.processors.sanitize`). What each rule matches lives
with the detectors (:mod:`otelkit.processors.detectors`); this module names the rules each
preset selects, so that a policy naming a rule that does not exist fails at load, with its key
and line, like every other bad setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from otelkit.config_errors import ConfigError

PRESETS = ("strict", "balanced", "off")
MODES = ("redact", "hash", "drop")
ENV_SANITIZE_KEY = "OTELKIT_SANITIZE_KEY"
MIN_VALUE_LENGTH = 64
MIN_HASH_KEY_LENGTH = 16

# Built-in rules, in the order they are applied; a rule may match keys, values or both.
BALANCED_RULES: tuple[str, ...] = (
    "password",
    "secret",
    "token",
    "api_key",
    "auth",
    "credential",
    "cookie",
    "session_cookie",
    "private_key",
    "credit_card",
    "us_ssn",
    "jwt",
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "anthropic_key",
    "openai_key",
    "stripe_key",
    "google_api_key",
    "url_userinfo",
    "url_query",
    "bearer_token",
    "labelled_secret",
    "email",
)
# What ``strict`` adds: personal-data keys, IP addresses, and long random-looking tokens.
STRICT_EXTRA_RULES: tuple[str, ...] = ("pii_key", "ipv4", "ipv6", "high_entropy")
BUILTIN_RULES: tuple[str, ...] = BALANCED_RULES + STRICT_EXTRA_RULES

_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")


def preset_rules(preset: str) -> tuple[str, ...]:
    """The built-in rule names a preset selects (before ``enable``/``disable``)."""
    if preset == "strict":
        return BUILTIN_RULES
    if preset == "balanced":
        return BALANCED_RULES
    return ()


def _check_mode(mode: str | None, field_name: str = "mode") -> None:
    if mode is not None and mode not in MODES:
        raise ConfigError(f"{field_name}: expected one of {', '.join(MODES)}, got {mode!r}")


def _check_rule_name(name: str, field_name: str = "name") -> None:
    if not _RULE_NAME.fullmatch(name):
        raise ConfigError(f"{field_name}: a rule name is lowercase letters, digits and '_' (at most 48), got {name!r}")


def _check_known(names: tuple[str, ...], known: tuple[str, ...], field_name: str) -> None:
    for name in names:
        if name not in known:
            raise ConfigError(f"{field_name}: unknown rule {name!r}; expected one of: {', '.join(known)}")


@dataclass(frozen=True)
class PatternRule:
    """A rule of the user's own: a regular expression with a name (shown in markers) and a mode.

    In ``value_patterns`` a group named ``secret`` limits the replacement to that group
    (``pin=(?P<secret>\\d{4})`` keeps ``pin=``); ``key_patterns`` match keys case-insensitively.
    """

    name: str = ""
    pattern: str = ""
    mode: str | None = None

    def __post_init__(self) -> None:
        _check_rule_name(self.name)
        if not self.pattern:
            raise ConfigError("pattern: a regular expression is required")
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(f"pattern: not a valid regular expression: {exc}") from None
        if compiled.fullmatch(""):
            raise ConfigError(f"pattern: {self.pattern!r} matches the empty string, so it would match everywhere")
        _check_mode(self.mode)


@dataclass(frozen=True)
class RuleMode:
    """A per-rule mode: ``{rule: email, mode: hash}`` keeps emails joinable without showing them."""

    rule: str = ""
    mode: str = "redact"

    def __post_init__(self) -> None:
        _check_rule_name(self.rule, "rule")
        _check_mode(self.mode)


@dataclass(frozen=True)
class SanitizeSettings:
    """On by default (``balanced``); ``strict`` scrubs more, ``off`` nothing at all."""

    preset: str = "balanced"
    mode: str = "redact"
    max_value_length: int = 4096
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    modes: tuple[RuleMode, ...] = ()
    key_patterns: tuple[PatternRule, ...] = ()
    value_patterns: tuple[PatternRule, ...] = ()
    allow_keys: tuple[str, ...] = ()
    hash_key: str | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: expected one of {', '.join(PRESETS)}, got {self.preset!r}")
        _check_mode(self.mode)
        if self.max_value_length != 0 and self.max_value_length < MIN_VALUE_LENGTH:
            raise ConfigError(
                f"max_value_length: expected 0 (no limit) or at least {MIN_VALUE_LENGTH}, got {self.max_value_length}"
            )
        _check_known(self.enable, BUILTIN_RULES, "enable")
        _check_known(self.disable, BUILTIN_RULES, "disable")
        self._check_patterns()
        _check_known(tuple(m.rule for m in self.modes), self.rule_names(), "modes")
        if any(not key for key in self.allow_keys):
            raise ConfigError("allow_keys: an empty key")
        if self.hash_key is not None and len(self.hash_key) < MIN_HASH_KEY_LENGTH:
            raise ConfigError(f"hash_key: use at least {MIN_HASH_KEY_LENGTH} characters")

    def _check_patterns(self) -> None:
        seen: set[str] = set(BUILTIN_RULES)
        for field_name, patterns in (("key_patterns", self.key_patterns), ("value_patterns", self.value_patterns)):
            for pattern in patterns:
                if pattern.name in seen:
                    raise ConfigError(f"{field_name}: the rule name {pattern.name!r} is already used")
                seen.add(pattern.name)

    def rule_names(self) -> tuple[str, ...]:
        """Every rule a ``modes`` entry may name: the built-in ones and the user's patterns."""
        return BUILTIN_RULES + tuple(p.name for p in self.key_patterns + self.value_patterns)
