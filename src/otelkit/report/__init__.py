"""``otelkit report`` and ``otelkit top``: what ran, failed, was slow and cost, from the store.

:func:`build_report` returns the report document, the stable contract of every format
(``docs/report-format.md``: ``report``, ``summary``, ``operations``, ``sections``; keys are only
ever added). Each section is built by :mod:`otelkit.report.sections` from the window's data,
which :mod:`otelkit.report.source` reads from the rollup tables the store keeps as it writes
(:mod:`otelkit.store.rollup`), or from the spans themselves for small windows. Renderers:
:func:`render_json`, :func:`render_table`, :func:`render_csv`, :func:`render_html`.

Weights: sampling stores some spans and not others, and every stored span carries
``otelkit.sample.rate``, the number of spans it stands for; every count, total and share is
weighted by it (Horvitz-Thompson), so the report describes the traffic, not the sample
(:mod:`otelkit.report.query` states the estimators and the weighted type-7 percentile).
"""

from otelkit.report.build import SectionError, build_report, parse_sections
from otelkit.report.period import Period, PeriodError, parse_period
from otelkit.report.render import render_json, render_table
from otelkit.report.render_csv import render_csv
from otelkit.report.render_html import render_html

__all__ = [
    "Period",
    "PeriodError",
    "SectionError",
    "build_report",
    "parse_period",
    "parse_sections",
    "render_csv",
    "render_html",
    "render_json",
    "render_table",
]
