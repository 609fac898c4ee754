"""Report time over a large store: each report section's time over 10M spans, read from the rollups.

    python benchmarks/bench_report.py [--spans 10m] [--db PATH] [--rebuild] [--periods 24h,7d,30d,all] [--repeat 3]

1. Builds (or reuses, from ~/.cache/otelkit-bench/report-<N>.db) a store of N spans through the real
   write path, StoreWriter.write_spans, in batches, so the rollups are kept as in production: agent
   traces of ~10 spans with tokens, cost, failures, sessions, 2 services and sampled traces, stamped
   from a precomputed pool over the 30 days before a fixed "now"; prints the build rate and the
   share of write_spans spent on rollups. --rebuild forces a new store.
2. Times build_report(conn, period, now, sections=[name], exact=False) per section and period, best
   of --repeat runs on fresh read-only connections; also the part every report shares (sections=[])
   and the full report. A section that raises is reported and the run goes on.

This is a measurement, not a test: it prints the figures and whether the target was met.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

import orjson
from _bench import environment_line, max_rss_mib, positive_int, verdict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from otelkit import semconv as sc

TARGET_S = 1.0
TARGET_SPANS = 10_000_000
DAY_NS, HOUR_NS = 86_400 * 10**9, 3_600 * 10**9
NOW_NS = 1_795_426_887_123_456_789  # 2026-11-23T09:41:27Z: fixed, and off the minute, so windows have ragged edges
SINCE_NS = NOW_NS - 30 * DAY_NS
INCIDENT = (NOW_NS - 9 * DAY_NS - 5 * HOUR_NS, NOW_NS - 9 * DAY_NS - 3 * HOUR_NS)  # 2 h of failing tools
SERVICES = ("agent-cli", "agent-worker")
COMMANDS = (("agent run", "coder"), ("agent review", "reviewer"), ("agent fix", "coder"))
MODELS = (  # provider, request model, response model, $ per 1M input / output tokens, cost status
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", (0.15, 0.6), sc.CostStatus.PRICED),
    ("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", (3.0, 15.0), sc.CostStatus.PRICED),
    ("gcp.gemini", "gemini-2.0-flash", "gemini-2.0-flash", (0.1, 0.4), sc.CostStatus.ESTIMATED),
    ("ollama", "llama3.1:8b", "llama3.1:8b", None, sc.CostStatus.UNPRICED),
)
TOOLS = {"read_file": 3, "search_code": 40, "run_tests": 900, "http_get": 250, "write_file": 5, "git_diff": 30}  # ms
TOOL_ERRORS = (
    ("TimeoutError", "timeout", "{tool} timed out after {n}s"),
    ("FileNotFoundError", "not_found", "No such file or directory: '/repo/src/mod_{n}.py'"),
    ("ConnectionError", "network", "connection refused by 10.0.3.{n}:8443"),
)
# a span of a trace shape: (parent, name, kind, start, duration, status, message, error type, attrs, JSON head, event)
Shape = tuple[tuple[Any, ...], ...]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=positive_int, default=TARGET_SPANS, help="spans in the store (default 10m)")
    parser.add_argument("--db", help="the store file (default ~/.cache/otelkit-bench/report-<N>.db)")
    parser.add_argument("--rebuild", action="store_true", help="build a new store even if a matching one exists")
    parser.add_argument("--batch", type=positive_int, default=10_000, help="spans per write_spans call (default 10k)")
    parser.add_argument("--periods", default="24h,7d,30d,all", help="report periods (default 24h,7d,30d,all)")
    parser.add_argument("--repeat", type=positive_int, default=3, help="runs per figure, the best is kept (default 3)")
    return parser.parse_args(argv)


def make_shape(rng: random.Random, fail_tool: bool) -> Shape:
    """One trace's spans, with times relative to its start and JSON without its closing brace."""
    command, agent = rng.choice(COMMANDS)
    common: dict[str, Any] = {sc.SAMPLE_RATE: 10.0} if rng.random() < 0.03 else {}
    spans: list[list[Any]] = []
    clock = 0

    def open_span(parent: int, name: str, kind: str, attrs: dict[str, Any]) -> int:
        nonlocal clock
        spans.append([parent, name, kind, clock, 0, "UNSET", None, None, {**attrs, **common}, None])
        clock += rng.randint(20_000, 200_000)
        return len(spans) - 1

    def close(index: int, work_ns: float = 0.0, error: tuple[str, str, str] | None = None) -> None:
        nonlocal clock
        clock += int(work_ns)
        span = spans[index]
        span[4] = clock - span[3]
        if error:
            span[5:8] = "ERROR", error[2], error[0]
            span[8].update({sc.ERROR_TYPE: error[0], sc.ERROR_CATEGORY: error[1]})
            event = {sc.EXCEPTION_TYPE: error[0], sc.EXCEPTION_MESSAGE: error[2]}
            span[9] = (clock - 1000, orjson.dumps(event).decode())
        clock += rng.randint(10_000, 100_000)

    def ms(median: float) -> float:  # log-normal durations, with a rare 20x spike for the anomalies
        return median * 1e6 * rng.lognormvariate(0, 0.5) * (20 if rng.random() < 0.002 else 1)

    root = open_span(-1, command, "INTERNAL", {sc.OPERATION_TYPE: "command", sc.COMMAND_NAME: command})
    for step_type in ("plan", "act", "answer"):
        step = open_span(root, step_type, "INTERNAL", {sc.OPERATION_TYPE: "step", sc.STEP_TYPE: step_type})
        if step_type == "act":
            result = rng.random() < 0.7
            attrs = {sc.OPERATION_TYPE: "condition", sc.CONDITION_EXPRESSION: "needs_tool",
                     sc.CONDITION_RESULT: result, sc.CONDITION_BRANCH: "call_tool" if result else "answer"}  # fmt: skip
            close(open_span(step, "needs_tool", "INTERNAL", attrs), ms(0.05))
            calls = rng.choice((1, 1, 2))
            for call in range(calls):
                tool = rng.choice(list(TOOLS))
                attrs = {sc.OPERATION_TYPE: "tool", sc.GEN_AI_OPERATION_NAME: "execute_tool",
                         sc.GEN_AI_TOOL_NAME: tool, sc.GEN_AI_TOOL_CALL_ID: f"call_{rng.getrandbits(40):010x}",
                         sc.GEN_AI_AGENT_NAME: agent}  # fmt: skip
                error_type, category, message = rng.choice(TOOL_ERRORS)
                error = (error_type, category, message.format(tool=tool, n=rng.randint(1, 250)))
                close(open_span(step, f"execute_tool {tool}", "INTERNAL", attrs), ms(TOOLS[tool]),
                      error if fail_tool and call == calls - 1 else None)  # fmt: skip
            close(step)
            continue
        hit, name = rng.random() < 0.8, f"prompts/{step_type}.j2"
        attrs = {sc.OPERATION_TYPE: "template", sc.TEMPLATE_NAME: name, sc.TEMPLATE_CACHE_HIT: hit}
        close(open_span(step, name, "INTERNAL", attrs), ms(0.3 if hit else 4))
        provider, model, response_model, price, status = MODELS[rng.choices(range(4), (5, 3, 2, 1))[0]]
        tokens_in, tokens_out, cached = rng.randint(300, 6000), rng.randint(20, 1200), rng.choice((0, 0, 512, 2048))
        attrs = {
            sc.OPERATION_TYPE: "llm", sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: provider,
            sc.GEN_AI_REQUEST_MODEL: model, sc.GEN_AI_RESPONSE_MODEL: response_model, sc.GEN_AI_AGENT_NAME: agent,
            sc.GEN_AI_RESPONSE_ID: f"resp-{rng.getrandbits(48):012x}", sc.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
            sc.GEN_AI_USAGE_INPUT_TOKENS: tokens_in, sc.GEN_AI_USAGE_OUTPUT_TOKENS: tokens_out,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cached, sc.COST_STATUS: status.value,
        }  # fmt: skip
        if price:
            attrs[sc.GEN_AI_USAGE_COST] = round((tokens_in * price[0] + tokens_out * price[1]) / 1e6, 8)
        limited = rng.random() < 0.01
        message = f"Error code: 429 - rate limit reached, retry after {rng.randint(1, 60)}s"
        error = ("RateLimitError", "rate_limit", message)
        close(open_span(step, f"chat {model}", "CLIENT", attrs), ms(300 + tokens_out * 2), error if limited else None)
        close(step)
    close(root)
    return tuple((*span[:9], orjson.dumps(span[8]).decode()[:-1], span[9]) for span in spans)


