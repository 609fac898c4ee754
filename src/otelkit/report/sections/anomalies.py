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
from otelkit.store.rollup import Stats

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
    """(start or bucket, type, name, duration ns, trace id) of spans that may be anomalies."""
    since = _LOW if ctx.since_ns is None else ctx.since_ns
    until = _HIGH if ctx.until_ns is None else ctx.until_ns
    service = "" if ctx.source.service is None else " AND service_name = ?"
    params: list[Any] = [since, until, int(floor_ns)]
    if ctx.source.service is not None:
        params.append(ctx.source.service)
    if ctx.data.source == "exact":
        return [
            (row[0], row[1] or "other", row[2], row[3], row[4])
            for row in ctx.conn.execute(
                "SELECT start_ns, operation_type, name, duration_ns, trace_id FROM spans "
                f"WHERE start_ns >= ? AND start_ns < ? AND duration_ns > ?{service}",
                params,
            )
        ]
    resolution = detail_resolution(ctx)
    step = resolution * 1_000_000_000
    params[0] = since - since % step if since != _LOW else _LOW
    return [
        (row[0], row[1], row[2], row[3], row[4])
        for row in ctx.conn.execute(
            "SELECT r.bucket_ns, k.operation_type, k.name, r.max_ns, r.max_trace_id FROM rollups r "
            "JOIN rollup_keys k ON k.id = r.key_id WHERE r.resolution_s = ? AND r.bucket_ns >= ? AND r.bucket_ns < ? "
            f"AND r.max_ns > ?{service.replace('service_name', 'k.service_name')}",
            [resolution, *params],
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
