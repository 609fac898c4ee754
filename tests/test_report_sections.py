"""Every report section against a dataset with known answers, on both read paths, in every format.

The dataset (tests/report_dataset.py) is an agent CLI's traffic over the 3 days before a fixed
NOW, written through the real write path in shuffled batches. Every expected figure is computed
here, independently, in plain Python over the span specs (never with otelkit's report or rollup
code), following the README's walkthrough ("## The report"), and compared with
``build_report(conn, period, now_ns=NOW, exact=...)``:

- ``exact=True`` (read from the spans): counts and sums exact (floats to 1e-9 relative),
  percentiles exactly type 7 (``statistics.quantiles(method="inclusive")``);
- ``exact=False`` (the rollup tables, plus the spans at the ragged edges): counts and sums
  equally exact; percentiles within 1% (relative, plus 1 ns) of the duration at the rank type 7
  interpolates from, which is what the README promises for the DDSketch-style histogram.

Windows: ``3d`` back from NOW (not on a minute), a fixed ``SINCE..UNTIL`` with ragged edges,
``all``, and ``3d`` for one service. A sampled copy of the same traffic checks the estimates.
The critical path follows :func:`otelkit.report.traces.critical_path` (Jaeger's: a span's critical
children are the child that ended last, then the one that ended last before it started, ...),
as the README describes it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_FLOOR, Decimal
import functools
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
import yaml
from click.testing import CliRunner

import otelkit
import report_dataset as ds
from otelkit import semconv as sc
from otelkit.cli import cli
from otelkit.config import ModelPrice
from otelkit.pricing import PricingTable, cost_usd, current_table
from otelkit.processors.sanitize import scrub_text
from otelkit.report import build_report
from otelkit.report.sections import SECTIONS
from otelkit.store import SCHEMA_VERSION, connect_for_reading
from otelkit.store.schema import DERIVED_SPAN_COLUMNS
from test_cli import assert_one_line_error

NOW = ds.NOW
NS, MINUTE, HOUR, DAY = ds.NS, ds.MINUTE, ds.HOUR, ds.DAY
REL = 1e-9  # float sums added up in another order
HISTOGRAM_REL = 0.01  # the README's accuracy of percentiles read from the rollup histograms
PERCENTILES = (50, 95, 99)


# --- the windows ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    period: str
    since: int | None
    until: int | None
    service: str | None = None
    previous: tuple[int, int] | None = None

    def holds(self, spec: dict[str, Any]) -> bool:
        start = spec["start_ns"]
        return ((self.since is None or start >= self.since) and (self.until is None or start < self.until)
                and (self.service is None or spec["service"] == self.service))  # fmt: skip

    def previous_window(self) -> Window | None:
        if self.previous is None:
            return None
        return Window(self.period, self.previous[0], self.previous[1], self.service)

    def detail_step(self, exact: bool) -> int:
        """The README's bucket for bursts and spikes: a minute, an hour for rollup windows over 2 days."""
        if exact:
            return MINUTE
        until = NOW if self.until is None else self.until
        return MINUTE if self.since is not None and until - self.since <= 2 * DAY else HOUR


WINDOWS = {
    "3d": Window("3d", ds.SINCE_3D, None, None, (ds.PREVIOUS_3D, ds.SINCE_3D)),
    "ragged": Window(ds.RAGGED_PERIOD, ds.RAGGED_SINCE, ds.RAGGED_UNTIL, None, (ds.RAGGED_PREVIOUS, ds.RAGGED_SINCE)),
    "all": Window("all", None, None),
    "3d-batch-worker": Window("3d", ds.SINCE_3D, None, "batch-worker", (ds.PREVIOUS_3D, ds.SINCE_3D)),
}
CASES = [pytest.param(w, exact, id=f"{w}-{'exact' if exact else 'rollups'}") for w in WINDOWS for exact in (True, False)]


# --- small helpers ---------------------------------------------------------------------------------
def weight(spec: dict[str, Any]) -> float:
    rate = spec["attributes"].get(sc.SAMPLE_RATE)
    return float(rate) if isinstance(rate, (int, float)) and rate > 1 else 1.0


def duration(spec: dict[str, Any]) -> int:
    return spec["end_ns"] - spec["start_ns"]


def op_type(spec: dict[str, Any]) -> str:
    return spec["attributes"].get(sc.OPERATION_TYPE) or "other"


def failed(spec: dict[str, Any]) -> bool:
    return spec["status"] == "ERROR"


def op(spec: dict[str, Any]) -> tuple[str, str]:
    return op_type(spec), spec["name"]


def rollup_key(spec: dict[str, Any]) -> tuple[str, ...]:
    """The finest operation key the README lists: service, type, name, provider, model, agent, tool."""
    a = spec["attributes"]
    return (spec["service"], op_type(spec), spec["name"], a.get(sc.GEN_AI_PROVIDER_NAME, ""), model_of(spec) or "",
            a.get(sc.GEN_AI_AGENT_NAME, ""), a.get(sc.GEN_AI_TOOL_NAME, "") if op_type(spec) == "tool" else "")  # fmt: skip


def model_of(spec: dict[str, Any]) -> str | None:
    a = spec["attributes"]
    return a.get(sc.GEN_AI_RESPONSE_MODEL) or a.get(sc.GEN_AI_REQUEST_MODEL)


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS, tz=timezone.utc).strftime("%Y-%m-%d")


def floor(value: int, step: int) -> int:
    return value - value % step


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def type7_ms(durations: list[int], p: int) -> float:
    if len(durations) == 1:
        return durations[0] / 1e6
    return statistics.quantiles(durations, n=100, method="inclusive")[p - 1] / 1e6


def rank_ms(durations: list[int], p: int) -> float:
    """The duration at the rank type 7 interpolates from: x[floor((n - 1) p / 100)]."""
    ordered = sorted(durations)
    return ordered[(len(ordered) - 1) * p // 100] / 1e6


def close(actual: Any, expected: Any, rel: float = REL, what: str = "") -> None:
    if expected is None or actual is None or isinstance(expected, (str, bool)):
        assert actual == expected, what
    else:
        assert actual == pytest.approx(expected, rel=rel, abs=1e-12), what


def check_percentile(actual: float | None, durations: list[int], p: int, exact: bool, what: str = "") -> None:
    if not durations:
        assert actual is None, what
        return
    if exact:
        assert actual == pytest.approx(type7_ms(durations, p), rel=REL), f"{what} p{p}"
    else:
        at_rank = rank_ms(durations, p)
        assert abs(actual - at_rank) <= HISTOGRAM_REL * at_rank + 1e-6, f"{what} p{p}: {actual} vs {at_rank}"


def check_row(actual: dict[str, Any], expected: dict[str, Any], exact: bool, what: str) -> None:
    """Compare a report row with an expected one: ``durations`` stands for the p50/p95/p99 columns."""
    for key, value in expected.items():
        if key == "durations":
            for p in PERCENTILES:
                if f"p{p}_ms" in actual:
                    check_percentile(actual[f"p{p}_ms"], value, p, exact, f"{what} {key}")
            continue
        close(actual[key], value, what=f"{what} {key}")


# --- prices, from the vendored YAML (USD per million tokens) -----------------------------------------
_TABLE = yaml.safe_load((Path(otelkit.__file__).parent / "data" / "pricing.yaml").read_text())["models"]
_PRICES = {(entry["provider"], entry["model"]): entry for entry in _TABLE}
_DATED_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def table_price(provider: str | None, model: str | None) -> dict[str, Any] | None:
    """The table's entry for a model (a dated snapshot is priced as its model), None when it has none."""
    if not model:
        return None
    return _PRICES.get((provider, _DATED_SNAPSHOT.sub("", model)))


@dataclass(frozen=True)
class Usage:
    input: int
    output: int
    cached: int
    stored_cost: float  # gen_ai.usage.cost as stored (0 when none)
    priced_now: float  # the cost of a call stored without one, at the table's price (0 when none)
    unpriced: bool  # tokens, no cost, and no price anywhere


_USAGE: dict[str, Usage | None] = {}


def usage(spec: dict[str, Any]) -> Usage | None:
    """The GenAI usage of a span that is an LLM call or carries tokens (else None)."""
    key = spec["span_id"]  # a sampled copy has the same usage (its weight is applied apart)
    if key not in _USAGE:
        _USAGE[key] = _usage(spec)
    return _USAGE[key]


def _usage(spec: dict[str, Any]) -> Usage | None:
    a = spec["attributes"]
    if op_type(spec) != "llm" and sc.GEN_AI_USAGE_INPUT_TOKENS not in a and sc.GEN_AI_USAGE_OUTPUT_TOKENS not in a:
        return None
    inputs, outputs = a.get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0), a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, 0)
    cached = a.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 0)
    cost = a.get(sc.GEN_AI_USAGE_COST)
    if cost is not None:
        return Usage(inputs, outputs, cached, cost, 0.0, False)
    if not (inputs or outputs):
        return Usage(inputs, outputs, cached, 0.0, 0.0, False)
    price = table_price(a.get(sc.GEN_AI_PROVIDER_NAME), model_of(spec))
    if price is None:
        return Usage(inputs, outputs, cached, 0.0, 0.0, True)
    cached_price = price.get("cached_input", price["input"])
    now = ((inputs - cached) * price["input"] + cached * cached_price + outputs * price["output"]) / 1e6
    return Usage(inputs, outputs, cached, 0.0, now, False)


def total_cost(specs: Iterable[dict[str, Any]]) -> float:
    """Stored cost plus the report-time cost of calls stored without one."""
    total = 0.0
    for spec in specs:
        u = usage(spec)
        if u is not None:
            total += weight(spec) * (u.stored_cost + u.priced_now)
    return total