def batches(n: int, batch: int, resources: list[int], scope: int) -> Iterator[tuple[list[Any], list[Any], list[Any]]]:
    """(rows, events, attribute maps) of ``n`` spans, ~``batch`` spans at a time, oldest first."""
    rng = random.Random(20261123)
    pool = [make_shape(rng, rng.random() < 0.04) for _ in range(4096)]
    failing = [shape for shape in pool if any(span[5] == "ERROR" and span[2] == "INTERNAL" for span in shape)]
    done = trace_no = 0
    while done < n:
        rows: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        attributes: list[dict[str, Any]] = []
        while len(rows) < batch and done + len(rows) < n:
            t0 = SINCE_NS + (done + len(rows)) * 30 * DAY_NS // n + rng.randrange(10**9)
            shape = pool[rng.getrandbits(12)]
            if INCIDENT[0] <= t0 < INCIDENT[1] and failing and rng.random() < 0.4:
                shape = rng.choice(failing)
            block, slot = divmod(trace_no, 50)  # sessions of 5 traces, 10 of them interleaved
            session_no = block * 10 + slot % 10
            session_id = f"sess-{session_no:08x}"
            tail = f',"{sc.SESSION_ID}":"{session_id}"}}'
            service = 0 if session_no % 10 < 7 else 1
            hexes = os.urandom(8 * len(shape) + 16).hex()
            trace_id = hexes[:32]
            ids = [hexes[32 + 16 * i : 48 + 16 * i] for i in range(len(shape))]
            for i, (parent, name, kind, start, dur, status, message, error_type, attrs, head, event) in enumerate(
                shape[: n - done - len(rows)]
            ):
                rows.append((trace_id, ids[i], ids[parent] if parent >= 0 else None, name, kind, SERVICES[service],
                             resources[service], scope, t0 + start, t0 + start + dur, status, message, error_type,
                             None, head + tail, None))  # fmt: skip
                span_attrs = attrs.copy()
                span_attrs[sc.SESSION_ID] = session_id
                attributes.append(span_attrs)
                if event:
                    events.append((trace_id, ids[i], t0 + event[0], "exception", event[1]))
            trace_no += 1
        done += len(rows)
        yield rows, events, attributes


