"""A deterministic, realistic store content for the report tests (tests/test_report_sections.py).

Traffic of an agent CLI over the 3 days before :data:`NOW` (plus lighter traffic in the 3 days
before that, for the "previous window" comparison), as plain span *specs* (dicts), so a test can
compute every expected figure from them with plain Python:

- a root command (``deploy`` or ``review``) per trace, in one of two services;
- a ``plan`` step (template ``prompt.j2``, an LLM call of ``gpt-4o`` with its cost, the condition
  ``needs_tools``), an ``act`` step (an agent, ``coder`` or ``reviewer``, alternating LLM calls
  and tool calls), then template ``summary.j2`` and a closing ``gpt-4o-mini`` call;
- LLM calls with a stored cost (``gpt-4o``), with tokens but no cost of a model the pricing table
  knows (``gpt-4o-mini``, answered as the snapshot ``gpt-4o-mini-2024-07-18``: priced at report
  time), and of models it does not know (``mystery-model-x`` and, rarely, a model whose name is
  markup): unpriced;
- ``run_tests`` failing ~40% with messages such as ``run_tests failed after 3 retries in 12.5s``;
  other tools failing rarely (timeouts, not found, rejected commits, a body with a ``<script>``);
  some ``read_file`` calls with a ``search`` running beside them;
- sessions of 2 to 6 traces sharing ``session.id``; solo traces without one;
- one latency spike (the trace starting at :data:`SPIKE_START`: its ``plan`` step lasts 50x its
  usual time), two slow ``deploy`` runs in one minute (:data:`SLOW_PAIR_STARTS`), one slow
  ``plan`` just before the 3-day window starts and one just after the ragged window ends (never
  anomalies of those windows), and one error burst (many failing ``run_tests`` calls in the
  minute :data:`BURST_MINUTE_NS`);
- a session whose tool calls run across the last whole hour before the ragged window's end;
- short traces in the partial minutes around every window edge, and no session or trace whose
  span starts straddle a window edge (so which window a sequence of calls belongs to is never
  ambiguous).

Every spec: ``trace_id``, ``span_id``, ``parent_span_id``, ``name``, ``kind``, ``service``,
``start_ns``, ``end_ns``, ``status`` (``ERROR`` or ``UNSET``), ``status_message``,
``error_type``, ``attributes`` (dict, names from :mod:`otelkit.semconv`), and, for failed spans,
``message_template``: the message as the report must show it (numbers, ids, addresses and quoted
text as ``<n>``, ``<uuid>``, ``<ip>``, ``<hex>``, ``<str>``), known by construction.

:func:`write_store` writes specs through the real write path (``StoreWriter.write_spans``) in
several batches; :func:`sampled` keeps whole traces with probability 1/4 (errors: always) and
stamps ``otelkit.sample.rate``.
"""

from __future__ import annotations

import copy
import random
from datetime import datetime, timezone
from typing import Any, Iterable

from otelkit import semconv as sc
from otelkit.store import StoreWriter
from otelkit.store.writer import SPAN_COLUMNS, to_json

NS = 1_000_000_000
MS = 1_000_000
US = 1_000
MINUTE = 60 * NS
HOUR = 3600 * NS
DAY = 86_400 * NS


def iso_ns(text: str) -> int:
    """Unix ns of an ISO 8601 UTC time with at most microseconds (computed without otelkit)."""
    moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * US


# 2027-01-15T08:47:37.123456789Z: on no minute, hour or day boundary.
NOW = 1_800_000_000 * NS + (47 * 60 + 37) * NS + 123_456_789
SINCE_3D = NOW - 3 * DAY
PREVIOUS_3D = NOW - 6 * DAY
# A fixed window with ragged edges (not on a minute), shorter than 2 days.
RAGGED_SINCE_ISO = "2027-01-13T03:34:33.250000"
RAGGED_UNTIL_ISO = "2027-01-14T06:12:41.750000"
RAGGED_PERIOD = f"{RAGGED_SINCE_ISO}..{RAGGED_UNTIL_ISO}"
RAGGED_SINCE = iso_ns(RAGGED_SINCE_ISO)
RAGGED_UNTIL = iso_ns(RAGGED_UNTIL_ISO)
RAGGED_PREVIOUS = RAGGED_SINCE - (RAGGED_UNTIL - RAGGED_SINCE)
# No session or trace has span starts on both sides of one of these.
CUTS = (PREVIOUS_3D, SINCE_3D, RAGGED_PREVIOUS, RAGGED_SINCE, RAGGED_UNTIL)

