"""The report's sections, in their default order: each a ``build(Context) -> section dict``."""

from __future__ import annotations

from typing import Any, Callable

from otelkit.report.sections import (
    anomalies,
    conditions,
    errors,
    llm,
    operations,
    overview,
    recommendations,
    sessions,
    templates,
    tools,
)
from otelkit.report.sections.kit import Context

SECTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "overview": overview.build,
    "operations": operations.build,
    "llm": llm.build,
    "tools": tools.build,
    "templates": templates.build,
    "conditions": conditions.build,
    "errors": errors.build,
    "sessions": sessions.build,
    "anomalies": anomalies.build,
    "recommendations": recommendations.build,
}

__all__ = ["SECTIONS", "Context"]