def build_store(path: str, n: int, batch: int) -> dict[str, float]:
    """Write ``n`` spans through StoreWriter.write_spans; returns seconds in all, in write_spans and in
    its rollup part (Accumulator.add_rows and RollupWriter.write, wrapped in this process only)."""
    import otelkit.store.writer as writer_module

    writer = writer_module.StoreWriter(path)
    resources = [writer.resource_id({sc.SERVICE_NAME: s, "deployment.environment.name": "prod"}, s) for s in SERVICES]
    scope = writer.scope_id(sc.INSTRUMENTATION_SCOPE, "0.2.0")
    spent = {"write": 0.0, "rollups": 0.0}
    accumulator_class, rollups = writer_module.Accumulator, writer._rollups

    def timed(function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            t0 = time.perf_counter()
            function(*args)
            spent["rollups"] += time.perf_counter() - t0

        return call

    class TimedAccumulator(accumulator_class):  # type: ignore[misc, valid-type]
        add_rows = timed(accumulator_class.add_rows)

    writer_module.Accumulator, rollups.write = TimedAccumulator, timed(rollups.write)
    rate = TextColumn("{task.fields[rate]:,.0f} spans/s", style="progress.data.speed")
    columns = (BarColumn(), MofNCompleteColumn(), rate, TimeElapsedColumn(), TimeRemainingColumn())
    t_start, done = time.perf_counter(), 0
    try:
        with Progress("building", *columns) as progress:
            task = progress.add_task("build", total=n, rate=0)
            for rows, events, attributes in batches(n, batch, resources, scope):
                t0 = time.perf_counter()
                stored = writer.write_spans(rows, events, attributes)
                spent["write"] += time.perf_counter() - t0
                if stored != len(rows):
                    raise SystemExit(f"error: write_spans stored {stored} of {len(rows)} spans")
                done += len(rows)
                progress.update(task, completed=done, rate=done / (time.perf_counter() - t_start))
    finally:
        writer_module.Accumulator = accumulator_class
        del rollups.write
        writer.close()
    spent["total"] = time.perf_counter() - t_start
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return spent


def build_line(n: int, spent: dict[str, float]) -> str:
    total, write, rollups = spent["total"], spent["write"], spent["rollups"]
    return (
        f"built in {total:,.0f} s: {n / total:,.0f} spans/s overall (making rows {(total - write) / n * 1e6:.1f} "
        f"µs/span); write_spans {n / write:,.0f} spans/s = {write / n * 1e6:.1f} µs/span, of which rollups "
        f"{rollups / n * 1e6:.1f} µs/span ({rollups / write:.0%})"
    )


def schema_of(conn: sqlite3.Connection) -> list[str]:
    return sorted(row[0] for row in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))