SERVICES = ("agent-cli", "batch-worker")
SPIKE_START = iso_ns("2027-01-13T15:20:10.500000")
PREVIOUS_SPIKE_START = SINCE_3D - 20 * MINUTE
BURST_MINUTE_NS = iso_ns("2027-01-13T21:06:00")
# Two slow runs of one command in one minute: both among the 5 slowest traces.
SLOW_PAIR_STARTS = (iso_ns("2027-01-13T11:42:05.250000"), iso_ns("2027-01-13T11:42:31.500000"))
SLOW_PAIR_PLAN_NS = (25 * NS, 23 * NS)
# The trace just after the ragged window's end has a slow plan: never an anomaly of that window.
EDGE_SLOW_PLAN_NS = 15 * NS
BURST_TRACES = 12
BURST_CALLS_PER_TRACE = 3
SCRIPT = "<script>alert(1)</script>"

CODER_TOOLS = ("search", "read_file", "run_tests", "write_file", "fetch_url")
CODER_WEIGHTS = (30, 30, 25, 12, 3)
REVIEWER_TOOLS = ("read_file", "search", "lint")
REVIEWER_WEIGHTS = (45, 25, 30)

PRICED_MODEL = "gpt-4o"  # calls carry their cost
REPRICED_MODEL = "gpt-4o-mini"  # calls carry tokens but no cost: priced at report time
REPRICED_RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
UNKNOWN_MODEL = "mystery-model-x"  # no price anywhere: unpriced
GPT_4O_PRICE = (2.50, 10.00)  # USD per million input/output tokens, what the "instrumentation" stored


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seen: set[str] = set()

    def make(self, bits: int) -> str:
        while True:
            value = f"{self.rng.getrandbits(bits):0{bits // 4}x}"
            if value not in self.seen and int(value, 16):
                self.seen.add(value)
                return value


class _TraceBuilder:
    """Builds one trace's specs, children one after the other from a moving cursor."""

    def __init__(self, rng: random.Random, ids: _Ids, service: str, session: str | None) -> None:
        self.rng = rng
        self.ids = ids
        self.trace_id = ids.make(128)
        self.service = service
        self.session = session
        self.specs: list[dict[str, Any]] = []

    def span(self, name: str, parent: dict[str, Any] | None, start: int, end: int, attrs: dict[str, Any],
             kind: str = "INTERNAL") -> dict[str, Any]:
        attributes = dict(attrs)
        if self.session is not None:
            attributes[sc.SESSION_ID] = self.session
        spec = {
            "trace_id": self.trace_id, "span_id": self.ids.make(64),
            "parent_span_id": None if parent is None else parent["span_id"], "name": name, "kind": kind,
            "service": self.service, "start_ns": start, "end_ns": end, "status": "UNSET",
            "status_message": None, "error_type": None, "attributes": attributes,
        }  # fmt: skip
        self.specs.append(spec)
        return spec

    @staticmethod
    def fail(spec: dict[str, Any], message: str, template: str, error_type: str, category: str) -> None:
        spec["status"] = "ERROR"
        spec["status_message"] = message
        spec["error_type"] = error_type
        spec["message_template"] = template
        spec["attributes"][sc.ERROR_TYPE] = error_type
        spec["attributes"][sc.ERROR_CATEGORY] = category

    @staticmethod
    def fail_like(spec: dict[str, Any], child: dict[str, Any]) -> None:
        _TraceBuilder.fail(spec, child["status_message"], child["message_template"], child["error_type"],
                           child["attributes"][sc.ERROR_CATEGORY])  # fmt: skip

    def ms(self, low: float, high: float) -> int:
        return int(self.rng.uniform(low, high) * MS)


