"""Sanitize stage: secrets and personal data scrubbed from spans and log records before export.

A :class:`Scrubber` applies the rules of :mod:`otelkit.processors.detectors` wherever text can
appear: attribute values (span, event, link, resource and log attributes; JSON held in a
string is parsed, scrubbed member by member and re-serialized), span and event names, the
status description and log bodies. A key that names a secret scrubs its whole value; a value
detector replaces only what it found. Replacements are markers (``[REDACTED:openai_key]``,
``[HASH:email:<16 hex>]``, ``[TRUNCATED:<length>]``) that later passes leave alone, so
scrubbing twice changes nothing.

:class:`SanitizeStage` is the chain stage (a new span, never a mutated one);
:class:`SanitizeLogRecordProcessor` does the same for log records in front of an export
processor; :func:`scrub_text` serves anything else that writes text out (alert sinks).

Cost: most spans carry short, clean values, so each key's decision and each short string's
result is cached, a combined literal gate rejects clean strings before any detector runs, and
numbers are skipped unless they could be card numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import hmac
import json
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Callable, Mapping, Pattern, Sequence

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, Status

from otelkit import semconv as sc
from otelkit.config import Policy, current_policy
from otelkit.processors.chain import replace_span
from otelkit.processors.detectors import CHECKS, SAFE_KEYS, SAFE_PREFIXES, Rule, rules_for
from otelkit.sanitize_settings import ENV_SANITIZE_KEY, SanitizeSettings

__all__ = [
    "FAILED_RULE",
    "MARKER",
    "TRUNCATED_RULE",
    "SanitizeLogRecordProcessor",
    "SanitizeStage",
    "Scrubber",
    "default_scrubber",
    "export_log_record_processor",
    "record_counts",
    "rules_for",
    "scrub_text",
]

_log = logging.getLogger(__name__)

MARKER: Pattern[str] = re.compile(r"\[(?:REDACTED:[a-z0-9_]+|HASH:[a-z0-9_]+:[0-9a-f]{16}|TRUNCATED:\d+)\]")
TRUNCATED_RULE = "truncated"
FAILED_RULE = "sanitize_error"
_FAILED_MARKER = f"[REDACTED:{FAILED_RULE}]"

_CACHE_LIMIT = 4096  # entries per cache (key decisions, short strings); a full cache starts over
_CACHE_VALUE_LENGTH = 512  # longer strings are rarely repeated, so not worth remembering
_RESOURCE_CACHE_LIMIT = 64
_ANCHORS = "@=_-."  # characters rare enough in clean text to rule out the literals holding them
_GATE_LENGTH = 256  # longer strings skip the combined literal gate (see _Gates.candidates)
_SCAN_MARGIN = 8192  # scanned past max_value_length, so a secret cut by truncation is still found
_SCAN_BACKOFF = 1024  # how far back from the scan's end a place between tokens is looked for
# Where no value rule's match runs on (a PEM block runs to the end anyway); not a space between
# digits, which a card number may hold.
_TOKEN_END = re.compile(r"[\t\r\n\"',;&\[\]{}()<>]|(?<![0-9]) | (?![0-9])")
_MAX_DEPTH = 32  # JSON and log-body nesting; deeper values fail closed
_CARD_RANGE = (10**12, 10**19)  # ints with 13-19 digits may be card numbers

_SAFE = object()  # key decision: never touched
_SCAN = object()  # key decision: scan the value
_DROP = object()  # value result: remove the attribute, member or element
_CLEAN = object()  # cached result: the string has nothing to scrub
_MISSING = object()
_JSON_START = frozenset("{[ \t\r\n")

# One random key per process when none is configured: hashes then join within a process only.
_PROCESS_KEY = secrets.token_bytes(32)
_warned_random_key = threading.Event()


@dataclass(frozen=True)
class _Compiled:
    """A rule ready to run: its regexes compiled and its check looked up once."""

    name: str
    mode: str
    key: Pattern[str] | None
    value: Pattern[str] | None
    check: Callable[[re.Match[str]], bool] | None
    has_secret_group: bool
    literals: tuple[str, ...]
    hint: Pattern[str] | None

    @classmethod
    def of(cls, rule: Rule) -> _Compiled:
        value = re.compile(rule.value) if rule.value else None
        return cls(
            name=rule.name,
            mode=rule.mode,
            key=re.compile(rule.key, re.IGNORECASE) if rule.key else None,
            value=value,
            check=CHECKS[rule.check] if rule.check else None,
            has_secret_group=value is not None and "secret" in value.groupindex,
            literals=rule.literals,
            hint=re.compile(rule.hint) if rule.hint and not rule.literals else None,
        )


class _Gates:
    """Which value rules could match a string, decided without running them.

    A short string takes one pass of a combined literal regex over its lowercased text; only
    when that hits is each literal looked up. A long string skips the combined pass (Python's
    regex alternation steps through every character, the C substring search does not), and
    literals holding a rare character are only looked for when that character is there.
    """

    def __init__(self, rules: Sequence[_Compiled]) -> None:
        self.rules = list(rules)
        by_literal: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            for literal in rule.literals:
                by_literal.setdefault(literal, []).append(index)
        literals = sorted(by_literal, key=len, reverse=True)
        self.gate = re.compile("|".join(map(re.escape, literals))) if literals else None
        groups: dict[str, list[tuple[str, list[int]]]] = {}
        for literal, indexes in by_literal.items():
            groups.setdefault(next((c for c in _ANCHORS if c in literal), ""), []).append((literal, indexes))
        self.groups = list(groups.items())
        self.hinted = [(i, rule.hint) for i, rule in enumerate(self.rules) if rule.hint is not None]
        self.always = [i for i, rule in enumerate(self.rules) if not rule.literals and rule.hint is None]

    def candidates(self, text: str) -> list[_Compiled]:
        """The rules to run on ``text``, in rule order (none for most clean strings)."""
        lowered = text.lower()
        chosen = set(self.always)
        if len(lowered) > _GATE_LENGTH or (self.gate is not None and self.gate.search(lowered)):
            for anchor, group in self.groups:
                if not anchor or anchor in lowered:
                    for literal, indexes in group:
                        if literal in lowered:
                            chosen.update(indexes)
        for index, hint in self.hinted:
            if hint.search(text):
                chosen.add(index)
        if not chosen:
            return []
        return [self.rules[i] for i in sorted(chosen)]


def _allow_regex(patterns: Sequence[str]) -> Pattern[str] | None:
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None


def _looks_like_json(text: str) -> bool:
    stripped = text.strip()
    return stripped[:1] + stripped[-1:] in ("{}", "[]")


def _scan_end(text: str, end: int) -> int:
    """Where scanning a long ``text`` stops, at most ``end``: just after the last character no
    secret runs across (whitespace, quotes, brackets, separators) near ``end``. A secret cut
    in half could be missed, and markers may shrink the text so far that truncation keeps it."""
    cut = end
    for match in _TOKEN_END.finditer(text, end - _SCAN_BACKOFF, end + 1):  # one past: see what follows
        if match.end() <= end:
            cut = match.end()
    return cut


def _canonical(value: Any) -> str:
    """The text a key-matched value is hashed as: equal values, equal hashes."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _plain(attributes: Any) -> Any:
    """The dict behind the SDK's ``BoundedAttributes``: iterating the wrapper costs a Python
    call per key, more than scrubbing a clean value; it is only read, never changed."""
    if type(attributes) is BoundedAttributes:
        inner = getattr(attributes, "_dict", None)
        if type(inner) is dict:
            return inner
    return attributes


