"""The policy's ``sampling`` section: head rules by operation type and name, and tail sampling.

Owned by the sampling stage (:mod:`otelkit.processors.sampling`); validated at load like every
section (errors name the dotted key and line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otelkit.config_errors import ConfigError


@dataclass(frozen=True)
class HeadRule:
    """Keep ``ratio`` of the traces whose root span matches (glob on type and span name)."""

    operation_type: str = "*"
    name: str = "*"
    ratio: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"ratio: expected a number from 0 to 1, got {self.ratio!r}")


DEFAULT_HEAD_RULES: tuple[HeadRule, ...] = (
    HeadRule(operation_type="command", ratio=1.0),
    HeadRule(operation_type="step", ratio=1.0),
    HeadRule(operation_type="template", ratio=0.1),
    HeadRule(operation_type="condition", ratio=0.5),
)


@dataclass(frozen=True)
class TailSettings:
    """Whole-trace decisions once the local root ends."""

    enabled: bool = False
    keep_errors: bool = True
    latency_threshold_ms: float | None = 1000.0
    cost_threshold_usd: float | None = 0.10
    keep_ratio: float = 0.1
    decision_timeout_s: float = 30.0
    max_traces: int = 10_000
    max_spans: int = 200_000


@dataclass(frozen=True)
class SamplingSettings:
    """Head sampling (on by default with the rules above) and tail sampling (off by default)."""

    head_rules: tuple[HeadRule, ...] = DEFAULT_HEAD_RULES
    default_ratio: float = 1.0
    tail: TailSettings = field(default_factory=TailSettings)
