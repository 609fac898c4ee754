"""The tail stage: keep rules (errors, slow, costly), the consistent ratio for the rest and its
weights, bounds and their counters, timeouts, late spans, flush, and its place in the chain."""

from __future__ import annotations

import math
from typing import Any, Sequence

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode, Tracer, set_span_in_context

from otelkit import semconv as sc
from otelkit.config import Policy
from otelkit.processors.chain import SpanChain
from otelkit.processors.enrich import CostStage
from otelkit.processors.sampling import MAX_THRESHOLD, RuleSampler, head_sampler
from otelkit.processors.tail_sampling import TailSamplingStage, tail_stage
from otelkit.sampling_settings import HeadRule, SamplingSettings, TailSettings

from sampling_support import FixedIds, SeededIds, with_randomness

MS = 1_000_000
T0 = 1_700_000_000 * 10**9


class Originals(SpanProcessor):
    """Keeps the SDK's own span objects, to check that no stage changed them."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


class Setup:
    """A real TracerProvider whose chain ends with the tail stage, exporting to memory."""

    def __init__(self, tail: TailSamplingStage, sampler: Any = None, ids: IdGenerator | None = None,
                 stages: Sequence[Any] = ()) -> None:  # fmt: skip
        self.tail = tail
        self.exporter = InMemorySpanExporter()
        self.originals = Originals()
        self.chain = SpanChain([*stages, tail], SimpleSpanProcessor(self.exporter))
        self.provider = TracerProvider(sampler=sampler, id_generator=ids or SeededIds(3))
        self.provider.add_span_processor(self.originals)
        self.provider.add_span_processor(self.chain)
        self.tracer: Tracer = self.provider.get_tracer("t")

    def trace(self, root_ms: float = 10, children: Sequence[dict[str, Any]] = (), error_in: int | None = None,
              op_type: str = "command", end_root: bool = True) -> int:  # fmt: skip
        """One trace: a root lasting ``root_ms`` and children with the given attributes."""
        root = self.tracer.start_span("root", start_time=T0, attributes={sc.OPERATION_TYPE: op_type})
        context = set_span_in_context(root)
        for i, attributes in enumerate(children):
            child = self.tracer.start_span(f"child-{i}", context=context, start_time=T0 + i, attributes=attributes)
            if error_in == i:
                child.set_status(Status(StatusCode.ERROR, "boom"))
            child.end(end_time=T0 + i + MS)
        if end_root:
            root.end(end_time=T0 + int(root_ms * MS))
        return root.get_span_context().trace_id

    def exported(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def exported_traces(self) -> set[int]:
        return {span.context.trace_id for span in self.exported()}


def settings(**overrides: Any) -> TailSettings:
    values: dict[str, Any] = {"enabled": True, "keep_ratio": 0.0}
    values.update(overrides)
    return TailSettings(**values)


def llm(cost: float) -> dict[str, Any]:
    return {sc.OPERATION_TYPE: "llm", sc.GEN_AI_USAGE_COST: cost}


# --- keep rules ------------------------------------------------------------------------------


def test_error_anywhere_keeps_the_whole_trace_unweighted() -> None:
    setup = Setup(TailSamplingStage(settings()), sampler=head_sampler(SamplingSettings()))
    kept = setup.trace(children=[{}, {}, {}], error_in=1)
    setup.trace(children=[{}, {}, {}])
    spans = setup.exported()
    assert setup.exported_traces() == {kept} and len(spans) == 4
    assert {span.attributes[sc.SAMPLE_RATE] for span in spans} == {1.0}
    counters = setup.tail.counters()
    assert (counters.kept, counters.dropped, counters.kept_spans, counters.dropped_spans) == (1, 1, 4, 4)


def test_slow_root_keeps_the_trace() -> None:
    setup = Setup(TailSamplingStage(settings(latency_threshold_ms=1000.0)))
    slow = setup.trace(root_ms=1500, children=[{}])
    setup.trace(root_ms=999, children=[{}])
    assert setup.exported_traces() == {slow}


def test_cost_over_the_threshold_keeps_the_trace() -> None:
    setup = Setup(TailSamplingStage(settings(cost_threshold_usd=0.10)))
    costly = setup.trace(children=[llm(0.06), llm(0.05)])
    setup.trace(children=[llm(0.04), llm(0.05)])
    assert setup.exported_traces() == {costly}


def test_rules_can_be_switched_off() -> None:
    setup = Setup(TailSamplingStage(settings(keep_errors=False, latency_threshold_ms=None, cost_threshold_usd=None)))
    setup.trace(root_ms=60_000, children=[llm(5.0)], error_in=0)
    assert setup.exported() == [] and setup.tail.counters().dropped == 1


def test_the_chain_prices_before_the_tail_decides() -> None:
    """With enrich ahead of it, the tail stage sees costs priced from tokens alone."""
    tokens = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
              sc.GEN_AI_USAGE_INPUT_TOKENS: 100_000, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10_000}  # fmt: skip
    setup = Setup(TailSamplingStage(settings(cost_threshold_usd=0.10)), stages=[CostStage()])
    priced = setup.trace(children=[tokens])  # $0.25 + $0.10 at gpt-4o prices
    assert setup.exported_traces() == {priced}


# --- the ratio for the rest ------------------------------------------------------------------


def test_ratio_keeps_whole_traces_by_trace_id_and_reweights_them() -> None:
    ids = [with_randomness(0.80), with_randomness(0.50), with_randomness(0.76), with_randomness(0.74)]
    setup = Setup(TailSamplingStage(settings(keep_ratio=0.25)), sampler=head_sampler(SamplingSettings()),
                  ids=FixedIds(ids))  # fmt: skip
    for _ in ids:
        setup.trace(children=[{}, {}])
    assert setup.exported_traces() == {ids[0], ids[2]}  # randomness >= 0.75: kept
    spans = setup.exported()
    assert {span.attributes[sc.SAMPLE_RATE] for span in spans} == {4.0}
    assert {span.context.trace_state.get("ot") for span in spans} == {"th:c"}
    # the SDK's own span objects are untouched: the stage handed on new ones
    assert {span.attributes[sc.SAMPLE_RATE] for span in setup.originals.spans} == {1.0}
    assert {span.context.trace_state.get("ot") for span in setup.originals.spans} == {"th:0"}
    counters = setup.tail.counters()
    assert (counters.kept, counters.kept_by_ratio, counters.dropped) == (2, 2, 2)


def test_tail_ratio_multiplies_the_head_ratio_without_correlation() -> None:
    """Head 50%, tail 50% of the rest: a quarter of all traces, i.e. half of what the head kept,
    each carrying 4 (testing the tail on the head's own threshold would keep all it kept)."""
    head = RuleSampler((), default_ratio=0.5)
    setup = Setup(TailSamplingStage(settings(keep_ratio=0.5)), sampler=head, ids=SeededIds(11))
    traces = 8000
    for _ in range(traces):
        setup.trace(children=[{}])
    counters = setup.tail.counters()
    head_kept = counters.kept + counters.dropped
    assert abs(head_kept - traces / 2) < 4 * math.sqrt(traces / 4)
    assert abs(counters.kept - head_kept / 2) < 4 * math.sqrt(head_kept / 4)
    assert {span.attributes[sc.SAMPLE_RATE] for span in setup.exported()} == {4.0}
    assert {span.context.trace_state.get("ot") for span in setup.exported()} == {"th:c"}


def test_traces_without_a_threshold_use_other_trace_id_bits() -> None:
    """Spans from another head sampler (no ot=th): the high 64 bits decide, and the rate is
    multiplied from what the span carries (1 when absent)."""
    ids = [with_randomness(0.99, high=1), with_randomness(0.01, high=int(0.9 * MAX_THRESHOLD))]
    setup = Setup(TailSamplingStage(settings(keep_ratio=0.5)), ids=FixedIds(ids))
    for _ in ids:
        setup.trace(children=[{}])
    spans = setup.exported()
    assert setup.exported_traces() == {ids[1]}
    assert {span.attributes[sc.SAMPLE_RATE] for span in spans} == {2.0}
    assert all("ot" not in span.context.trace_state for span in spans)


def test_two_stages_decide_alike_for_the_same_traces() -> None:
    decisions = []
    for _ in range(2):
        setup = Setup(TailSamplingStage(settings(keep_ratio=0.3)), sampler=head_sampler(SamplingSettings()),
                      ids=SeededIds(77))  # fmt: skip
        for i in range(1500):
            setup.trace(children=[{}], op_type="template" if i % 3 else "command")
        decisions.append(setup.exported_traces())
    assert decisions[0] == decisions[1] and decisions[0]


# --- bounds, timeouts, late spans, flush ------------------------------------------------------


def test_past_max_traces_the_oldest_is_decided_early_with_what_is_known() -> None:
    setup = Setup(TailSamplingStage(settings(max_traces=3)))
    first = setup.trace(children=[{}, {}], error_in=0, end_root=False)  # held: its root never ended
    for _ in range(4):
        setup.trace(children=[{}], end_root=False)
    counters = setup.tail.counters()
    assert (counters.held, counters.decided_early, counters.kept, counters.dropped) == (3, 2, 1, 1)
    assert setup.exported_traces() == {first} and len(setup.exported()) == 2


def test_past_max_spans_the_oldest_is_decided_early() -> None:
    setup = Setup(TailSamplingStage(settings(max_spans=4, latency_threshold_ms=0.5)))
    first = setup.trace(children=[{}, {}], end_root=False)
    big = setup.trace(children=[{}] * 3, end_root=False)  # children last 1 ms: slow by the rule
    counters = setup.tail.counters()
    assert (counters.decided_early, counters.held, counters.held_spans) == (1, 1, 3)
    assert setup.exported_traces() == {first}
    setup.trace(children=[{}, {}], end_root=False)
    assert setup.tail.counters().decided_early == 2 and setup.exported_traces() == {first, big}


def test_a_trace_whose_root_never_ends_times_out_on_the_next_arrival() -> None:
    now = [0.0]
    setup = Setup(TailSamplingStage(settings(decision_timeout_s=30.0, latency_threshold_ms=0.5), clock=lambda: now[0]))
    stuck = setup.trace(children=[{}, {}], end_root=False)
    now[0] = 29.0
    setup.trace(children=[{}], end_root=False)
    assert setup.tail.counters().timed_out == 0
    now[0] = 30.5
    setup.trace(children=[{}], end_root=False)
    counters = setup.tail.counters()
    assert counters.timed_out == 1 and counters.held == 2
    assert setup.exported_traces() == {stuck}  # decided by its longest span (1 ms > 0.5 ms)


def test_late_spans_follow_the_decision_of_their_trace() -> None:
    setup = Setup(TailSamplingStage(settings(keep_ratio=1.0)), sampler=RuleSampler((), default_ratio=0.5),
                  ids=FixedIds([with_randomness(0.9), with_randomness(0.95)]))  # fmt: skip
    root = setup.tracer.start_span("root", start_time=T0)
    context = set_span_in_context(root)
    setup.tracer.start_span("early", context=context, start_time=T0).end(end_time=T0 + MS)
    root.end(end_time=T0 + 2 * MS)
    setup.tracer.start_span("late", context=context, start_time=T0).end(end_time=T0 + 3 * MS)
    assert [span.name for span in setup.exported()] == ["early", "root", "late"]
    assert {span.attributes[sc.SAMPLE_RATE] for span in setup.exported()} == {2.0}
    assert setup.tail.counters().late_spans == 1 and setup.tail.counters().held == 0

    dropping = Setup(TailSamplingStage(settings()), ids=FixedIds([with_randomness(0.5)]))
    root = dropping.tracer.start_span("root")
    root.end()
    dropping.tracer.start_span("late", context=set_span_in_context(root)).end()
    assert dropping.exported() == [] and dropping.tail.counters().dropped_spans == 2


def test_forgotten_decisions_start_a_new_held_trace() -> None:
    setup = Setup(TailSamplingStage(settings(recent_decisions=1)))
    contexts = []
    for _ in range(2):
        root = setup.tracer.start_span("root")
        root.end()
        contexts.append(set_span_in_context(root))
    setup.tracer.start_span("late", context=contexts[1]).end()  # remembered: follows
    assert setup.tail.counters().late_spans == 1 and setup.tail.counters().held == 0
    setup.tracer.start_span("late", context=contexts[0]).end()  # forgotten: held anew
    assert setup.tail.counters().late_spans == 1 and setup.tail.counters().held == 1


def test_flush_decides_everything_held_and_the_chain_hands_it_on() -> None:
    setup = Setup(TailSamplingStage(settings()))
    failing = setup.trace(children=[{}, {}], error_in=1, end_root=False)
    setup.trace(children=[{}], end_root=False)
    assert setup.exported() == []
    assert setup.provider.force_flush()
    assert setup.exported_traces() == {failing} and len(setup.exported()) == 2
    counters = setup.tail.counters()
    assert (counters.flushed, counters.held, counters.held_spans, counters.kept, counters.dropped) == (2, 0, 0, 1, 1)


def test_tail_stage_factory_follows_the_policy() -> None:
    assert tail_stage(Policy()) is None
    enabled = Policy(sampling=SamplingSettings(tail=TailSettings(enabled=True, keep_ratio=0.5)))
    stage = tail_stage(enabled)
    assert isinstance(stage, TailSamplingStage) and stage.settings.keep_ratio == 0.5


@pytest.mark.parametrize("ratio", [0.1, 0.5])
def test_keep_ratio_share_of_plain_traces(ratio: float) -> None:
    setup = Setup(TailSamplingStage(settings(keep_ratio=ratio)), sampler=head_sampler(SamplingSettings()),
                  ids=SeededIds(int(ratio * 100)))  # fmt: skip
    traces = 4000
    for _ in range(traces):
        setup.trace()
    kept = len(setup.exported())
    assert abs(kept - traces * ratio) < 4 * math.sqrt(traces * ratio * (1 - ratio))
    assert {span.attributes[sc.SAMPLE_RATE] for span in setup.exported()} == {1 / ratio}


def test_rules_apply_with_head_rules_too() -> None:
    head = RuleSampler((HeadRule("template", "*", 0.1),))
    setup = Setup(TailSamplingStage(settings(keep_ratio=0.5)), sampler=head, ids=SeededIds(9))
    for _ in range(3000):
        setup.trace(op_type="template")
    rates = {span.attributes[sc.SAMPLE_RATE] for span in setup.exported()}
    assert rates == {20.0}
