"""OTELKIT_AUTOWRAP in-process: what gets wrapped, what is left alone, and full restore."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelkit import semconv as sc
from otelkit.instrumentation.autowrap import AutowrapInstrumentor

SOURCE = '''
import asyncio

def build(x):
    return x + 1

def build_all():
    return [build(i) for i in range(2)]

async def build_async():
    await asyncio.sleep(0)
    return "async"

def build_stream():
    yield 1

def other():
    return "other"

class Worker:
    def build_one(self):
        return "method"

    @staticmethod
    def build_static():
        return "static"

    @classmethod
    def build_cls(cls):
        return cls.__name__
'''


@pytest.fixture
def module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"autowrap_target_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def instrumentor() -> Iterator[AutowrapInstrumentor]:
    inst = AutowrapInstrumentor()
    yield inst
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()


async def test_wraps_on_import_and_restores(module_name: str, instrumentor: AutowrapInstrumentor, spans: InMemorySpanExporter) -> None:
    instrumentor.instrument(specs=[f"{module_name}:build*", f"{module_name}:*.build_*"])
    mod = importlib.import_module(module_name)
    assert mod.build_all() == [1, 2]
    assert await mod.build_async() == "async"
    assert list(mod.build_stream()) == [1]
    worker = mod.Worker()
    assert (worker.build_one(), mod.Worker.build_static(), mod.Worker.build_cls()) == ("method", "static", "Worker")
    assert mod.other() == "other"
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count(f"{module_name}.build") == 2
    assert {f"{module_name}.build_all", f"{module_name}.build_async", f"{module_name}.Worker.build_one",
            f"{module_name}.Worker.build_static", f"{module_name}.Worker.build_cls"} <= set(names)
    assert f"{module_name}.other" not in names and f"{module_name}.build_stream" not in names
    span = spans.get_finished_spans()[0]
    assert span.attributes[sc.OPERATION_TYPE] == "function"
    assert span.attributes[sc.CODE_FUNCTION_NAME].startswith(module_name)

    instrumentor.uninstrument()
    spans.clear()
    assert mod.build_all() == [1, 2] and worker.build_one() == "method"
    assert spans.get_finished_spans() == ()


def test_already_imported_module_is_wrapped_at_once(module_name: str, instrumentor: AutowrapInstrumentor, spans: InMemorySpanExporter) -> None:
    mod = importlib.import_module(module_name)
    instrumentor.instrument(specs=[f"{module_name}:other"])
    assert mod.other() == "other"
    assert [s.name for s in spans.get_finished_spans()] == [f"{module_name}.other"]


def test_bad_and_empty_specs_warn_once_each(module_name: str, instrumentor: AutowrapInstrumentor, caplog: pytest.LogCaptureFixture) -> None:
    instrumentor.instrument(specs=["no-colon-here", f"{module_name}:zzz*", "never_imported_mod:x"])
    importlib.import_module(module_name)
    instrumentor._report_unimported()
    assert caplog.text.count("is not 'module:pattern'") == 1
    assert caplog.text.count("'zzz*' matched nothing") == 1
    assert caplog.text.count("never_imported_mod was never imported") == 1


def test_specs_come_from_the_environment(module_name: str, instrumentor: AutowrapInstrumentor,
                                         monkeypatch: pytest.MonkeyPatch, spans: InMemorySpanExporter) -> None:
    monkeypatch.setenv("OTELKIT_AUTOWRAP", f"{module_name}:other")
    instrumentor.instrument()
    assert importlib.import_module(module_name).other() == "other"
    assert len(spans.get_finished_spans()) == 1
