"""Id generators the sampling tests share: sampling decisions are functions of the trace id, so
tests choose trace ids (seeded, or given one by one) to get the same decisions on every run."""

from __future__ import annotations

import random
from typing import Iterator, Sequence

from opentelemetry.sdk.trace.id_generator import IdGenerator

from otelkit.processors.sampling import MAX_THRESHOLD


class SeededIds(IdGenerator):
    """Random ids from a seeded generator: the same trace ids on every run."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.rng.getrandbits(128) or 1

    def is_trace_id_random(self) -> bool:
        return True


class FixedIds(IdGenerator):
    """Trace ids from a list (so a test chooses their randomness), span ids counting up."""

    def __init__(self, trace_ids: Sequence[int]) -> None:
        self.trace_ids: Iterator[int] = iter(trace_ids)
        self.span_id = 0

    def generate_span_id(self) -> int:
        self.span_id += 1
        return self.span_id

    def generate_trace_id(self) -> int:
        return next(self.trace_ids)


def with_randomness(fraction: float, high: int = 0) -> int:
    """A trace id whose low 56 bits are ``fraction`` of their range (and ``high`` above bit 64)."""
    return (high << 64) | int(fraction * MAX_THRESHOLD)
