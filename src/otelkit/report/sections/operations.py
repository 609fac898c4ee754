"""Commands and operations: how often each runs and fails, how long it takes, where the time
goes (time share, the slowest steps of each command's slowest runs, the critical path of the
slowest traces)."""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Callable

from otelkit.report.sections.kit import (
    Context,
    chart,
    col,
    count,
    iso,
    mean_ms,
    percentiles,
    ratio,
    section,
    success_rate,
    table,
    trace_cells,
    trace_col,
)
from otelkit.report.source import SlowSpan
from otelkit.report.traces import TraceSpan, critical_path, trace_spans
from otelkit.store.rollup import Key, Stats, bin_value_ns

SLOWEST_TRACES = 5
COMMANDS_EXAMINED = 5
RUNS_PER_COMMAND = 3


def operation_rows(ctx: Context) -> list[dict[str, Any]]:
    """One row per (operation type, span name), most frequent first."""
    groups: dict[tuple[str, str], tuple[list[Key], Stats]] = {}
    for key, stats in ctx.by_key.items():
        entry = groups.setdefault((key[1], key[2]), ([], Stats()))
        entry[0].append(key)
        entry[1].merge(stats)
    total = sum(stats.weight for _keys, stats in groups.values())
    total_ns = sum(stats.duration_ns for _keys, stats in groups.values())
    rows: list[dict[str, Any]] = []
    for (op_type, name), (keys, stats) in groups.items():
        p = percentiles(ctx.data, keys, stats)
        rows.append(
            {
                "type": op_type,
                "name": name,
                "count": count(stats.weight),
                "share": ratio(stats.weight, total),
                "success_rate": success_rate(stats),
                "failures": count(stats.errors),
                "avg_ms": mean_ms(stats),
                "p50_ms": p[50],
                "p95_ms": p[95],
                "p99_ms": p[99],
                "total_ms": stats.duration_ns / 1e6,
                "time_share": ratio(stats.duration_ns, total_ns),
            }
        )
    rows.sort(key=lambda r: (-r["count"], r["name"], r["type"]))
    return rows


def _trace_of(ctx: Context, run: SlowSpan) -> tuple[list[TraceSpan], TraceSpan] | None:
    """The spans of a run's trace (those that started while it ran) and the run's own span."""
    spans = trace_spans(ctx.conn, run.trace_id, run.start_ns, run.end_ns)
    own = next((s for s in spans if s.span_id == run.span_id), None)
    return None if own is None else (spans, own)


def slowest_traces(ctx: Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The slowest root spans (one row each) and their critical paths (one row per span)."""
    traces: list[dict[str, Any]] = []
    paths: list[dict[str, Any]] = []
    for run in ctx.source.slowest(ctx.data, lambda k: True, SLOWEST_TRACES * 2, roots_only=True):
        read = _trace_of(ctx, run)
        if read is None or read[1].parent_span_id is not None:
            continue
        spans, root = read
        traces.append(
            {"rank": len(traces) + 1, **trace_cells(ctx, run.trace_id), "name": root.name,
             "type": root.operation_type, "duration_ms": root.duration_ns / 1e6, "spans": len(spans),
             "started": iso(root.start_ns), "failed": root.failed}
        )  # fmt: skip
        for span, depth, own_ns in critical_path(spans, root.span_id):
            paths.append(
                {"trace": len(traces), **trace_cells(ctx, run.trace_id), "depth": depth,
                 "name": span.name, "type": span.operation_type,
                 "duration_ms": span.duration_ns / 1e6, "own_ms": own_ns / 1e6,
                 "own_share": ratio(own_ns, root.duration_ns)}
            )  # fmt: skip
        if len(traces) == SLOWEST_TRACES:
            break
    return traces, paths


def slowest_steps(ctx: Context, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For the most frequent commands, the steps inside their slowest runs, by the share of
    the runs' time they took."""
    commands = [row["name"] for row in operations if row["type"] == "command"][:COMMANDS_EXAMINED]
    rows: list[dict[str, Any]] = []
    for command in commands:
        totals: dict[str, list[float]] = {}
        run_ns = 0
        runs = 0
        wanted: Callable[[Key], bool] = lambda k, c=command: k[1] == "command" and k[2] == c  # type: ignore[misc]
        for run in ctx.source.slowest(ctx.data, wanted, RUNS_PER_COMMAND):
            read = _trace_of(ctx, run)
            if read is None:
                continue
            spans, root = read
            runs += 1
            run_ns += root.duration_ns
            inside = _descendants(spans, root.span_id)
            for span in inside:
                if span.operation_type == "step":
                    entry = totals.setdefault(span.name, [0.0, 0.0])
                    entry[0] += span.duration_ns
                    entry[1] += 1
        for name, (total_ns, calls) in sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0])):
            rows.append(
                {"command": command, "name": name, "runs": runs, "calls": int(calls),
                 "total_ms": total_ns / 1e6, "share_of_run": ratio(total_ns, run_ns)}
            )  # fmt: skip
    return rows


def _descendants(spans: list[TraceSpan], root_id: str) -> list[TraceSpan]:
    children: dict[str, list[TraceSpan]] = {}
    for span in spans:
        if span.parent_span_id is not None:
            children.setdefault(span.parent_span_id, []).append(span)
    found: list[TraceSpan] = []
    stack = list(children.get(root_id, ()))
    while stack:
        span = stack.pop()
        found.append(span)
        stack.extend(children.get(span.span_id, ()))
    return found


