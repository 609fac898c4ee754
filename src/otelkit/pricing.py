"""Token prices and the cost of a GenAI call: the vendored table, policy overrides, lookups.

The table ships with otelkit (``otelkit/data/pricing.yaml``) and is never fetched at run time.
The policy's ``pricing`` section can replace it (``table``) and put entries in front of it
(``models``). The instrumentors price their own calls with it, the enrich stage prices spans
from other instrumentors, and ``otelkit report --reprice`` re-prices stored spans, so all
three agree.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from otelkit import semconv as sc
from otelkit.config import ConfigError, ModelPrice, Policy, current_policy, parse_document

# Provider names as spans spell them (gen_ai.provider.name, or the older gen_ai.system), mapped
# to the provider whose price list applies.
PROVIDER_FAMILIES: Mapping[str, str] = {
    "azure.ai.openai": "openai",
    "az.ai.openai": "openai",
    "gcp.gen_ai": "gcp.gemini",
    "gemini": "gcp.gemini",
    "mistralai": "mistral_ai",
}
# Platforms that serve several vendors' models under the vendors' names: priced by model alone.
MULTI_VENDOR_PROVIDERS = frozenset({"aws.bedrock", "gcp.vertex_ai", "vertex_ai", "openrouter"})
_GLOB_CHARS = frozenset("*?[")
# What may follow a table entry's name in a model id and still be that model: dated snapshots
# ("-2024-08-06", "-20250929", "-0613"), "-latest"/"-preview", and deployment tags ("-v1:0",
# "@20240620"). A version ("gpt-5.4", "claude-opus-4-8") is a different model, never a suffix.
_SNAPSHOT_SUFFIX = re.compile(r"(?:[-@](?:\d{8}|\d{4}-\d{2}-\d{2}|\d{4}|latest|preview))*(?:-v\d+(?::\d+)?)?")


@dataclass(frozen=True)
class PricingFile:
    """The layout of a pricing table file."""

    version: str = ""
    currency: str = "USD"
    models: tuple[ModelPrice, ...] = ()


def cost_usd(
    price: ModelPrice,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
) -> float:
    """The USD cost of one call. Input tokens include cached ones (GenAI conventions): each token
    is counted once, at the cache-read, cache-write or plain input price."""
    total_in = max(int(input_tokens or 0), 0)
    cached = min(max(int(cache_read_tokens or 0), 0), total_in)
    written = min(max(int(cache_write_tokens or 0), 0), total_in - cached)
    plain = total_in - cached - written
    cached_price = price.input if price.cached_input is None else price.cached_input
    write_price = price.input if price.cache_write is None else price.cache_write
    micro = (
        plain * price.input
        + cached * cached_price
        + written * write_price
        + max(int(output_tokens or 0), 0) * price.output
    )
    return micro / 1_000_000


def _normalize_model(model: str) -> str:
    """A model name without the vendor prefixes gateways add ("openai/gpt-4o", "anthropic.claude-...")."""
    name = model.strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[1]
    for vendor in ("anthropic.", "openai.", "google."):
        if name.startswith(vendor):
            name = name[len(vendor) :]
    return name


def _score(entry_model: str, model: str) -> int:
    """How specifically an entry matches a model: 0 for no match, longer matches score higher."""
    pattern = entry_model.lower()
    if _GLOB_CHARS.intersection(pattern):
        if fnmatch.fnmatchcase(model, pattern):
            return 1 + sum(1 for ch in pattern if ch not in _GLOB_CHARS)
        return 0
    if model == pattern:
        return 10_000
    if model.startswith(pattern) and _SNAPSHOT_SUFFIX.fullmatch(model, len(pattern)):
        return 1 + len(pattern)
    return 0


@dataclass
class PricingTable:
    """Prices in tiers: the policy's own entries first, then the table. The most specific match
    wins (exact, then the longest prefix or pattern); on a tie the earlier tier wins, so a policy
    entry replaces the table's entry for the same model without capturing its longer siblings."""

    tiers: tuple[tuple[ModelPrice, ...], ...]
    version: str = ""
    _cache: dict[tuple[str, str], ModelPrice | None] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def lookup(self, provider: str | None, model: str | None) -> ModelPrice | None:
        """The price of ``model`` from ``provider`` (any provider when None), or None if unpriced."""
        if not model:
            return None
        key = (provider or "", model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._find(provider, model)
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _find(self, provider: str | None, model: str) -> ModelPrice | None:
        if provider in MULTI_VENDOR_PROVIDERS:
            provider = None
        family = PROVIDER_FAMILIES.get(provider or "", provider or "")
        name = _normalize_model(model)
        best: ModelPrice | None = None
        best_score = 0
        for tier in self.tiers:
            for entry in tier:
                if provider and entry.provider and entry.provider != family and entry.provider != provider:
                    continue
                score = _score(entry.model, name)
                if score > best_score:
                    best, best_score = entry, score
        return best

    def price_attributes(self, attributes: Mapping[str, Any]) -> tuple[float | None, ModelPrice | None]:
        """The cost of the call a span's attributes describe, and the price used (None, None:
        unpriced, also when the token counts are not whole numbers)."""
        provider = attributes.get(sc.GEN_AI_PROVIDER_NAME) or attributes.get(sc.GEN_AI_SYSTEM)
        model = attributes.get(sc.GEN_AI_RESPONSE_MODEL) or attributes.get(sc.GEN_AI_REQUEST_MODEL)
        price = self.lookup(str(provider) if provider else None, str(model) if model else None)
        input_tokens = _int(attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS))
        output_tokens = _int(attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
        if price is None or (input_tokens is None and output_tokens is None):
            return None, None  # nothing to price, or no countable tokens: unpriced, never $0
        cost = cost_usd(
            price,
            input_tokens,
            output_tokens,
            _int(attributes.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS)),
            _int(
                attributes.get(sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS)
                or attributes.get(sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS)
            ),
        )
        return cost, price


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        return None