def _stored(span: ReadableSpan) -> tuple[Any, Any, Any, Status, Resource]:
    """A span's attributes (the plain dict), events, links, status and resource as stored.

    The public properties copy on every access (a mapping proxy; tuples built under a lock),
    which costs more than scrubbing a clean span; the stored fields are only read, and the
    properties serve if the SDK ever stores them otherwise.
    """
    try:
        attributes, events, links = span._attributes, span._events, span._links
        status, resource = span._status, span._resource
    except AttributeError:
        return span.attributes, span.events, span.links, span.status, span.resource
    # a BoundedList's own __len__ is a Python call; its deque answers truthiness in C
    return _plain(attributes), getattr(events, "_dq", events), getattr(links, "_dq", links), status, resource


def record_counts(attributes: dict[str, Any], hits: Sequence[str]) -> None:
    """Add ``hits`` to the count and rule list ``attributes`` already carry (names, never values)."""
    previous = attributes.get(sc.SANITIZE_REDACTED)
    rules = attributes.get(sc.SANITIZE_RULES)
    names = set(rules) if isinstance(rules, (tuple, list)) else set()
    attributes[sc.SANITIZE_REDACTED] = (previous if type(previous) is int else 0) + len(hits)
    attributes[sc.SANITIZE_RULES] = tuple(sorted(names.union(hits)))


