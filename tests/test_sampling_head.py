"""The head sampler: rules and defaults, parent-based decisions (no split traces), consistency
across processes, and the rate travelling through W3C tracestate."""

from __future__ import annotations

import math
from typing import Any, Iterable

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from otelkit import semconv as sc
from otelkit.config import ConfigError, Policy, parse_policy
from otelkit.processors.sampling import (
    MAX_THRESHOLD,
    RuleSampler,
    adjusted_count,
    head_sampler,
    parse_ot,
    sampler_for_environment,
    threshold_for,
)
from otelkit.sampling_settings import DEFAULT_HEAD_RULES, HeadRule, SamplingSettings
from sampling_support import SeededIds

MASK = MAX_THRESHOLD - 1


def provider(sampler: Any, seed: int = 1) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler, id_generator=SeededIds(seed))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


def typed(op_type: str, **extra: Any) -> dict[str, Any]:
    return {sc.OPERATION_TYPE: op_type, **extra}


def by_trace(spans: Iterable[ReadableSpan]) -> dict[int, list[ReadableSpan]]:
    traces: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        traces.setdefault(span.context.trace_id, []).append(span)
    return traces


# --- settings ------------------------------------------------------------------------------


def test_defaults_are_the_documented_ratios() -> None:
    sampler = head_sampler(SamplingSettings())
    assert SamplingSettings().head_rules == DEFAULT_HEAD_RULES
    ratios = {t: sampler.ratio_for(t, "x") for t in ("command", "step", "template", "condition", "llm", None)}
    assert ratios == {"command": 1.0, "step": 1.0, "template": 0.1, "condition": 0.5, "llm": 1.0, None: 1.0}


def test_policy_file_sets_rules_and_tail() -> None:
    policy = parse_policy(
        "sampling:\n  head_rules:\n    - {operation_type: template, name: 'emails/*', ratio: 0.01}\n"
        "  default_ratio: 0.5\n  tail:\n    enabled: true\n    latency_threshold_ms: null\n    keep_ratio: 0.2\n"
    )
    assert policy.sampling.head_rules == (HeadRule("template", "emails/*", 0.01),)
    assert policy.sampling.default_ratio == 0.5
    assert policy.sampling.tail.enabled and policy.sampling.tail.latency_threshold_ms is None
    assert policy.sampling.tail.keep_ratio == 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sampling:\n  head_rules:\n    - {ratio: 1.5}\n", "sampling.head_rules[0].ratio: expected a number from 0"),
        ("sampling:\n  head_rules:\n    - {name: ''}\n", "sampling.head_rules[0].name: expected a span name"),
        ("sampling:\n  default_ratio: -0.1\n", "sampling.default_ratio: expected a number from 0 to 1"),
        ("sampling:\n  tail:\n    keep_ratio: 2\n", "sampling.tail.keep_ratio: expected a number from 0 to 1"),
        ("sampling:\n  tail:\n    max_traces: 0\n", "sampling.tail.max_traces: expected at least 1"),
        ("sampling:\n  tail:\n    max_spans: 0\n", "sampling.tail.max_spans: expected at least 1"),
        ("sampling:\n  tail:\n    decision_timeout_s: 0\n", "sampling.tail.decision_timeout_s: expected seconds above 0"),
        ("sampling:\n  tail:\n    cost_threshold_usd: -1\n", "sampling.tail.cost_threshold_usd: expected a number"),
        ("sampling:\n  tail:\n    recent_decisions: -1\n", "sampling.tail.recent_decisions: expected 0 or more"),
        ("sampling:\n  head_rule: []\n", "unknown key 'sampling.head_rule' (line 2)"),
    ],
)
def test_bad_settings_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text)
    assert message in str(caught.value) and "(line " in str(caught.value)


# --- rules -----------------------------------------------------------------------------------


def test_rules_match_type_and_name_globs_first_match_wins() -> None:
    sampler = RuleSampler(
        (
            HeadRule("template", "emails/*", 0.0),
            HeadRule("template", "*", 0.25),
            HeadRule("l?m", "chat gpt-[45]*", 0.5),
            HeadRule("other", "cron *", 0.75),
        ),
        default_ratio=0.9,
    )
    assert sampler.ratio_for("template", "emails/welcome") == 0.0
    assert sampler.ratio_for("template", "pages/home") == 0.25
    assert sampler.ratio_for("llm", "chat gpt-4o") == 0.5
    assert sampler.ratio_for("llm", "chat claude") == 0.9
    assert sampler.ratio_for(None, "cron nightly") == 0.75  # untyped spans are "other"
    assert sampler.ratio_for("Template", "pages/home") == 0.9  # case-sensitive
    assert sampler.ratio_for("template", "emails/welcome") == 0.0  # the cached answer agrees


