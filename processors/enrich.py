"""Enrich stage: derived attributes that reports and alert rules rely on, computed once per span.

- ``otelkit.error.category`` for failed spans: from the exception or ``error.type`` first
  (its type name, then an HTTP status), from the message second, else ``tool_error`` for tools
  and ``unknown`` for the rest.
- ``otelkit.performance.category`` (fast | normal | slow | very_slow) from per-operation-type
  thresholds in the policy (``enrich.performance``).
- ``otelkit.process.memory.rss`` (bytes) at the end of command and step operations, read with
  psutil at most every :data:`MEMORY_READ_INTERVAL_S` (a read costs ~20 µs; memory moves slowly).
- Cost from tokens: any span that carries ``gen_ai.usage.*`` token counts and no cost (spans
  from contrib's openai-v2, OpenLLMetry, or hand-made ones) is priced from the pricing table, so
  every GenAI span in the store has a cost or says why not (``otelkit.cost.status=unpriced``).

All of it lands in one new span per input span (never a mutated SDK object).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from otelkit import semconv as sc
from otelkit.config import Policy
from otelkit.enrich_settings import PerformanceThresholds
from otelkit.pricing import PricingTable, current_table
from otelkit.processors.chain import replace_span, with_attributes

_PRICED = sc.CostStatus.PRICED.value
_ESTIMATED = sc.CostStatus.ESTIMATED.value
_UNPRICED = sc.CostStatus.UNPRICED.value
MEMORY_READ_INTERVAL_S = 0.05
MEMORY_OPERATIONS = frozenset({sc.OperationType.COMMAND.value, sc.OperationType.STEP.value})


# --- cost -------------------------------------------------------------------------------------
def cost_updates(attrs: Mapping[str, Any], table: PricingTable) -> dict[str, Any]:
    """The cost attributes a token-bearing span lacks (nothing when it needs none)."""
    if sc.GEN_AI_USAGE_INPUT_TOKENS not in attrs and sc.GEN_AI_USAGE_OUTPUT_TOKENS not in attrs:
        return {}
    status = attrs.get(sc.COST_STATUS)
    if sc.GEN_AI_USAGE_COST in attrs:
        return {} if status is not None else {sc.COST_STATUS: _PRICED}
    try:
        cost, _ = table.price_attributes(attrs)
    except ArithmeticError:  # a token count no integer holds (inf): unpriced, not the whole stage lost
        cost = None
    if cost is None:
        return {} if status == _UNPRICED else {sc.COST_STATUS: _UNPRICED}
    return {sc.GEN_AI_USAGE_COST: cost, sc.COST_STATUS: _ESTIMATED if status == _ESTIMATED else _PRICED}


class CostStage:
    """Prices token-bearing spans that have no cost; leaves a cost already present alone."""

    __name__ = "enrich.cost"

    def __init__(self, table: Callable[[], PricingTable] = current_table) -> None:
        self._table = table

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        attrs = span.attributes
        if not attrs:
            return span
        updates = cost_updates(attrs, self._table())
        return with_attributes(span, updates) if updates else span


# --- error category ---------------------------------------------------------------------------
ERROR_CATEGORIES = (
    "timeout", "network", "rate_limit", "auth", "permission", "not_found", "validation", "memory",
    "database", "tool_error", "unknown",
)  # fmt: skip

# Exception type names (the last dotted part), exact, then by a word they contain. Order
# matters: the first category whose rule matches wins ("ReadTimeoutError" is a timeout).
_TYPE_NAMES: dict[str, str] = {
    "TimeoutError": "timeout", "timeout": "timeout", "CancelledError": "timeout",
    "ConnectionError": "network", "ConnectionRefusedError": "network", "ConnectionResetError": "network",
    "ConnectionAbortedError": "network", "BrokenPipeError": "network", "gaierror": "network",
    "herror": "network", "SSLError": "network", "APIConnectionError": "network",
    "RateLimitError": "rate_limit", "TooManyRequests": "rate_limit", "ThrottlingException": "rate_limit",
    "AuthenticationError": "auth", "Unauthorized": "auth", "InvalidAPIKey": "auth", "NotAuthenticated": "auth",
    "PermissionError": "permission", "PermissionDeniedError": "permission", "Forbidden": "permission",
    "AccessDenied": "permission",
    "FileNotFoundError": "not_found", "NotFoundError": "not_found", "NotFound": "not_found",
    "ModuleNotFoundError": "not_found", "KeyError": "not_found", "LookupError": "not_found",
    "IndexError": "not_found", "DoesNotExist": "not_found", "TemplateNotFound": "not_found",
    "ValueError": "validation", "TypeError": "validation", "ValidationError": "validation",
    "BadRequestError": "validation", "UnprocessableEntityError": "validation", "JSONDecodeError": "validation",
    "UsageError": "validation", "BadParameter": "validation", "UndefinedError": "validation",
    "AssertionError": "validation",
    "InternalServerError": "network", "ServiceUnavailableError": "network", "BadGatewayError": "network",
    "APIStatusError": "network", "OverloadedError": "rate_limit",
    "MemoryError": "memory", "RecursionError": "memory",
    "OperationalError": "database", "DatabaseError": "database", "IntegrityError": "database",
    "ProgrammingError": "database", "InterfaceError": "database", "SQLAlchemyError": "database",
}  # fmt: skip
_TYPE_WORDS: tuple[tuple[str, str], ...] = (
    ("timeout", "timeout"), ("ratelimit", "rate_limit"), ("throttl", "rate_limit"),
    ("connect", "network"), ("network", "network"), ("dns", "network"),
    ("auth", "auth"), ("credential", "auth"), ("permission", "permission"), ("forbidden", "permission"),
    ("notfound", "not_found"), ("missing", "not_found"), ("valid", "validation"), ("parse", "validation"),
    ("memory", "memory"), ("database", "database"), ("sql", "database"), ("db", "database"),
)  # fmt: skip
_STATUS_CATEGORIES = {401: "auth", 403: "permission", 404: "not_found", 408: "timeout", 429: "rate_limit", 504: "timeout"}
_MESSAGE_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), category)
    for pattern, category in (
        (r"timed? ?out|deadline exceeded", "timeout"),
        (r"rate.?limit|too many requests|\b429\b|quota", "rate_limit"),
        (r"unauthori[sz]ed|authenticat|invalid (api )?key|\b401\b", "auth"),
        (r"permission denied|forbidden|access denied|not permitted|\b403\b", "permission"),
        (r"connection (refused|reset|aborted)|unreachable|name or service not known|"
         r"temporary failure in name resolution|network|\bdns\b", "network"),
        (r"not found|no such file|does not exist|\b404\b", "not_found"),
        (r"out of memory|cannot allocate|memoryerror", "memory"),
        (r"database|sqlite|deadlock|database is locked|sql", "database"),
        (r"invalid|validation|must be|expected|malformed|bad request|\b400\b|\b422\b", "validation"),
    )
)  # fmt: skip


def _category_of_type(type_name: str) -> str | None:
    short = type_name.rsplit(".", 1)[-1]
    exact = _TYPE_NAMES.get(short)
    if exact is not None:
        return exact
    if short.isdigit():
        status = int(short)
        if 400 <= status < 600:
            return _STATUS_CATEGORIES.get(status, "validation" if status < 500 else "network")
        return None
    lowered = short.lower()
    for word, category in _TYPE_WORDS:
        if word in lowered:
            return category
    return None


def _category_of_message(message: str) -> str | None:
    for pattern, category in _MESSAGE_RULES:
        if pattern.search(message):
            return category
    return None


def error_category(span: ReadableSpan) -> str | None:
    """The error category of a failed span (None for a span that did not fail)."""
    attrs = span.attributes or {}
    error_type = attrs.get(sc.ERROR_TYPE)
    failed = span.status.status_code is StatusCode.ERROR or error_type is not None
    if not failed:
        return None
    types: list[str] = []
    messages: list[str] = []
    for event in span.events:
        if event.name == "exception" and event.attributes:
            if event.attributes.get(sc.EXCEPTION_TYPE):
                types.append(str(event.attributes[sc.EXCEPTION_TYPE]))
            if event.attributes.get(sc.EXCEPTION_MESSAGE):
                messages.append(str(event.attributes[sc.EXCEPTION_MESSAGE]))
    if error_type is not None:
        types.append(str(error_type))
    status_code = attrs.get("http.response.status_code") or attrs.get("http.status_code")
    if isinstance(status_code, int):
        types.append(str(status_code))
    for type_name in types:
        category = _category_of_type(type_name)
        if category is not None:
            return category
    if span.status.description:
        messages.append(span.status.description)
    for message in messages:
        category = _category_of_message(message)
        if category is not None:
            return category
    if sc.operation_type_of(dict(attrs)) == sc.OperationType.TOOL.value:
        return "tool_error"
    return "unknown"


# --- performance and memory -------------------------------------------------------------------
class PerformanceClassifier:
    """Duration thresholds per operation type, looked up once per type."""

    def __init__(self, thresholds: Sequence[PerformanceThresholds]) -> None:
        self._by_type = {t.operation_type: t for t in thresholds}
        self._default = self._by_type.get("*", PerformanceThresholds())

    def category(self, op_type: str | None, duration_ns: int) -> str:
        limits = self._by_type.get(op_type or "*", self._default)
        duration_ms = duration_ns / 1e6
        if duration_ms < limits.normal_ms:
            return "fast"
        if duration_ms < limits.slow_ms:
            return "normal"
        if duration_ms < limits.very_slow_ms:
            return "slow"
        return "very_slow"


class MemoryReader:
    """This process's resident set size, read with psutil at most every ``interval_s``."""

    def __init__(self, interval_s: float = MEMORY_READ_INTERVAL_S) -> None:
        import psutil

        self._process = psutil.Process()
        self._interval = interval_s
        self._lock = threading.Lock()
        self._value = 0
        self._read_at = float("-inf")

    def rss(self) -> int:
        now = time.monotonic()
        if now - self._read_at >= self._interval:
            with self._lock:
                if now - self._read_at >= self._interval:
                    self._value = int(self._process.memory_info().rss)
                    self._read_at = now
        return self._value