# --- the truth of one window ------------------------------------------------------------------------
_memo = functools.cache  # on Truth's methods: one Truth per window, kept for the whole module
class Truth:
    """Expected figures of one window, from the specs (every span of the store) alone."""

    def __init__(self, specs: list[dict[str, Any]], window: Window) -> None:
        self.all = specs
        self.window = window
        self.spans = [s for s in specs if window.holds(s)]

    @cached_property
    def previous(self) -> Truth | None:
        previous = self.window.previous_window()
        return None if previous is None else Truth(self.all, previous)

    @cached_property
    def traces(self) -> dict[str, list[dict[str, Any]]]:
        """Every span of each trace (the whole trace, also outside the window)."""
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for spec in self.all:
            out[spec["trace_id"]].append(spec)
        return out

    # overview
    def figures(self, exact: bool) -> dict[str, Any]:
        spans = self.spans
        total = sum(map(weight, spans))
        errors = sum(weight(s) for s in spans if failed(s))
        if exact:  # distinct trace ids, each with its smallest weight
            smallest: dict[str, float] = {}
            for s in spans:
                smallest[s["trace_id"]] = min(smallest.get(s["trace_id"], math.inf), weight(s))
            traces = sum(smallest.values())
        else:  # root spans
            traces = sum(weight(s) for s in spans if s["parent_span_id"] is None)
        used = [(weight(s), usage(s)) for s in spans]
        used = [(w, u) for w, u in used if u is not None]
        return {
            "spans": round(total), "traces": round(traces), "errors": round(errors),
            "success_rate": ratio(total - errors, total),
            "input_tokens": round(sum(w * u.input for w, u in used)),
            "output_tokens": round(sum(w * u.output for w, u in used)),
            "cache_read_tokens": round(sum(w * u.cached for w, u in used)),
            "cost_usd": sum(w * (u.stored_cost + u.priced_now) for w, u in used),
            "durations": [duration(s) for s in spans],
        }  # fmt: skip

    @cached_property
    def sessions(self) -> dict[str, dict[str, Any]]:
        """The sessions that started in the window, each over its whole life."""
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for spec in self.all:
            session = spec["attributes"].get(sc.SESSION_ID)
            if session:
                by_session[session].append(spec)
        out = {}
        for session, specs in by_session.items():
            first = min(specs, key=lambda s: s["start_ns"])
            if not self.window.holds(first):
                continue
            used = [(weight(s), usage(s)) for s in specs]
            used = [(w, u) for w, u in used if u is not None]
            spans = sum(map(weight, specs))
            errors = sum(weight(s) for s in specs if failed(s))
            messages = sum(weight(s) for s in specs if op_type(s) == "llm")
            tools = {s["attributes"][sc.GEN_AI_TOOL_NAME] for s in specs if op_type(s) == "tool"}
            seconds = (max(s["end_ns"] for s in specs) - first["start_ns"]) / NS
            error_rate = errors / spans
            out[session] = {
                "session": session, "started": iso(first["start_ns"]), "duration_s": seconds,
                "spans": round(spans), "traces": round(sum(weight(s) for s in specs if s["parent_span_id"] is None)),
                "messages": round(messages),
                "tool_calls": round(sum(weight(s) for s in specs if op_type(s) == "tool")),
                "distinct_tools": len(tools), "success_rate": (spans - errors) / spans,
                "tokens": round(sum(w * (u.input + u.output) for w, u in used)),
                "cost_usd": sum(w * (u.stored_cost + u.priced_now) for w, u in used),
                "stored_cost_usd": sum(w * u.stored_cost for w, u in used),
                "complexity": 35 * min(messages / 20, 1) + 25 * min(len(tools) / 8, 1)
                + 20 * min(error_rate / 0.25, 1) + 20 * min(seconds / 600, 1),
            }  # fmt: skip
        return out

    # operations
    @_memo
    def operation_rows(self) -> list[dict[str, Any]]:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for spec in self.spans:
            groups[op(spec)].append(spec)
        total = sum(map(weight, self.spans))
        total_ns = sum(weight(s) * duration(s) for s in self.spans)
        rows = []
        for (kind, name), specs in groups.items():
            w = sum(map(weight, specs))
            errors = sum(weight(s) for s in specs if failed(s))
            time_ns = sum(weight(s) * duration(s) for s in specs)
            rows.append({
                "type": kind, "name": name, "count": round(w), "share": w / total,
                "success_rate": (w - errors) / w, "failures": round(errors), "avg_ms": time_ns / w / 1e6,
                "total_ms": time_ns / 1e6, "time_share": time_ns / total_ns,
                "durations": [duration(s) for s in specs],
            })  # fmt: skip
        rows.sort(key=lambda r: (-r["count"], r["name"], r["type"]))
        return rows

    @_memo
    def roots(self) -> list[dict[str, Any]]:
        return sorted((s for s in self.spans if s["parent_span_id"] is None), key=lambda s: -duration(s))

    def trace_read(self, root: dict[str, Any]) -> list[dict[str, Any]]:
        """A trace as the report reads it: its spans that started while its root ran."""
        return [s for s in self.traces[root["trace_id"]] if root["start_ns"] <= s["start_ns"] <= root["end_ns"]]

    def critical_path(self, root: dict[str, Any]) -> list[tuple[dict[str, Any], int, int]]:
        """(span, depth, own ns) of the spans the trace's end waited for, root first, in time order:
        a span's critical children are the child that ended last, then the one that ended last
        before that one started, and so on; its own time is what they leave uncovered (Jaeger's
        critical path, as otelkit.report.traces documents it)."""
        spans = self.trace_read(root)
        children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in spans:
            if s["parent_span_id"]:
                children[s["parent_span_id"]].append(s)
        path: list[tuple[dict[str, Any], int, int]] = []

        def walk(span: dict[str, Any], depth: int) -> None:
            critical, cursor = [], span["end_ns"]
            for kid in sorted(children[span["span_id"]], key=lambda s: -s["end_ns"]):
                if kid["start_ns"] >= span["start_ns"] and kid["end_ns"] <= cursor:
                    critical.append(kid)
                    cursor = kid["start_ns"]
            path.append((span, depth, duration(span) - sum(map(duration, critical))))
            for kid in reversed(critical):
                walk(kid, depth + 1)

        walk(root, 0)
        return path

    # llm
    @_memo
    def llm_spans(self) -> list[dict[str, Any]]:
        return [s for s in self.spans if usage(s) is not None]

    @staticmethod
    def usage_row(specs: list[dict[str, Any]]) -> dict[str, Any]:
        w = sum(map(weight, specs))
        used = [(weight(s), usage(s)) for s in specs]
        return {
            "calls": round(w), "error_rate": sum(weight(s) for s in specs if failed(s)) / w,
            "input_tokens": round(sum(x * u.input for x, u in used)),
            "output_tokens": round(sum(x * u.output for x, u in used)),
            "cache_read_tokens": round(sum(x * u.cached for x, u in used)),
            "cost_usd": sum(x * (u.stored_cost + u.priced_now) for x, u in used),
            "cost_priced_now_usd": sum(x * u.priced_now for x, u in used),
            "unpriced_calls": round(sum(x for x, u in used if u.unpriced)),
            "avg_ms": sum(weight(s) * duration(s) for s in specs) / w / 1e6,
            "durations": [duration(s) for s in specs],
        }  # fmt: skip

    def usage_table(self, label: Callable[[dict[str, Any]], tuple[str, ...] | None],
                    names: tuple[str, ...]) -> list[dict[str, Any]]:  # fmt: skip
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for spec in self.llm_spans():
            name = label(spec)
            if name is not None:
                groups[name].append(spec)
        rows = [{**dict(zip(names, name)), **self.usage_row(specs)} for name, specs in groups.items()]
        rows.sort(key=lambda r: (-r["cost_usd"], -r["calls"], r[names[0]]))
        return rows

    # tools
    @_memo
    def tool_rows(self) -> list[dict[str, Any]]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for spec in self.spans:
            if op_type(spec) == "tool":
                groups[spec["attributes"][sc.GEN_AI_TOOL_NAME]].append(spec)
        rows = []
        for tool, specs in groups.items():
            w = sum(map(weight, specs))
            errors = sum(weight(s) for s in specs if failed(s))
            time_ns = sum(weight(s) * duration(s) for s in specs)
            rows.append({"tool": tool, "calls": round(w), "success_rate": (w - errors) / w, "error_rate": errors / w,
                         "failures": round(errors), "avg_ms": time_ns / w / 1e6, "total_ms": time_ns / 1e6,
                         "durations": [duration(s) for s in specs]})  # fmt: skip
        rows.sort(key=lambda r: (-r["calls"], r["tool"]))
        return rows

    @_memo
    def ngrams(self) -> Counter[tuple[int, str]]:
        """Every n-gram (2..5) of tool calls within a session (else a trace), ordered by start, counted
        (with the weight of the call completing it) when the completing call is in the window."""
        sequences: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for spec in self.all:
            if op_type(spec) == "tool":
                session = spec["attributes"].get(sc.SESSION_ID)
                sequences["s:" + session if session else "t:" + spec["trace_id"]].append(spec)
        counts: Counter[tuple[int, str]] = Counter()
        for calls in sequences.values():
            calls.sort(key=lambda s: s["start_ns"])
            tools = [c["attributes"][sc.GEN_AI_TOOL_NAME] for c in calls]
            for i, call in enumerate(calls):
                if self.window.holds(call):
                    for n in (2, 3, 4, 5):
                        if i + 1 >= n:
                            counts[(n, " > ".join(tools[i + 1 - n : i + 1]))] += weight(call)
        return counts

    @_memo
    def sequence_rows(self) -> list[dict[str, Any]]:
        counts = self.ngrams()
        rows = []
        for n in (2, 3, 4, 5):
            ranked = sorted(((seq, w) for (size, seq), w in counts.items() if size == n), key=lambda x: (-x[1], x[0]))
            rows += [{"length": n, "sequence": seq, "count": round(w)} for seq, w in ranked[:10]]
        return rows

    # templates and conditions
    @_memo
    def template_rows(self) -> list[dict[str, Any]]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for spec in self.spans:
            if op_type(spec) == "template":
                groups[spec["name"]].append(spec)
        rows = []
        for name, specs in groups.items():
            w = sum(map(weight, specs))
            checked = [s for s in specs if isinstance(s["attributes"].get(sc.TEMPLATE_CACHE_HIT), bool)]
            hits = sum(weight(s) for s in checked if s["attributes"][sc.TEMPLATE_CACHE_HIT])
            time_ns = sum(weight(s) * duration(s) for s in specs)
            rows.append({"template": name, "renders": round(w), "cache_hit_rate": ratio(hits, sum(map(weight, checked))),
                         "failures": round(sum(weight(s) for s in specs if failed(s))), "avg_ms": time_ns / w / 1e6,
                         "total_ms": time_ns / 1e6, "durations": [duration(s) for s in specs],
                         "_hits": hits, "_checks": sum(map(weight, checked))})  # fmt: skip
        rows.sort(key=lambda r: (-r["renders"], r["template"]))
        return rows

    @_memo
    def condition_rows(self) -> list[dict[str, Any]]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for spec in self.spans:
            if op_type(spec) == "condition":
                groups[spec["name"]].append(spec)
        rows = []
        for name, specs in groups.items():
            w = sum(map(weight, specs))
            true = sum(weight(s) for s in specs if s["attributes"].get(sc.CONDITION_RESULT) is True)
            false = sum(weight(s) for s in specs if s["attributes"].get(sc.CONDITION_RESULT) is False)
            time_ns = sum(weight(s) * duration(s) for s in specs)
            rows.append({"condition": name, "evaluations": round(w), "true": round(true), "false": round(false),
                         "true_share": ratio(true, true + false),
                         "failures": round(sum(weight(s) for s in specs if failed(s))),
                         "avg_ms": time_ns / w / 1e6, "total_ms": time_ns / 1e6})  # fmt: skip
        rows.sort(key=lambda r: (-r["evaluations"], r["condition"]))
        return rows

    # errors
    @_memo
    def error_spans(self) -> list[dict[str, Any]]:
        return [s for s in self.spans if failed(s)]

    @staticmethod
    def category(spec: dict[str, Any]) -> str:
        return spec["attributes"].get(sc.ERROR_CATEGORY) or "unknown"

    def bursts(self, exact: bool) -> list[dict[str, Any]]:
        step = self.window.detail_step(exact)
        buckets: dict[int, list[float]] = {}
        for spec in self.spans:
            entry = buckets.setdefault(floor(spec["start_ns"], step), [0.0, 0.0])
            entry[0] += weight(spec) * failed(spec)
            entry[1] += weight(spec)
        counts = [errors for errors, _ in buckets.values()]
        mean = sum(counts) / len(counts)
        sd = math.sqrt(sum((c - mean) ** 2 for c in counts) / len(counts))
        threshold = max(mean + 3 * sd, 3)
        runs: list[list[int]] = []
        for bucket in sorted(buckets):
            errors = buckets[bucket][0]
            if errors >= threshold and errors > mean:
                if runs and runs[-1][-1] + step == bucket:
                    runs[-1].append(bucket)
                else:
                    runs.append([bucket])
        rows = []
        for run in runs:
            errors = sum(buckets[b][0] for b in run)
            rows.append({"start": iso(run[0]), "end": iso(run[-1] + step), "buckets": len(run), "errors": round(errors),
                         "peak": round(max(buckets[b][0] for b in run)), "baseline": mean,
                         "error_rate": errors / sum(buckets[b][1] for b in run)})  # fmt: skip
        rows.sort(key=lambda r: -r["errors"])
        return rows

    # anomalies
    @_memo
    def baselines(self) -> dict[tuple[str, str], tuple[float, float]]:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for spec in self.spans:
            groups[op(spec)].append(spec)
        out = {}
        for key, specs in groups.items():
            w = sum(map(weight, specs))
            mean = sum(weight(s) * duration(s) / 1e6 for s in specs) / w
            variance = sum(weight(s) * (duration(s) / 1e6) ** 2 for s in specs) / w - mean * mean
            sd = math.sqrt(max(variance, 0.0))
            if len(specs) >= 30 and sd:
                out[key] = (mean, sd)
        return out

    def spikes(self, exact: bool) -> list[tuple[str, str, str, float]]:
        """(trace id, type, name, duration ms) of the spikes: every span beyond mean + 3 sd (exact), or
        the slowest span of each operation key in each bucket when that one is (rollups)."""
        base = self.baselines()
        if exact:
            candidates = self.spans
        else:
            step = self.window.detail_step(exact)
            slowest: dict[tuple[Any, ...], dict[str, Any]] = {}
            for spec in self.spans:
                slot = (floor(spec["start_ns"], step), rollup_key(spec))
                if slot not in slowest or duration(spec) > duration(slowest[slot]):
                    slowest[slot] = spec
            candidates = list(slowest.values())
        found = []
        for spec in candidates:
            if op(spec) in base:
                mean, sd = base[op(spec)]
                if duration(spec) / 1e6 > mean + 3 * sd:
                    found.append(((duration(spec) / 1e6 - mean) / sd, spec))
        found.sort(key=lambda item: -item[0])
        return [(s["trace_id"], op_type(s), s["name"], duration(s) / 1e6) for _sigmas, s in found]


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def specs() -> list[dict[str, Any]]:
    return ds.generate()


