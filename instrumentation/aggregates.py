"""otelkit's own metrics, aggregated in-process and merged into every metric export.

Every otelkit operation records its duration, and every LLM call its tokens, duration and cost.
The SDK's ``Histogram.record`` costs about ten microseconds a call on a small core (it cleans and
hashes the attribute set each time), the largest share of what otelkit adds to an operation.
Here a record is a bisect and a few increments under a lock, keyed by a tuple whose attribute
set is built once. :func:`attach` (called by the otelkit configurator) wraps the collect
callback of each of the provider's metric readers, so that every collection, push or pull,
carries these metrics as cumulative points under otelkit's instrumentation scope. Where nothing
could be attached (a hand-built SDK, an SDK whose internals changed), records go through the
SDK instruments in :mod:`otelkit.instrumentation.metrics` instead.
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_left
from dataclasses import replace
from time import time_ns
from typing import Any, Callable, Mapping, Sequence

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otelkit import semconv as sc
from otelkit.instrumentation import metrics as m

_log = logging.getLogger(__name__)
_SCOPE = InstrumentationScope(sc.INSTRUMENTATION_SCOPE)


Key = tuple[str, ...]


class _Series:
    __slots__ = ("attributes", "count", "total", "low", "high", "buckets")

    def __init__(self, attributes: Mapping[str, str], buckets: int) -> None:
        self.attributes = attributes
        self.count = 0
        self.total = 0.0
        self.low = float("inf")
        self.high = float("-inf")
        self.buckets = [0] * buckets


class LocalHistogram:
    """An explicit-bucket histogram per attribute set, cumulative since creation (or fork)."""

    def __init__(
        self, name: str, description: str, unit: str, bounds: Sequence[float], attributes: Callable[..., Mapping[str, str]]
    ) -> None:
        self.name, self.description, self.unit = name, description, unit
        self.bounds = tuple(bounds)
        self._attributes = attributes
        self._lock = threading.Lock()
        self._series: dict[Key, _Series] = {}
        self._start_ns = time_ns()

    def reset(self) -> None:
        """Forget everything (a forked child must not report its parent's counts again)."""
        self._lock = threading.Lock()
        self._series = {}
        self._start_ns = time_ns()

    def record(self, key: Key, value: float) -> None:
        index = bisect_left(self.bounds, value)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(self._attributes(*key), len(self.bounds) + 1)
            series.count += 1
            series.total += value
            if value < series.low:
                series.low = value
            if value > series.high:
                series.high = value
            series.buckets[index] += 1

    def metric(self, now_ns: int) -> Metric | None:
        """The histogram as an SDK ``Metric`` of cumulative points, or None before any record."""
        with self._lock:
            points = [
                HistogramDataPoint(
                    attributes=dict(s.attributes), start_time_unix_nano=self._start_ns, time_unix_nano=now_ns,
                    count=s.count, sum=s.total, bucket_counts=list(s.buckets), explicit_bounds=self.bounds,
                    min=s.low, max=s.high,
                )
                for s in self._series.values()
            ]  # fmt: skip
        if not points:
            return None
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE),
        )


class LocalCounter:
    """A monotonic sum per attribute set, cumulative since creation (or fork)."""

    def __init__(self, name: str, description: str, unit: str, attributes: Callable[..., Mapping[str, str]]) -> None:
        self.name, self.description, self.unit = name, description, unit
        self._attributes = attributes
        self._lock = threading.Lock()
        self._sums: dict[Key, list[Any]] = {}
        self._start_ns = time_ns()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._sums = {}
        self._start_ns = time_ns()

    def add(self, key: Key, value: float) -> None:
        with self._lock:
            entry = self._sums.get(key)
            if entry is None:
                entry = self._sums[key] = [self._attributes(*key), 0.0]
            entry[1] += value

    def metric(self, now_ns: int) -> Metric | None:
        with self._lock:
            points = [
                NumberDataPoint(attributes=dict(attrs), start_time_unix_nano=self._start_ns, time_unix_nano=now_ns, value=total)
                for attrs, total in self._sums.values()
            ]
        if not points:
            return None
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Sum(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE, is_monotonic=True),
        )


operation_durations = LocalHistogram(
    sc.METRIC_OPERATION_DURATION, "Duration of otelkit operations by type, name and outcome", "s",
    m.DURATION_BUCKETS_S, m.operation_attributes,
)  # fmt: skip
gen_ai_tokens = LocalHistogram(
    sc.METRIC_GEN_AI_TOKEN_USAGE, "Tokens used per GenAI operation", "{token}", m.TOKEN_BUCKETS, m.gen_ai_attributes
)
gen_ai_durations = LocalHistogram(
    sc.METRIC_GEN_AI_OPERATION_DURATION, "Duration of GenAI operations", "s", m.DURATION_BUCKETS_S, m.gen_ai_attributes
)
gen_ai_first_chunk = LocalHistogram(
    sc.METRIC_GEN_AI_TIME_TO_FIRST_CHUNK, "Time from a streaming GenAI request to its first chunk", "s",
    m.DURATION_BUCKETS_S, m.gen_ai_attributes,
)  # fmt: skip
gen_ai_cost = LocalCounter(sc.METRIC_GEN_AI_COST, "Cost of GenAI operations", "USD", m.gen_ai_attributes)
_LOCAL: tuple[LocalHistogram | LocalCounter, ...] = (
    operation_durations, gen_ai_tokens, gen_ai_durations, gen_ai_first_chunk, gen_ai_cost,
)  # fmt: skip
_attached = False