class EnrichStage:
    """Error category, performance category, process memory and cost, in one copy of the span."""

    __name__ = "enrich"

    def __init__(
        self,
        thresholds: Sequence[PerformanceThresholds],
        memory: bool = True,
        table: Callable[[], PricingTable] = current_table,
    ) -> None:
        self._performance = PerformanceClassifier(thresholds)
        self._memory = MemoryReader() if memory else None
        self._table = table

    @classmethod
    def from_policy(cls, policy: Policy) -> "EnrichStage":
        return cls(policy.enrich.performance, policy.enrich.memory)

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        # One plain copy: lookups of absent keys on the SDK's attribute mapping raise and catch
        # a KeyError each (~1 µs), and the copy is the new span's attributes anyway.
        attrs = dict(span.attributes) if span.attributes else {}
        op_type = attrs.get(sc.OPERATION_TYPE)
        if op_type is None and sc.GEN_AI_OPERATION_NAME in attrs:
            op_type = sc.operation_type_of(attrs)
        updates: dict[str, Any] = {}
        if span.end_time is not None and span.start_time is not None:
            updates[sc.PERFORMANCE_CATEGORY] = self._performance.category(
                op_type if isinstance(op_type, str) else None, span.end_time - span.start_time
            )
        if span.status.status_code is StatusCode.ERROR or sc.ERROR_TYPE in attrs:
            if sc.ERROR_CATEGORY not in attrs:
                updates[sc.ERROR_CATEGORY] = error_category(span)
        if self._memory is not None and op_type in MEMORY_OPERATIONS:
            updates[sc.PROCESS_MEMORY_RSS] = self._memory.rss()
        if attrs:
            updates.update(cost_updates(attrs, self._table()))
        if not updates:
            return span
        attrs.update(updates)
        return replace_span(span, attributes=attrs)
