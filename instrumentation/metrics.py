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

operation_duration = _meter.create_histogram(
    sc.METRIC_OPERATION_DURATION, unit="s", description="Duration of otelkit operations by type, name and outcome"
)
gen_ai_token_usage = _meter.create_histogram(
    sc.METRIC_GEN_AI_TOKEN_USAGE, unit="{token}", description="Tokens used per GenAI operation"
)
gen_ai_operation_duration = _meter.create_histogram(
    sc.METRIC_GEN_AI_OPERATION_DURATION, unit="s", description="Duration of GenAI operations"
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
