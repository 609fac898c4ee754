"""The sustained SQLite export rate in spans/s: SQLiteSpanExporter.export() over batches of 512.

    python benchmarks/bench_sqlite_export.py [--spans 200000] [--batch 512] [--prefill 1000000]

First N realistic finished spans are made with the real SDK: a pool (--pool, default 20k)
through otelkit's API (a global TracerProvider with SimpleSpanProcessor into an
InMemorySpanExporter), the rest as copies of the pool with fresh trace/span ids and later
times. Traces of 10 spans, ``command -> step x3 -> template / condition / tool / llm`` (two
llm calls), sessions of 5 traces, the attributes the API sets (GenAI attributes, tokens and
cost on llm spans, ``session.id``), and a failed tool call with its exception event in 1
trace of 25. Only then does the clock start.

Reported:
  * the export rate into a fresh store (file in a temp dir), with the time split between row
    conversion (everything export() does besides writing) and StoreWriter.write_spans (the
    SQLite transaction), measured in the same run by timing the writer's calls;
  * for reference, plain executemany of the same rows into an index-free table of the same
    columns, the ceiling for this machine's SQLite;
  * with --prefill M (default 1M, 0 skips), the export rate into a store already holding M
    older spans (copies of the converted rows moved back in time, written in bulk).

Every figure is checked: the stored row counts must equal what was exported. This is a
measurement, not a test: it prints the figures and whether the targets were met.
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import sys
import tempfile
import time
from typing import Any, Sequence

from _bench import count_rows, distinct_traces, environment_line, max_rss_mib, non_negative_int, positive_int, verdict

TARGET_RATE = 50_000
AIM_RATE = 100_000
SPANS_PER_TRACE = 10
TRACES_PER_SESSION = 5
FAILED_TRACE_EVERY = 25


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=positive_int, default=200_000, help="spans to export (default 200k)")
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=4096,
        help="spans per export() call (default 4096: what otelkit.distro's BatchSpanProcessor feeds this exporter)",
    )
    parser.add_argument(
        "--prefill",
        type=non_negative_int,
        default=1_000_000,
        help="also measure a store already holding this many spans (default 1M; 0 skips)",
    )
    parser.add_argument(
        "--prefilled-spans",
        type=positive_int,
        default=100_000,
        help="spans exported into the prefilled store (default 100k, at most --spans)",
    )
    parser.add_argument(
        "--pool",
        type=positive_int,
        default=20_000,
        help="spans made through otelkit's API; the rest are copies with fresh ids (default 20k)",
    )
    parser.add_argument("--dir", help="put the store files here (default: a temp dir, removed after)")
    return parser.parse_args(argv)


def build_spans(count: int, pool_size: int) -> list[Any]:
    """``count`` finished ReadableSpans, in the order the SDK ends them.

    The first ``pool_size`` come from otelkit's API through the real SDK; the rest are copies
    of those made the way the SDK makes a ReadableSpan at ``end()`` (same attribute, event and
    resource objects), with fresh random trace and span ids and times moved forward, so the
    whole set reads as one stream of distinct traces. Copying is ~10x faster than the API.
    """
    pool = _spans_from_api(min(count, pool_size))
    if count <= len(pool):
        return pool[:count]
    from random import getrandbits

    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import SpanContext

    start = min(s.start_time for s in pool)
    step = max(s.end_time for s in pool) - start + 1_000
    spans = list(pool)
    copy_no = 0
    while len(spans) < count:
        copy_no += 1
        shift = copy_no * step
        trace_ids: dict[int, int] = {}
        span_ids: dict[int, int] = {}
        for span in pool:
            ctx = span.context
            if ctx.trace_id not in trace_ids:
                trace_ids[ctx.trace_id] = getrandbits(128)
            span_ids[ctx.span_id] = getrandbits(64)
        for span in pool[: count - len(spans)]:
            ctx, parent = span.context, span.parent
            spans.append(
                ReadableSpan(
                    name=span.name,
                    context=SpanContext(
                        trace_ids[ctx.trace_id], span_ids[ctx.span_id], False, ctx.trace_flags, ctx.trace_state
                    ),
                    parent=(
                        SpanContext(trace_ids[parent.trace_id], span_ids[parent.span_id], False, parent.trace_flags)
                        if parent is not None
                        else None
                    ),
                    resource=span.resource,
                    attributes=span._attributes,  # the SDK's own BoundedAttributes, shared read-only
                    events=tuple(Event(e.name, e.attributes, e.timestamp + shift) for e in span.events),
                    links=span._links,
                    kind=span.kind,
                    status=span.status,
                    start_time=span.start_time + shift,
                    end_time=span.end_time + shift,
                    instrumentation_scope=span.instrumentation_scope,
                )
            )
    return spans


def _spans_from_api(count: int) -> list[Any]:
    """``count`` finished ReadableSpans made by otelkit's API (global provider, in-memory export)."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otelkit

    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "bench-agent", "service.version": "1.4.2", "deployment.environment.name": "prod"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        raise SystemExit("error: a global TracerProvider was already set; run this script in its own process")

    models = (("gpt-4o-mini", "openai"), ("claude-sonnet-4", "anthropic"), ("gemini-2.0-flash", "gcp.gemini"))
    tools = ("read_file", "search_code", "run_tests", "http_get")
    traces = -(-count // SPANS_PER_TRACE)
    for t in range(traces):
        model, provider_name = models[t % len(models)]
        tool_name = tools[t % len(tools)]
        with otelkit.session(f"sess-{t // TRACES_PER_SESSION:08d}"):
            with otelkit.command("agent run", attributes={"app.user.tier": "pro", "app.args": "--repo demo --fix"}):
                with otelkit.step("plan", step_id=f"plan-{t}"):
                    with otelkit.template("prompts/plan.j2"):
                        pass
                    with otelkit.llm(model, provider_name) as call:
                        call.record_usage(input_tokens=1200 + t % 800, output_tokens=150 + t % 90,
                                          cache_read_tokens=512, cost_usd=0.00042 + (t % 7) * 1e-5)  # fmt: skip
                        call.set_response(
                            model=f"{model}-2025-01-01", response_id=f"resp-{t:010d}", finish_reasons=["stop"]
                        )
                with otelkit.step("act", step_id=f"act-{t}"):
                    with otelkit.condition("needs_tool", branches=("call_tool", "answer")) as check:
                        check.check(True)
                    try:
                        with otelkit.tool(tool_name, attributes={"gen_ai.tool.call.id": f"call-{t:08d}"}) as used:
                            used.set_attribute("app.tool.bytes", 4096 + t % 1000)
                            if t % FAILED_TRACE_EVERY == FAILED_TRACE_EVERY - 1:
                                raise TimeoutError(f"{tool_name} timed out after 30s")
                    except TimeoutError:
                        pass
                with otelkit.step("answer", step_id=f"answer-{t}"):
                    with otelkit.template("prompts/answer.j2"):
                        pass
                    with otelkit.llm(model, provider_name) as call:
                        call.record_usage(input_tokens=2400 + t % 500, output_tokens=600 + t % 300)
                        call.set_response(model=model, response_id=f"resp-{t:010d}-b", finish_reasons=["stop"])
    provider.force_flush()
    spans = list(memory.get_finished_spans())
    memory.clear()
    return spans[:count]


def export_all(exporter: Any, batches: list[Sequence[Any]]) -> tuple[float, float, list[Any]]:
    """Run ``exporter.export`` over ``batches``: (total seconds, seconds inside write_spans, rows written)."""
    writer = exporter._writer
    real_write = writer.write_spans
    spent = [0.0]
    captured: list[Any] = []

    def timed_write_spans(rows: Sequence[Any], events: Sequence[Any] = (), attributes: Any = None) -> int:
        t0 = time.perf_counter()
        try:
            return real_write(rows, events, attributes)
        finally:
            spent[0] += time.perf_counter() - t0
            captured.extend(rows)

    writer.write_spans = timed_write_spans  # an instance attribute, on this benchmark's writer only
    try:
        gc.collect()
        t0 = time.perf_counter()
        for batch in batches:
            result = exporter.export(batch)
            if result.name != "SUCCESS":
                raise SystemExit(f"error: export returned {result}")
        total = time.perf_counter() - t0
    finally:
        del writer.write_spans
    return total, spent[0], captured


def plain_insert_rate(path: str, rows: list[Any], batch: int) -> float:
    """Spans/s of executemany of ``rows`` into an index-free table of the store's span columns."""
    from otelkit.store.writer import SPAN_COLUMNS

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"CREATE TABLE spans (id INTEGER PRIMARY KEY, {', '.join(SPAN_COLUMNS)})")
    sql = f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) VALUES ({', '.join('?' * len(SPAN_COLUMNS))})"
    chunks = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    gc.collect()
    t0 = time.perf_counter()
    for chunk in chunks:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, chunk)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows) / elapsed


