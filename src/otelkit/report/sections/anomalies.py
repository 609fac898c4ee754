"""Anomalies: spans slower than their operation's baseline by more than three standard
deviations, each with its trace.

The baseline of an operation (type and span name) is the mean and standard deviation of its
durations over the window (weighted), for operations with at least ``MIN_SPANS`` stored spans.
An exact window checks every span. A window read from the rollups checks the slowest span of
each operation in each minute (each hour, for windows over two days), which is where a spike
shows: a minute holding two spikes lists the larger one.
"""

from __future__ import annotations

from typing import Any

from otelkit.report.sections.kit import Context, col, detail_resolution, iso, mean_ms, section, std_ms, table, trace_cells, trace_col
from otelkit.report.source import cover
from otelkit.store.rollup import RESOLUTIONS, Stats

SIGMAS = 3.0
MIN_SPANS = 30
LIMIT = 50
_LOW = -(2**63)
_HIGH = 2**63 - 1


def baselines(ctx: Context) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(mean ms, sd ms, threshold ns) per (operation type, name) with enough spans to judge."""
    merged: dict[tuple[str, str], Stats] = {}
    for key, stats in ctx.by_key.items():
        merged.setdefault((key[1], key[2]), Stats()).merge(stats)
    out = {}
    for op, stats in merged.items():
        mean, sd = mean_ms(stats), std_ms(stats)
        if stats.spans >= MIN_SPANS and mean is not None and sd:
            out[op] = (mean, sd, (mean + SIGMAS * sd) * 1e6)
    return out


def _candidates(ctx: Context, floor_ns: float) -> list[tuple[int, str, str, int, str | None]]:
    """(start or bucket, type, name, duration ns, trace id) of spans that may be anomalies: the
    spans themselves in an exact window; else each detail bucket's slowest span, for the buckets
    inside the window, and the spans themselves in the partial buckets at its edges."""
    if ctx.data.source == "exact":
        return _raw_candidates(ctx, ctx.since_ns, ctx.until_ns, floor_ns)
    detail = detail_resolution(ctx)
    found: list[tuple[int, str, str, int, str | None]] = []
    service = "" if ctx.source.service is None else " AND k.service_name = ?"
    extra: list[Any] = [] if ctx.source.service is None else [ctx.source.service]
    for segment in cover(ctx.since_ns, ctx.until_ns, [r for r in RESOLUTIONS if r <= detail]):
        if segment.resolution_s == 0:
            found.extend(_raw_candidates(ctx, segment.since_ns, segment.until_ns, floor_ns))
            continue
        found.extend(
            (row[0], row[1], row[2], row[3], row[4])
            for row in ctx.conn.execute(
                "SELECT r.bucket_ns, k.operation_type, k.name, r.max_ns, r.max_trace_id FROM rollups r "
                "JOIN rollup_keys k ON k.id = r.key_id WHERE r.resolution_s = ? AND r.bucket_ns >= ? "
                f"AND r.bucket_ns < ? AND r.max_ns > ?{service}",
                [segment.resolution_s, segment.since_ns, segment.until_ns, int(floor_ns), *extra],
            )
        )
    return found


def _raw_candidates(
    ctx: Context, since_ns: int | None, until_ns: int | None, floor_ns: float
) -> list[tuple[int, str, str, int, str | None]]:
    service = "" if ctx.source.service is None else " AND service_name = ?"
    params: list[Any] = [_LOW if since_ns is None else since_ns, _HIGH if until_ns is None else until_ns, int(floor_ns)]
    if ctx.source.service is not None:
        params.append(ctx.source.service)
    return [
        (row[0], row[1] or "other", row[2], row[3], row[4])
        for row in ctx.conn.execute(
            "SELECT start_ns, operation_type, name, duration_ns, trace_id FROM spans "
            f"WHERE start_ns >= ? AND start_ns < ? AND duration_ns > ?{service}",
            params,
        )
    ]


def build(ctx: Context) -> dict[str, Any]:
    base = baselines(ctx)
    rows: list[dict[str, Any]] = []
    if base:
        floor_ns = min(threshold for _m, _s, threshold in base.values())
        for at, op_type, name, duration, trace_id in _candidates(ctx, floor_ns):
            found = base.get((op_type, name))
            if found is None or duration <= found[2]:
                continue
            mean, sd, _threshold = found
            rows.append(
                {"time": iso(at), "type": op_type, "name": name, "duration_ms": duration / 1e6,
                 "baseline_ms": mean, "sd_ms": sd, "sigmas": (duration / 1e6 - mean) / sd,
                 **trace_cells(ctx, trace_id)}
            )  # fmt: skip
    rows.sort(key=lambda r: (-r["sigmas"], r["time"] or ""))
    return section(
        "Anomalies",
        [col("anomalies", "Latency spikes", "int"), col("operations", "Operations with a baseline", "int"),
         col("worst", "Worst")],  # fmt: skip
        {"anomalies": len(rows), "operations": len(base), "worst": rows[0]["name"] if rows else None},
        {
            "spikes": table(
                "Latency spikes beyond 3 standard deviations",
                [col("time", "When", "time"), col("type", "Type"), col("name", "Operation"),
                 col("duration_ms", "Duration ms", "ms"), col("baseline_ms", "Mean ms", "ms"), col("sd_ms", "SD ms", "ms"),
                 col("sigmas", "SDs above", "float"), trace_col()],  # fmt: skip
                rows[:LIMIT],
            )
        },
        notes=[f"Baselines need {MIN_SPANS}+ spans of the operation in the window; spikes are listed worst first."],
    )
