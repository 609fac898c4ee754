"""The statistics reports compute from spans, weighted by each span's sample rate.

Sampling keeps some spans and drops others; every kept span carries ``otelkit.sample.rate``
(the store's ``sample_rate`` column), the number of spans it stands for: ``1 / probability``
of having been kept (1 when nothing was sampled away). A report therefore estimates, it does
not count: each span adds its weight ``w`` (its rate; a missing, non-numeric or below-1 rate
counts as 1) to every total. These are the Horvitz-Thompson estimators, unbiased whatever the
probabilities, as long as each span's rate is the inverse of its probability of being stored:

- spans, errors, operations' counts: ``sum(w)``; total time: ``sum(w * duration)``; tokens,
  cost and unpriced calls: ``sum(w * value)``; success rate and time share: ratios of these.
- traces: the sum, over the distinct trace ids seen, of each trace's weight: the smallest
  weight among its spans in the window. Its spans normally share one (sampling decides whole
  traces); when processes decided differently, the smallest weight is that of the part most
  likely kept, which sets the trace's odds of appearing at all.
- sessions: not weighted: the distinct session ids seen. A session is many traces sampled
  independently, and no per-trace weight tells how many sessions lost every trace; the number
  is a lower bound, exact when nothing was sampled away.

Percentiles interpolate over the weighted sample. For durations sorted ascending as
``x[0] .. x[n-1]`` with weights ``w[i] >= 1``, a duration of weight ``w`` stands for ``w``
copies of itself: it covers the (0-based) positions ``S[i-1] .. S[i] - 1`` where
``S[i] = w[0] + ... + w[i]`` (``S[-1] = 0``), and between one duration's last position and
the next one's first, values are interpolated linearly. With ``W = S[n-1]`` and a percent p::

    h = (W - 1) * p / 100
    i = the first index with S[i] - 1 >= h
    P(p) = x[i]                                        when h >= S[i-1]
    P(p) = x[i-1] + (h - (S[i-1] - 1)) * (x[i] - x[i-1])   otherwise

With whole-number weights this is exactly Hyndman & Fan type 7 over the durations repeated
``w`` times; with every weight 1 it is type 7 itself (numpy's default,
``statistics.quantiles(method="inclusive")``), ``h = (n - 1) * p / 100``, ``j = floor(h)``,
``P(p) = x[j] + (h - j) * (x[j + 1] - x[j])``, and then it is computed in integer nanoseconds and
divided once, so each result is the correctly rounded millisecond value.

The same estimators run over the rollup tables (:mod:`otelkit.store.rollup`): every weighted
sum there is the sum above, kept per bucket; percentiles then come from weighted histograms.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate
from typing import Mapping, Sequence

PERCENTILES: tuple[int, ...] = (50, 95, 99)
_NS_PER_MS = 1_000_000

@dataclass(frozen=True)
class DurationStats:
    """Spans in one group: estimated count, errors and total time (weighted), percentiles,
    and how many spans the store actually holds. Unweighted groups give whole numbers."""

    count: float
    errors: float
    total_ns: float
    percentiles_ms: Mapping[int, float]
    stored: int = 0

    @property
    def success_rate(self) -> float | None:
        """The estimated fraction of spans whose status is not ERROR; None for an empty group."""
        return (self.count - self.errors) / self.count if self.count else None


def percentile_ms(sorted_ns: Sequence[int], percent: int) -> float:
    """The type-7 percentile, in ms, of durations in ns sorted ascending (at least one)."""
    j, delta = divmod((len(sorted_ns) - 1) * percent, 100)
    low = sorted_ns[j]
    high = sorted_ns[j + 1] if delta else low
    return (low * (100 - delta) + high * delta) / (100 * _NS_PER_MS)


def weighted_percentile_ms(sorted_ns: Sequence[int], cumulative: Sequence[float], percent: int) -> float:
    """The weighted type-7 percentile (see the module docs), in ms, of durations in ns sorted
    ascending with the running sums of their weights (each weight at least 1)."""
    h = (cumulative[-1] - 1) * percent / 100
    i = min(bisect_left(cumulative, h + 1), len(sorted_ns) - 1)
    start = cumulative[i - 1] if i else 0.0
    if h >= start:
        return sorted_ns[i] / _NS_PER_MS
    low = sorted_ns[i - 1]
    return (low + (h - (start - 1)) * (sorted_ns[i] - low)) / _NS_PER_MS


def duration_stats(durations: list[int], weights: list[float], errors: float) -> DurationStats:
    """Stats of one group from its durations (sorted here, in place), their weights, and the
    weight of its failed spans. With every weight 1 the numbers are exact whole counts."""
    n = len(durations)
    if n == 0:
        return DurationStats(count=0, errors=0, total_ns=0, percentiles_ms={}, stored=0)
    if weights.count(1.0) == n:
        durations.sort()
        return DurationStats(
            count=n,
            errors=round(errors),
            total_ns=sum(durations),
            percentiles_ms={p: percentile_ms(durations, p) for p in PERCENTILES},
            stored=n,
        )
    order = sorted(range(n), key=durations.__getitem__)  # int keys: faster than sorting pairs
    ordered = [durations[i] for i in order]
    cumulative = list(accumulate([weights[i] for i in order]))
    return DurationStats(
        count=cumulative[-1],
        errors=errors,
        total_ns=sum(map(operator.mul, durations, weights)),
        percentiles_ms={p: weighted_percentile_ms(ordered, cumulative, p) for p in PERCENTILES},
        stored=n,
    )