def shifted_rows(rows: list[Any], total: int) -> list[tuple[Any, ...]]:
    """``total`` rows copied from ``rows`` with new trace ids and times 1+ days older, so unique."""
    day = 86_400 * 10**9
    out: list[tuple[Any, ...]] = []
    copy_no = 0
    while len(out) < total:
        copy_no += 1
        flip = copy_no << 120
        back = copy_no * day
        for row in rows[: total - len(out)]:
            new = list(row)
            new[0] = format(int(row[0], 16) ^ flip, "032x")
            new[8] -= back
            new[9] -= back
            out.append(tuple(new))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from otelkit.exporters.sqlite import SQLiteSpanExporter
    from otelkit.store.writer import StoreWriter

    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="otelkit-bench-")
    work_dir = args.dir or tmp.name  # type: ignore[union-attr]
    os.makedirs(work_dir, exist_ok=True)

    print(f"otelkit SQLite export benchmark: {args.spans:,} spans in export() batches of {args.batch}")
    print(f"  {environment_line()}, {os.cpu_count()} CPUs; store files in {work_dir}")

    t0 = time.perf_counter()
    spans = build_spans(args.spans, args.pool)
    n = len(spans)
    n_events = sum(len(s.events) for s in spans)
    n_traces = len({s.context.trace_id for s in spans})
    print(
        f"  built {n:,} spans ({n_traces:,} traces, {n_events:,} events; {min(n, args.pool):,} from otelkit's "
        f"API, the rest copies with fresh ids) in {time.perf_counter() - t0:.1f} s (not timed below); "
        f"peak RSS {max_rss_mib():.0f} MiB"
    )
    batches = [spans[i : i + args.batch] for i in range(0, n, args.batch)]

    # 1. A fresh store.
    fresh_path = os.path.join(work_dir, "fresh.db")
    exporter = SQLiteSpanExporter(fresh_path)
    total, writing, rows = export_all(exporter, batches)
    converting = total - writing
    rate = n / total
    stored = count_rows(fresh_path, "spans")
    stored_traces = distinct_traces(fresh_path)
    stored_events = count_rows(fresh_path, "span_events")
    print()
    print(f"fresh store: {n:,} spans in {total:.2f} s = {rate:,.0f} spans/s")
    split = (("row conversion (export() minus writing)", converting), ("StoreWriter.write_spans", writing))
    for label, seconds in split:
        print(f"  {label:<41} {seconds:6.2f} s  {seconds / n * 1e6:6.2f} µs/span  {seconds / total:4.0%}")
    if writing == 0:
        print("  (write_spans was never called: the exporter no longer writes through it; the split is void)")
    print(
        f"  stored: {stored:,} spans of {n:,}, {stored_traces:,} traces of {n_traces:,}, "
        f"{stored_events:,} events of {n_events:,}"
    )
    counts_ok = (stored, stored_traces, stored_events) == (n, n_traces, n_events)

    plain_path = os.path.join(work_dir, "plain.db")
    plain_rate = plain_insert_rate(plain_path, rows, args.batch)
    if writing:
        print(f"  write_spans alone: {n / writing:,.0f} spans/s")
    print(f"  reference: plain executemany of the same rows, no indexes, {args.batch}/txn: {plain_rate:,.0f} spans/s")

    # 2. A store already holding --prefill older spans.
    prefilled_rate = None
    if args.prefill:
        m = min(args.prefilled_spans, n)
        prefill_path = os.path.join(work_dir, "prefilled.db")
        bulk = StoreWriter(prefill_path)
        t0 = time.perf_counter()
        old = shifted_rows(rows, args.prefill)
        for i in range(0, len(old), 20_000):
            bulk.write_spans(old[i : i + 20_000])
        bulk.close()
        del old
        before = count_rows(prefill_path, "spans")
        print()
        print(
            f"prefilled store: {before:,} older spans written in {time.perf_counter() - t0:.1f} s "
            "(write_spans, 20k/txn; not timed below)"
        )
        exporter2 = SQLiteSpanExporter(prefill_path)
        batches2 = [spans[i : min(i + args.batch, m)] for i in range(0, m, args.batch)]
        total2, writing2, _ = export_all(exporter2, batches2)
        prefilled_rate = m / total2
        after = count_rows(prefill_path, "spans")
        print(
            f"  then {m:,} spans in {total2:.2f} s = {prefilled_rate:,.0f} spans/s (conversion "
            f"{(total2 - writing2) / m * 1e6:.2f} µs/span, write_spans {writing2 / m * 1e6:.2f} µs/span)"
        )
        print(f"  stored: {after - before:,} new spans of {m:,}; file {os.path.getsize(prefill_path) / 2**20:,.0f} MiB")
        counts_ok = counts_ok and after - before == m

    print()
    if not counts_ok:
        print("WARNING: stored counts differ from what was exported: the rates above are not valid")
    worst = min(r for r in (rate, prefilled_rate) if r is not None)
    print(
        f"target: >= {TARGET_RATE:,} spans/s: {verdict(worst >= TARGET_RATE)}; aim >= {AIM_RATE:,} spans/s: "
        f"{verdict(worst >= AIM_RATE)} (lowest figure {worst:,.0f} spans/s)"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
