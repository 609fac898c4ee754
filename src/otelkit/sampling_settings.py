"""The policy's ``sampling`` section: head rules by operation type and name, and tail sampling.

Owned by the sampling modules (:mod:`otelkit.processors.sampling` for the head sampler,
:mod:`otelkit.processors.tail_sampling` for the tail stage); validated at load like every
section, so a bad ratio or bound is refused once, naming its dotted key and line, instead of
surfacing as a wrong decision on some later span.

```yaml
sampling:
  head_rules:                       # first match wins; decides local roots only
    - {operation_type: command, ratio: 1.0}
    - {operation_type: template, name: "emails/*", ratio: 0.01}
  default_ratio: 1.0                # roots no rule matches
  tail:
    enabled: true
    latency_threshold_ms: 1000      # null: no latency rule
    cost_threshold_usd: 0.10        # null: no cost rule
    keep_ratio: 0.1                 # of the traces no rule keeps
```
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otelkit.config_errors import ConfigError


def _check_ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ConfigError(f"{name}: expected a number from 0 to 1, got {value!r}")


@dataclass(frozen=True)
class HeadRule:
    """Keep ``ratio`` of the traces whose local root span matches: globs on the operation type
    (``otelkit.operation.type``, or the type ``gen_ai.operation.name`` denotes; ``other`` for
    spans with neither) and on the span name, both case-sensitive."""

    operation_type: str = "*"
    name: str = "*"
    ratio: float = 1.0

    def __post_init__(self) -> None:
        if not self.operation_type:
            raise ConfigError("operation_type: expected a type or a glob (use '*' for any)")
        if not self.name:
            raise ConfigError("name: expected a span name or a glob (use '*' for any)")
        _check_ratio("ratio", self.ratio)


# Commands and steps 100%, template renders 10%, condition evaluations 50% (when they are the
# local root of a trace: inside a command they follow the command's decision).
DEFAULT_HEAD_RULES: tuple[HeadRule, ...] = (
    HeadRule(operation_type="command", ratio=1.0),
    HeadRule(operation_type="step", ratio=1.0),
    HeadRule(operation_type="template", ratio=0.1),
    HeadRule(operation_type="condition", ratio=0.5),
)


@dataclass(frozen=True)
class TailSettings:
    """Whole-trace decisions once the local root ends: keep errors, slow and costly traces, and
    ``keep_ratio`` of the rest; bounded memory, with what happens at the bound counted."""

    enabled: bool = False
    keep_errors: bool = True
    latency_threshold_ms: float | None = 1000.0
    cost_threshold_usd: float | None = 0.10
    keep_ratio: float = 0.1
    decision_timeout_s: float = 30.0
    max_traces: int = 10_000
    max_spans: int = 200_000
    recent_decisions: int = 100_000  # decided trace ids remembered so late spans follow them

    def __post_init__(self) -> None:
        _check_ratio("keep_ratio", self.keep_ratio)
        for name in ("latency_threshold_ms", "cost_threshold_usd"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"{name}: expected a number of at least 0, or null for no rule, got {value!r}")
        if not self.decision_timeout_s > 0:
            raise ConfigError(f"decision_timeout_s: expected seconds above 0, got {self.decision_timeout_s!r}")
        for name in ("max_traces", "max_spans"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected at least 1, got {getattr(self, name)!r}")
        if self.recent_decisions < 0:
            raise ConfigError(f"recent_decisions: expected 0 or more, got {self.recent_decisions!r}")


@dataclass(frozen=True)
class SamplingSettings:
    """Head sampling (on by default with the rules above) and tail sampling (off by default)."""

    head_rules: tuple[HeadRule, ...] = DEFAULT_HEAD_RULES
    default_ratio: float = 1.0
    tail: TailSettings = field(default_factory=TailSettings)

    def __post_init__(self) -> None:
        _check_ratio("default_ratio", self.default_ratio)
