"""``otelkit.operation.duration``, aggregated in-process and merged into every metric export.

Every otelkit operation records its duration, and the SDK's ``Histogram.record`` costs about
ten microseconds a call on a small core (it cleans and hashes the attribute set each time), the
largest share of what otelkit adds to an operation. Here a record is a bisect and a few
increments under a lock. :func:`attach` (called by the otelkit configurator) wraps the collect
callback of each of the provider's metric readers, so that every collection, push or pull,
carries the histogram, as cumulative points under otelkit's instrumentation scope. Where nothing could be attached (a hand-built SDK, an
SDK whose internals changed), :func:`record` goes through the SDK instrument as before.
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
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otelkit import semconv as sc
from otelkit.instrumentation import metrics as m

_log = logging.getLogger(__name__)
_SCOPE = InstrumentationScope(sc.INSTRUMENTATION_SCOPE)


class _Series:
    __slots__ = ("attributes", "count", "total", "low", "high", "buckets")

    def __init__(self, attributes: Mapping[str, str], buckets: int) -> None:
        self.attributes = attributes
        self.count = 0
        self.total = 0.0
        self.low = float("inf")
        self.high = float("-inf")
        self.buckets = [0] * buckets


class DurationHistogram:
    """An explicit-bucket histogram per attribute set, cumulative since creation (or fork)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._start_ns = time_ns()

    def reset(self) -> None:
        """Forget everything (a forked child must not report its parent's counts again)."""
        self._lock = threading.Lock()
        self._series = {}
        self._start_ns = time_ns()

    def record(self, op_type: str, name: str, outcome: str, seconds: float) -> None:
        key = (op_type, name, outcome)
        index = bisect_left(self.bounds, seconds)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(m.operation_attributes(*key), len(self.bounds) + 1)
            series.count += 1
            series.total += seconds
            if seconds < series.low:
                series.low = seconds
            if seconds > series.high:
                series.high = seconds
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
            name=sc.METRIC_OPERATION_DURATION,
            description="Duration of otelkit operations by type, name and outcome",
            unit="s",
            data=Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE),
        )


histogram = DurationHistogram(m.DURATION_BUCKETS_S)
_attached = False
os.register_at_fork(after_in_child=histogram.reset)


def record(op_type: str, name: str, outcome: str, seconds: float) -> None:
    """Record one operation's duration, through whichever path is live."""
    if _attached:
        histogram.record(op_type, name, outcome, seconds)
    else:
        m.operation_duration.record(seconds, m.operation_attributes(op_type, name, outcome))


def _merged(data: MetricsData, metric: Metric, resource: Any) -> MetricsData:
    """``data`` with ``metric`` added under otelkit's scope of the provider's resource."""
    resource_metrics = list(data.resource_metrics)
    for i, rm in enumerate(resource_metrics):
        if rm.resource == resource:
            scopes = list(rm.scope_metrics)
            for j, sm in enumerate(scopes):
                if sm.scope.name == _SCOPE.name:
                    scopes[j] = replace(sm, metrics=[*sm.metrics, metric])
                    break
            else:
                scopes.append(ScopeMetrics(scope=_SCOPE, metrics=[metric], schema_url=""))
            resource_metrics[i] = replace(rm, scope_metrics=scopes)
            break
    else:
        resource_metrics.append(
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=_SCOPE, metrics=[metric], schema_url="")],
                schema_url="",
            )
        )
    return MetricsData(resource_metrics=resource_metrics)


def _merging_collect(original: Callable[..., Any], resource: Any) -> Callable[..., Any]:
    """A reader's collect callback that adds the duration histogram to what the SDK collected."""

    def collect(reader: Any, timeout_millis: float = 10_000) -> MetricsData | None:
        data = original(reader, timeout_millis=timeout_millis)
        metric = histogram.metric(time_ns())
        if metric is None:
            return data
        return _merged(data if data is not None else MetricsData(resource_metrics=[]), metric, resource)

    collect.__otelkit_merging__ = True  # type: ignore[attr-defined]
    return collect


def attach(provider: Any) -> bool:
    """Merge the duration histogram into every collection of ``provider``'s readers.

    Relies on two SDK attributes (``MeterProvider._metric_readers`` and a reader's ``_collect``
    callback); when they are missing, nothing changes and :func:`record` uses the SDK instrument.
    """
    global _attached
    readers = [r for r in getattr(provider, "_metric_readers", ()) if callable(getattr(r, "_collect", None))]
    resource = getattr(getattr(provider, "_sdk_config", None), "resource", None)
    if not readers or resource is None:
        return False
    for reader in readers:
        if not getattr(reader._collect, "__otelkit_merging__", False):
            reader._collect = _merging_collect(reader._collect, resource)
    _attached = True
    return True
