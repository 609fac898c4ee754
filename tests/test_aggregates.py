"""otelkit's in-process metrics (operation durations, GenAI tokens/durations/cost) and their merge into collections."""

from __future__ import annotations

import random
from typing import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otelkit
from otelkit import semconv as sc
from otelkit.instrumentation import aggregates


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Attach for this test only: the module state is process-wide."""
    monkeypatch.setattr(aggregates, "_attached", False)
    aggregates._reset_all()
    yield
    aggregates._reset_all()


def test_buckets_counts_sum_min_max_match_an_independent_computation(isolated: None) -> None:
    rng = random.Random(3)
    bounds = aggregates.operation_durations.bounds
    values = [rng.uniform(0, 0.2) for _ in range(500)] + list(bounds[:5])  # include exact bounds
    for v in values:
        aggregates.operation_durations.record(("step", "build", "success"), v)
    (point,) = aggregates.operation_durations.metric(123).data.data_points
    expected = [0] * (len(bounds) + 1)
    for v in values:  # OTel explicit buckets: (bounds[i-1], bounds[i]], upper bound inclusive
        expected[next((i for i, b in enumerate(bounds) if v <= b), len(bounds))] += 1
    assert list(point.bucket_counts) == expected
    assert point.count == len(values) and point.sum == pytest.approx(sum(values))
    assert (point.min, point.max) == (min(values), max(values))
    assert point.attributes == {sc.OPERATION_TYPE: "step", sc.OPERATION_NAME: "build", sc.OPERATION_OUTCOME: "success"}


def test_attached_provider_collects_the_histogram_beside_sdk_metrics(isolated: None, spans: InMemorySpanExporter) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "svc"}))
    provider.get_meter("app").create_counter("jobs").add(2)
    assert aggregates.attach(provider) is True
    for fail in (False, False, True):
        try:
            with otelkit.tool("merge-tool"):
                if fail:
                    raise RuntimeError
        except RuntimeError:
            pass
    data = reader.get_metrics_data()
    (rm,) = data.resource_metrics
    assert rm.resource.attributes["service.name"] == "svc"
    by_name = {m.name: m for sm in rm.scope_metrics for m in sm.metrics}
    assert by_name["jobs"].data.data_points[0].value == 2
    points = {p.attributes[sc.OPERATION_OUTCOME]: p for p in by_name[sc.METRIC_OPERATION_DURATION].data.data_points}
    assert (points["success"].count, points["error"].count) == (2, 1)
    otelkit_scopes = [sm for sm in rm.scope_metrics if sm.scope.name == sc.INSTRUMENTATION_SCOPE]
    assert len(otelkit_scopes) == 1


def test_collection_with_no_sdk_metrics_still_carries_the_histogram(isolated: None, spans: InMemorySpanExporter) -> None:
    reader = InMemoryMetricReader()
    assert aggregates.attach(MeterProvider(metric_readers=[reader])) is True
    with otelkit.step("lonely"):
        pass
    names = [m.name for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    assert names == [sc.METRIC_OPERATION_DURATION]


def test_without_an_attachable_provider_the_sdk_instrument_is_used(isolated: None) -> None:
    assert aggregates.attach(object()) is False
    assert aggregates.attach(MeterProvider()) is False
    assert aggregates._attached is False


def test_genai_metrics_are_aggregated_and_collected_when_attached(isolated: None, spans: InMemorySpanExporter) -> None:
    reader = InMemoryMetricReader()
    assert aggregates.attach(MeterProvider(metric_readers=[reader])) is True
    for _ in range(2):
        with otelkit.llm("gpt-4o-mini", "openai") as call:
            call.record_usage(input_tokens=1000, output_tokens=100, cost_usd=0.25)
    aggregates.record_first_chunk("chat", "openai", "gpt-4o-mini", 0.05)
    by_name = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    tokens = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p for p in by_name[sc.METRIC_GEN_AI_TOKEN_USAGE].data.data_points}
    assert (tokens["input"].count, tokens["input"].sum, tokens["output"].sum) == (2, 2000, 200)
    (cost,) = by_name[sc.METRIC_GEN_AI_COST].data.data_points
    assert cost.value == pytest.approx(0.5) and by_name[sc.METRIC_GEN_AI_COST].data.is_monotonic
    assert cost.attributes == {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"}
    assert by_name[sc.METRIC_GEN_AI_OPERATION_DURATION].data.data_points[0].count == 2
    assert by_name[sc.METRIC_GEN_AI_TIME_TO_FIRST_CHUNK].data.data_points[0].sum == pytest.approx(0.05)