def test_genai_spans_are_typed_by_their_operation_name() -> None:
    tracer_provider, exporter = provider(RuleSampler((HeadRule("llm", "*", 0.0), HeadRule("tool", "*", 1.0))))
    tracer = tracer_provider.get_tracer("contrib-like")
    for _ in range(50):
        tracer.start_span("chat gpt-4o", attributes={sc.GEN_AI_OPERATION_NAME: "chat"}).end()
        tracer.start_span("execute_tool search", attributes={sc.GEN_AI_OPERATION_NAME: "execute_tool"}).end()
    names = {span.name for span in exporter.get_finished_spans()}
    assert names == {"execute_tool search"}
    assert len(exporter.get_finished_spans()) == 50


def test_ratio_keeps_that_share_of_roots_and_marks_the_rate() -> None:
    tracer_provider, exporter = provider(head_sampler(SamplingSettings()))
    tracer = tracer_provider.get_tracer("t")
    roots = 20_000
    for _ in range(roots):
        tracer.start_span("render", attributes=typed("template")).end()
    kept = exporter.get_finished_spans()
    sd = math.sqrt(roots * 0.1 * 0.9)
    assert abs(len(kept) - roots * 0.1) < 4 * sd
    assert {span.attributes[sc.SAMPLE_RATE] for span in kept} == {10.0}
    assert {span.context.trace_state.get("ot") for span in kept} == {"th:e6666666666666"}
    assert all(span.context.trace_flags.sampled for span in kept)


def test_zero_ratio_drops_everything_and_full_ratio_keeps_everything() -> None:
    tracer_provider, exporter = provider(RuleSampler((HeadRule("step", "*", 0.0),), default_ratio=1.0))
    tracer = tracer_provider.get_tracer("t")
    for _ in range(300):
        tracer.start_span("s", attributes=typed("step")).end()
        tracer.start_span("c", attributes=typed("command")).end()
    kept = exporter.get_finished_spans()
    assert [span.name for span in kept] == ["c"] * 300
    assert {(span.attributes[sc.SAMPLE_RATE], span.context.trace_state.get("ot")) for span in kept} == {(1.0, "th:0")}


# --- parent-based: a trace is never split ---------------------------------------------------


def test_children_follow_the_root_whatever_their_own_type() -> None:
    tracer_provider, exporter = provider(head_sampler(SamplingSettings()))
    tracer = tracer_provider.get_tracer("t")
    traces = 1000
    for i in range(traces):
        root_type = "template" if i % 2 else "command"
        with tracer.start_as_current_span("root", attributes=typed(root_type)):
            with tracer.start_as_current_span("step", attributes=typed("step")):
                with tracer.start_as_current_span("render", attributes=typed("template")):
                    tracer.start_span("check", attributes=typed("condition")).end()
    kept = by_trace(exporter.get_finished_spans())
    assert all(len(spans) == 4 for spans in kept.values())  # whole traces or nothing
    rates = {root.attributes[sc.OPERATION_TYPE]: {s.attributes[sc.SAMPLE_RATE] for s in spans}
             for spans in kept.values() for root in spans if root.parent is None}  # fmt: skip
    assert rates == {"command": {1.0}, "template": {10.0}}
    commands = sum(1 for spans in kept.values() if any(s.attributes[sc.OPERATION_TYPE] == "command" for s in spans))
    assert commands == traces // 2  # every command trace kept, its templates and conditions with it
    assert 0 < len(kept) - commands < traces // 2 * 0.2


# --- consistency across processes ----------------------------------------------------------


def test_independent_samplers_decide_the_same_for_the_same_trace_ids() -> None:
    settings = SamplingSettings(head_rules=(HeadRule("template", "*", 0.3),))
    decisions = []
    for _ in range(2):  # two processes: separate samplers and providers, the same trace ids
        tracer_provider, exporter = provider(head_sampler(settings), seed=42)
        tracer = tracer_provider.get_tracer("t")
        for _ in range(2000):
            tracer.start_span("render", attributes=typed("template")).end()
        decisions.append({span.context.trace_id for span in exporter.get_finished_spans()})
    assert decisions[0] == decisions[1] and 400 < len(decisions[0]) < 800
    threshold = threshold_for(0.3)
    assert threshold is not None
    assert all(trace_id & MASK >= threshold for trace_id in decisions[0])


