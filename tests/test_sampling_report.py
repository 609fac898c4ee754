"""Reports under sampling: every number weighted by ``sample_rate``, weighted percentiles, and a
synthetic population sampled by the real head sampler and tail stage whose report lands on the
true values (and misses them by far when the weights are ignored)."""

from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from otelkit import semconv as sc
from otelkit.exporters.sqlite import SQLiteSpanExporter
from otelkit.processors.chain import SpanChain
from otelkit.processors.sampling import head_sampler
from otelkit.processors.tail_sampling import TailSamplingStage
from otelkit.report import build_report
from otelkit.report.query import percentile_ms, weighted_percentile_ms
from otelkit.sampling_settings import SamplingSettings, TailSettings
from otelkit.store import StoreWriter, connect_for_reading
from otelkit.store.writer import SPAN_COLUMNS

from sampling_support import SeededIds

NOW = 1_800_000_000 * 10**9
MS = 1_000_000


def row(trace: int, span: int, duration_ms: float, *, name: str = "op", op_type: str = "step", rate: Any = None,
        status: str = "OK", parent: int | None = None, **attributes: Any) -> tuple[Any, ...]:  # fmt: skip
    attrs = {sc.OPERATION_TYPE: op_type, **attributes}
    if rate is not None:
        attrs[sc.SAMPLE_RATE] = rate
    values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
    values.update(
        trace_id=f"{trace:032x}", span_id=f"{span:016x}", parent_span_id=None if parent is None else f"{parent:016x}",
        name=name, kind="INTERNAL", service_name="svc", start_ns=NOW - 60 * 10**9 + span,
        end_ns=NOW - 60 * 10**9 + span + int(duration_ms * MS), status_code=status, attributes=json.dumps(attrs),
    )
    return tuple(values[c] for c in SPAN_COLUMNS)


