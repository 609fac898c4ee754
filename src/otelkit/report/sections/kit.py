"""What every report section shares: the context it reads from, and the small builders of the
document parts (fields, columns, tables, charts) described in ``docs/report-format.md``."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Callable, Iterable, Mapping, Sequence

from otelkit.pricing import PricingTable, cost_usd
from otelkit.report.period import Period
from otelkit.report.query import PERCENTILES, duration_stats
from otelkit.report.source import Source, WindowData
from otelkit.store.rollup import Key, Stats, histogram_percentile_ms

_NS = 1_000_000_000
DAY_NS = 86_400 * _NS
HOUR_NS = 3_600 * _NS
MINUTE_NS = 60 * _NS


def identity(text: str) -> str:
    return text


@dataclass
class Context:
    """A report's inputs: the store, the window and the options every section may use."""

    source: Source
    period: Period
    now_ns: int
    pricing: PricingTable
    jaeger_url: str | None = None
    scrub: Callable[[str], str] = identity
    exact: bool | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def conn(self) -> sqlite3.Connection:
        return self.source.conn

    @cached_property
    def since_ns(self) -> int | None:
        return self.period.since_ns(self.now_ns)

    @cached_property
    def until_ns(self) -> int | None:
        return self.period.until_ns(self.now_ns)

    @cached_property
    def data(self) -> WindowData:
        """The window's data (exact or from the rollups; see :mod:`otelkit.report.source`)."""
        return self.source.window(self.since_ns, self.until_ns, self.exact)

    @cached_property
    def previous(self) -> WindowData | None:
        """The window of the same length before this one, read from the rollups (None for ``all``)."""
        bounds = self.period.previous(self.now_ns)
        if bounds is None:
            return None
        return self.source.window(bounds[0], bounds[1], self.exact)

    @cached_property
    def by_key(self) -> dict[Key, Stats]:
        return self.data.by_key()

    @cached_property
    def session_count(self) -> int:
        return self.source.session_count(self.since_ns, self.until_ns)

    def error_series(self, resolution_s: int) -> dict[int, tuple[float, float]]:
        """(errors, spans) per bucket of ``resolution_s`` in the window (weighted)."""
        cached = self._cache.get(f"errors:{resolution_s}")
        if cached is None:
            cached = self._cache[f"errors:{resolution_s}"] = self.source.error_series(
                self.since_ns, self.until_ns, resolution_s
            )
        return cached

    def trace_url(self, trace_id: str | None) -> str | None:
        """The Jaeger UI link of a trace, when ``--jaeger-url`` was given."""
        if not trace_id or not self.jaeger_url:
            return None
        return f"{self.jaeger_url.rstrip('/')}/trace/{trace_id}"

    def unpriced_cost(self, key: Key, stats: Stats) -> float | None:
        """The cost of a key's unpriced tokens at the current pricing table (None: no price).
        Prices are linear in tokens, so pricing the weighted sums equals pricing each call."""
        if not stats.unpriced_calls:
            return 0.0
        tokens = (stats.unpriced_input_tokens, stats.unpriced_output_tokens, stats.unpriced_cache_read_tokens)
        return self.price_tokens(key[3], key[4], tokens)

    def price_tokens(self, provider: str, model: str, tokens: Sequence[float]) -> float | None:
        """The cost of (input, output, cache read) tokens of a model, None when it has no price."""
        price = self.pricing.lookup(provider or None, model or None)
        if price is None:
            return None
        return cost_usd(price, round(tokens[0]), round(tokens[1]), round(tokens[2]))


def detail_resolution(ctx: Context) -> int:
    """The bucket (seconds) time-local findings (bursts, spikes) are looked for in: a minute,
    or an hour in windows over two days read from the rollups (a minute there is too many rows)."""
    if ctx.data.source == "exact":
        return 60
    until = ctx.until_ns if ctx.until_ns is not None else ctx.now_ns
    if ctx.since_ns is not None and until - ctx.since_ns <= 2 * DAY_NS:
        return 60
    return 3600


