"""The metric instruments otelkit records alongside its spans.

Instruments come from the global MeterProvider through the API's proxy, so they start
recording as soon as ``opentelemetry-instrument`` (or the user) installs a real provider, and
cost almost nothing before. Attribute sets are interned because they repeat on every call.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping

from opentelemetry import metrics

from otelkit import semconv as sc
from otelkit.config import current_policy

_meter = metrics.get_meter(sc.INSTRUMENTATION_SCOPE)

# Bucket boundaries: the SDK's default ones suit milliseconds, and these instruments are in
# seconds and tokens. Durations use the GenAI conventions' boundaries, extended below 10 ms
# for the fast steps, templates and conditions of a pipeline; tokens use powers of 4.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56,
    5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

operation_duration = _meter.create_histogram(
    sc.METRIC_OPERATION_DURATION,
    unit="s",
    description="Duration of otelkit operations by type, name and outcome",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
)
gen_ai_token_usage = _meter.create_histogram(
    sc.METRIC_GEN_AI_TOKEN_USAGE,
    unit="{token}",
    description="Tokens used per GenAI operation",
    explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
)
gen_ai_operation_duration = _meter.create_histogram(
    sc.METRIC_GEN_AI_OPERATION_DURATION,
    unit="s",
    description="Duration of GenAI operations",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
)
gen_ai_time_to_first_chunk = _meter.create_histogram(
    sc.METRIC_GEN_AI_TIME_TO_FIRST_CHUNK,
    unit="s",
    description="Time from a streaming GenAI request to its first chunk",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
)
gen_ai_cost = _meter.create_counter(sc.METRIC_GEN_AI_COST, unit="USD", description="Cost of GenAI operations")


def recording() -> bool:
    """Whether operations record metrics (``instrumentation.metrics`` / ``OTELKIT_METRICS``).

    The SDK's histogram record is the largest per-operation cost otelkit adds, so programs
    that get RED metrics elsewhere (the store, the Collector's spanmetrics) can turn it off.
    """
    return current_policy().instrumentation.metrics


@lru_cache(maxsize=4096)
def operation_attributes(op_type: str, name: str, outcome: str) -> Mapping[str, str]:
    """The (interned) attribute set of one operation-duration series."""
    return {sc.OPERATION_TYPE: op_type, sc.OPERATION_NAME: name, sc.OPERATION_OUTCOME: outcome}


@lru_cache(maxsize=1024)
def gen_ai_attributes(operation: str, provider: str, model: str, token_type: str | None = None) -> Mapping[str, str]:
    """The (interned) attribute set of one GenAI token, duration or cost series."""
    attrs = {sc.GEN_AI_OPERATION_NAME: operation, sc.GEN_AI_PROVIDER_NAME: provider, sc.GEN_AI_REQUEST_MODEL: model}
    if token_type is not None:
        attrs[sc.GEN_AI_TOKEN_TYPE] = token_type
    return attrs