def test_rate_and_decision_travel_through_the_w3c_propagator() -> None:
    """Process A samples template roots at 10%; process B, whose own rules keep everything,
    follows A's decision for every trace and learns A's rate from the tracestate."""
    upstream, upstream_spans = provider(head_sampler(SamplingSettings()), seed=5)
    downstream, downstream_spans = provider(RuleSampler((), default_ratio=1.0), seed=6)
    propagator = TraceContextTextMapPropagator()
    kept_upstream = 0
    for _ in range(500):
        root = upstream.get_tracer("a").start_span("render", attributes=typed("template"))
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context=set_span_in_context(root))
        root.end()
        kept_upstream += root.get_span_context().trace_flags.sampled
        remote = propagator.extract(carrier)
        with downstream.get_tracer("b").start_as_current_span("handle", context=remote, attributes=typed("command")):
            downstream.get_tracer("b").start_span("work", attributes=typed("step")).end()
    up = {s.context.trace_id for s in upstream_spans.get_finished_spans()}
    down = by_trace(downstream_spans.get_finished_spans())
    assert set(down) == up and len(up) == kept_upstream and 20 < kept_upstream < 90
    assert {s.attributes[sc.SAMPLE_RATE] for spans in down.values() for s in spans} == {10.0}
    assert all(len(spans) == 2 for spans in down.values())


def _remote(trace_id: int, sampled: bool, state: list[tuple[str, str]]) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(trace_id, 0x1234, is_remote=True, trace_flags=flags, trace_state=TraceState(state))
    return set_span_in_context(NonRecordingSpan(parent))


def _start(sampler: RuleSampler, context: Context, op_type: str = "template") -> ReadableSpan | None:
    tracer_provider, exporter = provider(sampler)
    tracer_provider.get_tracer("t").start_span("render", context=context, attributes=typed(op_type)).end()
    finished = exporter.get_finished_spans()
    return finished[0] if finished else None


def test_remote_parents_with_a_threshold_are_followed() -> None:
    sampler = RuleSampler((HeadRule("template", "*", 0.0),))  # its own rules would drop every template
    keep = 0x0F << 52 | 0xABC  # randomness above th:8 (the 50% threshold)
    span = _start(sampler, _remote(keep, True, [("vendor", "x"), ("ot", "th:8")]))
    assert span is not None and span.attributes[sc.SAMPLE_RATE] == 2.0
    assert dict(span.context.trace_state) == {"vendor": "x", "ot": "th:8"}
    assert _start(sampler, _remote(keep, False, [("ot", "th:8")])) is None  # a drop is followed too


def test_remote_parents_without_a_trusted_decision_are_decided_by_the_rules() -> None:
    sampler = RuleSampler((HeadRule("template", "*", 0.5),))
    high, low = (0xC << 52) | 7, (0x2 << 52) | 7  # randomness 0.75 and 0.125 of the range
    foreign = _start(sampler, _remote(high, True, [("vendor", "x")]))  # sampled, no threshold
    assert foreign is not None and foreign.attributes[sc.SAMPLE_RATE] == 2.0
    assert dict(foreign.context.trace_state) == {"ot": "th:8", "vendor": "x"}
    assert _start(sampler, _remote(low, True, [("vendor", "x")])) is None
    # sampled although its randomness fails its own threshold: inconsistent, so re-decided
    assert _start(sampler, _remote(low, True, [("ot", "th:c")])) is None
    # an explicit randomness value decides in place of the trace id, and is kept
    span = _start(sampler, _remote(low, True, [("ot", "rv:e0000000000000")]))
    assert span is not None and dict(span.context.trace_state) == {"ot": "th:8;rv:e0000000000000"}


def test_threshold_encoding_follows_the_specification() -> None:
    assert [parse_ot(f"th:{t}").threshold for t in ("0", "8", "c", "fd70a4")] == [
        0, 1 << 55, 3 << 54, 0xFD70A4 << 32
    ]  # fmt: skip
    assert parse_ot("th:xyz;rv:12").threshold is None and parse_ot("th:xyz;rv:12").randomness is None
    assert adjusted_count(0xFD70A4 << 32) == pytest.approx(100.0, rel=1e-5)
    assert [adjusted_count(t) for t in (threshold_for(p) for p in (1.0, 0.5, 0.1, 0.01, 1e-6)) if t is not None] == [
        1.0, 2.0, 10.0, 100.0, 1_000_000.0
    ]  # fmt: skip
    assert threshold_for(0.0) is None


# --- wiring ---------------------------------------------------------------------------------


def test_the_user_sampler_variable_wins() -> None:
    assert sampler_for_environment(Policy(), {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}) is None
    installed = sampler_for_environment(Policy(), {})
    assert isinstance(installed, RuleSampler) and installed.rules == DEFAULT_HEAD_RULES
    assert "template/*=0.1" in installed.get_description()