LATENCY_EDGES_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
DISTRIBUTION_OPERATIONS = 5


def _bucket_labels() -> list[str]:
    def ms(value: float) -> str:
        return f"{value / 1000:g}s" if value >= 1000 else f"{value:g}ms"

    edges = LATENCY_EDGES_MS
    return [f"<{ms(edges[0])}"] + [f"{ms(a)}-{ms(b)}" for a, b in zip(edges, edges[1:])] + [f">={ms(edges[-1])}"]


def latency_distribution(ctx: Context, operations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Weighted span counts per latency bucket (one row each) for the most frequent operations
    (one column each, keyed ``op_<n>``), and those operations' names."""
    top = operations[:DISTRIBUTION_OPERATIONS]
    labels = _bucket_labels()
    rows: list[dict[str, Any]] = [{"latency": label} for label in labels]
    for n, op in enumerate(top):
        counts = [0.0] * len(labels)
        keys = [key for key in ctx.by_key if (key[1], key[2]) == (op["type"], op["name"])]
        durations = ctx.data.durations
        if durations is not None:
            pairs = ((d / 1e6, w) for key in keys for d, w in durations.get(key, ()))
        else:
            pairs = ((bin_value_ns(b) / 1e6, w) for key in keys for b, w in ctx.by_key[key].histogram.items())
        for value_ms, weight in pairs:
            counts[bisect_right(LATENCY_EDGES_MS, value_ms)] += weight
        for row, value in zip(rows, counts):
            row[f"op_{n}"] = count(value)
    return rows, [op["name"] for op in top]


def build(ctx: Context) -> dict[str, Any]:
    operations = operation_rows(ctx)
    distribution, distribution_names = latency_distribution(ctx, operations)
    bottlenecks = sorted((r for r in operations if r["time_share"]), key=lambda r: -r["time_share"])[:15]
    traces, paths = slowest_traces(ctx)
    steps = slowest_steps(ctx, operations)
    commands = [r for r in operations if r["type"] == "command"]
    values = {
        "operations": len(operations),
        "commands": len(commands),
        "most_used": operations[0]["name"] if operations else None,
        "most_time": bottlenecks[0]["name"] if bottlenecks else None,
        "least_reliable": min(
            (r for r in operations if r["count"] >= 10), key=lambda r: (r["success_rate"], r["name"]), default={}
        ).get("name"),
    }
    op_columns = [
        col("type", "Type"), col("name", "Name"), col("count", "Count", "int"), col("share", "Share", "share"),
        col("success_rate", "Success", "rate"), col("failures", "Failures", "int"), col("avg_ms", "Avg ms", "ms"),
        col("p50_ms", "p50 ms", "ms"), col("p95_ms", "p95 ms", "ms"), col("p99_ms", "p99 ms", "ms"),
        col("time_share", "Time share", "share"),
    ]  # fmt: skip
    return section(
        "Commands and operations",
        [col("operations", "Operations", "int"), col("commands", "Commands", "int"), col("most_used", "Most used"),
         col("most_time", "Most time"), col("least_reliable", "Least reliable (10+ runs)")],  # fmt: skip
        values,
        {
            "operations": table("Operations, most frequent first", op_columns, operations),
            "commands": table("Commands", op_columns, commands),
            "bottlenecks": table(
                "Where the time goes",
                [col("type", "Type"), col("name", "Name"), col("total_ms", "Total ms", "ms"),
                 col("time_share", "Time share", "share"), col("p95_ms", "p95 ms", "ms")],  # fmt: skip
                bottlenecks,
            ),
            "slowest_steps": table(
                "Slowest steps in each command's slowest runs",
                [col("command", "Command"), col("name", "Step"), col("runs", "Runs", "int"),
                 col("calls", "Calls", "int"), col("total_ms", "Total ms", "ms"),
                 col("share_of_run", "Share of run", "share")],  # fmt: skip
                steps,
            ),
            "slowest_traces": table(
                "Slowest traces",
                [col("rank", "#", "int"), trace_col(), col("name", "Root"), col("type", "Type"),
                 col("duration_ms", "Duration ms", "ms"), col("spans", "Spans", "int"), col("started", "Started", "time")],  # fmt: skip
                traces,
            ),
            "latency_distribution": table(
                "Latency distribution of the most frequent operations (spans per bucket)",
                [col("latency", "Latency"), *(col(f"op_{n}", name, "int") for n, name in enumerate(distribution_names))],
                distribution,
            ),
            "critical_path": table(
                "Critical path of the slowest traces",
                [col("trace", "Trace #", "int"), col("depth", "Depth", "int"), col("name", "Span"), col("type", "Type"),
                 col("duration_ms", "Duration ms", "ms"), col("own_ms", "Own ms", "ms"),
                 col("own_share", "Own share", "share")],  # fmt: skip
                paths,
            ),
        },
        [
            chart("Time share by operation", "hbar", "bottlenecks", "name", ["time_share"]),
            chart("Most frequent operations", "hbar", "operations", "name", ["count"]),
            chart(
                "Latency distribution of the most frequent operations", "histogram", "latency_distribution",
                "latency", [f"op_{n}" for n in range(len(distribution_names))],
            ),
        ],
        ["Critical path: the spans each slow trace's end waited for (walking back from a span's end: the child "
         "that ended last, then the one that ended last before it started...); own time is what no critical "
         "child covers."],  # fmt: skip
    )