def _tool_failure(rng: random.Random, tool: str) -> tuple[str, str, str, str] | None:
    """(message, expected template, error type, category) when this call fails, else None."""
    roll = rng.random()
    if tool == "run_tests" and roll < 0.40:
        retries, seconds = rng.randint(1, 5), rng.randint(10, 999) / 10
        return (f"run_tests failed after {retries} retries in {seconds}s",
                "run_tests failed after <n> retries in <n>s", "TestFailure", "tool_error")  # fmt: skip
    if tool == "search" and roll < 0.05:
        parts = (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12), rng.getrandbits(12), rng.getrandbits(48))
        request = "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}".format(*parts)
        address = f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}:8443"
        return (f"request {request} to {address} timed out after {rng.randint(5, 60)}s",
                "request <uuid> to <ip> timed out after <n>s", "TimeoutError", "timeout")  # fmt: skip
    if tool == "read_file" and roll < 0.03:
        path = rng.choice(["src/app.py", "README.md", "setup.cfg"])
        return (f"file '{path}' not found", "file <str> not found", "FileNotFoundError", "not_found")
    if tool == "write_file" and roll < 0.05:
        commit = f"{rng.randint(1, 9)}{rng.getrandbits(32):08x}e"
        return (f"commit {commit} rejected by hook", "commit <hex> rejected by hook", "HookRejected", "validation")
    if tool == "fetch_url" and roll < 0.5:
        return (f"fetch_url got unexpected body {SCRIPT}", "fetch_url got unexpected body <script>alert(<n>)</script>",
                "ParseError", "validation")  # fmt: skip
    return None


def _llm(b: _TraceBuilder, parent: dict[str, Any], start: int, *, model: str, agent: str | None) -> dict[str, Any]:
    """One LLM call starting at ``start``: its cost, tokens and failure depend on the model."""
    rng = b.rng
    attrs: dict[str, Any] = {sc.OPERATION_TYPE: sc.OperationType.LLM.value, sc.GEN_AI_OPERATION_NAME: "chat",
                             sc.GEN_AI_REQUEST_MODEL: model}  # fmt: skip
    if agent:
        attrs[sc.GEN_AI_AGENT_NAME] = agent
    if model == PRICED_MODEL:
        attrs[sc.GEN_AI_PROVIDER_NAME] = "openai"
        duration = b.ms(300, 1500)
        if rng.random() < 0.03:
            spec = b.span(f"chat {model}", parent, start, start + b.ms(20, 80), attrs, "CLIENT")
            b.fail(spec, "Rate limit reached: 429 Too Many Requests, retry after 20s",
                   "Rate limit reached: <n> Too Many Requests, retry after <n>s", "RateLimitError", "rate_limit")  # fmt: skip
            return spec
        inputs, outputs = rng.randint(500, 3000), rng.randint(50, 800)
        attrs.update({sc.GEN_AI_USAGE_INPUT_TOKENS: inputs, sc.GEN_AI_USAGE_OUTPUT_TOKENS: outputs,
                      sc.GEN_AI_USAGE_COST: (inputs * GPT_4O_PRICE[0] + outputs * GPT_4O_PRICE[1]) / 1e6,
                      sc.COST_STATUS: sc.CostStatus.PRICED.value})  # fmt: skip
    elif model == REPRICED_MODEL:
        attrs[sc.GEN_AI_PROVIDER_NAME] = "openai"
        attrs[sc.GEN_AI_RESPONSE_MODEL] = REPRICED_RESPONSE_MODEL
        duration = b.ms(150, 700)
        inputs, outputs = rng.randint(200, 4000), rng.randint(20, 600)
        attrs.update({sc.GEN_AI_USAGE_INPUT_TOKENS: inputs, sc.GEN_AI_USAGE_OUTPUT_TOKENS: outputs})
        if rng.random() < 0.5:
            attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = rng.randint(0, inputs)
    else:  # no price anywhere
        attrs[sc.GEN_AI_PROVIDER_NAME] = "acme"
        duration = b.ms(200, 900)
        attrs.update({sc.GEN_AI_USAGE_INPUT_TOKENS: rng.randint(100, 2000),
                      sc.GEN_AI_USAGE_OUTPUT_TOKENS: rng.randint(10, 400),
                      sc.COST_STATUS: sc.CostStatus.UNPRICED.value})  # fmt: skip
    return b.span(f"chat {model}", parent, start, start + duration, attrs, "CLIENT")