def report_of(tmp_path: Path, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    path = str(tmp_path / "w.db")
    writer = StoreWriter(path)
    writer.write_spans(rows)
    writer.close()
    return build_report(connect_for_reading(path), "1h", now_ns=NOW)


def test_every_total_is_weighted_by_the_sample_rate(tmp_path: Path) -> None:
    usage = {sc.GEN_AI_USAGE_INPUT_TOKENS: 100, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 7, sc.GEN_AI_USAGE_COST: 0.5}
    report = report_of(tmp_path, [
        row(1, 1, 40, name="root", op_type="command", rate=10.0),
        row(1, 2, 10, name="chat", op_type="llm", rate=10.0, status="ERROR", parent=1, **usage),
        row(2, 3, 20, name="root", op_type="command"),
        row(2, 4, 30, name="chat", op_type="llm", parent=3,
            **{**usage, sc.COST_STATUS: "unpriced", sc.GEN_AI_USAGE_COST: None}),
    ])  # fmt: skip
    summary = report["summary"]
    assert (summary["spans"], summary["traces"], summary["sessions"]) == (22, 11, 0)
    assert summary["success_rate"] == pytest.approx(12 / 22)
    assert (summary["input_tokens"], summary["output_tokens"]) == (1100, 77)
    assert summary["cost_usd"] == pytest.approx(5.0) and summary["unpriced_llm_calls"] == 1
    ops = {op["name"]: op for op in report["operations"]}
    assert (ops["root"]["count"], ops["chat"]["count"]) == (11, 11)
    assert ops["chat"]["success_rate"] == pytest.approx(1 / 11)
    total_ms = 10 * 40 + 10 * 10 + 20 + 30
    assert ops["root"]["time_share"] == pytest.approx((400 + 20) / total_ms)
    # weighted percentiles: root is 40 ms ten times and 20 ms once
    assert ops["root"]["p50_ms"] == 40.0 and ops["root"]["p95_ms"] == 40.0


def test_rates_that_are_no_weight_count_as_one(tmp_path: Path) -> None:
    report = report_of(tmp_path, [row(1, i, 5, rate=rate) for i, rate in enumerate((0.5, "abc", -3, None, 0, 1), 1)])
    assert report["summary"]["spans"] == 6 and report["summary"]["traces"] == 1


def test_a_trace_counts_with_the_smallest_weight_among_its_spans(tmp_path: Path) -> None:
    report = report_of(tmp_path, [row(1, 1, 5, rate=4.0), row(1, 2, 5, rate=2.0, parent=1), row(2, 3, 5, rate=3.0)])
    assert report["summary"]["traces"] == 5 and report["summary"]["spans"] == 9


def _expanded_reference(durations_ns: list[int], weights: list[int], percent: int) -> float:
    """Type 7 over each duration repeated ``weight`` times, in exact arithmetic, as ms."""
    expanded = [Fraction(d, MS) for d, w in zip(durations_ns, weights) for _ in range(w)]
    if len(expanded) == 1:
        return float(expanded[0])
    return float(statistics.quantiles(expanded, n=100, method="inclusive")[percent - 1])


def test_weighted_percentile_is_type_7_over_repeated_durations() -> None:
    rng = random.Random(12)
    for _ in range(200):
        n = rng.randrange(1, 30)
        pairs = sorted((rng.randrange(1, 10**10), rng.choice((1, 2, 3, 10, 40))) for _ in range(n))
        durations, weights = [d for d, _ in pairs], [w for _, w in pairs]
        cumulative = [float(sum(weights[: i + 1])) for i in range(n)]
        for p in (1, 50, 95, 99):
            assert weighted_percentile_ms(durations, cumulative, p) == pytest.approx(
                _expanded_reference(durations, weights, p), rel=1e-12
            )
            ones = [float(i + 1) for i in range(n)]
            assert weighted_percentile_ms(durations, ones, p) == pytest.approx(percentile_ms(durations, p), rel=1e-12)


def test_weighted_percentile_with_fractional_weights() -> None:
    # 10 ms covers positions 0..0.5, 20 ms position 1.5; the median (h = 0.75) lies between
    assert weighted_percentile_ms([10 * MS, 20 * MS], [1.5, 2.5], 50) == pytest.approx(12.5)
    assert weighted_percentile_ms([10 * MS, 20 * MS], [1.5, 2.5], 10) == pytest.approx(10.0)


# --- unbiasedness: a known population through the real samplers -----------------------------

TRACES = 4000
ROOT_TYPES = (("command", 0.3), ("template", 0.35), ("condition", 0.2), ("job", 0.15))
HEAD = {"command": 1.0, "template": 0.1, "condition": 0.5, "job": 1.0}  # the default rules
TAIL = TailSettings(enabled=True, keep_ratio=0.25, latency_threshold_ms=1000.0, cost_threshold_usd=0.10)


@dataclass
class Truth:
    """The population's true totals, and per trace its values and probability of being stored."""

    spans: int = 0
    errors: int = 0
    cost: float = 0.0
    input_tokens: int = 0
    templates: int = 0
    per_trace: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    durations: list[list[int]] = field(default_factory=list)  # per trace, its spans' durations

    def sd(self, key: str) -> float:
        """The Horvitz-Thompson standard deviation of the estimated total of ``key``: traces
        are kept independently, trace t with probability p_t, so Var = sum (1 - p)/p * y^2."""
        return math.sqrt(sum((1 - p) / p * values[key] ** 2 for p, values in self.per_trace))

    def ratio_sd(self, numerator: str, denominator: str) -> float:
        """The standard deviation of an estimated ratio of totals (the delta method: the
        Horvitz-Thompson variance of the residuals y - R * x, over the denominator squared)."""
        x = sum(values[denominator] for _, values in self.per_trace)
        ratio = sum(values[numerator] for _, values in self.per_trace) / x
        residuals = ((p, values[numerator] - ratio * values[denominator]) for p, values in self.per_trace)
        return math.sqrt(sum((1 - p) / p * r**2 for p, r in residuals)) / x


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Truth, str]:
    """4,000 traces (a root and 0-4 steps or LLM calls) made with the default head rules and
    the tail stage, stored in SQLite; returns the truth and the store's path."""
    rng = random.Random(20240601)
    exporter = InMemorySpanExporter()
    tail = TailSamplingStage(TAIL)
    provider = TracerProvider(sampler=head_sampler(SamplingSettings()), id_generator=SeededIds(99))
    provider.add_span_processor(SpanChain([tail], SimpleSpanProcessor(exporter)))
    tracer = provider.get_tracer("population")
    truth = Truth()
    start = NOW - 30 * 60 * 10**9
    for _ in range(TRACES):
        root_type = rng.choices([t for t, _ in ROOT_TYPES], [w for _, w in ROOT_TYPES])[0]
        children = rng.randrange(0, 5)
        failing = rng.randrange(children + 1) if rng.random() < 0.04 else None
        slow = rng.random() < 0.05
        values = {"spans": 1.0 + children, "errors": 0.0, "cost": 0.0, "tokens": 0.0, "templates": 0.0, "traces": 1.0}
        root = tracer.start_span("root " + root_type, start_time=start, attributes={sc.OPERATION_TYPE: root_type})
        context = set_span_in_context(root)
        offset = 0
        durations: list[int] = []
        for i in range(children):
            is_llm = rng.random() < 0.4
            attrs: dict[str, Any] = {sc.OPERATION_TYPE: "llm" if is_llm else "step"}
            if is_llm:
                cost = rng.choice((0.002, 0.01, 0.03)) if rng.random() < 0.93 else 0.08
                tokens = rng.randrange(200, 4000)
                attrs.update({sc.GEN_AI_USAGE_COST: cost, sc.GEN_AI_USAGE_INPUT_TOKENS: tokens})
                values["cost"] += cost
                values["tokens"] += tokens
            duration = rng.randrange(1, 200) * MS
            child = tracer.start_span("chat" if is_llm else "step", context=context, start_time=start + offset,
                                      attributes=attrs)  # fmt: skip
            if failing == i + 1:
                child.set_status(Status(StatusCode.ERROR))
            child.end(end_time=start + offset + duration)
            durations.append(duration)
            offset += duration
        if failing == 0:
            root.set_status(Status(StatusCode.ERROR))
        root_ns = offset + (rng.randrange(1001, 3000) if slow else rng.randrange(1, 100)) * MS
        root.end(end_time=start + root_ns)
        truth.durations.append([root_ns, *durations])
        values["errors"] = 1.0 if failing is not None else 0.0
        values["templates"] = 1.0 if root_type == "template" else 0.0
        # the tail keeps it by a rule: an error, a root over 1,000 ms (only slow ones: children
        # add at most 796 ms), or a cost over $0.10
        by_rule = failing is not None or slow or values["cost"] > TAIL.cost_threshold_usd
        truth.per_trace.append((HEAD[root_type] * (1.0 if by_rule else TAIL.keep_ratio), values))
        truth.spans += 1 + children
        truth.errors += failing is not None
        truth.cost += values["cost"]
        truth.input_tokens += int(values["tokens"])
        truth.templates += root_type == "template"
    provider.shutdown()
    path = str(tmp_path_factory.mktemp("population") / "population.db")
    SQLiteSpanExporter(path).export(exporter.get_finished_spans())
    return truth, path


