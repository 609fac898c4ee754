"""otelkit: OpenTelemetry-native telemetry for command pipelines and AI agents.

The instrumentation API is re-exported here (``from otelkit import step, session``); it is
loaded on first use so that importing a core module never pulls in the plugin packages.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "command": "otelkit.instrumentation.api",
    "step": "otelkit.instrumentation.api",
    "template": "otelkit.instrumentation.api",
    "condition": "otelkit.instrumentation.api",
    "tool": "otelkit.instrumentation.api",
    "llm": "otelkit.instrumentation.api",
    "agent": "otelkit.instrumentation.api",
    "function": "otelkit.instrumentation.api",
    "current_operation": "otelkit.instrumentation.api",
    "Operation": "otelkit.instrumentation.api",
    "LLMCall": "otelkit.instrumentation.api",
    "ConditionCheck": "otelkit.instrumentation.api",
    "session": "otelkit.instrumentation.session",
    "current_session_id": "otelkit.instrumentation.session",
    "SessionSpanProcessor": "otelkit.instrumentation.session",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'otelkit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
