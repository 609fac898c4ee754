"""The alert rule engine: every rule kind fires and resolves, in event time, with selection,
grouping, suppression and bounded state; the policy's alerts section validates at load."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from typing import Any

import pytest

from otelkit import semconv as sc
from otelkit.alert_settings import AlertRule, AlertSettings, Selector, Webhook
from otelkit.config import ConfigError, parse_policy
from otelkit.processors.alert_rules import (
    _MAX_BIN,
    _MIN_BIN,
    WINDOW_STEPS,
    AlertEvent,
    RuleEngine,
    SpanFacts,
    compile_selector,
    describe,
)

S = 1_000_000_000
MS = 1_000_000
T0 = 978_307_200 * S  # 2001-01-01T00:00:00Z: event time, nowhere near the wall clock
LLM = {sc.OPERATION_TYPE: "llm"}


def facts(at_s: float, *, ms: float = 1.0, name: str = "op", error: bool = False, span: int = 1,
          attrs: dict[str, Any] | None = None) -> SpanFacts:
    end = T0 + round(at_s * S)
    return SpanFacts(name, end - round(ms * MS), end, error, dict(attrs or {}), trace_id=span, span_id=span)


def rule(kind: str, threshold: float | None = None, **fields: Any) -> AlertRule:
    fields.setdefault("min_interval_s", 600.0)
    fields.setdefault("name", kind)
    return AlertRule(kind=kind, threshold=threshold, **fields)


def feed(engine: RuleEngine, *items: SpanFacts) -> list[AlertEvent]:
    events: list[AlertEvent] = []
    for item in items:
        events.extend(engine.evaluate(item))
    return events


def states(events: list[AlertEvent]) -> list[tuple[str, str, int]]:
    """(rule, state, seconds after T0) of each event."""
    return [(e.rule, e.state, (e.resolved_ns or e.fired_ns) - T0) for e in events]


def test_latency_fires_on_a_slow_span_and_resolves_on_the_next_fast_one() -> None:
    engine = RuleEngine([rule("latency", 100, select=Selector(operation_type="llm"))])
    assert feed(engine, facts(1, ms=50, attrs=LLM)) == []
    slow = facts(2, ms=250, name="chat gpt-4o", span=7,
                 attrs={**LLM, sc.GEN_AI_REQUEST_MODEL: "gpt-4o", "app.secret": "hunter2"})
    [fired] = feed(engine, slow)
    assert (fired.state, fired.value, fired.threshold, fired.notification) == ("firing", 250.0, 100.0, 1)
    assert fired.trace_id == f"{7:032x}" and fired.span_id == f"{7:016x}"
    assert fired.started_ns == fired.fired_ns == T0 + 2 * S
    assert "span 'chat gpt-4o' (llm) took 250 ms > 100 ms" == fired.message
    payload = json.dumps(fired.to_dict())
    assert "hunter2" not in payload and "app.secret" not in payload
    assert feed(engine, facts(3, ms=900, attrs={sc.OPERATION_TYPE: "tool"})) == []  # not selected
    [resolved] = feed(engine, facts(4, ms=20, attrs=LLM))
    assert (resolved.state, resolved.uid, resolved.resolved_ns) == ("resolved", fired.uid, T0 + 4 * S)
    assert resolved.started_ns == fired.started_ns


def test_percentile_fires_over_the_rolling_window_and_resolves_when_slow_spans_leave_it() -> None:
    engine = RuleEngine([rule("percentile", 100, percentile=95, window_s=60, min_count=10, min_interval_s=3600)])
    assert feed(engine, *(facts(t, ms=10) for t in range(20))) == []
    slow = feed(engine, *(facts(t, ms=500, span=t) for t in range(20, 40)))
    [fired] = slow
    assert fired.state == "firing" and fired.kind == "percentile"
    assert math.isclose(fired.value, 500, rel_tol=0.01)
    assert 20 <= int(fired.span_id or "0", 16) < 40  # points at one of the slow spans
    assert fired.message.startswith("p95 of ") and "ms > 100 ms" in fired.message
    later = feed(engine, *(facts(t, ms=10) for t in range(40, 140)))
    [resolved] = later
    assert resolved.state == "resolved" and resolved.uid == fired.uid
    assert resolved.resolved_ns - T0 >= (39 + 60 - 60 / WINDOW_STEPS) * S  # only once the slow spans left


def test_percentile_matches_the_exact_nearest_rank_within_one_percent() -> None:
    rng = random.Random(7)
    engine = RuleEngine([rule("percentile", 1e9, percentile=99, window_s=1000, min_count=1)])
    durations = [rng.lognormvariate(3, 1.5) for _ in range(2000)]
    feed(engine, *(facts(i * 0.1, ms=d) for i, d in enumerate(durations)))
    [compiled] = engine.rules
    group = compiled.groups[None]
    exact = sorted(durations)[math.ceil(0.99 * len(durations)) - 1]
    assert math.isclose(group.data.percentile(99), exact, rel_tol=0.011)


def test_error_rate_needs_min_count_fires_above_threshold_and_resolves_below() -> None:
    engine = RuleEngine([rule("error_rate", 0.5, window_s=60, min_count=5)])
    events = feed(engine, facts(0, error=True), facts(1, error=True), facts(2, error=True), facts(3))
    assert events == []  # 3 of 4 failed, but fewer than min_count spans
    events = feed(engine, facts(4, error=True, span=4), facts(5, span=5), facts(6), facts(7), facts(8))
    assert states(events) == [("error_rate", "firing", 4 * S), ("error_rate", "resolved", 7 * S)]
    assert events[0].span_id == f"{4:016x}"  # the latest failed span
    assert events[0].value == pytest.approx(0.8) and events[0].message == "error rate 80.0% of 5 spans over 60 s > 50.0%"
    assert events[1].value == pytest.approx(0.5)


def test_success_rate_fires_below_threshold_and_resolves_when_the_window_empties() -> None:
    engine = RuleEngine([rule("success_rate", 0.9, window_s=60, min_count=10)])
    assert feed(engine, *(facts(t) for t in range(9)), facts(9, error=True)) == []  # 90% is not below 90%
    [fired] = feed(engine, facts(10, error=True))
    assert fired.state == "firing" and fired.value == pytest.approx(9 / 11)
    assert feed(engine, facts(11)) == []  # still 10/12 < 0.9, already firing, nothing new
    [resolved] = engine.advance(T0 + 200 * S)  # no spans at all: a quiet group resolves
    assert resolved.state == "resolved" and resolved.uid == fired.uid and resolved.resolved_ns == T0 + 200 * S


def test_error_burst_counts_errors_per_category_falling_back_to_error_type() -> None:
    engine = RuleEngine([rule("error_burst", 3, window_s=60)])
    timeout = {sc.ERROR_CATEGORY: "timeout", sc.ERROR_TYPE: "ReadTimeout"}
    limited = {sc.ERROR_TYPE: "RateLimitError"}
    events = feed(
        engine,
        facts(0, error=True, attrs=timeout), facts(1, error=True, attrs=limited),
        facts(2, error=False, attrs=timeout),  # not an error: not counted
        facts(3, error=True, attrs=timeout), facts(4, error=True, attrs=limited),
    )  # fmt: skip
    assert events == []
    [fired] = feed(engine, facts(5, error=True, attrs=timeout, span=5))
    assert (fired.group_key, fired.value, fired.span_id) == ("category=timeout", 3.0, f"{5:016x}")
    assert fired.message == "3 'timeout' errors over 60 s >= 3"
    [other] = feed(engine, facts(6, error=True, attrs=limited))
    assert other.group_key == "category=RateLimitError" and other.uid != fired.uid
    resolved = engine.advance(T0 + 120 * S)
    assert sorted(e.group_key for e in resolved) == ["category=RateLimitError", "category=timeout"]
    assert {e.state for e in resolved} == {"resolved"}


def test_daily_cost_sums_the_utc_day_and_resolves_at_midnight() -> None:
    engine = RuleEngine([rule("daily_cost", 1.0, severity="critical")])
    cost = {sc.GEN_AI_USAGE_COST: 0.4}
    assert feed(engine, facts(10 * 3600, attrs=cost), facts(12 * 3600, attrs=cost), facts(13 * 3600)) == []
    [fired] = feed(engine, facts(23 * 3600, attrs=cost))
    assert fired.value == pytest.approx(1.2) and fired.severity == "critical"
    assert fired.message == "cost $1.2000 on 2001-01-01 (UTC) > budget $1.00"
    [resolved] = feed(engine, facts(86_400 + 5, attrs={sc.GEN_AI_USAGE_COST: 0.1}))
    assert resolved.state == "resolved" and resolved.uid == fired.uid
    assert feed(engine, facts(86_399, attrs={sc.GEN_AI_USAGE_COST: 5.0})) == []  # yesterday's: late
    assert engine.late == 1
    assert feed(engine, facts(86_400 + 60, attrs={sc.GEN_AI_USAGE_COST: 0.95}))[0].state == "firing"  # 1.05 today


def test_token_spike_compares_the_window_with_the_baseline_windows_before_it() -> None:
    engine = RuleEngine([rule("token_spike", window_s=60, baseline_windows=3, factor=3)])
    tokens = {sc.GEN_AI_USAGE_INPUT_TOKENS: 80, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 20}
    spike = {sc.GEN_AI_USAGE_INPUT_TOKENS: 900, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 100}
    assert feed(engine, *(facts(t, attrs=tokens) for t in range(0, 300, 10))) == []  # 600 tokens a window
    events = feed(engine, *(facts(300 + t, attrs=spike) for t in range(3)))
    [fired] = events
    assert fired.state == "firing" and fired.threshold == pytest.approx(1800, rel=0.1)
    assert "tokens over 60 s > " in fired.message and "3x the average" in fired.message
    later = feed(engine, *(facts(t, attrs=tokens) for t in range(310, 400, 10)))
    [resolved] = later
    assert resolved.state == "resolved" and resolved.resolved_ns - T0 >= 360 * S


def test_token_spike_waits_for_a_complete_baseline() -> None:
    engine = RuleEngine([rule("token_spike", window_s=60, baseline_windows=3, factor=3)])
    spike = {sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10_000}
    assert feed(engine, *(facts(t, attrs=spike) for t in range(0, 200, 5))) == []


def test_windows_follow_event_time_and_count_late_spans_still_in_the_window() -> None:
    engine = RuleEngine([rule("error_rate", 0.5, window_s=60, min_count=5)])
    assert feed(engine, facts(100), facts(101), facts(90, error=True), facts(80, error=True)) == []  # 2 of 4
    [fired] = feed(engine, facts(70, error=True))  # arrived late, still inside the window: 3 of 5
    assert fired.state == "firing" and fired.fired_ns == T0 + 101 * S  # stamped at the watermark
    assert engine.late == 0
    assert feed(engine, facts(10, error=True)) == []  # older than the window: ignored
    assert engine.late == 1


def test_a_span_stamped_in_the_future_does_not_make_every_later_span_late() -> None:
    engine = RuleEngine([rule("error_rate", 0.5, window_s=60, min_count=3), rule("latency", 100)])
    now = time.time_ns()

    def at(end_ns: int, error: bool = False, ms: float = 1.0) -> SpanFacts:
        return SpanFacts("op", end_ns - round(ms * MS), end_ns, error, {})

    [slow] = feed(engine, at(now + 86_400 * S, ms=500))  # a host whose clock is a day ahead
    assert slow.rule == "latency" and slow.value == 500.0  # its duration still counts
    assert engine.watermark_ns <= time.time_ns()
    later = feed(engine, *(at(time.time_ns(), error=True) for _ in range(2)))
    assert [(e.rule, e.state) for e in later] == [("latency", "resolved"), ("error_rate", "firing")]
    assert engine.late == 0


@pytest.mark.parametrize(
    ("select", "attrs", "name", "expected"),
    [
        (Selector(operation_type="llm"), {sc.GEN_AI_OPERATION_NAME: "chat"}, "x", True),
        (Selector(operation_type="llm"), {sc.GEN_AI_OPERATION_NAME: "execute_tool"}, "x", False),
        (Selector(operation_type="llm"), {sc.OPERATION_TYPE: "llm", sc.GEN_AI_OPERATION_NAME: "execute_tool"}, "x", True),
        (Selector(name="chat *"), {}, "chat gpt-4o", True),
        (Selector(name="chat *"), {}, "embeddings", False),
        (Selector(model="gpt-4o*"), {sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06"}, "x", True),
        (Selector(model="gpt-4o"), {sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06"}, "x", False),
        (Selector(model="claude*"), {sc.GEN_AI_REQUEST_MODEL: "claude-sonnet-4"}, "x", True),
        (Selector(agent="planner"), {sc.GEN_AI_AGENT_NAME: "planner"}, "x", True),
        (Selector(agent="planner"), {}, "x", False),
        (Selector(attributes=("otelkit.step.type=deploy", "retry=true", "attempt = 3")),
         {"otelkit.step.type": "deploy", "retry": True, "attempt": 3}, "x", True),
        (Selector(attributes=("otelkit.step.type=deploy", "retry=true")),
         {"otelkit.step.type": "deploy", "retry": False}, "x", False),
        (Selector(operation_type="step", name="build*"), {sc.OPERATION_TYPE: "step"}, "deploy", False),
    ],
)
def test_selection(select: Selector, attrs: dict[str, Any], name: str, expected: bool) -> None:
    predicate = compile_selector(rule("latency", 1, select=select))
    assert predicate is not None and predicate(facts(1, name=name, attrs=attrs)) is expected


def test_a_rule_without_selection_sees_every_span() -> None:
    assert compile_selector(rule("latency", 1)) is None
    engine = RuleEngine([rule("latency", 1)])
    assert feed(engine, facts(1, ms=5, name="anything"))[0].state == "firing"


def test_group_by_gives_each_model_its_own_alert() -> None:
    engine = RuleEngine([rule("error_rate", 0.5, window_s=60, min_count=2, group_by=("model", "operation_type"))])
    a = {sc.OPERATION_TYPE: "llm", sc.GEN_AI_REQUEST_MODEL: "model-a"}
    b = {sc.OPERATION_TYPE: "llm", sc.GEN_AI_REQUEST_MODEL: "model-b"}
    events = feed(engine, *(facts(t, error=True, attrs=a) for t in range(3)), *(facts(t, attrs=b) for t in range(3)))
    [fired] = events
    assert fired.group_key == "model=model-a,operation_type=llm"
    assert fired.message.endswith("for model=model-a,operation_type=llm > 50.0%")


def test_min_interval_limits_repeats_and_holds_back_a_quick_refiring() -> None:
    engine = RuleEngine([rule("latency", 100, min_interval_s=60)])
    events = feed(engine, facts(0, ms=200), facts(10, ms=200), facts(70, ms=200))
    assert [(e.state, e.notification) for e in events] == [("firing", 1), ("firing", 2)]
    assert events[0].uid == events[1].uid and events[1].fired_ns == T0 + 70 * S
    assert events[1].started_ns == T0
    [resolved] = feed(engine, facts(80, ms=10))
    assert resolved.state == "resolved"
    assert feed(engine, facts(90, ms=200)) == []  # 20 s after the last notification: held back
    [again] = feed(engine, facts(131, ms=200))
    assert again.state == "firing" and again.uid != events[0].uid and again.started_ns == T0 + 90 * S


def test_occurrences_need_consecutive_breaches_before_the_first_firing() -> None:
    engine = RuleEngine([rule("latency", 100, occurrences=3)])
    events = feed(engine, facts(0, ms=200), facts(1, ms=200), facts(2, ms=10),
                  facts(3, ms=200), facts(4, ms=200))  # fmt: skip
    assert events == []
    [fired] = feed(engine, facts(5, ms=200))
    assert fired.started_ns == T0 + 3 * S and fired.fired_ns == T0 + 5 * S


def test_groups_are_bounded_least_recent_first_never_a_firing_one() -> None:
    engine = RuleEngine([rule("latency", 100, group_by=("name",))], max_groups=2)
    [compiled] = engine.rules
    feed(engine, facts(0, ms=500, name="a"), facts(1, ms=5, name="b"), facts(2, ms=5, name="c"))
    assert list(compiled.groups) == ["a", "c"]  # b was evicted, a is firing
    [fired_d] = feed(engine, facts(3, ms=500, name="d"))  # evicts c
    assert list(compiled.groups) == ["a", "d"] and fired_d.group_key == "name=d"
    assert feed(engine, facts(4, ms=500, name="e")) == []  # both firing: e is not evaluated
    assert engine.dropped_groups == 1


def test_window_state_stays_bounded_over_a_long_stream() -> None:
    engine = RuleEngine([rule("percentile", 1e9, window_s=60, min_count=1),
                         rule("error_rate", 1, window_s=60, min_count=1)])  # fmt: skip
    rng = random.Random(3)
    durations = [10 ** rng.uniform(-3, 4) for _ in range(5000)]  # 1 µs .. 10 s
    feed(engine, *(facts(i * 0.2, ms=d, error=i % 3 == 0) for i, d in enumerate(durations)))
    percentile, rate = (r.groups[None].data for r in engine.rules)
    first_kept = rate.low * (60 * S // WINDOW_STEPS)  # start of the oldest bucket still counted
    kept = [i for i in range(5000) if T0 + round(i * 0.2 * S) >= first_kept]
    assert len(percentile.bins) == WINDOW_STEPS and len(percentile.total) <= _MAX_BIN - _MIN_BIN + 1
    assert sum(percentile.total.values()) == percentile.count == rate.sums[0] == len(kept)
    assert rate.sums[1] == sum(1 for i in kept if i % 3 == 0)
    assert len(kept) <= 60 / 0.2 + 25  # about one window of spans, however long the stream


class Exploding(dict[str, Any]):
    """Attributes whose every lookup fails, as a buggy span source might hand over."""

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("bug")


def test_a_failing_rule_is_logged_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    engine = RuleEngine([rule("latency", 100, name="broken", select=Selector(operation_type="llm")),
                         rule("error_rate", 0.5, name="fine", min_count=1)])  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="otelkit"):
        events = feed(engine, *(SpanFacts("op", T0, T0 + t * S, True, Exploding(x=1)) for t in (1, 2)))
    assert [e.rule for e in events] == ["fine"]
    assert engine.rule_failures == 2
    assert [r.getMessage() for r in caplog.records] == [
        "otelkit: alert rule broken failed (RuntimeError: bug); its spans are skipped"
    ]


def test_describe_spells_out_each_rule_with_defaults() -> None:
    assert describe(rule("latency", 250)) == "a span takes more than 250 ms"
    assert describe(rule("percentile", 2000, percentile=99)) == (
        "p99 over 300 s is more than 2,000 ms (at least 20 spans)"
    )
    assert describe(rule("success_rate", 0.95, window_s=600)) == (
        "success rate over 600 s is less than 95.0% (at least 20 spans)"
    )
    assert describe(rule("error_burst", 5, window_s=60)) == "at least 5 errors of one category within 60 s"
    assert describe(rule("daily_cost", 20)) == "cost of the UTC day is more than $20.00"
    assert describe(rule("token_spike")) == "tokens over 300 s are more than 3x the average of the 6 windows before"


POLICY = """\
version: 1
alerts:
  rules:
    - name: slow-llm
      kind: percentile
      threshold: 5000
      percentile: 99
      select: {operation_type: llm, model: "gpt-4o*"}
      group_by: [model]
    - name: spike
      kind: token_spike
  webhooks:
    - url: https://hooks.example.com/T0/B0/secret
      format: slack
      headers: ["Authorization: Bearer abc"]