def _reset_all() -> None:
    for local in _LOCAL:
        local.reset()


os.register_at_fork(after_in_child=_reset_all)


def record_duration(op_type: str, name: str, outcome: str, seconds: float) -> None:
    """Record one operation's duration, through whichever path is live."""
    if _attached:
        operation_durations.record((op_type, name, outcome), seconds)
    else:
        m.operation_duration.record(seconds, m.operation_attributes(op_type, name, outcome))


def record_tokens(operation: str, provider: str, model: str, token_type: str, tokens: int) -> None:
    if _attached:
        gen_ai_tokens.record((operation, provider, model, token_type), tokens)
    else:
        m.gen_ai_token_usage.record(tokens, m.gen_ai_attributes(operation, provider, model, token_type))


def record_gen_ai_duration(operation: str, provider: str, model: str, seconds: float) -> None:
    if _attached:
        gen_ai_durations.record((operation, provider, model), seconds)
    else:
        m.gen_ai_operation_duration.record(seconds, m.gen_ai_attributes(operation, provider, model))


def record_first_chunk(operation: str, provider: str, model: str, seconds: float) -> None:
    if _attached:
        gen_ai_first_chunk.record((operation, provider, model), seconds)
    else:
        m.gen_ai_time_to_first_chunk.record(seconds, m.gen_ai_attributes(operation, provider, model))


def add_cost(operation: str, provider: str, model: str, usd: float) -> None:
    if _attached:
        gen_ai_cost.add((operation, provider, model), usd)
    else:
        m.gen_ai_cost.add(usd, m.gen_ai_attributes(operation, provider, model))


def _merged(data: MetricsData, metrics: list[Metric], resource: Any) -> MetricsData:
    """``data`` with ``metrics`` added under otelkit's scope of the provider's resource."""
    resource_metrics = list(data.resource_metrics)
    for i, rm in enumerate(resource_metrics):
        if rm.resource == resource:
            scopes = list(rm.scope_metrics)
            for j, sm in enumerate(scopes):
                if sm.scope.name == _SCOPE.name:
                    scopes[j] = replace(sm, metrics=[*sm.metrics, *metrics])
                    break
            else:
                scopes.append(ScopeMetrics(scope=_SCOPE, metrics=metrics, schema_url=""))
            resource_metrics[i] = replace(rm, scope_metrics=scopes)
            break
    else:
        resource_metrics.append(
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=_SCOPE, metrics=metrics, schema_url="")],
                schema_url="",
            )
        )
    return MetricsData(resource_metrics=resource_metrics)


Transform = Callable[[MetricsData], MetricsData]


def _merging_collect(original: Callable[..., Any], resource: Any, transform: Transform | None) -> Callable[..., Any]:
    """A reader's collect callback that adds otelkit's local metrics to what the SDK collected,
    then applies ``transform`` (the sanitizer's) to the whole collection."""

    def collect(reader: Any, timeout_millis: float = 10_000) -> MetricsData | None:
        data = original(reader, timeout_millis=timeout_millis)
        now = time_ns()
        metrics = [metric for local in _LOCAL if (metric := local.metric(now)) is not None]
        if metrics:
            data = _merged(data if data is not None else MetricsData(resource_metrics=[]), metrics, resource)
        if transform is not None and data is not None:
            try:
                data = transform(data)
            except Exception as exc:  # never export what could not be scrubbed
                _log.error("otelkit: could not scrub metrics (%s); this collection is not exported", type(exc).__name__)
                return MetricsData(resource_metrics=[])
        return data

    collect.__otelkit_merging__ = True  # type: ignore[attr-defined]
    return collect


def attach(provider: Any, transform: Transform | None = None) -> bool:
    """Merge otelkit's local metrics into every collection of ``provider``'s readers (and apply
    ``transform`` to each collection).

    Relies on two SDK attributes (``MeterProvider._metric_readers`` and a reader's ``_collect``
    callback); when they are missing, nothing changes and records use the SDK instruments.
    """
    global _attached
    readers = [r for r in getattr(provider, "_metric_readers", ()) if callable(getattr(r, "_collect", None))]
    resource = getattr(getattr(provider, "_sdk_config", None), "resource", None)
    if not readers or resource is None:
        return False
    for reader in readers:
        if not getattr(reader._collect, "__otelkit_merging__", False):
            reader._collect = _merging_collect(reader._collect, resource, transform)
    _attached = True
    return True
