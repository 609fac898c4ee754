"""Jinja2 instrumentation with the real library: compile and render spans, cache hits, output size."""

from __future__ import annotations

import asyncio
from typing import Iterator

import jinja2
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelkit import semconv as sc
from otelkit.instrumentation import jinja2 as jinja2_instrumentation
from otelkit.instrumentation.jinja2 import Jinja2Instrumentor

TEMPLATES = {"hello.txt": "Hello {{ name }}!", "page.html": "<p>{% include 'hello.txt' %}</p>", "broken.txt": "{{ missing.attr }}"}


@pytest.fixture
def instrumented() -> Iterator[Jinja2Instrumentor]:
    instrumentor = Jinja2Instrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


def env(**options: object) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), undefined=jinja2.StrictUndefined, **options)


def test_render_spans_report_cache_hits_and_output_size(instrumented: Jinja2Instrumentor, spans: InMemorySpanExporter) -> None:
    environment = env()
    assert environment.get_template("hello.txt").render(name="Ada") == "Hello Ada!"
    assert environment.get_template("hello.txt").render(name="Grace") == "Hello Grace!"
    renders = [s for s in spans.get_finished_spans() if s.attributes[sc.TEMPLATE_PHASE] == "render"]
    compiles = [s for s in spans.get_finished_spans() if s.attributes[sc.TEMPLATE_PHASE] == "compile"]
    assert [s.name for s in renders] == ["hello.txt", "hello.txt"]
    assert [s.attributes[sc.TEMPLATE_CACHE_HIT] for s in renders] == [False, True]
    assert [s.attributes[sc.TEMPLATE_OUTPUT_SIZE] for s in renders] == [len("Hello Ada!"), len("Hello Grace!")]
    assert all(s.attributes[sc.OPERATION_TYPE] == "template" for s in renders + compiles)
    assert [s.name for s in compiles] == ["compile hello.txt"]  # compiled once, on the miss
    assert renders[0].attributes[sc.TEMPLATE_NAME] == "hello.txt"


def test_without_a_cache_every_load_is_a_miss(instrumented: Jinja2Instrumentor, spans: InMemorySpanExporter) -> None:
    environment = env(cache_size=0)
    for _ in range(3):
        environment.get_template("hello.txt").render(name="x")
    renders = [s for s in spans.get_finished_spans() if s.attributes[sc.TEMPLATE_PHASE] == "render"]
    assert [s.attributes[sc.TEMPLATE_CACHE_HIT] for s in renders] == [False, False, False]
    assert sum(1 for s in spans.get_finished_spans() if s.name == "compile hello.txt") == 3


def test_includes_compile_inside_the_render_and_from_string_has_no_cache(
    instrumented: Jinja2Instrumentor, spans: InMemorySpanExporter
) -> None:
    environment = env()
    assert environment.get_template("page.html").render(name="Lin") == "<p>Hello Lin!</p>"
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["compile hello.txt"].parent.span_id == by_name["page.html"].context.span_id
    spans.clear()
    assert environment.from_string("{{ 1 + 1 }}").render() == "2"
    names = {s.name: s for s in spans.get_finished_spans()}
    assert set(names) == {"compile <string>", "<string>"}
    assert sc.TEMPLATE_CACHE_HIT not in names["<string>"].attributes


def test_async_rendering_gives_one_span_per_render(instrumented: Jinja2Instrumentor, spans: InMemorySpanExporter) -> None:
    environment = env(enable_async=True)
    template = environment.get_template("hello.txt")
    assert asyncio.run(template.render_async(name="async")) == "Hello async!"
    assert template.render(name="sync over async") == "Hello sync over async!"
    renders = [s for s in spans.get_finished_spans() if s.attributes[sc.TEMPLATE_PHASE] == "render"]
    assert len(renders) == 2
    assert [s.attributes[sc.TEMPLATE_CACHE_HIT] for s in renders] == [False, True]


def test_template_errors_reach_the_caller_and_mark_the_span(instrumented: Jinja2Instrumentor, spans: InMemorySpanExporter) -> None:
    with pytest.raises(jinja2.UndefinedError, match="'missing' is undefined"):
        env().get_template("broken.txt").render()
    (render,) = [s for s in spans.get_finished_spans() if s.name == "broken.txt"]
    assert render.status.status_code.name == "ERROR"
    assert render.attributes[sc.ERROR_TYPE] == "UndefinedError"


def test_uninstrument_restores_jinja2(spans: InMemorySpanExporter) -> None:
    original = (jinja2.Template.render, jinja2.Environment.compile, jinja2.Environment._load_template)
    instrumentor = Jinja2Instrumentor()
    instrumentor.instrument()
    assert jinja2.Template.render is not original[0]
    instrumentor.uninstrument()
    assert (jinja2.Template.render, jinja2.Environment.compile, jinja2.Environment._load_template) == original
    env().get_template("hello.txt").render(name="quiet")
    assert spans.get_finished_spans() == ()


def test_a_failing_instrumentor_never_breaks_the_render(
    instrumented: Jinja2Instrumentor, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(name: str, phase: str) -> None:
        raise RuntimeError("instrumentor bug")

    monkeypatch.setattr(jinja2_instrumentation, "_spec", broken)
    assert env().get_template("hello.txt").render(name="safe") == "Hello safe!"
    assert asyncio.run(env(enable_async=True).from_string("{{ 2 }}").render_async()) == "2"
    assert spans.get_finished_spans() == ()
