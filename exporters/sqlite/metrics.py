"""SQLiteMetricExporter: SDK metric data points into the store's ``metric_points`` table."""

from __future__ import annotations

import logging
from typing import Any, Iterator

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    Histogram,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)

from otelkit.exporters.sqlite._target import RowIds, resolve_writer
from otelkit.store.writer import to_json

_log = logging.getLogger(__name__)


def _temporality(data: Any) -> str | None:
    value = getattr(data, "aggregation_temporality", None)
    return value.name if isinstance(value, AggregationTemporality) else None


def _point_values(data: Any, point: Any) -> tuple[Any, ...]:
    """(kind, value, count, sum, min, max, buckets JSON) for one data point."""
    if isinstance(data, (Sum, Gauge)):
        return ("sum" if isinstance(data, Sum) else "gauge", point.value, None, None, None, None, None)
    if isinstance(data, Histogram):
        buckets = to_json({"bounds": list(point.explicit_bounds), "counts": list(point.bucket_counts)})
        return ("histogram", None, point.count, point.sum, point.min, point.max, buckets)
    if isinstance(data, ExponentialHistogram):
        buckets = to_json(
            {
                "scale": point.scale,
                "zero_count": point.zero_count,
                "positive": {"offset": point.positive.offset, "counts": list(point.positive.bucket_counts)},
                "negative": {"offset": point.negative.offset, "counts": list(point.negative.bucket_counts)},
            }
        )
        return ("exponential_histogram", None, point.count, point.sum, point.min, point.max, buckets)
    raise TypeError(f"unsupported metric data {type(data).__name__}")


class SQLiteMetricExporter(MetricExporter):
    """Exports metric points to an otelkit SQLite store; registered as the ``sqlite`` metrics exporter."""

    def __init__(self, path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._writer = resolve_writer(path)
        self.path = self._writer.path
        self._ids = RowIds(self._writer)
        self._failed_once = False

    def _rows(self, metrics_data: MetricsData) -> Iterator[tuple[Any, ...]]:
        for resource_metrics in metrics_data.resource_metrics:
            resource_id, service = self._ids.resource(resource_metrics.resource)
            for scope_metrics in resource_metrics.scope_metrics:
                scope_id = self._ids.scope(scope_metrics.scope)
                for metric in scope_metrics.metrics:
                    data = metric.data
                    temporality = _temporality(data)
                    monotonic = getattr(data, "is_monotonic", None)
                    for point in data.data_points:
                        kind, value, count, total, low, high, buckets = _point_values(data, point)
                        yield (
                            metric.name, metric.description or None, metric.unit or None, kind,
                            temporality, None if monotonic is None else int(monotonic), service,
                            resource_id, scope_id, point.start_time_unix_nano or None,
                            point.time_unix_nano, to_json(dict(point.attributes or {})), value,
                            count, total, low, high, buckets,
                        )  # fmt: skip

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            self._writer.write_metric_points(list(self._rows(metrics_data)))
        except Exception as exc:  # never raise into the SDK's reader thread
            if not self._failed_once:
                _log.error("otelkit: could not write metrics to %s: %s", self.path, exc)
                self._failed_once = True
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None