def test_reports_of_a_sampled_population_estimate_the_true_totals(population: tuple[Truth, str]) -> None:
    """Tolerance: 4 standard deviations of each Horvitz-Thompson estimate, computed from the
    population and each trace's known probability of being stored; a correct estimator misses
    by that much for fewer than 1 seed in 15,000 (with 4,000 traces the estimates are close to
    normal). Ignoring the weights misses by more than half the true total, and by more than 5
    standard deviations, which no seed would explain."""
    truth, path = population
    conn = connect_for_reading(path)
    report = build_report(conn, "1h", now_ns=NOW)
    summary = report["summary"]
    ops = {(op["type"], op["name"]): op for op in report["operations"]}
    stored_spans, stored_errors, stored_cost, stored_templates = conn.execute(
        "SELECT count(*), total(status_code = 'ERROR'), total(cost_usd), total(operation_type = 'template') FROM spans"
    ).fetchone()
    assert stored_spans < truth.spans / 2  # the samplers dropped most spans

    estimated_errors = summary["spans"] * (1 - summary["success_rate"])
    checks = {
        "spans": (summary["spans"], truth.spans, stored_spans),
        "traces": (summary["traces"], TRACES, conn.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()[0]),
        "errors": (estimated_errors, truth.errors, None),  # unweighted: see the error rate below
        "cost": (summary["cost_usd"], truth.cost, stored_cost),
        "tokens": (summary["input_tokens"], truth.input_tokens, None),
        "templates": (ops[("template", "root template")]["count"], truth.templates, stored_templates),
    }
    for key, (estimate, true, unweighted) in checks.items():
        sd = truth.sd(key)
        assert abs(estimate - true) <= 4 * sd + 1, (key, estimate, true, sd)
        if unweighted is not None:  # ignoring the weights: off by most of the total, not noise
            assert abs(unweighted - true) > max(5 * sd, 0.5 * true), (key, unweighted, true, sd)

    error_rate, sd = truth.errors / truth.spans, truth.ratio_sd("errors", "spans")
    assert abs((1 - summary["success_rate"]) - error_rate) <= 4 * sd
    # errors are always kept, so unweighted they look several times as common as they are
    assert stored_errors / stored_spans - error_rate > max(5 * sd, error_rate)


def _quantile_ms(sorted_ns: list[int], fraction: float) -> float:
    h = (len(sorted_ns) - 1) * fraction
    j = min(int(h), len(sorted_ns) - 2)
    return (sorted_ns[j] + (h - j) * (sorted_ns[j + 1] - sorted_ns[j])) / MS


def test_weighted_percentiles_of_a_sampled_population_land_near_the_true_ones(population: tuple[Truth, str]) -> None:
    """The estimated p95 is where the weighted distribution function reaches 0.95; that function
    at any duration is a ratio estimate whose standard deviation the population gives, so within
    4 of them the estimate lies between the true quantiles at 0.95 -/+ 4 sd. Unweighted, slow
    traces (always kept) pull the p95 far outside that band."""
    truth, path = population
    conn = connect_for_reading(path)
    everything = sorted(d for trace in truth.durations for d in trace)
    true_p95 = _quantile_ms(everything, 0.95)
    under = Truth(per_trace=[(p, {"under": float(sum(d / MS <= true_p95 for d in trace)), "spans": values["spans"]})
                             for (p, values), trace in zip(truth.per_trace, truth.durations)])  # fmt: skip
    sd = under.ratio_sd("under", "spans")
    low, high = _quantile_ms(everything, 0.95 - 4 * sd), _quantile_ms(everything, 0.95 + 4 * sd)
    estimate = build_report(conn, "1h", now_ns=NOW)["summary"]["p95_ms"]
    assert low <= estimate <= high, (low, estimate, high)
    stored = sorted(d for (d,) in conn.execute("SELECT duration_ns FROM spans"))
    assert percentile_ms(stored, 95) > high