_TOOL_MS = {"search": (80, 600), "read_file": (2, 30), "run_tests": (800, 6000), "write_file": (3, 40),
            "fetch_url": (100, 900), "lint": (100, 400)}  # fmt: skip


def _agent(b: _TraceBuilder, parent: dict[str, Any], start: int, agent: str, forced: list[str] | None) -> dict[str, Any]:
    """An agent run: LLM calls alternating with tool calls (``forced``: exactly these tools, all failing)."""
    rng = b.rng
    spec = b.span(f"invoke_agent {agent}", parent, start, start, {
        sc.OPERATION_TYPE: sc.OperationType.AGENT.value, sc.GEN_AI_OPERATION_NAME: "invoke_agent",
        sc.GEN_AI_AGENT_NAME: agent})  # fmt: skip
    cursor = start + b.ms(0.1, 1)
    last_tool: dict[str, Any] | None = None
    if forced is not None:
        plan = forced
    else:
        tools, weights = (CODER_TOOLS, CODER_WEIGHTS) if agent == "coder" else (REVIEWER_TOOLS, REVIEWER_WEIGHTS)
        plan = [rng.choices(tools, weights)[0] for _ in range(rng.randint(1, 5))]
    for tool in plan:
        if forced is None:
            roll = rng.random()
            model = SCRIPT if roll < 0.01 else UNKNOWN_MODEL if roll < 0.16 else REPRICED_MODEL
            call = _llm(b, spec, cursor, model=model, agent=agent)
            cursor = call["end_ns"] + b.ms(0.05, 2)
        low, high = _TOOL_MS[tool]
        end = cursor + b.ms(low, high) if forced is None else cursor + b.ms(50, 150)
        last_tool = b.span(f"execute_tool {tool}", spec, cursor, end, {
            sc.OPERATION_TYPE: sc.OperationType.TOOL.value, sc.GEN_AI_OPERATION_NAME: "execute_tool",
            sc.GEN_AI_TOOL_NAME: tool, sc.GEN_AI_AGENT_NAME: agent})  # fmt: skip
        failure = _tool_failure(rng, tool) if forced is None else (
            f"run_tests failed after {rng.randint(1, 9)} retries in {rng.randint(1, 99)}.{rng.randint(1, 9)}s",
            "run_tests failed after <n> retries in <n>s", "TestFailure", "tool_error")  # fmt: skip
        if failure is not None:
            b.fail(last_tool, *failure)
        if forced is None and tool == "read_file" and rng.random() < 0.3:  # a search running beside it
            beside = cursor + int(rng.uniform(5, 50) * US)
            parallel = b.span("execute_tool search", spec, beside, beside + b.ms(*_TOOL_MS["search"]), {
                sc.OPERATION_TYPE: sc.OperationType.TOOL.value, sc.GEN_AI_OPERATION_NAME: "execute_tool",
                sc.GEN_AI_TOOL_NAME: "search", sc.GEN_AI_AGENT_NAME: agent})  # fmt: skip
            end = max(end, parallel["end_ns"])
        cursor = end + b.ms(0.05, 2)
    spec["end_ns"] = cursor + b.ms(0.1, 1)
    if last_tool is not None and last_tool["status"] == "ERROR":
        b.fail_like(spec, last_tool)
    return spec


