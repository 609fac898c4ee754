"""Enrich stage: derived attributes that reports rely on, computed once per finished span.

Cost: any span that carries ``gen_ai.usage.*`` token counts and no cost (spans from contrib's
openai-v2, OpenLLMetry, or hand-made ones) is priced from the pricing table, so every GenAI
span in the store has a cost or says why not (``otelkit.cost.status=unpriced``).
"""

from __future__ import annotations

from typing import Callable

from opentelemetry.sdk.trace import ReadableSpan

from otelkit import semconv as sc
from otelkit.pricing import PricingTable, current_table
from otelkit.processors.chain import with_attributes

_PRICED = sc.CostStatus.PRICED.value
_ESTIMATED = sc.CostStatus.ESTIMATED.value
_UNPRICED = sc.CostStatus.UNPRICED.value


class CostStage:
    """Prices token-bearing spans that have no cost; leaves a cost already present alone."""

    __name__ = "enrich.cost"

    def __init__(self, table: Callable[[], PricingTable] = current_table) -> None:
        self._table = table

    def __call__(self, span: ReadableSpan) -> ReadableSpan:
        attrs = span.attributes
        if not attrs or (sc.GEN_AI_USAGE_INPUT_TOKENS not in attrs and sc.GEN_AI_USAGE_OUTPUT_TOKENS not in attrs):
            return span
        status = attrs.get(sc.COST_STATUS)
        if sc.GEN_AI_USAGE_COST in attrs:
            return span if status is not None else with_attributes(span, {sc.COST_STATUS: _PRICED})
        cost, _ = self._table().price_attributes(attrs)
        if cost is None:
            return span if status == _UNPRICED else with_attributes(span, {sc.COST_STATUS: _UNPRICED})
        return with_attributes(
            span, {sc.GEN_AI_USAGE_COST: cost, sc.COST_STATUS: _ESTIMATED if status == _ESTIMATED else _PRICED}
        )