"""


def test_policy_alerts_section_loads_with_defaults_filled_in() -> None:
    settings = parse_policy(POLICY).alerts
    slow, spike = settings.rules
    assert (slow.threshold, slow.percentile, slow.window_s, slow.min_count) == (5000.0, 99.0, 300.0, 20)
    assert slow.select == Selector(operation_type="llm", model="gpt-4o*") and slow.group_by == ("model",)
    assert (spike.threshold, spike.factor, spike.baseline_windows) == (0.0, 3.0, 6)
    [hook] = settings.webhooks
    assert hook.header_pairs() == (("Authorization", "Bearer abc"),) and hook.host == "https://hooks.example.com"
    assert (settings.enabled, settings.log, settings.store) == (True, True, True)
    assert AlertSettings().rules == ()


@pytest.mark.parametrize(
    ("snippet", "fragments"),
    [
        ("rules:\n    - {name: r, kind: latencyy, threshold: 1}", ("alerts.rules[0].kind", "expected one of", "(line 4)")),
        ("rules:\n    - {name: r, kind: latency}", ("alerts.rules[0].threshold: a latency rule needs a threshold",)),
        ("rules:\n    - {name: r, kind: error_rate, threshold: 5}", ("alerts.rules[0].threshold", "fraction from 0 to 1")),
        ("rules:\n    - {name: r, kind: latency, threshold: 1, group_by: [host]}", ("alerts.rules[0].group_by[0]",)),
        ("rules:\n    - {name: r, kind: latency, threshold: 1, select: {attributes: [novalue]}}",
         ("alerts.rules[0].select.attributes[0]", "'key=value'")),
        ("rules:\n    - {name: r, kind: latency, threshold: 1}\n    - {name: r, kind: latency, threshold: 2}",
         ("alerts.rules[1].name", "defined twice")),
        ("rules:\n    - {name: r, kind: percentile, threshold: 1, percentile: 100}", ("alerts.rules[0].percentile",)),
        ("rules:\n    - {name: r, kind: latency, threshold: 1, severity: page}", ("alerts.rules[0].severity",)),
        ("rules:\n    - {name: r, kind: latency, threshold: 1, colour: red}", ("unknown key 'alerts.rules[0].colour'",)),
        ("webhooks:\n    - {url: 'ftp://x'}", ("alerts.webhooks[0].url",)),
        ("webhooks:\n    - {url: 'http://x', format: teams}", ("alerts.webhooks[0].format",)),
        ("webhooks:\n    - {url: 'http://x', headers: ['no colon']}", ("alerts.webhooks[0].headers[0]",)),
        ("webhooks:\n    - {url: 'http://x', queue_size: 0}", ("alerts.webhooks[0].queue_size",)),
    ],
)
def test_bad_alert_settings_name_the_key(snippet: str, fragments: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(f"version: 1\nalerts:\n  {snippet}\n")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_settings_objects_validate_when_built_in_code() -> None:
    with pytest.raises(ConfigError, match="window_s"):
        AlertRule(name="r", kind="error_rate", threshold=0.1, window_s=0)
    with pytest.raises(ConfigError, match="url"):
        Webhook(url="")
    with pytest.raises(ConfigError, match="max_groups"):
        AlertSettings(max_groups=0)
