"""Tail sampling in the real Collector, from a rendered policy: every error and slow trace is kept,
the rest at the policy's ratio, always whole traces, and both backends get the same traces.

Counting starts only once the Collector's own metrics say every trace was decided and every
kept span was sent to both exporters, so nothing here depends on how long anything takes.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Callable

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, Tracer

from e2e.support import Collector, Jaeger, Sender, Serve, render_config

RATIO = 0.25
POLICY = f"""
sampling:
  tail:
    keep_errors: true
    latency_threshold_ms: 500
    cost_threshold_usd: null
    keep_ratio: {RATIO}
    decision_timeout_s: 3
"""
NORMAL, ERRORS, SLOW = 400, 20, 20
SAMPLE_RATE = "otelkit.sample.rate"


def send_trace(tracer: Tracer, kind: str, now_ns: int) -> str:
    """A root and a child; an error is on the child only (the whole trace must be kept for it),
    a slow trace's root lasts 2 s (by its timestamps: nothing sleeps)."""
    start = now_ns - (2_000_000_000 if kind == "slow" else 1_000_000)
    root = tracer.start_span("checkout", start_time=start)
    child = tracer.start_span("charge card", context=trace.set_span_in_context(root), start_time=start + 1000)
    if kind == "error":
        child.set_status(Status(StatusCode.ERROR, "card declined"))
    child.end(end_time=start + 2000)
    root.end(end_time=now_ns)
    return f"{root.get_span_context().trace_id:032x}"


def test_errors_and_slow_traces_are_all_kept_the_rest_at_the_ratio(
    start_collector: Callable[[Path], Collector], jaeger: Jaeger, serve: Serve, tmp_path: Path
) -> None:
    config, rendered = render_config(tmp_path, POLICY)
    tail = rendered["processors"]["tail_sampling"]
    assert tail["decision_wait"] == "3s" and [policy["name"] for policy in tail["policies"]] == ["errors", "slow", "rest"]
    collector = start_collector(config)
    service = f"checkout-{uuid.uuid4().hex[:8]}"
    sender = Sender(collector.endpoint, service)
    kinds = ["normal"] * NORMAL + ["error"] * ERRORS + ["slow"] * SLOW
    random.Random(7).shuffle(kinds)
    sent: dict[str, set[str]] = defaultdict(set)
    now = time.time_ns()
    for kind in kinds:
        sent[kind].add(send_trace(sender.tracer, kind, now))
    sender.close()
    metrics = collector.wait_delivered()
    assert metrics.total("otelcol_receiver_accepted_spans") == 2 * len(kinds)
    assert metrics.total("otelcol_processor_tail_sampling_global_count_traces_sampled") == len(kinds)

    stored: dict[str, list[tuple[str, str, dict[str, object]]]] = defaultdict(list)
    for trace_id, name, status, attributes in serve.rows(
        "SELECT trace_id, name, status_code, attributes FROM spans WHERE service_name = ?", service
    ):
        stored[trace_id].append((name, status, json.loads(attributes or "{}")))
    kept = set(stored)
    assert sent["error"] <= kept and sent["slow"] <= kept
    assert kept <= sent["normal"] | sent["error"] | sent["slow"]
    kept_normal = kept & sent["normal"]
    # Binomial(400, 0.25): mean 100, sigma 8.7; outside 5 sigma happens once in ~1.7 million runs
    mean, sigma = NORMAL * RATIO, math.sqrt(NORMAL * RATIO * (1 - RATIO))
    assert abs(len(kept_normal) - mean) <= 5 * sigma, (len(kept_normal), mean, sigma)
    assert all(sorted(name for name, _, _ in spans) == ["charge card", "checkout"] for spans in stored.values())  # whole traces
    assert all(any(status == "ERROR" for _, status, _ in stored[trace_id]) for trace_id in sent["error"])

    # weights: a trace kept by the ratio stands for 1/ratio traces; one kept by a rule for itself
    assert {attrs.get(SAMPLE_RATE) for trace_id in kept_normal for _, _, attrs in stored[trace_id]} == {1 / RATIO}
    assert {attrs.get(SAMPLE_RATE) for trace_id in kept - kept_normal for _, _, attrs in stored[trace_id]} == {None}

    # Jaeger got exactly the same traces (one decision per trace, shared by both exporters)
    assert {found["traceID"] for found in jaeger.traces(service)} == kept
