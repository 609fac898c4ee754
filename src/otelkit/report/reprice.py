"""``otelkit report --reprice``: recompute stored GenAI costs from the current pricing table.

Tokens are stored on every GenAI span, so a price fixed today applies to last month's calls.
Every span in the window with token counts gets the cost the table gives now (keeping the
``estimated`` status of estimated token counts), or ``otelkit.cost.status=unpriced`` and no
cost when the table has no price for its model. Costs are rewritten inside the attributes
JSON, which is what the store's cost columns read, in one transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from otelkit import semconv as sc
from otelkit.pricing import PricingTable
from otelkit.store.writer import to_json

_SELECT = "SELECT id, attributes FROM spans WHERE (input_tokens IS NOT NULL OR output_tokens IS NOT NULL)"
_SINCE = " AND start_ns >= ?"
_UPDATE = "UPDATE span_rows SET attributes = ? WHERE id = ?"
_CHUNK = 5000


@dataclass(frozen=True)
class RepriceResult:
    """What a re-pricing pass did."""

    spans: int  # token-bearing spans in the window
    changed: int  # spans whose cost or status changed
    unpriced: int  # spans whose model the table has no price for


def _repriced(attributes: dict[str, Any], table: PricingTable) -> dict[str, Any]:
    updated = dict(attributes)
    estimated = updated.get(sc.COST_STATUS) == sc.CostStatus.ESTIMATED.value
    cost, _ = table.price_attributes(updated)
    if cost is None:
        updated.pop(sc.GEN_AI_USAGE_COST, None)
        updated[sc.COST_STATUS] = sc.CostStatus.UNPRICED.value
    else:
        updated[sc.GEN_AI_USAGE_COST] = cost
        updated[sc.COST_STATUS] = (sc.CostStatus.ESTIMATED if estimated else sc.CostStatus.PRICED).value
    return updated


def reprice(
    conn: sqlite3.Connection,
    table: PricingTable,
    since_ns: int | None,
    progress: Callable[[int], None] | None = None,
) -> RepriceResult:
    """Re-price the token-bearing spans that started at or after ``since_ns`` (all when None)."""
    sql, params = (_SELECT, ()) if since_ns is None else (_SELECT + _SINCE, (since_ns,))
    spans = changed = unpriced = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        updates: list[tuple[str, int]] = []
        for row_id, text in conn.execute(sql, params).fetchall():
            spans += 1
            attributes = orjson.loads(text)
            updated = _repriced(attributes, table)
            if updated.get(sc.COST_STATUS) == sc.CostStatus.UNPRICED.value:
                unpriced += 1
            if updated != attributes:
                updates.append((to_json(updated), row_id))
            if len(updates) >= _CHUNK:
                conn.executemany(_UPDATE, updates)
                changed += len(updates)
                updates.clear()
            if progress is not None:
                progress(1)
        conn.executemany(_UPDATE, updates)
        changed += len(updates)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return RepriceResult(spans=spans, changed=changed, unpriced=unpriced)