@pytest.fixture(scope="module")
def store(specs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset written in 7 batches, every span of every trace shuffled across them."""
    path = tmp_path_factory.mktemp("report") / "shuffled.db"
    ds.write_store(str(path), specs, order="shuffled")
    return path


@pytest.fixture(scope="module")
def conn(store: Path) -> Iterable[sqlite3.Connection]:
    connection = connect_for_reading(str(store))
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def ended_store(specs: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset written as a BatchSpanProcessor writes it: in the order the spans ended."""
    path = tmp_path_factory.mktemp("report") / "ended.db"
    ds.write_store(str(path), specs, order="ended")
    return path


_reports: dict[tuple[str, str, bool], dict[str, Any]] = {}


def report_of(connection: sqlite3.Connection, name: str, window_id: str, exact: bool) -> dict[str, Any]:
    """build_report over a window (memoized per store, window and path: each is built once)."""
    key = (name, window_id, exact)
    if key not in _reports:
        w = WINDOWS[window_id]
        _reports[key] = build_report(connection, w.period, now_ns=NOW, exact=exact, service=w.service)
        assert _reports[key]["report"]["source"] == ("exact" if exact else "rollups")
    return _reports[key]


@pytest.fixture(scope="module")
def report(conn: sqlite3.Connection) -> Callable[[str, bool], dict[str, Any]]:
    _reports.clear()
    return lambda window_id, exact: report_of(conn, "shuffled", window_id, exact)


@pytest.fixture(scope="module")
def truth(specs: list[dict[str, Any]]) -> Callable[[str], Truth]:
    cache: dict[str, Truth] = {}

    def get(window_id: str) -> Truth:
        if window_id not in cache:
            cache[window_id] = Truth(specs, WINDOWS[window_id])
        return cache[window_id]

    return get


def section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return doc["sections"][name]


def rows(doc: dict[str, Any], name: str, table: str) -> list[dict[str, Any]]:
    return doc["sections"][name]["tables"][table]["rows"]


# --- the dataset is what the tests assume ----------------------------------------------------------
def test_the_dataset_holds_what_the_checks_rely_on(specs: list[dict[str, Any]], truth: Callable[[str], Truth]) -> None:
    current = truth("3d")
    assert 1300 <= len({s["trace_id"] for s in current.spans}) <= 1700
    assert len({s["trace_id"] for s in truth("3d").previous.spans}) >= 300  # type: ignore[union-attr]
    assert {s["service"] for s in current.spans} == set(ds.SERVICES)
    assert NOW % MINUTE and ds.RAGGED_SINCE % MINUTE and ds.RAGGED_UNTIL % MINUTE
    for cut in (ds.SINCE_3D, ds.RAGGED_SINCE, ds.RAGGED_UNTIL):  # spans in the partial minutes on both sides
        assert any(floor(cut, MINUTE) <= s["start_ns"] < cut for s in specs)
        assert any(cut <= s["start_ns"] < floor(cut, MINUTE) + MINUTE for s in specs)
    for trace in current.traces.values():  # no trace has span starts on both sides of an edge
        starts = [s["start_ns"] for s in trace]
        assert not any(min(starts) < cut <= max(starts) for cut in ds.CUTS)
    sessions = Counter(s["attributes"].get(sc.SESSION_ID) for s in current.spans if s["parent_span_id"] is None)
    del sessions[None]
    assert 3.5 <= statistics.mean(sessions.values()) <= 4.5
    slowest = [r["trace_id"] for r in current.roots()[:5]]
    pair = [r["trace_id"] for r in current.roots() if r["start_ns"] in ds.SLOW_PAIR_STARTS]
    assert slowest[0] == ds.spike_trace_id(specs) and set(pair) <= set(slowest)
    spike = current.traces[ds.spike_trace_id(specs)]
    plans = [duration(s) for s in current.spans if s["name"] == "plan"]
    spiked = next(duration(s) for s in spike if s["name"] == "plan")
    assert spiked > 40 * statistics.median(plans)
    run_tests = [s for s in current.spans if s["attributes"].get(sc.GEN_AI_TOOL_NAME) == "run_tests"]
    assert 0.35 < sum(map(failed, run_tests)) / len(run_tests) < 0.5
    burst = [s for s in current.error_spans() if floor(s["start_ns"], MINUTE) == ds.BURST_MINUTE_NS]
    assert len(burst) >= ds.BURST_TRACES * (ds.BURST_CALLS_PER_TRACE + 3)
    models = Counter(model_of(s) for s in current.llm_spans())
    assert models[ds.REPRICED_RESPONSE_MODEL] and models[ds.UNKNOWN_MODEL] and models[ds.PRICED_MODEL]
    assert table_price("openai", ds.REPRICED_RESPONSE_MODEL) is not None
    assert table_price("acme", ds.UNKNOWN_MODEL) is None


# --- overview ----------------------------------------------------------------------------------------
_COMPARED = ("spans", "traces", "errors", "success_rate", "p95_ms", "cost_usd", "input_tokens", "output_tokens")


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_overview(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    values = section(doc, "overview")["values"]
    expected = t.figures(exact)
    for key in ("spans", "traces", "errors", "success_rate", "input_tokens", "output_tokens", "cache_read_tokens",
                "cost_usd"):  # fmt: skip
        close(values[key], expected[key], what=key)
    for p in PERCENTILES:
        check_percentile(values[f"p{p}_ms"], expected["durations"], p, exact, "overview")
    assert values["sessions"] == len(t.sessions)
    assert values["alerts_fired"] == 0
    # the comparison with the previous window of the same length
    comparison = {r["metric"]: r for r in rows(doc, "overview", "comparison")}
    assert len(comparison) == len(_COMPARED) + 1
    if t.previous is None:
        assert all(values[f"{key}_change"] is None for key in _COMPARED)
        assert all(r["previous"] is None and r["change"] is None for r in comparison.values())
    else:
        before = t.previous.figures(exact)
        previous_p95 = comparison["p95 ms"]["previous"]
        check_percentile(previous_p95, before["durations"], 95, exact, "previous window")
        before["p95_ms"] = previous_p95
        expected["p95_ms"] = values["p95_ms"]
        for key in _COMPARED:
            close(values[f"{key}_change"], (expected[key] - before[key]) / abs(before[key]), what=f"{key}_change")
        close(comparison["Spans"]["previous"], before["spans"])
        close(comparison["Cost"]["previous"], before["cost_usd"])
        close(comparison["Errors"]["change"], (expected["errors"] - before["errors"]) / before["errors"])
        if WINDOWS[window].since == ds.SINCE_3D:
            assert values["spans_change"] > 1  # the dataset has more traffic in its last 3 days
    # spans and errors per day (UTC), only the part of each day inside the window
    per_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for spec in t.spans:
        per_day[day(spec["start_ns"])][0] += 1
        per_day[day(spec["start_ns"])][1] += failed(spec)
    assert [(r["day"], r["spans"], r["errors"]) for r in rows(doc, "overview", "per_day")] == [
        (d, n, e) for d, (n, e) in sorted(per_day.items())
    ]
    # the 0.1 summary keeps the same figures
    summary = doc["summary"]
    for key in ("spans", "traces", "success_rate", "input_tokens", "output_tokens", "cost_usd"):
        close(summary[key], expected[key], what=f"summary {key}")
    assert summary["sessions"] == len(t.sessions)
    assert summary["unpriced_llm_calls"] == sum(1 for s in t.llm_spans() if usage(s).unpriced)  # type: ignore[union-attr]
    for p in PERCENTILES:
        assert summary[f"p{p}_ms"] == values[f"p{p}_ms"]


# --- operations --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("window", "exact"), CASES)
def test_operations(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = t.operation_rows()
    actual = rows(doc, "operations", "operations")
    assert [(r["type"], r["name"]) for r in actual] == [(r["type"], r["name"]) for r in expected]
    for got, want in zip(actual, expected):
        check_row(got, want, exact, f"{want['type']} {want['name']}")
    assert rows(doc, "operations", "commands") == [r for r in actual if r["type"] == "command"]
    bottlenecks = sorted(expected, key=lambda r: -r["time_share"])[:15]
    assert [r["name"] for r in rows(doc, "operations", "bottlenecks")] == [r["name"] for r in bottlenecks]
    values = section(doc, "operations")["values"]
    assert values["operations"] == len(expected)
    assert values["commands"] == sum(1 for r in expected if r["type"] == "command")
    assert values["most_used"] == expected[0]["name"]
    assert values["most_time"] == bottlenecks[0]["name"]
    reliable = min((r for r in expected if r["count"] >= 10), key=lambda r: (r["success_rate"], r["name"]))
    assert values["least_reliable"] == reliable["name"]
    # the 0.1 list: the same operations, slowest p95 first
    legacy = doc["operations"]
    assert sorted((r["type"], r["name"], r["count"]) for r in legacy) == sorted(
        (r["type"], r["name"], r["count"]) for r in expected
    )
    assert [r["p95_ms"] for r in legacy] == sorted((r["p95_ms"] for r in legacy), reverse=True)


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_slowest_traces_and_their_critical_paths(report: Any, truth: Callable[[str], Truth], specs: Any,
                                                 window: str, exact: bool) -> None:  # fmt: skip
    doc, t = report(window, exact), truth(window)
    roots = t.roots()[:5]
    actual = rows(doc, "operations", "slowest_traces")
    assert [r["trace_id"] for r in actual] == [r["trace_id"] for r in roots]
    for rank, (got, root) in enumerate(zip(actual, roots), start=1):
        assert got["rank"] == rank
        assert (got["name"], got["type"], got["failed"]) == (root["name"], op_type(root), failed(root))
        assert got["spans"] == len(t.trace_read(root))
        assert got["started"] == iso(root["start_ns"])
        close(got["duration_ms"], duration(root) / 1e6)
    expected_paths = [
        (rank, root["trace_id"], depth, span["name"], duration(span) / 1e6, own / 1e6, own / duration(root))
        for rank, root in enumerate(roots, start=1)
        for span, depth, own in t.critical_path(root)
    ]
    actual_paths = [(r["trace"], r["trace_id"], r["depth"], r["name"], r["duration_ms"], r["own_ms"], r["own_share"])
                    for r in rows(doc, "operations", "critical_path")]  # fmt: skip
    assert len(actual_paths) == len(expected_paths)
    for got, want in zip(actual_paths, expected_paths):
        assert got[:4] == want[:4]
        for a, b in zip(got[4:], want[4:]):
            close(a, b)


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_the_injected_slow_trace_is_the_slowest(report: Any, specs: Any, window: str, exact: bool) -> None:
    doc = report(window, exact)
    spike = ds.spike_trace_id(specs)
    traces = rows(doc, "operations", "slowest_traces")
    if not WINDOWS[window].holds(next(s for s in specs if s["trace_id"] == spike)):
        assert spike not in [r["trace_id"] for r in traces]
        return
    assert traces[0]["trace_id"] == spike
    path = [r for r in rows(doc, "operations", "critical_path") if r["trace"] == 1]
    root = next(s for s in specs if s["trace_id"] == spike and s["parent_span_id"] is None)
    assert (path[0]["depth"], path[0]["name"], path[0]["trace_id"]) == (0, root["name"], spike)
    close(path[0]["duration_ms"], duration(root) / 1e6)
    plan = next(r for r in path if r["name"] == "plan")  # the step that waited, on its own
    assert plan["depth"] == 1 and plan["own_share"] > 0.5


_EDGES_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _latency_label(ms: float) -> str:
    def text(edge: float) -> str:
        return f"{edge // 1000}s" if edge >= 1000 else f"{edge}ms"

    for low, high in zip((None, *_EDGES_MS), (*_EDGES_MS, None)):
        if high is None or ms < high:
            return f"<{text(high)}" if low is None else f">={text(low)}" if high is None else f"{text(low)}-{text(high)}"
    raise AssertionError(ms)


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_latency_distribution(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    """Spans per latency bucket of the 5 most frequent operations (exact; from the histograms, whose
    bins may straddle a bucket edge, the same totals)."""
    doc, t = report(window, exact), truth(window)
    top = t.operation_rows()[:5]
    table = section(doc, "operations")["tables"]["latency_distribution"]
    assert [c["label"] for c in table["columns"][1:]] == [r["name"] for r in top]
    labels = [r["latency"] for r in table["rows"]]
    assert labels == ["<1ms", *(f"{_latency_label(e)}" for e in _EDGES_MS)]
    for n, row in enumerate(top):
        counts = Counter(_latency_label(d / 1e6) for d in row["durations"])
        column = [r[f"op_{n}"] for r in table["rows"]]
        assert sum(column) == row["count"]
        if exact:
            assert column == [counts[label] for label in labels], row["name"]


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_slowest_steps(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    commands = [r["name"] for r in t.operation_rows() if r["type"] == "command"][:5]
    expected = []
    for command in commands:
        runs = [r for r in t.roots() if r["name"] == command][:3]
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for root in runs:
            for spec in t.trace_read(root):
                if spec is not root and op_type(spec) == "step":
                    totals[spec["name"]][0] += duration(spec)
                    totals[spec["name"]][1] += 1
        run_ns = sum(duration(r) for r in runs)
        for name, (total, calls) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
            expected.append((command, name, len(runs), calls, total / 1e6, total / run_ns))
    actual = [(r["command"], r["name"], r["runs"], r["calls"], r["total_ms"], r["share_of_run"])
              for r in rows(doc, "operations", "slowest_steps")]  # fmt: skip
    assert [a[:4] for a in actual] == [e[:4] for e in expected]
    for got, want in zip(actual, expected):
        close(got[4], want[4])
        close(got[5], want[5])


# --- llm -----------------------------------------------------------------------------------------------
def _model(spec: dict[str, Any]) -> tuple[str, str]:
    return model_of(spec) or "(unknown)", spec["attributes"].get(sc.GEN_AI_PROVIDER_NAME) or "(unknown)"


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_llm(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    by_model = t.usage_table(_model, ("model", "provider"))
    actual = rows(doc, "llm", "by_model")
    assert [(r["model"], r["provider"]) for r in actual] == [(r["model"], r["provider"]) for r in by_model]
    for got, want in zip(actual, by_model):
        check_row(got, want, exact, f"model {want['model']}")
    # the model in the table but stored without a cost is priced now, from the YAML's prices
    mini = next(r for r in actual if r["model"] == ds.REPRICED_RESPONSE_MODEL)
    assert mini["cost_priced_now_usd"] > 0 and mini["unpriced_calls"] == 0
    close(mini["cost_usd"], mini["cost_priced_now_usd"])
    mystery = next(r for r in actual if r["model"] == ds.UNKNOWN_MODEL)
    assert mystery["cost_usd"] == 0 and mystery["unpriced_calls"] == mystery["calls"] > 0
    # models without a price are listed, never costed at $0
    unpriced = rows(doc, "llm", "unpriced")
    assert [(r["model"], r["provider"], r["calls"], r["input_tokens"], r["output_tokens"]) for r in unpriced] == [
        (r["model"], r["provider"], r["unpriced_calls"], r["input_tokens"], r["output_tokens"])
        for r in by_model if r["unpriced_calls"]
    ]
    assert ds.UNKNOWN_MODEL in {r["model"] for r in unpriced}
    by_provider = t.usage_table(lambda s: (_model(s)[1],), ("provider",))
    actual = rows(doc, "llm", "by_provider")
    assert [r["provider"] for r in actual] == [r["provider"] for r in by_provider]
    for got, want in zip(actual, by_provider):
        check_row(got, want, exact, f"provider {want['provider']}")
    by_agent = t.usage_table(lambda s: (s["attributes"][sc.GEN_AI_AGENT_NAME],) if sc.GEN_AI_AGENT_NAME in s["attributes"]
                             else None, ("agent",))  # fmt: skip
    actual = rows(doc, "llm", "by_agent")
    assert [r["agent"] for r in actual] == [r["agent"] for r in by_agent]
    for got, want in zip(actual, by_agent):
        check_row(got, want, exact, f"agent {want['agent']}")
    overall = t.usage_row(t.llm_spans())
    values = section(doc, "llm")["values"]
    for key in ("calls", "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd", "cost_priced_now_usd",
                "error_rate"):  # fmt: skip
        close(values[key], overall[key], what=key)
    check_percentile(values["p95_ms"], overall["durations"], 95, exact, "llm")
    assert values["top_model"] == by_model[0]["model"]
    assert values["top_agent"] == by_agent[0]["agent"]
    assert values["unpriced_models"] == len(unpriced)
    close(values["cost_usd"], section(doc, "overview")["values"]["cost_usd"])


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_llm_agent_runs(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for spec in t.spans:
        if op_type(spec) == "agent":
            runs[spec["attributes"][sc.GEN_AI_AGENT_NAME]].append(spec)
    expected = sorted(
        ({"agent": agent, "runs": len(specs), "error_rate": sum(map(failed, specs)) / len(specs),
          "avg_ms": sum(map(duration, specs)) / len(specs) / 1e6} for agent, specs in runs.items()),
        key=lambda r: (-r["runs"], r["agent"]),
    )  # fmt: skip
    actual = rows(doc, "llm", "agent_runs")
    assert [(r["agent"], r["runs"]) for r in actual] == [(r["agent"], r["runs"]) for r in expected]
    for got, want in zip(actual, expected):
        check_row(got, want, exact, want["agent"])


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_cost_per_day_adds_up_to_the_cost(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    """Cost per day (llm and overview) counts the calls priced at report time, as the headline cost does."""
    doc, t = report(window, exact), truth(window)
    days: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for spec in t.llm_spans():
        days[day(spec["start_ns"])].append(spec)
    expected = {d: total_cost(specs) for d, specs in days.items()}
    llm_days = rows(doc, "llm", "cost_per_day")
    assert [r["day"] for r in llm_days] == sorted(expected)
    for row in llm_days:
        close(row["cost_usd"], expected[row["day"]], what=row["day"])
        tokens = [(weight(s), usage(s)) for s in days[row["day"]]]
        assert row["input_tokens"] == round(sum(w * u.input for w, u in tokens))  # type: ignore[union-attr]
        assert row["unpriced_calls"] == round(sum(w for w, u in tokens if u.unpriced))  # type: ignore[union-attr]
    for row in rows(doc, "overview", "per_day"):
        close(row["cost_usd"], expected.get(row["day"], 0.0), what=f"overview {row['day']}")
    close(sum(r["cost_usd"] for r in llm_days), section(doc, "llm")["values"]["cost_usd"])


# --- tools ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("window", "exact"), CASES)
def test_tools(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = t.tool_rows()
    actual = rows(doc, "tools", "usage")
    assert [r["tool"] for r in actual] == [r["tool"] for r in expected]
    for got, want in zip(actual, expected):
        check_row(got, want, exact, want["tool"])
    run_tests = next(r for r in actual if r["tool"] == "run_tests")
    assert 0.3 < run_tests["error_rate"] < 0.6
    values = section(doc, "tools")["values"]
    assert values["tools"] == len(expected)
    assert values["calls"] == sum(r["calls"] for r in expected)
    assert values["most_used"] == expected[0]["tool"]


def _check_sequences(doc: dict[str, Any], t: Truth) -> None:
    expected = t.sequence_rows()
    actual = rows(doc, "tools", "sequences")
    assert [(r["length"], r["sequence"], r["count"]) for r in actual] == [
        (r["length"], r["sequence"], r["count"]) for r in expected
    ]
    pairs = [r for r in expected if r["length"] == 2]
    assert section(doc, "tools")["values"]["top_sequence"] == (pairs[0]["sequence"] if pairs else None)


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_tool_sequences(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    """The README: the 10 most frequent sequences of 2..5 calls within a session (a trace without
    one), each counted once for every call that completes it, in the order the calls started.
    This store was written with every trace's spans shuffled across batches."""
    _check_sequences(report(window, exact), truth(window))


@pytest.mark.parametrize("window", list(WINDOWS))
def test_tool_sequences_of_a_store_written_in_end_order(ended_store: Path, truth: Callable[[str], Truth],
                                                        window: str) -> None:  # fmt: skip
    """The same from the rollups of a store written the way a BatchSpanProcessor writes: in the
    order spans ended (the exact path reads the spans, whatever order they were written in)."""
    connection = connect_for_reading(str(ended_store))
    try:
        w = WINDOWS[window]
        doc = build_report(connection, w.period, now_ns=NOW, exact=False, service=w.service, sections=["tools"])
        _check_sequences(doc, truth(window))
    finally:
        connection.close()


# --- templates and conditions -------------------------------------------------------------------------
@pytest.mark.parametrize(("window", "exact"), CASES)
def test_templates(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = t.template_rows()
    actual = rows(doc, "templates", "templates")
    assert [r["template"] for r in actual] == [r["template"] for r in expected] == ["prompt.j2", "summary.j2"]
    for got, want in zip(actual, expected):
        check_row(got, {k: v for k, v in want.items() if not k.startswith("_")}, exact, want["template"])
    close(actual[0]["cache_hit_rate"], 0.9, rel=0.05)  # the rates the generator used, of the renders reporting it
    close(actual[1]["cache_hit_rate"], 0.3, rel=0.15)
    values = section(doc, "templates")["values"]
    assert values["templates"] == 2
    assert values["renders"] == sum(r["renders"] for r in expected)
    slowest = rows(doc, "templates", "slowest")
    by_p95 = sorted(actual, key=lambda r: (-r["p95_ms"], r["template"]))
    assert [r["template"] for r in slowest] == [r["template"] for r in by_p95]
    assert values["slowest"] == slowest[0]["template"]


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_templates_overall_cache_hit_rate(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    """The headline rate, like each template's: hits among the renders that report a cache result."""
    doc, t = report(window, exact), truth(window)
    expected = t.template_rows()
    close(section(doc, "templates")["values"]["cache_hit_rate"],
          sum(r["_hits"] for r in expected) / sum(r["_checks"] for r in expected))  # fmt: skip


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_conditions(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = t.condition_rows()
    actual = rows(doc, "conditions", "conditions")
    assert [r["condition"] for r in actual] == [r["condition"] for r in expected]
    for got, want in zip(actual, expected):
        check_row(got, want, exact, want["condition"])
        assert got["true"] + got["false"] < got["evaluations"]  # some evaluations recorded no result
    values = section(doc, "conditions")["values"]
    assert values["conditions"] == len(expected)
    for key in ("evaluations", "true", "false"):
        assert values[key] == sum(r[key] for r in expected)
    close(values["total_ms"], sum(r["total_ms"] for r in expected))


# --- errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("window", "exact"), CASES)
def test_errors(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    errors = t.error_spans()
    total = len(errors)
    by_category = Counter(Truth.category(s) for s in errors)
    categories = sorted(by_category, key=lambda c: (-by_category[c], c))
    assert [(r["category"], r["errors"]) for r in rows(doc, "errors", "by_category")] == [
        (c, by_category[c]) for c in categories
    ]
    for row in rows(doc, "errors", "by_category"):
        close(row["share"], by_category[row["category"]] / total)
    by_type = Counter((s["error_type"] or "(none)", Truth.category(s)) for s in errors)
    assert [(r["type"], r["category"], r["errors"]) for r in rows(doc, "errors", "by_type")] == [
        (k[0], k[1], n) for k, n in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    # per day, with a column per top category
    trend: dict[str, Counter[str]] = defaultdict(Counter)
    for spec in errors:
        trend[day(spec["start_ns"])][Truth.category(spec)] += 1
    assert rows(doc, "errors", "trend") == [
        {"day": d, "errors": sum(trend[d].values()), **{f"category_{c}": trend[d][c] for c in categories[:5]}}
        for d in sorted(trend)
    ]
    # messages as templates (known by construction: see report_dataset), most frequent first
    messages = Counter((s["message_template"], s["error_type"], Truth.category(s)) for s in errors)
    expected = sorted(messages.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    assert [(r["message"], r["type"], r["category"], r["errors"]) for r in rows(doc, "errors", "messages")] == [
        (m, e or "(none)", c, n) for (m, e, c), n in expected
    ]
    assert "run_tests failed after <n> retries in <n>s" in [r["message"] for r in rows(doc, "errors", "messages")]
    # hotspots: operation x category, with the operation's error rate
    hot = Counter((op_type(s), s["name"], Truth.category(s)) for s in errors)
    ops = Counter(op(s) for s in t.spans)
    expected_hot = sorted(hot.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    actual_hot = rows(doc, "errors", "hotspots")
    assert [(r["type"], r["name"], r["category"], r["errors"]) for r in actual_hot] == [(*k, n) for k, n in expected_hot]
    for row, (key, n) in zip(actual_hot, expected_hot):
        close(row["error_rate"], n / ops[key[:2]])
    values = section(doc, "errors")["values"]
    assert values["errors"] == total
    close(values["error_rate"], total / len(t.spans))
    assert (values["categories"], values["top_category"]) == (len(categories), categories[0])


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_error_messages_name_their_last_trace(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    """Each message's trace is the one of its latest occurrence (by start time), whatever the write order."""
    doc, t = report(window, exact), truth(window)
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for spec in t.error_spans():
        key = (spec["message_template"], spec["error_type"] or "(none)", Truth.category(spec))
        if key not in latest or spec["start_ns"] > latest[key]["start_ns"]:
            latest[key] = spec
    for row in rows(doc, "errors", "messages"):
        assert row["last_trace_id"] == latest[(row["message"], row["type"], row["category"])]["trace_id"], row["message"]


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_error_bursts(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = t.bursts(exact)
    actual = rows(doc, "errors", "bursts")
    assert [(r["start"], r["end"], r["buckets"], r["errors"], r["peak"]) for r in actual] == [
        (r["start"], r["end"], r["buckets"], r["errors"], r["peak"]) for r in expected
    ]
    for got, want in zip(actual, expected):
        close(got["baseline"], want["baseline"])
        close(got["error_rate"], want["error_rate"])
    assert section(doc, "errors")["values"]["bursts"] == len(expected)
    if WINDOWS[window].service is None:  # the injected burst is the largest, in its minute (hour)
        step = WINDOWS[window].detail_step(exact)
        assert actual[0]["start"] == iso(floor(ds.BURST_MINUTE_NS, step))
        assert actual[0]["errors"] >= ds.BURST_TRACES * (ds.BURST_CALLS_PER_TRACE + 3)


# --- sessions ------------------------------------------------------------------------------------------
_SESSION_KEYS = ("session", "started", "duration_s", "spans", "traces", "messages", "tool_calls", "distinct_tools",
                 "success_rate", "tokens", "complexity")  # fmt: skip


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_sessions(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = t.sessions
    values = section(doc, "sessions")["values"]
    assert values["sessions"] == len(expected) > 0
    durations = [round(s["duration_s"] * NS) for s in expected.values()]
    close(values["avg_duration_s"], statistics.mean(s["duration_s"] for s in expected.values()))
    close(values["p50_duration_s"], type7_ms(durations, 50) / 1000, rel=1e-6)
    close(values["p95_duration_s"], type7_ms(durations, 95) / 1000, rel=1e-6)
    for key in ("spans", "messages", "tool_calls", "distinct_tools", "tokens", "complexity"):
        close(values[f"avg_{key}"], statistics.mean(s[key] for s in expected.values()), what=key)
    spans = sum(s["spans"] for s in expected.values())
    close(values["success_rate"], sum(s["success_rate"] * s["spans"] for s in expected.values()) / spans)
    ranked = sorted(expected.values(), key=lambda s: (-s["complexity"], s["session"]))[:20]
    actual = rows(doc, "sessions", "most_complex")
    assert [r["session"] for r in actual] == [s["session"] for s in ranked]
    for got, want in zip(actual, ranked):
        for key in _SESSION_KEYS:
            close(got[key], want[key], what=f"{want['session']} {key}")
    bands = [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100.01)]
    assert [r["sessions"] for r in rows(doc, "sessions", "complexity")] == [
        sum(1 for s in expected.values() if low <= s["complexity"] < high) for low, high in bands
    ]


def test_one_session_by_hand(report: Any, specs: list[dict[str, Any]]) -> None:
    """The most complex session of the 3-day window, worked out step by step with the README formula."""
    doc = report("3d", True)
    row = rows(doc, "sessions", "most_complex")[0]
    mine = [s for s in specs if s["attributes"].get(sc.SESSION_ID) == row["session"]]
    messages = sum(1 for s in mine if s["attributes"][sc.OPERATION_TYPE] == "llm")
    tools = {s["attributes"][sc.GEN_AI_TOOL_NAME] for s in mine if s["attributes"][sc.OPERATION_TYPE] == "tool"}
    error_rate = sum(1 for s in mine if s["status"] == "ERROR") / len(mine)
    seconds = (max(s["end_ns"] for s in mine) - min(s["start_ns"] for s in mine)) / 1e9
    score = (35 * min(messages / 20, 1) + 25 * min(len(tools) / 8, 1) + 20 * min(error_rate / 0.25, 1)
             + 20 * min(seconds / 600, 1))  # fmt: skip
    assert row["spans"] == len(mine)
    assert row["traces"] == sum(1 for s in mine if s["parent_span_id"] is None)
    assert row["messages"] == messages
    assert row["distinct_tools"] == len(tools)
    assert row["tool_calls"] == sum(1 for s in mine if s["attributes"][sc.OPERATION_TYPE] == "tool")
    assert row["duration_s"] == pytest.approx(seconds)
    assert row["complexity"] == pytest.approx(score)
    assert row["success_rate"] == pytest.approx(1 - error_rate)


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_session_cost_counts_calls_priced_at_report_time(report: Any, truth: Callable[[str], Truth], window: str,
                                                         exact: bool) -> None:  # fmt: skip
    """A session's cost is that of its LLM calls, those stored without a cost priced now (the README:
    such calls are priced at report time, never counted as $0)."""
    doc, t = report(window, exact), truth(window)
    expected = t.sessions
    by_cost = sorted(expected.values(), key=lambda s: (-s["cost_usd"], s["session"]))[:20]
    actual = rows(doc, "sessions", "most_expensive")
    assert [r["session"] for r in actual] == [s["session"] for s in by_cost]
    for got, want in zip(actual, by_cost):
        close(got["cost_usd"], want["cost_usd"], what=want["session"])
    close(section(doc, "sessions")["values"]["avg_cost_usd"], statistics.mean(s["cost_usd"] for s in expected.values()))


def test_session_cost_prices_every_model_a_session_used(conn: sqlite3.Connection, truth: Callable[[str], Truth]) -> None:
    """A session that called several models stored without a cost is priced model by model: with
    a price added for the mystery model, its tokens count at that price next to gpt-4o-mini's."""
    mystery = ModelPrice(model=ds.UNKNOWN_MODEL, input=7.0, output=11.0)
    table = current_table()
    pricing = PricingTable(((mystery,), *table.tiers), table.version)
    doc = build_report(conn, "all", now_ns=NOW, sections=["sessions"], exact=False, pricing=pricing)
    extra: dict[str, float] = defaultdict(float)
    for spec in _session_spans(truth("all")):
        if model_of(spec) == ds.UNKNOWN_MODEL:
            a = spec["attributes"]
            extra[a[sc.SESSION_ID]] += cost_usd(mystery, a.get(sc.GEN_AI_USAGE_INPUT_TOKENS), a.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS))
    assert len(extra) > 20  # enough sessions mix both models for the top 20 to show it
    expected = {k: v["cost_usd"] + extra[k] for k, v in truth("all").sessions.items()}
    by_cost = sorted(expected, key=lambda k: (-expected[k], k))[:20]
    actual = rows(doc, "sessions", "most_expensive")
    assert [r["session"] for r in actual] == by_cost
    for row in actual:
        close(row["cost_usd"], expected[row["session"]], what=row["session"])
    close(section(doc, "sessions")["values"]["avg_cost_usd"], statistics.mean(expected.values()))


def _session_spans(t: Truth) -> list[dict[str, Any]]:
    """The spans of the sessions that started in the window."""
    return [s for s in t.all if s["attributes"].get(sc.SESSION_ID) in t.sessions]


# --- anomalies -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("window", "exact"), CASES)
def test_anomalies(report: Any, truth: Callable[[str], Truth], specs: Any, window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = t.spikes(exact)
    actual = rows(doc, "anomalies", "spikes")
    assert [(r["trace_id"], r["type"], r["name"]) for r in actual] == [e[:3] for e in expected[:50]]
    for got, want in zip(actual, expected):
        close(got["duration_ms"], want[3])
    base = t.baselines()
    for row in actual:
        mean, sd = base[(row["type"], row["name"])]
        close(row["baseline_ms"], mean)
        close(row["sd_ms"], sd)
    values = section(doc, "anomalies")["values"]
    assert (values["anomalies"], values["operations"]) == (len(expected), len(base))
    spike = ds.spike_trace_id(specs)
    if WINDOWS[window].holds(next(s for s in specs if s["trace_id"] == spike)):
        assert ("plan", spike) in {(r["name"], r["trace_id"]) for r in actual}
        assert values["worst"] == "plan" and actual[0]["trace_id"] == spike


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_anomalies_lie_in_the_window(report: Any, specs: Any, window: str, exact: bool) -> None:
    """No spike from outside the window: the slow plan 20 minutes before the 3-day window starts,
    the one a second after the ragged window ends."""
    doc = report(window, exact)
    w = WINDOWS[window]
    starts = {s["trace_id"]: s["start_ns"] for s in specs if s["parent_span_id"] is None}
    for row in rows(doc, "anomalies", "spikes"):
        start = starts[row["trace_id"]]
        assert (w.since is None or start >= w.since) and (w.until is None or start < w.until), row
    listed = {r["trace_id"] for r in rows(doc, "anomalies", "spikes")}
    if w.since == ds.SINCE_3D:
        assert ds.previous_spike_trace_id(specs) not in listed
    if w.until == ds.RAGGED_UNTIL:  # the slow plan that started a second after the window
        assert ds.edge_slow_trace_id(specs) not in listed


# --- recommendations -----------------------------------------------------------------------------------
_SEVERITY = {"high": 0, "medium": 1, "low": 2}


def expected_recommendations(t: Truth) -> list[tuple[str, str, str, str | None]]:
    """(severity, rule, subject, evidence or None) of every rule the README lists that fires."""
    found: list[tuple[str, str, str, str | None]] = []
    for tool in t.tool_rows():
        if tool["calls"] >= 10 and tool["error_rate"] >= 0.3:
            found.append(("high", "failing_tool", tool["tool"],
                          f"calls={tool['calls']}, failures={tool['failures']}, error_rate={tool['error_rate']:.1%}"))  # fmt: skip
    for row in t.operation_rows():
        if row["type"] != "tool" and row["count"] >= 20 and 1 - row["success_rate"] >= 0.2:
            found.append(("high", "failing_operation", row["name"], f"count={row['count']}, failures={row['failures']}"))
        if row["type"] not in ("command", "agent", "other") and row["count"] >= 10 and row["time_share"] >= 0.5:
            found.append(("medium", "bottleneck", row["name"], None))
    calls = [s for s in t.spans if op_type(s) in ("llm", "tool")]
    retryable = Counter(Truth.category(s) for s in calls if failed(s))
    retryable = Counter({c: n for c, n in retryable.items() if c in ("rate_limit", "timeout", "network")})
    if sum(retryable.values()) >= 5 and sum(retryable.values()) / len(calls) >= 0.05:
        evidence = ", ".join(f"{c}={n}" for c, n in sorted(retryable.items()))
        found.append(("medium", "retries", "llm and tool calls", evidence))
    by_model = t.usage_table(_model, ("model", "provider"))
    cost = sum(r["cost_usd"] for r in by_model)
    for row in by_model:
        if row["calls"] >= 20 and row["cost_usd"] / cost >= 0.7:
            found.append(("medium", "dominant_model", row["model"], None))
        if row["unpriced_calls"]:
            found.append(("low", "unpriced_model", row["model"],
                          f"unpriced_calls={row['unpriced_calls']}, input_tokens={row['input_tokens']}"))  # fmt: skip
    for row in t.template_rows():
        if row["renders"] >= 20 and row["cache_hit_rate"] is not None and row["cache_hit_rate"] < 0.5:
            found.append(("low", "template_cache", row["template"], None))
    return sorted(found, key=lambda r: (_SEVERITY[r[0]], r[1], r[2]))


@pytest.mark.parametrize(("window", "exact"), CASES)
def test_recommendations(report: Any, truth: Callable[[str], Truth], window: str, exact: bool) -> None:
    doc, t = report(window, exact), truth(window)
    expected = expected_recommendations(t)
    actual = rows(doc, "recommendations", "recommendations")
    assert [(r["severity"], r["rule"], r["subject"]) for r in actual] == [e[:3] for e in expected]
    for got, want in zip(actual, expected):
        if want[3] is not None:
            assert got["evidence"] == want[3], want[1]
    fired = {(r["rule"], r["subject"]) for r in actual}
    assert ("failing_tool", "run_tests") in fired  # ~40% of its calls fail
    assert ("unpriced_model", ds.UNKNOWN_MODEL) in fired
    assert ("template_cache", "summary.j2") in fired
    values = section(doc, "recommendations")["values"]
    assert values == {"recommendations": len(expected), "high": sum(1 for e in expected if e[0] == "high")}


# --- a sampled copy of the same traffic ------------------------------------------------------------------
# Every trace with an error is kept (rate 1), every other with probability 1/4 (rate 4), so an estimate
# sum(w * x) over the kept spans is unbiased with variance sum((r - 1) * x_t^2) over the traces the sampler
# could drop (x_t: the trace's part of the figure; Horvitz-Thompson with independent trace-level Bernoulli
# sampling). For the 3-day window (~1,500 traces, ~1,150 of them droppable) that standard error is ~4% of the
# total for spans, traces, tokens and cost, and 5-14% for the calls of a single tool (fewer, lumpier). Each
# estimate must lie within SAMPLING_SES standard errors of the truth: a wrong weighting (counting kept spans
# once, or weighting errors by 4) misses by 50-75%, far outside; a correct one misses 4 SE with probability
# < 1e-4 (the dataset is deterministic anyway, so the test cannot flake).
SAMPLING_SES = 4


@pytest.fixture(scope="module")
def sampled_specs(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return ds.sampled(specs)


@pytest.fixture(scope="module")
def sampled_conn(sampled_specs: list[dict[str, Any]],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterable[sqlite3.Connection]:  # fmt: skip
    path = tmp_path_factory.mktemp("report") / "sampled.db"
    ds.write_store(str(path), sampled_specs, order="shuffled")
    connection = connect_for_reading(str(path))
    yield connection
    connection.close()


def _estimates(specs: list[dict[str, Any]], window: Window) -> dict[str, Callable[[dict[str, Any]], float]]:
    """What each checked figure adds up per span (its value, unweighted)."""
    figures: dict[str, Callable[[dict[str, Any]], float]] = {
        "spans": lambda s: 1.0,
        "errors": lambda s: float(failed(s)),
        "input_tokens": lambda s: float((usage(s) or Usage(0, 0, 0, 0, 0, False)).input),
        "output_tokens": lambda s: float((usage(s) or Usage(0, 0, 0, 0, 0, False)).output),
        "cost_usd": lambda s: (lambda u: 0.0 if u is None else u.stored_cost + u.priced_now)(usage(s)),
        "llm_calls": lambda s: float(op_type(s) == "llm"),
    }
    for tool in {s["attributes"][sc.GEN_AI_TOOL_NAME] for s in specs if op_type(s) == "tool" and window.holds(s)}:
        figures[f"tool:{tool}"] = lambda s, t=tool: float(op_type(s) == "tool" and s["attributes"][sc.GEN_AI_TOOL_NAME] == t)
    return figures


def _sampled_figures(doc: dict[str, Any]) -> dict[str, float]:
    values = section(doc, "overview")["values"]
    out = {key: values[key] for key in ("spans", "errors", "input_tokens", "output_tokens", "cost_usd")}
    out["llm_calls"] = section(doc, "llm")["values"]["calls"]
    out.update({f"tool:{r['tool']}": r["calls"] for r in rows(doc, "tools", "usage")})
    return out


@pytest.mark.parametrize("exact", [True, False], ids=["exact", "rollups"])
def test_sampled_estimates_match_the_truth(sampled_conn: sqlite3.Connection, specs: list[dict[str, Any]],
                                           sampled_specs: list[dict[str, Any]], exact: bool) -> None:  # fmt: skip
    window = WINDOWS["3d"]
    doc = report_of(sampled_conn, "sampled", "3d", exact)
    got = _sampled_figures(doc)
    errored = {s["trace_id"] for s in specs if failed(s)}
    for name, value_of in _estimates(specs, window).items():
        truth = sum(value_of(s) for s in specs if window.holds(s))
        per_trace: dict[str, float] = defaultdict(float)
        for spec in specs:
            if window.holds(spec) and spec["trace_id"] not in errored:
                per_trace[spec["trace_id"]] += value_of(spec)
        se = math.sqrt(sum((ds.SAMPLE_RATE - 1) * x * x for x in per_trace.values()))
        # the report's arithmetic is exact: the estimate is sum(w * x) over the kept spans
        estimate = sum(weight(s) * value_of(s) for s in sampled_specs if window.holds(s))
        close(got[name], round(estimate) if name != "cost_usd" else estimate, what=name)
        assert abs(got[name] - truth) <= SAMPLING_SES * se + 0.5, f"{name}: {got[name]} vs {truth} (se {se:.1f})"
        if name == "errors":  # every failed trace was kept: errors are exact
            assert got[name] == truth
    values = section(doc, "overview")["values"]
    traces_truth = len({s["trace_id"] for s in specs if window.holds(s)})
    droppable = len({s["trace_id"] for s in specs if window.holds(s) and s["trace_id"] not in errored})
    assert abs(values["traces"] - traces_truth) <= SAMPLING_SES * math.sqrt((ds.SAMPLE_RATE - 1) * droppable)
    assert values["sessions"] <= len(Truth(specs, window).sessions)  # a lower bound under sampling


def test_sampled_percentiles_repeat_each_duration_by_its_weight(sampled_conn: sqlite3.Connection,
                                                               sampled_specs: list[dict[str, Any]]) -> None:  # fmt: skip
    """Weighted percentiles: type 7 over the durations, each repeated w times (exact), within 1% of the
    duration at that rank (rollups)."""
    window = WINDOWS["3d"]
    repeated = [duration(s) for s in sampled_specs if window.holds(s) for _ in range(int(weight(s)))]
    for exact in (True, False):
        values = section(report_of(sampled_conn, "sampled", "3d", exact), "overview")["values"]
        for p in PERCENTILES:
            check_percentile(values[f"p{p}_ms"], repeated, p, exact, "sampled")


# --- every format, through the CLI -------------------------------------------------------------------------
JAEGER = "http://jaeger:16686"
_cli_runs: dict[tuple[str, ...], Any] = {}


def run_report(*args: str) -> Any:
    """``otelkit report ARGS`` in-process (memoized: each distinct command runs once)."""
    if args not in _cli_runs:
        _cli_runs[args] = CliRunner().invoke(cli, ["report", *args])
    return _cli_runs[args]




def _ragged(store: Path, *extra: str) -> Any:
    result = run_report("--db", str(store), "--period", ds.RAGGED_PERIOD, *extra)
    assert result.exit_code == 0, result.output
    return result


def _without_generated_at(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc["report"].pop("generated_at")
    return doc


def test_json_is_the_document(store: Path, conn: sqlite3.Connection, truth: Callable[[str], Truth]) -> None:
    doc = json.loads(_ragged(store, "--format", "json", "--jaeger-url", JAEGER).stdout)
    expected = build_report(conn, ds.RAGGED_PERIOD, now_ns=NOW, jaeger_url=JAEGER, scrub=scrub_text)
    assert _without_generated_at(doc) == _without_generated_at(expected)
    assert list(doc["sections"]) == list(SECTIONS) == doc["report"]["sections"]
    t = truth("ragged")
    assert section(doc, "overview")["values"]["spans"] == len(t.spans)
    assert {r["tool"]: r["calls"] for r in rows(doc, "tools", "usage")} == {r["tool"]: r["calls"] for r in t.tool_rows()}
    meta = doc["report"]
    assert (meta["since"], meta["until"]) == (iso(ds.RAGGED_SINCE), iso(ds.RAGGED_UNTIL))
    assert (meta["previous_since"], meta["previous_until"]) == (iso(ds.RAGGED_PREVIOUS), iso(ds.RAGGED_SINCE))
    assert (meta["period"], meta["source"], meta["jaeger_url"]) == (ds.RAGGED_PERIOD, "exact", JAEGER)


def test_jaeger_url_links_every_trace_id(store: Path, specs: list[dict[str, Any]]) -> None:
    doc = json.loads(_ragged(store, "--format", "json", "--jaeger-url", JAEGER).stdout)
    linked = 0
    for name, sec in doc["sections"].items():
        for table_name, table in sec["tables"].items():
            for row in table["rows"]:
                for key, value in row.items():
                    if key.endswith("trace_id") and value:
                        assert row[key.replace("_id", "_url")] == f"{JAEGER}/trace/{value}", (name, table_name)
                        linked += 1
    assert linked >= 10
    assert ds.spike_trace_id(specs) in {r["trace_id"] for r in rows(doc, "operations", "slowest_traces")}


def test_csv_carries_every_value_of_the_document(store: Path, truth: Callable[[str], Truth]) -> None:
    lines = list(csv.reader(io.StringIO(_ragged(store, "--format", "csv", "--jaeger-url", JAEGER).stdout)))
    assert lines[0] == ["section", "table", "row", "column", "value"]
    cells = {(s, t, int(r), c): v for s, t, r, c, v in lines[1:]}
    assert len(cells) == len(lines) - 1
    t = truth("ragged")
    assert cells[("overview", "values", 0, "spans")] == str(len(t.spans))
    usage_rows = {v: i for (s, tb, i, c), v in cells.items() if (s, tb, c) == ("tools", "usage", "tool")}
    for row in t.tool_rows():
        assert cells[("tools", "usage", usage_rows[row["tool"]], "calls")] == str(row["calls"])
        assert cells[("tools", "usage", usage_rows[row["tool"]], "failures")] == str(row["failures"])
    # every value of the JSON document, raw: ints as written, floats as repr, null empty, bools true/false
    doc = json.loads(_ragged(store, "--format", "json", "--jaeger-url", JAEGER).stdout)

    def raw(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return repr(value) if isinstance(value, float) else str(value)

    expected = {}
    for name, sec in doc["sections"].items():
        expected.update({(name, "values", 0, key): raw(value) for key, value in sec["values"].items()})
        for table_name, table in sec["tables"].items():
            for index, row in enumerate(table["rows"]):
                expected.update({(name, table_name, index, key): raw(value) for key, value in row.items()})
    assert {k: v for k, v in cells.items() if k in expected} == expected
    assert all(v == "" for k, v in cells.items() if k not in expected)  # declared columns a row lacks


def test_table_shows_the_formatted_figures(store: Path, truth: Callable[[str], Truth]) -> None:
    text = _ragged(store, "--format", "table", "--rollups").stdout
    t = truth("ragged")
    assert "\x1b[" not in text
    for title in ("Overview", "Commands and operations", "LLM usage", "Tools", "Templates", "Conditions", "Errors",
                  "Sessions", "Anomalies", "Recommendations"):  # fmt: skip
        assert title in text
    assert f"{len(t.spans):,}" in text
    run_tests = next(r for r in t.tool_rows() if r["tool"] == "run_tests")
    line = next(line for line in text.splitlines() if "run_tests" in line and "│" in line and "execute_tool" not in line
                and ">" not in line and "failed" not in line)  # fmt: skip
    assert f"{run_tests['calls']:,}" in line and f"{run_tests['failures']:,}" in line
    tenths = (Decimal(repr(run_tests["success_rate"])) * 1000).to_integral_value(rounding=ROUND_FLOOR)
    assert f"{tenths / 10:.1f}%" in line  # a rate is truncated, never rounded up
    assert "run_tests failed after <n> retries in <n>s" in text


def test_html_is_escaped_and_links_traces(store: Path, specs: list[dict[str, Any]], truth: Callable[[str], Truth]) -> None:
    pytest.importorskip("matplotlib")
    html = _ragged(store, "--format", "html", "--jaeger-url", JAEGER, "--rollups").stdout
    assert html.lstrip().lower().startswith("<!doctype html")
    for title in ("Overview", "Commands and operations", "LLM usage", "Tools", "Templates", "Conditions", "Errors",
                  "Sessions", "Anomalies", "Recommendations"):  # fmt: skip
        assert title in html
    assert f"{len(truth('ragged').spans):,}" in html
    assert f'<a href="{JAEGER}/trace/{ds.spike_trace_id(specs)}"' in html
    # a model named <script>alert(1)</script> and a message quoting one show as text, never as markup
    assert "<script>alert" not in html and "alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&lt;n&gt;)&lt;/script&gt;" in html


def test_sections_in_the_order_asked(store: Path) -> None:
    doc = json.loads(_ragged(store, "--format", "json", "--section", "tools,errors").stdout)
    assert list(doc["sections"]) == ["tools", "errors"] == doc["report"]["sections"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [(("--section", "nope"), "'nope'"), (("--period", "yesterday"), "'yesterday'"),
     (("--period", "2027-01-14..2027-01-13"), "not after"), (("--jaeger-url", "jaeger:16686"), "jaeger:16686")],
)  # fmt: skip
def test_bad_input_is_one_line(store: Path, args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(run_report("--db", str(store), *args), fragment)


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    assert_one_line_error(CliRunner().invoke(cli, ["report", "--db", str(missing)]), str(missing))
    assert not missing.exists()


# --- an older store --------------------------------------------------------------------------------------
def test_a_version_2_store_is_upgraded_when_reported_on(ended_store: Path, tmp_path: Path) -> None:
    """A store of schema version 2 (spans, no rollups) gets its rollups built from its spans when a report
    opens it, and reports what the store that kept them as it was written reports."""
    old = tmp_path / "v2.db"
    source, target = sqlite3.connect(ended_store), sqlite3.connect(old)
    source.backup(target)
    source.close()
    # Back to version 2's shape: no rollups, and spans a table with generated columns.
    for statement in ("DROP TABLE rollups", "DROP TABLE error_rollups", "DROP TABLE session_rollups",
                      "DROP TABLE tool_ngrams", "DROP TABLE tool_calls", "DROP TABLE rollup_keys",
                      "DROP VIEW spans", "ALTER TABLE span_rows RENAME TO spans",
                      "ALTER TABLE spans ADD COLUMN duration_ns INTEGER GENERATED ALWAYS AS (end_ns - start_ns) VIRTUAL",
                      *(f"ALTER TABLE spans ADD COLUMN {column} GENERATED ALWAYS AS ({expression}) VIRTUAL"
                        for column, expression in DERIVED_SPAN_COLUMNS.items()),
                      "PRAGMA user_version = 2"):  # fmt: skip
        target.execute(statement)
    target.commit()
    target.close()
    upgraded = connect_for_reading(str(old))
    original = connect_for_reading(str(ended_store))
    try:
        assert upgraded.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert upgraded.execute("SELECT count(*) FROM rollups").fetchone()[0] > 0
        got = _without_generated_at(build_report(upgraded, ds.RAGGED_PERIOD, now_ns=NOW, exact=False))
        want = _without_generated_at(build_report(original, ds.RAGGED_PERIOD, now_ns=NOW, exact=False))
        assert_close_documents(got, want)
    finally:
        upgraded.close()
        original.close()


def assert_close_documents(got: Any, want: Any, path: str = "") -> None:
    """Equal documents, floats to 1e-9 relative (sums added in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), path
        for key in want:
            assert_close_documents(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for index, (a, b) in enumerate(zip(got, want)):
            assert_close_documents(a, b, f"{path}[{index}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, rel=REL, abs=1e-12), path
    else:
        assert got == want, path


# --- write order -------------------------------------------------------------------------------------------
def test_a_session_belongs_to_a_service_whatever_the_write_order(specs: list[dict[str, Any]], tmp_path: Path) -> None:
    """A session whose traces ran in two services (an agent CLI calling a worker): which service's report
    lists it must not depend on which of its spans was written first."""
    first = next(s for s in specs if s["attributes"].get(sc.SESSION_ID) and s["parent_span_id"] is None
                 and s["service"] == ds.SERVICES[0])  # fmt: skip
    session = first["attributes"][sc.SESSION_ID]
    spans = [dict(s, attributes=dict(s["attributes"])) for s in specs if s["attributes"].get(sc.SESSION_ID) == session]
    last_trace = max(spans, key=lambda s: s["start_ns"])["trace_id"]
    for spec in spans:  # the session's last trace ran in the other service
        if spec["trace_id"] == last_trace:
            spec["service"] = ds.SERVICES[1]
    listed = {}
    for order in ("ended", "reversed"):
        path = tmp_path / f"{order}.db"
        ordered = sorted(spans, key=lambda s: s["end_ns"], reverse=order == "reversed")
        ds.write_store(str(path), ordered, batches=2, order="given")
        connection = connect_for_reading(str(path))
        try:
            listed[order] = [
                build_report(connection, "all", now_ns=NOW, service=service, sections=["sessions"])["summary"]["sessions"]
                for service in ds.SERVICES
            ]
        finally:
            connection.close()
    assert listed["ended"] == listed["reversed"]