class Scrubber:
    """Scrubs keys, values and text by a fixed set of rules; thread-safe, shared by the span
    stage, the log processor and anything else that must not write secrets out."""

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        max_value_length: int = 4096,
        allow_keys: Sequence[str] = (),
        hash_key: bytes | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.max_value_length = max_value_length
        self.active = bool(self.rules) or max_value_length > 0
        compiled = [_Compiled.of(rule) for rule in self.rules]
        self._key_rules = [rule for rule in compiled if rule.key is not None]
        value_rules = [rule for rule in compiled if rule.value is not None]
        self._gates = _Gates(value_rules) if value_rules else None
        self._card = next((rule for rule in value_rules if rule.check is CHECKS["luhn"]), None)
        self._modes = {rule.name: rule.mode for rule in compiled}
        self._allow = _allow_regex(allow_keys)
        self._hash_key = hash_key or self._process_key()
        self._plans: dict[str, Any] = {}
        self._values: dict[str, Any] = {}
        self._resources: dict[int, tuple[Resource, Resource, tuple[str, ...]]] = {}
        self._last_resource: tuple[Resource, Resource, tuple[str, ...]] | None = None
        self.failures = 0

    @classmethod
    def from_settings(cls, settings: SanitizeSettings, environ: Mapping[str, str] | None = None) -> Scrubber:
        """The scrubber a policy's ``sanitize`` section asks for; ``OTELKIT_SANITIZE_KEY`` wins
        over ``hash_key``. ``off`` gives one that scrubs nothing."""
        if settings.preset == "off":
            return cls((), max_value_length=0)
        env = os.environ if environ is None else environ
        key = env.get(ENV_SANITIZE_KEY) or settings.hash_key
        return cls(
            rules_for(settings),
            max_value_length=settings.max_value_length,
            allow_keys=settings.allow_keys,
            hash_key=key.encode("utf-8") if key else None,
        )

    def _process_key(self) -> bytes:
        if any(rule.mode == "hash" for rule in self.rules) and not _warned_random_key.is_set():
            _warned_random_key.set()
            _log.warning(
                "otelkit: sanitize hashes values but no key is set (%s or sanitize.hash_key); using a "
                "random key for this process, so equal values hash alike only within it",
                ENV_SANITIZE_KEY,
            )
        return _PROCESS_KEY

    # --- keys -------------------------------------------------------------------------------

    def _plan(self, key: str) -> Any:
        """``_SAFE``, ``_SCAN`` or the key rule ``key`` matches; cached per key."""
        plan = self._plans.get(key)
        if plan is None:
            plan = self._decide(key)
            if len(self._plans) >= _CACHE_LIMIT:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _decide(self, key: str) -> Any:
        if key in SAFE_KEYS or key.startswith(SAFE_PREFIXES) or (self._allow is not None and self._allow.match(key)):
            return _SAFE
        return next((rule for rule in self._key_rules if rule.key is not None and rule.key.search(key)), _SCAN)

    def is_safe(self, key: str) -> bool:
        """Whether ``key`` is never scrubbed (correlation ids, otelkit's own keys, the allow-list)."""
        return self._plan(key) is _SAFE

    # --- markers ----------------------------------------------------------------------------

    def _marker(self, rule: _Compiled, secret: str) -> str:
        if rule.mode != "hash":
            return f"[REDACTED:{rule.name}]"
        if rule is self._card:
            secret = "".join(c for c in secret if c.isdigit())
        digest = hmac.new(self._hash_key, secret.encode("utf-8", "surrogatepass"), sha256).hexdigest()
        return f"[HASH:{rule.name}:{digest[:16]}]"

    def _apply_key_rule(self, rule: _Compiled, value: Any, found: list[str]) -> Any:
        if type(value) is str and MARKER.fullmatch(value):
            return value
        found.append(rule.name)
        return _DROP if rule.mode == "drop" else self._marker(rule, _canonical(value))

    # --- text -------------------------------------------------------------------------------

    def _scan_text(self, text: str, candidates: list[_Compiled], found: list[str]) -> tuple[str, bool]:
        """``text`` with every match of ``candidates`` replaced, and whether a drop-mode rule hit.

        The text is kept as pieces with markers apart, so no rule ever matches inside a marker
        (a hash's hex digits are no card number) and what earlier passes did is left alone.
        """
        pieces: list[tuple[str, bool]] = []
        position = 0
        for marker in MARKER.finditer(text):
            pieces += [(text[position : marker.start()], False), (marker.group(0), True)]
            position = marker.end()
        pieces.append((text[position:], False))
        before = len(found)
        dropped = False
        for rule in candidates:
            pieces, hit = self._apply(rule, pieces, found)
            dropped = dropped or (hit and rule.mode == "drop")
        if len(found) == before:
            return text, False
        return "".join(piece for piece, _ in pieces), dropped

    def _apply(
        self, rule: _Compiled, pieces: list[tuple[str, bool]], found: list[str]
    ) -> tuple[list[tuple[str, bool]], bool]:
        pattern = rule.value
        assert pattern is not None
        result: list[tuple[str, bool]] = []
        hit = False
        for text, protected in pieces:
            if protected or not text:
                result.append((text, protected))
                continue
            position = 0
            for match in pattern.finditer(text):
                start, end = match.span("secret") if rule.has_secret_group else match.span()
                if start >= end or (rule.check is not None and not rule.check(match)):
                    continue
                result += [(text[position:start], False), (self._marker(rule, text[start:end]), True)]
                found.append(rule.name)
                position, hit = end, True
            result.append((text[position:] if position else text, False))
        return result, hit

    def _truncate(self, text: str, found: list[str], length: int) -> str:
        """``text`` cut to ``max_value_length``, marker included, never through another marker;
        ``length`` is the original's, which the marker records."""
        suffix = f"[TRUNCATED:{length}]"
        cut = min(len(text), self.max_value_length - len(suffix))
        for marker in MARKER.finditer(text, max(0, cut - 100), min(len(text), cut + 100)):
            if marker.start() < cut < marker.end():
                cut = marker.start()
        found.append(TRUNCATED_RULE)
        return text[:cut] + suffix

    def _string(self, text: str, found: list[str], depth: int) -> Any:
        """A string value scrubbed (JSON parsed and scrubbed by key and value), or ``_DROP``."""
        cacheable = len(text) <= _CACHE_VALUE_LENGTH
        if cacheable:
            cached = self._values.get(text)
            if cached is _CLEAN:
                return text
            if cached is not None:
                found += cached[1]
                return cached[0]
        mine: list[str] = []
        result = self._string_uncached(text, mine, depth)
        if cacheable:
            if len(self._values) >= _CACHE_LIMIT:
                self._values.clear()
            self._values[text] = (result, tuple(mine)) if mine else _CLEAN
        found += mine
        return result

    def _string_uncached(self, text: str, found: list[str], depth: int) -> Any:
        limit = self.max_value_length
        if text and text[0] in _JSON_START and _looks_like_json(text):
            serialized = self._json(text, found, depth)
            if serialized is not None and limit and len(serialized) > limit:
                return self._truncate(serialized, found, len(serialized))
            if serialized is not None:
                return serialized
        scanned = text[: _scan_end(text, limit + _SCAN_MARGIN)] if limit and len(text) > limit + _SCAN_MARGIN else text
        result = scanned
        candidates = self._gates.candidates(scanned) if self._gates is not None else None
        if candidates:
            result, dropped = self._scan_text(scanned, candidates, found)
            if dropped:
                return _DROP
        if limit and (len(result) > limit or scanned is not text):
            return self._truncate(result, found, len(text))
        return result

    def _json(self, text: str, found: list[str], depth: int) -> str | None:
        """JSON text scrubbed member by member and re-serialized (unchanged if nothing was
        found), or None when it is not a JSON object or array after all."""
        try:
            parsed = json.loads(text)
        except ValueError:
            return None
        if not isinstance(parsed, (dict, list)):
            return None
        scrubbed = self._node(parsed, found, depth + 1)
        return text if scrubbed is parsed else json.dumps(scrubbed, ensure_ascii=False)

    # --- structured values ------------------------------------------------------------------

    def _int(self, value: int, found: list[str]) -> Any:
        card = self._card
        if card is None or card.value is None or not _CARD_RANGE[0] <= abs(value) < _CARD_RANGE[1]:
            return value
        digits = str(abs(value))
        match = card.value.fullmatch(digits)
        if match is None or (card.check is not None and not card.check(match)):
            return value
        found.append(card.name)
        return _DROP if card.mode == "drop" else self._marker(card, digits)

    def _node(self, value: Any, found: list[str], depth: int) -> Any:
        """Any value (attribute, JSON, log body) scrubbed; a drop removes a member or element."""
        if depth > _MAX_DEPTH:
            raise ValueError("value nested too deeply to scrub")
        kind = type(value)
        if kind is str:
            return self._string(value, found, depth)
        if kind is int:
            return self._int(value, found)
        if kind is dict:
            return self._mapping(value, found, depth)
        if kind is list or kind is tuple:
            return self._sequence(value, found, depth)
        if kind is bytes:
            return self._bytes(value, found, depth)
        # Subclasses (jinja2's Markup, a StrEnum, an OrderedDict, a namedtuple) hold text too
        if isinstance(value, str):
            text = str.__str__(value)
            scrubbed = self._string(text, found, depth)
            return value if scrubbed is text else scrubbed
        if isinstance(value, dict):
            return self._mapping(value, found, depth)
        if isinstance(value, (list, tuple)):
            return self._sequence(value, found, depth)
        return value

    def _member(self, key: str, value: Any, found: list[str], depth: int) -> Any:
        plan = self._plan(key)
        if plan is _SAFE:
            return value
        if plan is not _SCAN:
            return self._apply_key_rule(plan, value, found)
        return self._node(value, found, depth + 1)

    def _mapping(self, value: dict[Any, Any], found: list[str], depth: int) -> Any:
        result: dict[Any, Any] | None = None
        for key, item in value.items():
            scrubbed = self._member(str(key), item, found, depth)
            if scrubbed is item:
                continue
            if result is None:
                result = dict(value)
            if scrubbed is _DROP:
                del result[key]
            else:
                result[key] = scrubbed
        return value if result is None else result

    def _sequence(self, value: list[Any] | tuple[Any, ...], found: list[str], depth: int) -> Any:
        items = [self._node(item, found, depth + 1) for item in value]
        if all(new is old for new, old in zip(items, value)):
            return value
        kept = [item for item in items if item is not _DROP]
        return tuple(kept) if type(value) is tuple else kept

    def _bytes(self, value: bytes, found: list[str], depth: int) -> Any:
        # Bytes that are not UTF-8 (binary, Latin-1) can still hold ASCII secrets: scan them
        # with the undecodable bytes replaced, and pass them as they were when nothing is found.
        text = value.decode("utf-8", "replace")
        scrubbed = self._string(text, found, depth)
        return value if scrubbed is text else scrubbed

    # --- entry points -----------------------------------------------------------------------

    def record_failure(self, exc: BaseException, found: list[str]) -> str:
        """Fail closed: the value is replaced whole and counted, and the first failure logged
        (by type only: an exception's message may quote the value)."""
        self.failures += 1
        if self.failures == 1:
            _log.error("otelkit: sanitize could not scrub a value (%s); it was redacted whole", type(exc).__name__)
        found.append(FAILED_RULE)
        return _FAILED_MARKER

    def _guarded(self, scrub: Callable[[list[str]], Any], hits: list[str]) -> Any:
        found: list[str] = []
        try:
            result = scrub(found)
        except Exception as exc:  # one bad value must not let it, or any other, through
            found = []
            result = self.record_failure(exc, found)
        hits += found
        return result

    def scrub_attributes(self, attributes: Mapping[str, Any] | None, hits: list[str]) -> dict[str, Any] | None:
        """A scrubbed copy of ``attributes``, or None when nothing changed; rule names go to ``hits``."""
        if not attributes:
            return None
        plans, values, card = self._plans, self._values, self._card
        result: dict[str, Any] | None = None
        for key, value in attributes.items():
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
            if plan is _SAFE:
                continue
            text = False
            if plan is _SCAN:
                kind = type(value)
                if kind is str:
                    if values.get(value) is _CLEAN:
                        continue
                    text = True
                elif kind is bool or kind is float or value is None:
                    continue
                elif kind is int and (card is None or not _CARD_RANGE[0] <= abs(value) < _CARD_RANGE[1]):
                    continue
            found: list[str] = []
            try:  # a string to scan goes straight to _string, the common slow path
                scrubbed = self._string(value, found, 1) if text else self._member(key, value, found, 0)
            except Exception as exc:  # one bad value must not let it, or any other, through
                found = []
                scrubbed = self.record_failure(exc, found)
            hits += found
            if scrubbed is value:
                continue
            if result is None:
                result = dict(attributes)
            if scrubbed is _DROP:
                del result[key]
            else:
                result[key] = scrubbed
        return result

    def scrub_string(self, text: str, hits: list[str]) -> str:
        """``text`` scrubbed where it cannot be removed (a name, a status, a log body): a
        drop-mode match redacts it whole."""
        if self._values.get(text) is _CLEAN:
            return text
        found: list[str] = []
        result = self._guarded(lambda into: self._string(text, into, 0), found)
        hits += found
        if result is _DROP:
            return "[REDACTED:{}]".format(next(name for name in found if self._modes.get(name) == "drop"))
        return str(result)

    def scrub_text(self, text: str) -> str:
        """``text`` with every secret and piece of PII the rules find replaced by a marker."""
        return self.scrub_string(text, []) if self.active else text

    def scrub_body(self, body: Any, hits: list[str]) -> Any:
        """A log body scrubbed: text as :meth:`scrub_string`, structures member by member."""
        if isinstance(body, str):
            return self.scrub_string(body, hits)
        result = self._guarded(lambda found: self._node(body, found, 0), hits)
        return _FAILED_MARKER if result is _DROP else result

    def scrub_resource(self, resource: Resource) -> tuple[Resource, tuple[str, ...]]:
        """``resource`` scrubbed, and the rules that fired; worked out once per Resource object."""
        entry = self._last_resource
        if entry is None or entry[0] is not resource:
            entry = self._resources.get(id(resource))
            if entry is None or entry[0] is not resource:
                entry = self._scrub_new_resource(resource)
            self._last_resource = entry
        return entry[1], entry[2]

    def _scrub_new_resource(self, resource: Resource) -> tuple[Resource, Resource, tuple[str, ...]]:
        hits: list[str] = []
        attributes = self.scrub_attributes(_plain(resource.attributes), hits)
        scrubbed = resource if attributes is None else Resource(attributes, resource.schema_url)
        if len(self._resources) >= _RESOURCE_CACHE_LIMIT:
            self._resources.clear()
        entry = self._resources[id(resource)] = (resource, scrubbed, tuple(hits))
        return entry

    def scrub_span(self, span: ReadableSpan) -> ReadableSpan:
        """A scrubbed copy of ``span`` (attributes, name, events, links, status description,
        resource) that counts what was scrubbed, or ``span`` itself when nothing was."""
        hits: list[str] = []
        original, events, links, status, resource = _stored(span)
        attributes = self.scrub_attributes(original, hits)
        name = span.name
        if self._values.get(name) is not _CLEAN:
            name = self.scrub_string(name, hits)
        scrubbed_events = self._scrub_events(tuple(events), hits) if events else None
        scrubbed_links = self._scrub_links(tuple(links), hits) if links else None
        description = status.description
        if description:
            description = self.scrub_string(description, hits)
        scrubbed_resource, resource_hits = self.scrub_resource(resource)
        if not hits and not resource_hits:
            return span
        fields: dict[str, Any] = {"attributes": dict(original or {}) if attributes is None else attributes}
        record_counts(fields["attributes"], hits + list(resource_hits))
        if name is not span.name:
            fields["name"] = name
        if scrubbed_events is not None:
            fields["events"] = scrubbed_events
        if scrubbed_links is not None:
            fields["links"] = scrubbed_links
        if description is not status.description:
            fields["status"] = Status(status.status_code, description)
        if scrubbed_resource is not resource:
            fields["resource"] = scrubbed_resource
        return replace_span(span, **fields)

    def _scrub_events(self, events: tuple[Event, ...], hits: list[str]) -> tuple[Event, ...] | None:
        result: list[Event] = []
        for event in events:
            before = len(hits)
            attributes = self.scrub_attributes(_plain(event.attributes), hits)
            name = self.scrub_string(event.name, hits)
            if len(hits) == before:
                result.append(event)
                continue
            kept = event.attributes if attributes is None else attributes
            result.append(Event(name, kept, event.timestamp))
        return None if all(new is old for new, old in zip(result, events)) else tuple(result)

    def _scrub_links(self, links: tuple[Link, ...], hits: list[str]) -> tuple[Link, ...] | None:
        result: list[Link] = []
        for link in links:
            attributes = self.scrub_attributes(_plain(link.attributes), hits)
            result.append(link if attributes is None else Link(link.context, attributes))
        return None if all(new is old for new, old in zip(result, links)) else tuple(result)

    def scrub_log_record(self, record: ReadWriteLogRecord) -> ReadWriteLogRecord:
        """A scrubbed copy of ``record`` (body, attributes, resource), or ``record`` itself when
        there is nothing to scrub; the original is never changed."""
        if not self.active:
            return record
        api = record.log_record
        hits: list[str] = []
        body = self.scrub_body(api.body, hits)
        attributes = self.scrub_attributes(_plain(api.attributes), hits)
        resource, resource_hits = self.scrub_resource(record.resource) if record.resource is not None else (None, ())
        if not hits and not resource_hits:
            return record
        scrubbed = copy.copy(api)
        scrubbed.body = body
        scrubbed.attributes = dict(_plain(api.attributes) or {}) if attributes is None else attributes
        record_counts(scrubbed.attributes, hits + list(resource_hits))
        return ReadWriteLogRecord(
            log_record=scrubbed,
            resource=resource,
            instrumentation_scope=record.instrumentation_scope,
            limits=record.limits,
        )


