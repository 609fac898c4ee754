"""``otelkit report``: what ran, how often it failed and how long it took, from the SQLite store.

:func:`build_report` returns the report document; its shape is the stable contract of
``otelkit report --format json`` (keys are only ever added, never renamed or removed)::

    {
      "summary": {
        "spans": int,                 # estimated spans that started in the period (see weights)
        "traces": int,                # estimated traces among them
        "sessions": int,              # distinct non-null session ids seen (not an estimate)
        "success_rate": float|null,   # 0..1, estimated share of spans whose status is not ERROR;
                                      # null with no spans
        "p50_ms": float|null, "p95_ms": float|null, "p99_ms": float|null,
        "input_tokens": int,          # gen_ai.usage.input_tokens, estimated total (cached input included)
        "output_tokens": int,         # gen_ai.usage.output_tokens, estimated total
        "cost_usd": float,            # gen_ai.usage.cost, estimated total (priced and estimated calls)
        "unpriced_llm_calls": int     # estimated spans with tokens whose model has no price (no cost)
      },
      "operations": [                 # one per (operation type, span name), slowest p95 first,
        {                             # ties by name then type
          "type": str,                # otelkit.operation.type, or "other" when the span has none
          "name": str,                # span name
          "count": int,               # estimated
          "success_rate": float,      # 0..1
          "p50_ms": float, "p95_ms": float, "p99_ms": float,
          "time_share": float|null    # its estimated total duration / all operations' estimated
        }                             # total; null only when every span in the period lasted 0 ns
      ]
    }

Weights: sampling stores some spans and not others, and every stored span carries
``otelkit.sample.rate`` (the store's ``sample_rate``), the number of spans it stands for:
``1 / probability`` of its having been kept, 1 when nothing was sampled away (a missing,
non-numeric or below-1 rate counts as 1). Every count, total and share above weights each span
by it (the Horvitz-Thompson estimator: unbiased for any sampling probabilities, as long as each
rate is the inverse of its span's), so the report describes the traffic and not the sample.
Counts and token totals are rounded to whole numbers. A trace counts with the smallest weight
among its spans in the period (sampling decides whole traces, so they normally share one).
Sessions are the distinct session ids seen: a session spans many traces sampled independently,
so under sampling the number is a lower bound (exact when every weight is 1).

Durations are ``end - start`` of each span. Percentiles interpolate between closest ranks over
the weighted sample, a span of weight w standing for w copies of its duration (Hyndman & Fan
type 7 over the durations repeated w times; :mod:`otelkit.report.query` states the formula for
any weights). With every weight 1 they are the exact type-7 values over every span in the
period (numpy's default, ``statistics.quantiles(method="inclusive")``): for n sorted durations
x[0..n-1], ``h = (n - 1) * p / 100`` and
``P = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``.
"""

from otelkit.report.build import build_report
from otelkit.report.period import Period, PeriodError, parse_period
from otelkit.report.render import render_json, render_table

__all__ = ["Period", "PeriodError", "build_report", "parse_period", "render_json", "render_table"]