# --- percentiles ------------------------------------------------------------------------------
def percentiles(data: WindowData, keys: Iterable[Key], stats: Stats) -> dict[int, float | None]:
    """p50/p95/p99 (ms) of ``stats`` (the merged stats of ``keys`` in ``data``): exact from the
    spans when the window was read exactly, else from the merged histogram."""
    durations = data.durations
    if durations is not None:
        pairs = [pair for key in keys for pair in durations.get(key, ())]
        if not pairs:
            return {p: None for p in PERCENTILES}
        exact = duration_stats([d for d, _ in pairs], [w for _, w in pairs], 0.0)
        return {p: exact.percentiles_ms.get(p) for p in PERCENTILES}
    return {p: histogram_percentile_ms(stats.histogram, p) for p in PERCENTILES}


def group(by_key: Mapping[Key, Stats], label: Callable[[Key], Any | None]) -> dict[Any, tuple[list[Key], Stats]]:
    """Merge per-key stats into groups named by ``label(key)`` (keys it maps to None are left out)."""
    groups: dict[Any, tuple[list[Key], Stats]] = {}
    for key, stats in by_key.items():
        name = label(key)
        if name is None:
            continue
        entry = groups.get(name)
        if entry is None:
            entry = groups[name] = ([], Stats())
        entry[0].append(key)
        entry[1].merge(stats)
    return groups


# --- figures ----------------------------------------------------------------------------------
def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def success_rate(stats: Stats) -> float | None:
    return ratio(stats.weight - stats.errors, stats.weight)


def mean_ms(stats: Stats) -> float | None:
    return stats.duration_ns / stats.weight / 1e6 if stats.weight else None


def std_ms(stats: Stats) -> float | None:
    """The weighted standard deviation of the durations, in ms."""
    if stats.weight <= 1:
        return None
    mean = stats.duration_ns / stats.weight / 1e6
    variance = stats.duration_sq_ms / stats.weight - mean * mean
    return math.sqrt(max(variance, 0.0))


def change(current: float | None, previous: float | None) -> float | None:
    """The relative change from ``previous`` to ``current`` (None when there is no base)."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous)


def count(value: float) -> int:
    """A weighted count as the whole number the document shows."""
    return int(round(value))


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / _NS, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def day(ns: int) -> str:
    return datetime.fromtimestamp(ns / _NS, tz=timezone.utc).strftime("%Y-%m-%d")


# --- document parts ---------------------------------------------------------------------------
def col(key: str, label: str, fmt: str = "text", link: str | None = None) -> dict[str, Any]:
    """A column (or a field) of the document: its key, label and format."""
    spec: dict[str, Any] = {"key": key, "label": label, "format": fmt}
    if link:
        spec["link"] = link
    return spec


def table(title: str, columns: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"title": title, "columns": list(columns), "rows": list(rows)}


def chart(title: str, kind: str, table_name: str, x: str, y: Sequence[str]) -> dict[str, Any]:
    return {"title": title, "kind": kind, "table": table_name, "x": x, "y": list(y)}


def section(
    title: str,
    fields: Sequence[dict[str, Any]] = (),
    values: Mapping[str, Any] | None = None,
    tables: Mapping[str, dict[str, Any]] | None = None,
    charts: Sequence[dict[str, Any]] = (),
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    return {
        "title": title,
        "fields": list(fields),
        "values": dict(values or {}),
        "tables": dict(tables or {}),
        "charts": list(charts),
        "notes": list(notes),
    }


def trace_cells(ctx: Context, trace_id: str | None, key: str = "trace_id") -> dict[str, Any]:
    """A trace id cell and, with ``--jaeger-url``, its link."""
    cells: dict[str, Any] = {key: trace_id}
    url = ctx.trace_url(trace_id)
    if url:
        cells[key.replace("_id", "_url")] = url
    return cells


def trace_col(key: str = "trace_id", label: str = "Trace") -> dict[str, Any]:
    return col(key, label, "trace", link=key.replace("_id", "_url"))