class SanitizeStage:
    """The chain stage: a scrubbed copy of each span (attributes, name, events, links, status,
    resource) that records how many values were scrubbed and by which rules; a clean span
    passes as it is."""

    __name__ = "sanitize"

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber

    @classmethod
    def from_policy(cls, policy: Policy | None = None) -> SanitizeStage:
        """The stage for ``policy.sanitize`` (the process-wide policy by default)."""
        return cls(Scrubber.from_settings((policy or current_policy()).sanitize))

    @property
    def active(self) -> bool:
        """False for the ``off`` preset: the stage can then stay out of the chain."""
        return self.scrubber.active

    def __call__(self, span: ReadableSpan) -> ReadableSpan | None:
        if not self.scrubber.active:
            return span
        try:
            return self.scrubber.scrub_span(span)
        except Exception as exc:  # never raise into the app, never pass an unscrubbed span on
            self.scrubber.record_failure(exc, [])
            return self._fail_closed(span)

    def _fail_closed(self, span: ReadableSpan) -> ReadableSpan | None:
        """What is left of a span whose scrubbing failed: ids, times, kind, status code and safe
        keys (or nothing at all, if even that fails)."""
        try:
            safe = self.scrubber.is_safe
            attributes = {k: v for k, v in (span.attributes or {}).items() if safe(k)}
            record_counts(attributes, [FAILED_RULE])
            kept = {k: v for k, v in span.resource.attributes.items() if safe(k)}
            resource = Resource(kept, span.resource.schema_url)
            return replace_span(
                span,
                name=_FAILED_MARKER,
                attributes=attributes,
                events=(),
                links=(),
                status=Status(span.status.status_code),
                resource=resource,
            )
        except Exception:
            return None