def existing_store(path: str, n: int) -> bool:
    """True if ``path`` is a store this script built with the schema this otelkit creates (same
    version and DDL), holding exactly ``n`` spans in its 30 days. Exits if ``path`` is some other
    file, which must not be deleted."""
    from otelkit.store import APPLICATION_ID, SCHEMA_VERSION, connect_for_writing

    if not os.path.exists(path):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        empty = connect_for_writing(os.path.join(tmp, "empty.db"))
        schema, _ = schema_of(empty), empty.close()
    conn = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True)
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            raise sqlite3.DatabaseError("not an otelkit store")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION or schema_of(conn) != schema:
            return False
        count, low, high = conn.execute("SELECT count(*), min(start_ns), max(start_ns) FROM spans").fetchone()
        return count == n and low >= SINCE_NS and high < NOW_NS + 300 * 10**9  # last spans: just after "now"
    except sqlite3.DatabaseError as exc:
        raise SystemExit(f"error: {path} exists and is not an otelkit store ({exc}); choose another --db") from None
    finally:
        conn.close()


def store_lines(path: str) -> str:
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    tables = ("spans", "span_events", "rollup_keys", "rollups", "error_rollups", "session_rollups", "tool_ngrams")
    with sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True) as conn:
        rows = {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}
        resolutions = conn.execute("SELECT resolution_s, count(*) FROM rollups GROUP BY 1").fetchall()
    per = ", ".join(f"{ {60: 'minute', 3600: 'hour', 86400: 'day'}.get(r, r)} {c:,}" for r, c in resolutions)
    return (
        f"store {path}: {size / 2**30:,.2f} GiB, {rows['spans']:,} spans, {rows['span_events']:,} events\n"
        f"  rollups {rows['rollups']:,} rows ({per}) over {rows['rollup_keys']:,} keys; error_rollups "
        f"{rows['error_rollups']:,}; session_rollups {rows['session_rollups']:,}; tool_ngrams {rows['tool_ngrams']:,}"
    )