def build_trace(rng: random.Random, ids: _Ids, start: int, service: str, session: str | None, *,
                plan_factor: float = 1.0, plan_ns: int | None = None, command: str | None = None,
                burst: bool = False) -> list[dict[str, Any]]:
    """One trace of the agent CLI starting at ``start`` (see the module docs); its plan step lasts
    ``plan_factor`` times as long as it would, or ``plan_ns``."""
    b = _TraceBuilder(rng, ids, service, session)
    command = command or ("deploy" if burst else rng.choices(["deploy", "review"], [60, 40])[0])
    root = b.span(command, None, start, start, {sc.OPERATION_TYPE: sc.OperationType.COMMAND.value,
                                                sc.COMMAND_NAME: command}, "SERVER")  # fmt: skip
    cursor = start + b.ms(1, 5)
    if burst:  # a CI run hammering run_tests: every call fails within a few hundred ms
        act = b.span("act", root, cursor, cursor, {sc.OPERATION_TYPE: sc.OperationType.STEP.value})
        agent = _agent(b, act, cursor + b.ms(0.1, 1), "coder", ["run_tests"] * BURST_CALLS_PER_TRACE)
        act["end_ns"] = agent["end_ns"] + b.ms(0.1, 1)
        b.fail_like(act, agent)
        root["end_ns"] = act["end_ns"] + b.ms(0.1, 1)
        b.fail_like(root, act)
        return b.specs
    # plan: render the prompt, ask the model, decide whether tools are needed
    plan = b.span("plan", root, cursor, cursor, {sc.OPERATION_TYPE: sc.OperationType.STEP.value})
    cursor += b.ms(0.1, 1)
    hit: dict[str, Any] = {}
    roll = rng.random()
    if roll < 0.98:
        hit[sc.TEMPLATE_CACHE_HIT] = roll < 0.88  # ~90% of those that report it
    template = b.span("prompt.j2", plan, cursor, cursor + b.ms(1, 8), {
        sc.OPERATION_TYPE: sc.OperationType.TEMPLATE.value, sc.TEMPLATE_NAME: "prompt.j2", **hit})  # fmt: skip
    cursor = template["end_ns"] + b.ms(0.05, 1)
    call = _llm(b, plan, cursor, model=PRICED_MODEL, agent=None)
    cursor = call["end_ns"] + b.ms(0.05, 1)
    condition_name = "needs_tools" if command == "deploy" else "has_diff"
    roll = rng.random()
    outcome: dict[str, Any] = {}
    if roll < 0.95:
        outcome[sc.CONDITION_RESULT] = roll < (0.70 if command == "deploy" else 0.30)
    condition = b.span(condition_name, plan, cursor, cursor + int(rng.uniform(20, 300) * US), {
        sc.OPERATION_TYPE: sc.OperationType.CONDITION.value, **outcome})  # fmt: skip
    cursor = condition["end_ns"] + b.ms(0.5, 40)
    plan["end_ns"] = cursor
    if plan_factor != 1.0:  # the plan waits (own time) until it lasted plan_factor times as long
        plan["end_ns"] = plan["start_ns"] + int((cursor - plan["start_ns"]) * plan_factor)
    if plan_ns is not None:
        plan["end_ns"] = plan["start_ns"] + plan_ns
    cursor = plan["end_ns"] + b.ms(0.1, 2)
    # act: an agent with tools (when the condition did not say no)
    if outcome.get(sc.CONDITION_RESULT, True) or rng.random() < 0.3:
        act = b.span("act", root, cursor, cursor, {sc.OPERATION_TYPE: sc.OperationType.STEP.value})
        agent = _agent(b, act, cursor + b.ms(0.1, 1), "coder" if command == "deploy" else "reviewer", None)
        act["end_ns"] = agent["end_ns"] + b.ms(0.1, 3)
        if agent["status"] == "ERROR":
            b.fail_like(act, agent)
            if rng.random() < 0.5:
                b.fail_like(root, act)
        cursor = act["end_ns"] + b.ms(0.1, 2)
    # summary: a template (many renders do not report the cache) and a cheap model call
    hit = {}
    roll = rng.random()
    if roll < 0.75:
        hit[sc.TEMPLATE_CACHE_HIT] = roll < 0.22  # ~30% of those that report it
    template = b.span("summary.j2", root, cursor, cursor + b.ms(2, 20), {
        sc.OPERATION_TYPE: sc.OperationType.TEMPLATE.value, sc.TEMPLATE_NAME: "summary.j2", **hit})  # fmt: skip
    cursor = template["end_ns"] + b.ms(0.05, 1)
    call = _llm(b, root, cursor, model=REPRICED_MODEL, agent=None)
    root["end_ns"] = call["end_ns"] + b.ms(0.5, 5)
    return b.specs


