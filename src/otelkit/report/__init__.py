"""``otelkit report``: what ran, how often it failed and how long it took, from the SQLite store.

:func:`build_report` returns the report document; its shape is the stable contract of
``otelkit report --format json`` (keys are only ever added, never renamed or removed)::

    {
      "summary": {
        "spans": int,                 # spans that started in the period
        "traces": int,                # distinct trace ids among those spans
        "sessions": int,              # distinct non-null session ids among those spans
        "success_rate": float|null,   # 0..1, spans whose status is not ERROR; null with no spans
        "p50_ms": float|null, "p95_ms": float|null, "p99_ms": float|null,
        "input_tokens": int,          # gen_ai.usage.input_tokens summed (cached input included)
        "output_tokens": int,         # gen_ai.usage.output_tokens summed
        "cost_usd": float,            # gen_ai.usage.cost summed (priced and estimated calls)
        "unpriced_llm_calls": int     # spans with tokens whose model has no price (no cost)
      },
      "operations": [                 # one per (operation type, span name), slowest p95 first,
        {                             # ties by name then type
          "type": str,                # otelkit.operation.type, or "other" when the span has none
          "name": str,                # span name
          "count": int,
          "success_rate": float,      # 0..1
          "p50_ms": float, "p95_ms": float, "p99_ms": float,
          "time_share": float|null    # its summed duration / all operations' summed duration;
        }                             # null only when every span in the period lasted 0 ns
      ]
    }

Durations are ``end - start`` of each span. Percentiles are exact, computed over every span in
the period with linear interpolation between closest ranks (Hyndman & Fan type 7, numpy's
default, ``statistics.quantiles(method="inclusive")``): for n sorted durations x[0..n-1],
``h = (n - 1) * p / 100`` and ``P = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``.
Counts are of stored spans (sampling weights are not applied).
"""

from otelkit.report.build import build_report
from otelkit.report.period import Period, PeriodError, parse_period
from otelkit.report.render import render_json, render_table

__all__ = ["Period", "PeriodError", "build_report", "parse_period", "render_json", "render_table"]