def has_usage(attributes: Mapping[str, Any] | None) -> bool:
    """Whether a span's attributes carry token counts (and so can be priced)."""
    return bool(attributes) and (
        sc.GEN_AI_USAGE_INPUT_TOKENS in attributes or sc.GEN_AI_USAGE_OUTPUT_TOKENS in attributes  # type: ignore[operator]
    )


def _read_file(text: str, source: str) -> PricingFile:
    table: PricingFile = parse_document(PricingFile, text, source)
    return table


def vendored_table_text() -> str:
    """The pricing table that ships with otelkit."""
    return resources.files("otelkit").joinpath("data", "pricing.yaml").read_text(encoding="utf-8")


def load_table(policy: Policy) -> PricingTable:
    """The pricing table a policy asks for; raises ConfigError for an unreadable or invalid file."""
    settings = policy.pricing
    if settings.table:
        try:
            text = Path(settings.table).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"pricing.table: cannot read {settings.table}: {exc.strerror or exc}") from None
        base = _read_file(text, settings.table)
    else:
        base = _read_file(vendored_table_text(), "otelkit/data/pricing.yaml")
    tiers = (settings.models, base.models) if settings.models else (base.models,)
    return PricingTable(tiers=tiers, version=base.version)


_current: tuple[Policy, PricingTable] | None = None


def current_table() -> PricingTable:
    """The table for the process-wide policy, loaded once; a broken override falls back to the
    vendored table with one logged error (instrumented programs never fail over prices)."""
    global _current
    policy = current_policy()
    if _current is None or _current[0] is not policy:
        try:
            table = load_table(policy)
        except ConfigError as exc:
            logging.getLogger("otelkit").error("otelkit: %s; using the vendored pricing table", exc)
            table = load_table(Policy())
        _current = (policy, table)
    return _current[1]
