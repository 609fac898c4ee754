"""Shared fixtures: global OpenTelemetry providers set once, with per-test span capture.

The OpenTelemetry API lets a process set its global providers only once, and otelkit's API
uses the global tracer, so the session installs one TracerProvider whose processor forwards
to whatever the current test plugs in, and one MeterProvider read through an in-memory reader.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelkit.config import reset_policy_cache
from otelkit.instrumentation.session import SessionSpanProcessor

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class _Switch(SpanProcessor):
    """Forwards to the processors the running test installed."""

    def __init__(self) -> None:
        self.targets: list[SpanProcessor] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for target in self.targets:
            target.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for target in self.targets:
            target.on_end(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(target.force_flush(timeout_millis) for target in self.targets)


_SWITCH = _Switch()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(_SWITCH)
trace.set_tracer_provider(_PROVIDER)
_READER = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))


@pytest.fixture(autouse=True)
def _isolated_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTELKIT_"):
            monkeypatch.delenv(name)
    reset_policy_cache()
    yield
    reset_policy_cache()
    _SWITCH.targets = []


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Finished spans of this test, in end order (session stamping installed as in production)."""
    exporter = InMemorySpanExporter()
    _SWITCH.targets = [SessionSpanProcessor(), SimpleSpanProcessor(exporter)]
    return exporter


@pytest.fixture
def switch() -> _Switch:
    """Install arbitrary processors on the global provider for this test."""
    return _SWITCH


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """The global meter provider's reader (cumulative: compare before and after)."""
    return _READER


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """An environment for running programs under opentelemetry-instrument in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL", "OTELKIT"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(tmp_path)
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "60000"
    return env
