"""The policy's ``enrich`` section: performance thresholds per operation type, process memory."""

from __future__ import annotations

from dataclasses import dataclass

from otelkit.config_errors import ConfigError


@dataclass(frozen=True)
class PerformanceThresholds:
    """Span durations (ms) at which an operation type counts as normal, slow and very slow."""

    operation_type: str = "*"
    normal_ms: float = 100.0
    slow_ms: float = 1000.0
    very_slow_ms: float = 5000.0

    def __post_init__(self) -> None:
        if not 0 <= self.normal_ms <= self.slow_ms <= self.very_slow_ms:
            raise ConfigError("thresholds: expected 0 <= normal_ms <= slow_ms <= very_slow_ms")


DEFAULT_THRESHOLDS: tuple[PerformanceThresholds, ...] = (
    PerformanceThresholds("command", 1000.0, 10_000.0, 60_000.0),
    PerformanceThresholds("step", 500.0, 5000.0, 30_000.0),
    PerformanceThresholds("template", 5.0, 50.0, 250.0),
    PerformanceThresholds("condition", 1.0, 10.0, 100.0),
    PerformanceThresholds("llm", 2000.0, 10_000.0, 30_000.0),
    PerformanceThresholds("tool", 500.0, 5000.0, 30_000.0),
    PerformanceThresholds("agent", 5000.0, 30_000.0, 120_000.0),
    PerformanceThresholds("*", 100.0, 1000.0, 5000.0),
)


@dataclass(frozen=True)
class EnrichSettings:
    """What the enrich stage adds besides cost."""

    performance: tuple[PerformanceThresholds, ...] = DEFAULT_THRESHOLDS
    memory: bool = True
