"""What otelkit's OpenAI instrumentation adds to a call, against the same local server.

    python benchmarks/bench_openai_call.py [--calls 1000] [--rounds 5]

The fake OpenAI server of the tests runs in a subprocess (so its work does not compete with
the client for this process's GIL) on 127.0.0.1. The client is the real ``openai`` SDK. Each
round times ``--calls`` sequential calls uninstrumented, then with ``OpenAIInstrumentor`` on a
global TracerProvider built as ``opentelemetry-instrument`` builds it with otelkit (session
processor, the processor chain with cost enrichment, BatchSpanProcessor into a SQLite store),
and a MeterProvider recording the GenAI metrics. Rounds alternate which variant goes first;
the script reports medians and the median of per-round differences ("paired").

Target: the latency added per call is under 5% of a 1 ms round trip (50 µs). The script also
prints the overhead as a share of the measured round trip, the added work including the export
of the spans (timed through a final ``force_flush()``; the export itself runs on the batch
processor's thread, off the call path), and checks that every instrumented call was stored.
A measurement, not a test: it never fails on a figure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from _bench import count_rows, environment_line, median, positive_int, verdict

TARGET_US = 50.0  # 5% of a 1 ms round trip
REPO = Path(__file__).resolve().parent.parent
SERVER = (
    "import sys, time\n"
    f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
    "from providers.openai_server import FakeOpenAIServer\n"
    "server = FakeOpenAIServer(reply_text='A short answer.').start()\n"
    "print(server.port, flush=True)\n"
    "sys.stdin.read()\n"
)
MESSAGES = [{"role": "user", "content": "Say something short."}]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=positive_int, default=1000, help="calls per variant per round (default 1000)")
    parser.add_argument("--rounds", type=positive_int, default=5, help="rounds (default 5)")
    parser.add_argument("--stream", action="store_true", help="time streamed calls (with usage) instead")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import openai
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from otelkit.config import current_policy
    from otelkit.distro import export_span_processor, span_processors
    from otelkit.exporters.sqlite import SQLiteSpanExporter
    from otelkit.instrumentation import aggregates
    from otelkit.instrumentation.openai import OpenAIInstrumentor

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        tmp = tempfile.TemporaryDirectory(prefix="otelkit-bench-")
        db_path = os.path.join(tmp.name, "otelkit.db")
        resource = Resource.create({"service.name": "bench-openai"})
        meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], resource=resource)
        metrics.set_meter_provider(meter_provider)
        aggregates.attach(meter_provider)
        provider = TracerProvider(resource=resource)
        policy = current_policy()
        for processor in span_processors(policy):
            provider.add_span_processor(processor)
        provider.add_span_processor(export_span_processor(policy)(SQLiteSpanExporter(db_path)))
        trace.set_tracer_provider(provider)
        instrumentor = OpenAIInstrumentor()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bench", max_retries=0)

        def call() -> None:
            if args.stream:
                for _ in client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                ):
                    pass
            else:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        def timed(instrumented: bool) -> tuple[float, float]:
            """(µs per call as the caller sees it, µs per call including exporting the spans)."""
            if instrumented:
                instrumentor.instrument()
            start = time.perf_counter()
            for _ in range(args.calls):
                call()
            calls_done = time.perf_counter()
            if instrumented:
                provider.force_flush()
            flushed = time.perf_counter()
            if instrumented:
                instrumentor.uninstrument()
            return (calls_done - start) / args.calls * 1e6, (flushed - start) / args.calls * 1e6

        for instrumented in (False, True):  # warm-up: connections, imports, prepared statements
            instrumentor.instrument() if instrumented else None
            for _ in range(min(200, args.calls)):
                call()
            instrumentor.uninstrument() if instrumented else None
        provider.force_flush()
        warmup_rows = count_rows(db_path, "spans")

        plain: list[float] = []
        traced: list[float] = []
        traced_flushed: list[float] = []
        for round_index in range(args.rounds):
            for instrumented in (False, True) if round_index % 2 == 0 else (True, False):
                latency, total = timed(instrumented)
                if instrumented:
                    traced.append(latency)
                    traced_flushed.append(total)
                else:
                    plain.append(latency)
            print(f"  round {round_index + 1}: plain {plain[-1]:8.1f} µs/call   instrumented {traced[-1]:8.1f} µs/call "
                  f"({traced_flushed[-1]:8.1f} with export)")  # fmt: skip
        stored = count_rows(db_path, "spans") - warmup_rows
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)

    plain_us, traced_us = median(plain), median(traced)
    paired = median([t - p for p, t in zip(plain, traced)])
    paired_total = median([t - p for p, t in zip(plain, traced_flushed)])
    kind = "streamed chat completion (with usage)" if args.stream else "chat completion"
    print(f"\n{environment_line()}")
    print(f"{kind}, {args.calls:,} calls x {args.rounds} rounds per variant, fake server in a subprocess on 127.0.0.1")
    print(f"  uninstrumented round trip   {plain_us:8.1f} µs/call (median)")
    print(f"  instrumented                {traced_us:8.1f} µs/call (median)")
    print(f"  added latency per call      {traced_us - plain_us:8.1f} µs (medians), {paired:.1f} µs (paired)")
    print(f"                              = {paired / 10:.1f}% of a 1 ms round trip, {paired / plain_us:.1%} of this one")
    print(f"  added work incl. export     {paired_total:8.1f} µs per call (paired; the export runs off the call path)")
    expected = args.calls * args.rounds
    print(f"  stored LLM spans            {stored:,} of {expected:,} instrumented calls "
          f"({'all' if stored == expected else 'MISSING SOME'})")  # fmt: skip
    print(f"target: under {TARGET_US:.0f} µs added per call (5% of 1 ms): {verdict(paired < TARGET_US)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