class SanitizeLogRecordProcessor(LogRecordProcessor):
    """Hands the processor behind it (an export processor) a scrubbed copy of each log record;
    the record itself, which other processors may share, is left as it was."""

    def __init__(self, downstream: LogRecordProcessor, scrubber: Scrubber) -> None:
        self.downstream = downstream
        self.scrubber = scrubber

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        try:
            scrubbed = self.scrubber.scrub_log_record(log_record)
        except Exception as exc:  # fail closed: a record that could not be scrubbed is not exported
            self.scrubber.record_failure(exc, [])
            return
        self.downstream.on_emit(scrubbed)

    def enabled(self, **kwargs: Any) -> bool:
        return bool(self.downstream.enabled(**kwargs))

    def shutdown(self) -> None:
        self.downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.downstream.force_flush(timeout_millis))


def export_log_record_processor(
    policy: Policy | None = None,
    make_export: Callable[[LogRecordExporter], LogRecordProcessor] = BatchLogRecordProcessor,
) -> Callable[[LogRecordExporter], LogRecordProcessor]:
    """A factory for the SDK configurator's ``export_log_record_processor``: each exporter's
    processor (``make_export``) behind one scrubber for ``policy.sanitize``."""
    scrubber = Scrubber.from_settings((policy or current_policy()).sanitize)
    if not scrubber.active:
        return make_export

    def build(exporter: LogRecordExporter) -> LogRecordProcessor:
        return SanitizeLogRecordProcessor(make_export(exporter), scrubber)

    return build


