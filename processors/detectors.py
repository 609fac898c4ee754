"""What each sanitize rule matches, as data: key patterns, value detectors, and their checks.

A :class:`Rule` is plain data (name, key regex and/or value regex, mode, check) so that the
same rules can be rendered into the OpenTelemetry Collector's ``redaction`` processor: the
regexes use no look-around and no back-references (RE2 has neither), and flags are scoped
(``(?i:...)``). A ``check`` names a Python validator that narrows a value match where a regex
alone over-matches (Luhn for card numbers); a host without the check over-redacts, never
under-redacts. :func:`rules_for` resolves a policy's settings into the rules to apply, in order.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from otelkit import semconv as sc
from otelkit.sanitize_settings import BUILTIN_RULES, SanitizeSettings, preset_rules


@dataclass(frozen=True)
class Rule:
    """One scrubbing rule.

    ``key``: a regex searched, case-insensitively, in attribute (and JSON member) keys; a match
    scrubs the whole value. ``value``: a regex searched in string values; a group named
    ``secret`` limits the replacement to that group. ``literals`` (lowercase; every value match
    contains one of them, in any case) or else ``hint`` (a cheap regex every value match
    contains) only let clean values be skipped quickly; a rule with neither always runs.
    """

    name: str
    key: str | None = None
    value: str | None = None
    mode: str = "redact"
    check: str | None = None
    literals: tuple[str, ...] = ()
    hint: str | None = None


# Keys never scrubbed: ids that join telemetry (traces, sessions, conversations) and the
# attributes otelkit itself writes and reads back (operation type, sample rate, token counts).
SAFE_KEYS: frozenset[str] = frozenset(
    {
        sc.LOG_TRACE_ID,
        sc.LOG_SPAN_ID,
        sc.LOG_SESSION_ID,
        sc.SESSION_ID,
        sc.SERVICE_NAME,
        sc.GEN_AI_CONVERSATION_ID,
        sc.GEN_AI_RESPONSE_ID,
        sc.GEN_AI_TOOL_CALL_ID,
        sc.GEN_AI_OPERATION_NAME,
        sc.GEN_AI_PROVIDER_NAME,
        sc.GEN_AI_SYSTEM,
        sc.GEN_AI_REQUEST_MODEL,
        sc.GEN_AI_RESPONSE_MODEL,
        sc.GEN_AI_RESPONSE_FINISH_REASONS,
        sc.GEN_AI_REQUEST_MAX_TOKENS,
        sc.GEN_AI_REQUEST_TEMPERATURE,
        sc.GEN_AI_REQUEST_TOP_P,
        sc.GEN_AI_REQUEST_STREAM,
        sc.GEN_AI_REQUEST_CHOICE_COUNT,
        sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
        sc.GEN_AI_OUTPUT_TYPE,
        sc.GEN_AI_TOKEN_TYPE,
        sc.ERROR_TYPE,
        sc.OPERATION_TYPE,
        sc.OPERATION_OUTCOME,
        sc.TEMPLATE_CACHE_HIT,
        sc.TEMPLATE_PHASE,
        sc.TEMPLATE_OUTPUT_SIZE,
        sc.TOKENS_ESTIMATED_BY,
        sc.CONDITION_RESULT,
        sc.COST_STATUS,
        sc.ERROR_CATEGORY,
        sc.PERFORMANCE_CATEGORY,
        sc.SAMPLE_RATE,
        sc.SANITIZE_REDACTED,
        sc.SANITIZE_RULES,
        sc.PROCESS_MEMORY_RSS,
        sc.PROCESS_EXIT_CODE,
    }
)
SAFE_PREFIXES: tuple[str, ...] = ("gen_ai.usage.",)

_KEY_END = r"(?:$|[^a-z])"
_KEY_START = r"(?:^|[^a-z])"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# A label that says the value after it is a secret (``db_password: x``, ``X-Auth-Token=x``); no
# suffix after the word, so ``token_count: 5`` and ``password_length=8`` are not labels.
_LABEL = (
    r"(?:password|passwd|passphrase|pwd|secret|secret[-_]?key|token|api[-_]?key|apikey|access[-_]?key"
    r"|private[-_]?key|auth|authorization|credentials?)"
)

BUILTIN: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("password", key=rf"passw(?:or)?d|passphrase|{_KEY_START}(?:pass|pwd){_KEY_END}"),
        Rule("secret", key=r"secret"),
        # not token counts and types (``token_count``, ``tokens``, ``token_type``)
        Rule("token", key=r"token(?:$|[^a-z_]|_(?:id|value|secret|key)?(?:$|[^a-z]))"),
        Rule("api_key", key=r"(?:api|access|app|client|subscription|master)[-_. ]?key"),
        Rule("auth", key=rf"authori[sz]ation|authentication|auth{_KEY_END}"),
        Rule("credential", key=r"credential"),
        Rule("cookie", key=r"cookie"),
        Rule(
            "session_cookie",
            key=r"sess(?:ion)?[-_]?(?:key|secret|cookie)|sessionid|sessid|connect\.sid",
            value=(
                r"(?i:\b[a-z0-9_.-]{0,64}(?:sessid|sessionid|_session|session-token|\.sid)=)"
                r"(?P<secret>[^;\s&,\"'\[\]]+)"
            ),
            literals=("sessid", "sessionid", "_session", "session-token", ".sid"),
        ),
        Rule(
            "private_key",
            key=r"priv(?:ate)?[-_. ]?key|signing[-_. ]?key",
            # to the END line, or to the end of the text when it was cut off before it
            value=(
                r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                r"(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)"
            ),
            literals=("-----begin",),
        ),
        Rule(
            "credit_card",
            key=rf"card[-_. ]?(?:num|number|no){_KEY_END}|credit[-_. ]?card|{_KEY_START}cc[-_. ]?num|cvv|cvc",
            # The printed layouts (4-4-4-4, Amex 4-6-5) or 13-19 plain digits: a loose
            # "digits and separators" run would swallow a number next to the card (an SSN, a
            # date) and then fail the Luhn check as a whole.
            value=(
                r"\b(?:[2-6][0-9]{3}(?:[ -][0-9]{4}){3}|3[47][0-9]{2}[ -][0-9]{6}[ -][0-9]{5}"
                r"|[2-6][0-9]{12,18})\b"
            ),
            check="luhn",
            hint=r"[2-6][0-9]{3}[ -]?[0-9]{4}",
        ),
        Rule(
            "us_ssn",
            key=rf"{_KEY_START}ssn{_KEY_END}|social[-_. ]?security",
            value=r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
            check="ssn",
            hint=r"[0-9]{3}-[0-9]{2}-[0-9]{4}",
        ),
        Rule(
            "jwt",
            key=r"jwt",
            value=r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
            literals=("eyj",),
        ),
        Rule(
            "aws_access_key",
            value=r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
            literals=("akia", "asia", "abia", "acca"),
        ),
        Rule(
            "aws_secret_key",
            value=(
                r"(?i:aws[-_.]?secret[-_.]?(?:access[-_.]?)?key[\"']?\s*[:=]\s*[\"']?)"
                r"(?P<secret>[A-Za-z0-9/+=]{40,})"
            ),
            literals=("secret",),
        ),
        Rule(
            "github_token",
            value=r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
            literals=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        ),
        Rule(
            "gitlab_token",
            value=r"\bgl(?:pat|ptt|dt|rt|cbt|soat|ft|imt|oas)-[A-Za-z0-9_-]{20,}",
            literals=("glpat-", "glptt-", "gldt-", "glrt-", "glcbt-", "glsoat-", "glft-", "glimt-", "gloas-"),
        ),
        Rule(
            "slack_token",
            value=(
                r"\bxox[abposre]-[A-Za-z0-9-]{10,}"
                r"|https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+"
            ),
            literals=("xox", "hooks.slack.com"),
        ),
        Rule("anthropic_key", value=r"\bsk-ant-[A-Za-z0-9_-]{20,}", literals=("sk-ant-",)),
        Rule("openai_key", value=r"\bsk-[A-Za-z0-9_-]{20,}", check="letters_and_digits", literals=("sk-",)),
        Rule(
            "stripe_key",
            value=r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|\bwhsec_[A-Za-z0-9]{24,}",
            literals=("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"),
        ),
        Rule("google_api_key", value=r"\bAIza[A-Za-z0-9_-]{35}", literals=("aiza",)),
        Rule(
            "url_userinfo",
            value=r"(?i:\b[a-z][a-z0-9+.-]{0,30}://)(?P<secret>[^\s/?#@\[\]\"'<>]+)@",
            literals=("@",),
        ),
        Rule(
            "url_query",
            value=(
                r"(?i:[?&;][a-z0-9_.-]{0,64}(?:pass|pwd|secret|token|key|auth|sig|credential|code|session|sid|jwt)"
                r"[a-z0-9_.-]{0,64}=)(?P<secret>[^&#\s\"'<>\[\]]+)"
            ),
            literals=("=",),
        ),
        Rule("bearer_token", value=r"(?i:\bbearer\s+)(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)", literals=("bearer",)),
        Rule(
            "labelled_secret",
            value=(
                rf"(?i:(?:^|[^a-z0-9]){_LABEL}[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|digest|token)\s+)?)"
                r"(?P<secret>[^\s\"',;&\[\]{}()<>]+)"
            ),
            check="plain_value",
            literals=("pass", "pwd", "secret", "token", "key", "auth", "credential"),
        ),
        Rule(
            "email",
            value=r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b",
            literals=("@",),
        ),
        Rule(
            "pii_key",
            key=(
                rf"e-?mail|phone|mobile|birth|{_KEY_START}dob{_KEY_END}|(?:first|last|full|given|family|sur|user)"
                rf"[-_. ]?name|{_KEY_START}user\.id|enduser\.|client\.address|street|postal|zip[-_. ]?code"
            ),
        ),
        Rule(
            "ipv4",
            value=rf"\b(?:{_OCTET}\.){{3}}{_OCTET}\b",
            hint=r"[0-9]\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",
        ),
        Rule(
            "ipv6",
            value=r"(?i:(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4})",
            check="ipv6",
            hint=r":[0-9A-Fa-f]{0,4}:",
        ),
        Rule("high_entropy", value=r"[A-Za-z0-9+/_-]{32,}={0,2}", check="entropy", hint=r"[A-Za-z0-9+/_-]{32}"),
    )
}


_STRING_PREFIXES = frozenset({"f", "b", "r", "u", "rb", "br", "fr", "rf"})


def _secret(match: re.Match[str]) -> str:
    """The part of a match a rule replaces: the ``secret`` group when the rule has one."""
    if "secret" in match.re.groupindex:
        return match.group("secret") or ""
    return match.group(0)


def luhn(match: re.Match[str]) -> bool:
    """A card number: 13-19 digits whose Luhn checksum holds."""
    digits = [int(c) for c in match.group(0) if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def ssn(match: re.Match[str]) -> bool:
    """A US SSN: never area 000, 666 or 9xx, group 00 or serial 0000."""
    area, group, serial = match.group(0).split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def ipv6(match: re.Match[str]) -> bool:
    """A real IPv6 address standing on its own (not ``std::string`` or a clock time)."""
    text, start, end = match.string, match.start(), match.end()
    if (start > 0 and (text[start - 1].isalnum() or text[start - 1] in ":.")) or (
        end < len(text) and (text[end].isalnum() or text[end] == ":")
    ):
        return False
    try:
        ipaddress.IPv6Address(match.group(0))
    except ValueError:
        return False
    return True


def entropy(match: re.Match[str]) -> bool:
    """Random-looking: upper and lower case letters and digits, and over 4 bits per character."""
    token = match.group(0)
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token) and any(c.isdigit() for c in token)):
        return False
    counts = Counter(token)
    bits = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return bits > 4.0


def letters_and_digits(match: re.Match[str]) -> bool:
    """A key, not a hyphenated phrase: its body holds both letters and digits."""
    body = match.group(0)[3:]
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


def plain_value(match: re.Match[str]) -> bool:
    """A value, not code in a stack trace (``password = read(...)``, ``f"Bearer {t}"``) nor the
    bare scheme word of an ``Authorization`` value whose credentials were already redacted."""
    secret = _secret(match).lower()
    following = match.string[match.end() : match.end() + 1]
    if following and following in "([":
        return False
    if following and following in "\"'" and secret in _STRING_PREFIXES:
        return False
    return secret not in ("bearer", "basic", "digest", "token")


CHECKS: dict[str, Callable[[re.Match[str]], bool]] = {
    "luhn": luhn,
    "ssn": ssn,
    "ipv6": ipv6,
    "entropy": entropy,
    "letters_and_digits": letters_and_digits,
    "plain_value": plain_value,
}


def _selected(settings: SanitizeSettings) -> list[str]:
    chosen = set(preset_rules(settings.preset)) | set(settings.enable)
    chosen -= set(settings.disable)
    return [name for name in BUILTIN_RULES if name in chosen]


def rules_for(settings: SanitizeSettings) -> tuple[Rule, ...]:
    """The rules ``settings`` apply, in order, each with its effective mode.

    The user's patterns come first (their names win where they overlap a built-in detector),
    then the preset's built-in rules plus ``enable`` minus ``disable``. ``off`` applies none.
    """
    if settings.preset == "off":
        return ()
    overrides = {m.rule: m.mode for m in settings.modes}

    def mode(name: str, own: str | None = None) -> str:
        return overrides.get(name) or own or settings.mode

    user = [Rule(p.name, key=p.pattern, mode=mode(p.name, p.mode)) for p in settings.key_patterns]
    user += [Rule(p.name, value=p.pattern, mode=mode(p.name, p.mode)) for p in settings.value_patterns]
    builtin = [_with_mode(BUILTIN[name], mode(name)) for name in _selected(settings)]
    return tuple(user + builtin)


def _with_mode(rule: Rule, mode: str) -> Rule:
    return rule if rule.mode == mode else dataclasses.replace(rule, mode=mode)
