"""The distro's wiring: defaults that yield to explicit settings, and how exporters are fed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from otelkit.config import Policy
from otelkit.distro import DEFAULT_ENVIRONMENT, OtelkitDistro, export_span_processor
from otelkit.exporters.sqlite import SQLiteSpanExporter


class BatchRecorder(SQLiteSpanExporter):
    """The real SQLite exporter, noting the size of every batch it is handed."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches.append(len(spans))
        return super().export(spans)


def _feed(tmp_path: Path, count: int) -> list[int]:
    exporter = BatchRecorder(str(tmp_path / "b.db"))
    provider = TracerProvider()
    provider.add_span_processor(export_span_processor(Policy())(exporter))
    tracer = provider.get_tracer("t")
    for _ in range(count):
        with tracer.start_as_current_span("s"):
            pass
    provider.shutdown()
    return exporter.batches


def test_sqlite_exporter_gets_large_batches_and_nothing_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    monkeypatch.delenv("OTEL_BSP_MAX_QUEUE_SIZE", raising=False)
    batches = _feed(tmp_path, 9000)
    assert sum(batches) == 9000 and max(batches) > 2048


def test_explicit_batch_setting_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100")
    batches = _feed(tmp_path, 1000)
    assert sum(batches) == 1000 and max(batches) <= 100


def test_distro_defaults_yield_to_explicit_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in DEFAULT_ENVIRONMENT}
    environ["OTEL_TRACES_EXPORTER"] = "otlp"
    monkeypatch.setattr(os, "environ", environ)
    OtelkitDistro().configure()
    assert os.environ["OTEL_TRACES_EXPORTER"] == "otlp"
    assert os.environ["OTEL_METRICS_EXPORTER"] == "sqlite"
    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == "otelkit"