def _starts(specs: Iterable[dict[str, Any]]) -> tuple[int, int]:
    starts = [s["start_ns"] for s in specs]
    return min(starts), max(starts)


def _straddles(specs: list[dict[str, Any]]) -> bool:
    low, high = _starts(specs)
    return any(low < cut <= high for cut in CUTS)


def _unit(rng: random.Random, ids: _Ids, start: int, number: int) -> list[dict[str, Any]]:
    """A session of 2 to 6 traces (60% of units) or a solo trace, starting at ``start``."""
    service = rng.choices(SERVICES, [70, 30])[0]
    if rng.random() < 0.6:
        session = f"sess-{number:05d}"
        specs: list[dict[str, Any]] = []
        cursor = start
        for _ in range(rng.randint(2, 6)):
            trace = build_trace(rng, ids, cursor, service, session)
            specs.extend(trace)
            cursor = max(s["end_ns"] for s in trace) + int(rng.uniform(2, 90) * NS)
        return specs
    return build_trace(rng, ids, start, service, None)


def _fill(rng: random.Random, ids: _Ids, low: int, high: int, units: int, first: int) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for number in range(first, first + units):
        while True:
            unit = _unit(rng, ids, rng.randrange(low, high), number)
            if not _straddles(unit) and max(s["end_ns"] for s in unit) < high:
                break
        specs.extend(unit)
    return specs


def _edge_traces(rng: random.Random, ids: _Ids) -> list[dict[str, Any]]:
    """Solo traces starting in the partial minutes on both sides of each window edge."""
    specs: list[dict[str, Any]] = []
    for cut in (*CUTS, NOW):
        minute = cut - cut % MINUTE
        before, after = minute + 2 * NS, cut + NS
        assert minute + 10 * NS < cut < minute + MINUTE - 10 * NS, "edges sit inside their minute"
        for start in (before, after):
            if start >= NOW:
                continue
            slow = {"plan_ns": EDGE_SLOW_PLAN_NS, "command": "deploy"} if start == RAGGED_UNTIL + NS else {}
            for _attempt in range(100):  # a short one that does not reach over the edge
                trace = build_trace(rng, ids, start, rng.choice(SERVICES), None, **slow)
                if not _straddles(trace) and _starts(trace)[1] < NOW:
                    specs.extend(trace)
                    break
            else:
                raise AssertionError(f"no edge trace fits at {start}")
    return specs


def _boundary_session(rng: random.Random, ids: _Ids) -> list[dict[str, Any]]:
    """A session whose tool calls run across the last whole hour before RAGGED_UNTIL (sequences
    that start in one hour and complete in the next, inside the window)."""
    hour = RAGGED_UNTIL - RAGGED_UNTIL % HOUR
    for attempt in range(1000):
        specs: list[dict[str, Any]] = []
        cursor = hour - 40 * NS
        while cursor < hour + 3 * MINUTE:
            trace = build_trace(rng, ids, cursor, SERVICES[0], f"sess-boundary-{attempt}", command="deploy")
            specs.extend(trace)
            cursor = max(s["end_ns"] for s in trace) + int(rng.uniform(1, 5) * NS)
        tools = [s["start_ns"] for s in specs if s["attributes"][sc.OPERATION_TYPE] == "tool"]
        if (sum(t < hour for t in tools) >= 4 and sum(t >= hour for t in tools) >= 4 and not _straddles(specs)
                and _starts(specs)[1] < RAGGED_UNTIL):  # fmt: skip
            return specs
    raise AssertionError("no boundary session")


def generate(seed: int = 20270115, current_units: int = 520, previous_units: int = 190) -> list[dict[str, Any]]:
    """The specs of the whole store (see the module docs), the same for the same arguments."""
    rng = random.Random(seed)
    ids = _Ids(rng)
    specs = _fill(rng, ids, SINCE_3D + 5 * MINUTE, NOW - 30 * MINUTE, current_units, 0)
    specs += _fill(rng, ids, PREVIOUS_3D + 5 * MINUTE, SINCE_3D - 60 * MINUTE, previous_units, current_units)
    specs += _edge_traces(rng, ids)
    specs += build_trace(rng, ids, SPIKE_START, SERVICES[0], None, plan_factor=50.0)
    specs += build_trace(rng, ids, PREVIOUS_SPIKE_START, SERVICES[0], None, plan_factor=30.0)
    for start, plan_ns in zip(SLOW_PAIR_STARTS, SLOW_PAIR_PLAN_NS):
        specs += build_trace(rng, ids, start, SERVICES[1], None, plan_ns=plan_ns, command="deploy")
    specs += _boundary_session(rng, ids)
    for number in range(BURST_TRACES):
        specs += build_trace(rng, ids, BURST_MINUTE_NS + (1 + 4 * number) * NS + rng.randrange(MS), SERVICES[0],
                             None, burst=True)  # fmt: skip
    return specs