_default: tuple[Policy, Scrubber] | None = None


def default_scrubber() -> Scrubber:
    """The scrubber for the process-wide policy (built again when the policy is reloaded)."""
    global _default
    policy = current_policy()
    if _default is None or _default[0] is not policy:
        _default = (policy, Scrubber.from_settings(policy.sanitize))
    return _default[1]


def scrub_text(text: str) -> str:
    """``text`` scrubbed by the process-wide policy: for alert messages, webhook bodies, logs."""
    return default_scrubber().scrub_text(text)


def resource_attributes(policy: Policy | None = None, given: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The resource attributes the SDK would build (``given`` plus ``OTEL_RESOURCE_ATTRIBUTES``
    and the detectors), scrubbed: handed to the configurator so every provider (traces, metrics,
    logs) starts from a clean resource. None when there is nothing to scrub."""
    scrubber = Scrubber.from_settings((policy or current_policy()).sanitize)
    if not scrubber.active:
        return None
    resource, rules = scrubber.scrub_resource(Resource.create(dict(given or {})))
    return dict(resource.attributes) if rules else None


def metrics_transform(policy: Policy | None = None) -> Callable[[MetricsData], MetricsData] | None:
    """A transform of collected metrics that scrubs every data point's attributes and the
    resources, for :func:`otelkit.instrumentation.aggregates.attach`: metric attributes carry
    operation names (span names), which can hold what a span name can. Attribute sets repeat
    every collection, so each distinct set is scrubbed once (bounded cache)."""
    scrubber = Scrubber.from_settings((policy or current_policy()).sanitize)
    if not scrubber.active:
        return None
    cache: dict[tuple[Any, ...], Mapping[str, Any]] = {}

    def attributes(original: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        if not original:
            return original
        key = tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in original.items()))
        found = cache.get(key)
        if found is None:
            scrubbed = scrubber.scrub_attributes(original, [])
            found = original if scrubbed is None else scrubbed
            if len(cache) >= 10_000:
                cache.clear()
            cache[key] = found
        return found

    def point(data_point: Any) -> Any:
        clean = attributes(data_point.attributes)
        return data_point if clean is data_point.attributes else dataclasses.replace(data_point, attributes=clean)

    def transform(data: MetricsData) -> MetricsData:
        resource_metrics = []
        for rm in data.resource_metrics:
            resource, _ = scrubber.scrub_resource(rm.resource)
            scopes = [
                dataclasses.replace(
                    sm,
                    metrics=[
                        dataclasses.replace(m, data=dataclasses.replace(m.data, data_points=[point(p) for p in m.data.data_points]))
                        for m in sm.metrics
                    ],
                )
                for sm in rm.scope_metrics
            ]
            resource_metrics.append(dataclasses.replace(rm, resource=resource, scope_metrics=scopes))
        return MetricsData(resource_metrics=resource_metrics)

    return transform