def time_report(path: str, period: str, names: list[str], repeat: int) -> float | str:
    """Best seconds of ``build_report`` over ``repeat`` runs on fresh connections, or the error."""
    from otelkit.report.build import build_report
    from otelkit.store import connect_for_reading

    best = math.inf
    for _ in range(repeat):
        conn = connect_for_reading(path)
        try:
            t0 = time.perf_counter()
            build_report(conn, period, NOW_NS, sections=names, exact=False)
            best = min(best, time.perf_counter() - t0)
        except Exception as exc:  # a section being edited by someone else must not stop the run
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
    return best


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from otelkit.report.period import parse_period
    from otelkit.report.sections import SECTIONS

    try:
        periods = [parse_period(p.strip()).label for p in args.periods.split(",") if p.strip()]
    except ValueError as exc:  # PeriodError: the CLI's one-line message
        raise SystemExit(f"error: {exc}") from None
    n = args.spans
    label = f"{n // 10**6}m" if n % 10**6 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)
    path = args.db or os.path.expanduser(f"~/.cache/otelkit-bench/report-{label}.db")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW_NS // 10**9))
    print(f"otelkit report benchmark: {n:,} spans over the 30 days before {now}")
    print(f"  {environment_line()}, {os.cpu_count()} CPUs")
    if not args.rebuild and existing_store(path, n):
        print(f"  reusing {path}: it holds exactly {n:,} spans and the current schema (--rebuild for a new one)")
        if os.path.exists(path + ".build.json"):
            with open(path + ".build.json", "rb") as file:
                print("  when it was " + build_line(n, orjson.loads(file.read())))
    else:
        existing_store(path, -1)  # exits before deleting a file that is not an otelkit store
        for suffix in ("", "-wal", "-shm", ".build.json"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        spent = build_store(path, n, args.batch)
        with open(path + ".build.json", "wb") as file:
            file.write(orjson.dumps(spent))
        print(build_line(n, spent) + f"; peak RSS {max_rss_mib():,.0f} MiB")
    print(store_lines(path))

    print(f"\nbuild_report(..., exact=False), seconds, best of {args.repeat}, a fresh read-only connection each run:")
    print(f"  {'section':<22}" + "".join(f"{p:>14}" for p in periods))
    results: dict[tuple[str, str], float | str] = {}
    for name, names in [(s, [s]) for s in SECTIONS] + [("(shared: no section)", []), ("(full report)", [*SECTIONS])]:
        cells = ""
        for period in periods:
            result = results[(name, period)] = time_report(path, period, names, args.repeat)
            ok = "" if isinstance(result, str) or name not in SECTIONS else "ok" if result < TARGET_S else "OVER"
            cells += f"{'error':>14}" if isinstance(result, str) else f"{result:8.3f} s {ok:>4}"
        print(f"  {name:<22}{cells}", flush=True)
    for (name, period), result in results.items():
        if isinstance(result, str):
            print(f"  error in {name} at {period}: {result}")

    sections = {key: value for key, value in results.items() if key[0] in SECTIONS}
    timed = sorted((value, key) for key, value in sections.items() if not isinstance(value, str))
    full = [value for key, value in results.items() if key[0] == "(full report)" and not isinstance(value, str)]
    met = bool(timed) and len(timed) == len(sections) and timed[-1][0] < TARGET_S and n >= TARGET_SPANS
    slowest = f"slowest: {timed[-1][1][0]} at {timed[-1][1][1]}, {timed[-1][0]:.3f} s" if timed else "no section ran"
    over = sum(1 for value, _ in timed if value >= TARGET_S)
    if n < TARGET_SPANS:
        print(f"\nNOTE: the store holds {n:,} spans, fewer than the {TARGET_SPANS:,} the target names")
    print(
        f"\ntarget: each section under {TARGET_S:.0f} s over 10M spans: {verdict(met)} ({slowest}; {over} of "
        f"{len(sections)} section x period figures over; {len(sections) - len(timed)} failed)"
    )
    if full:
        print(f"  full report, all sections at once (no target of its own): {max(full):.3f} s in its slowest period")
    return 0


if __name__ == "__main__":
    sys.exit(main())