def spike_trace_id(specs: list[dict[str, Any]]) -> str:
    """The trace whose plan step lasts 50x its usual time."""
    return next(s["trace_id"] for s in specs if s["parent_span_id"] is None and s["start_ns"] == SPIKE_START)


def previous_spike_trace_id(specs: list[dict[str, Any]]) -> str:
    return next(s["trace_id"] for s in specs if s["parent_span_id"] is None and s["start_ns"] == PREVIOUS_SPIKE_START)


def edge_slow_trace_id(specs: list[dict[str, Any]]) -> str:
    return next(s["trace_id"] for s in specs if s["parent_span_id"] is None and s["start_ns"] == RAGGED_UNTIL + NS)


# --- sampling -----------------------------------------------------------------------------------
SAMPLE_RATE = 4


def sampled(specs: list[dict[str, Any]], seed: int = 4, rate: int = SAMPLE_RATE) -> list[dict[str, Any]]:
    """The same traffic as a tail sampler keeps it: every trace with an error (rate 1), others with
    probability 1/rate; every kept span carries ``otelkit.sample.rate`` (its trace's rate)."""
    rng = random.Random(seed)
    traces: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        traces.setdefault(spec["trace_id"], []).append(spec)
    kept: list[dict[str, Any]] = []
    for trace_id in sorted(traces):
        spans = traces[trace_id]
        errored = any(s["status"] == "ERROR" for s in spans)
        trace_rate = 1 if errored else rate
        if not errored and rng.random() >= 1 / rate:
            continue
        for spec in spans:
            copied = copy.deepcopy(spec)
            copied["attributes"][sc.SAMPLE_RATE] = float(trace_rate)
            kept.append(copied)
    return kept


# --- writing ------------------------------------------------------------------------------------
def row(spec: dict[str, Any]) -> tuple[Any, ...]:
    """A spec as a span row in ``SPAN_COLUMNS`` order."""
    values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
    values.update(
        trace_id=spec["trace_id"], span_id=spec["span_id"], parent_span_id=spec["parent_span_id"],
        name=spec["name"], kind=spec["kind"], service_name=spec["service"], start_ns=spec["start_ns"],
        end_ns=spec["end_ns"], status_code=spec["status"], status_message=spec["status_message"],
        error_type=spec["error_type"], attributes=to_json(spec["attributes"]),
    )  # fmt: skip
    return tuple(values[column] for column in SPAN_COLUMNS)


def write_store(path: str, specs: list[dict[str, Any]], *, batches: int = 7, order: str = "shuffled",
                seed: int = 99) -> None:
    """Write ``specs`` through ``StoreWriter.write_spans`` in ``batches`` batches of uneven sizes:
    ``order="shuffled"`` mixes every span of every trace across batches; ``order="ended"`` writes
    them as a BatchSpanProcessor would, in the order they ended; ``order="given"`` as listed."""
    rng = random.Random(seed)
    rows = [row(spec) for spec in specs]
    if order == "shuffled":
        rng.shuffle(rows)
    elif order == "ended":
        end = SPAN_COLUMNS.index("end_ns")
        rows.sort(key=lambda r: r[end])
    elif order != "given":
        raise ValueError(order)
    cuts = sorted(rng.sample(range(1, len(rows)), batches - 1))
    writer = StoreWriter(path)
    try:
        for low, high in zip([0, *cuts], [*cuts, len(rows)]):
            assert writer.write_spans(rows[low:high]) == high - low
    finally:
        writer.close()
