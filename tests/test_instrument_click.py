"""Click and Typer instrumentation with the real libraries: command spans, exit codes, parameters."""

from __future__ import annotations

import sys
from typing import Iterator

import click
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelkit import semconv as sc
from otelkit.instrumentation import click as click_instrumentation
from otelkit.instrumentation.click import ClickInstrumentor


@click.group()
@click.option("--verbose", is_flag=True)
def tool(verbose: bool) -> None:
    """A CLI with subcommands."""


@tool.command()
@click.argument("target")
@click.option("--password", default="not-given")
@click.option("--retries", default=1)
def deploy(target: str, password: str, retries: int) -> None:
    click.echo(f"deployed {target}")


@tool.command()
@click.option("--code", type=int, default=0)
def leave(code: int) -> None:
    sys.exit(code)


@tool.command()
def explode() -> None:
    raise ValueError("kaboom")


@tool.command()
def refuse() -> None:
    raise click.ClickException("not allowed")


@pytest.fixture
def instrumented() -> Iterator[ClickInstrumentor]:
    instrumentor = ClickInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans.get_finished_spans()}


def test_commands_and_subcommands_become_command_spans(instrumented: ClickInstrumentor, spans: InMemorySpanExporter) -> None:
    result = CliRunner().invoke(tool, ["--verbose", "deploy", "prod", "--password", "hunter2"], prog_name="tool")
    assert result.exit_code == 0 and result.output == "deployed prod\n"
    found = by_name(spans)
    assert set(found) == {"tool", "tool deploy"}
    root, sub = found["tool"], found["tool deploy"]
    assert sub.parent.span_id == root.context.span_id
    assert root.attributes[sc.OPERATION_TYPE] == sub.attributes[sc.OPERATION_TYPE] == "command"
    assert root.attributes[sc.PROCESS_EXIT_CODE] == 0
    assert root.attributes[sc.COMMAND_PARAMETERS] == ("verbose",)
    assert sub.attributes[sc.COMMAND_PARAMETERS] == ("password", "target")  # given, not defaults
    assert sub.attributes[sc.COMMAND_PATH] == "tool deploy" and sub.attributes[sc.COMMAND_NAME] == "deploy"
    assert root.attributes[sc.PROCESS_EXECUTABLE_NAME]
    assert all("hunter2" not in str(value) for span in found.values() for value in span.attributes.values())


@pytest.mark.parametrize(("code", "failed"), [(0, False), (3, True)])
def test_sys_exit_codes_pass_through_and_are_recorded(
    instrumented: ClickInstrumentor, spans: InMemorySpanExporter, code: int, failed: bool
) -> None:
    result = CliRunner().invoke(tool, ["leave", "--code", str(code)], prog_name="tool")
    assert result.exit_code == code
    root = by_name(spans)["tool"]
    assert root.attributes[sc.PROCESS_EXIT_CODE] == code
    assert (root.status.status_code.name == "ERROR") is failed
    if failed:
        assert root.attributes[sc.ERROR_TYPE] == "3"
        assert by_name(spans)["tool leave"].attributes[sc.PROCESS_EXIT_CODE] == 3


def test_usage_errors_and_click_exceptions_keep_their_exit_codes(
    instrumented: ClickInstrumentor, spans: InMemorySpanExporter
) -> None:
    usage = CliRunner().invoke(tool, ["deploy"], prog_name="tool")  # missing TARGET
    assert usage.exit_code == 2 and "Missing argument" in usage.output
    assert by_name(spans)["tool"].attributes[sc.PROCESS_EXIT_CODE] == 2
    assert by_name(spans)["tool"].attributes[sc.ERROR_TYPE] == "2"
    spans.clear()
    refused = CliRunner().invoke(tool, ["refuse"], prog_name="tool")
    assert refused.exit_code == 1 and "not allowed" in refused.output
    assert by_name(spans)["tool refuse"].attributes[sc.ERROR_TYPE] == "ClickException"
    assert by_name(spans)["tool"].attributes[sc.PROCESS_EXIT_CODE] == 1


def test_an_unhandled_exception_reaches_the_caller_unchanged(instrumented: ClickInstrumentor, spans: InMemorySpanExporter) -> None:
    result = CliRunner().invoke(tool, ["explode"], prog_name="tool")
    assert isinstance(result.exception, ValueError) and str(result.exception) == "kaboom"
    found = by_name(spans)
    assert found["tool explode"].attributes[sc.ERROR_TYPE] == "ValueError"
    assert found["tool"].attributes[sc.ERROR_TYPE] == "ValueError"
    assert found["tool"].attributes[sc.PROCESS_EXIT_CODE] == 1


def test_non_standalone_mode_returns_the_command_result(instrumented: ClickInstrumentor, spans: InMemorySpanExporter) -> None:
    @click.command()
    def answer() -> int:
        return 42

    assert answer.main([], prog_name="answer", standalone_mode=False) == 42
    assert by_name(spans)["answer"].status.status_code.name == "UNSET"


def test_typer_apps_are_traced(instrumented: ClickInstrumentor, spans: InMemorySpanExporter) -> None:
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner as TyperRunner

    app = typer.Typer()

    @app.command()
    def build(name: str, fast: bool = False) -> None:
        print(f"built {name}")

    @app.command()
    def fail() -> None:
        raise typer.Exit(code=4)

    assert TyperRunner().invoke(app, ["build", "docs", "--fast"], prog_name="app").output == "built docs\n"
    found = by_name(spans)
    assert {"app", "app build"} <= set(found)
    assert found["app build"].attributes[sc.COMMAND_PARAMETERS] == ("fast", "name")
    spans.clear()
    assert TyperRunner().invoke(app, ["fail"], prog_name="app").exit_code == 4
    assert by_name(spans)["app"].attributes[sc.PROCESS_EXIT_CODE] == 4


def test_uninstrument_restores_click(spans: InMemorySpanExporter) -> None:
    original = (click.Command.main, click.Command.invoke, click.Group.invoke)
    instrumentor = ClickInstrumentor()
    instrumentor.instrument()
    assert click.Command.invoke is not original[1]
    instrumentor.uninstrument()
    assert (click.Command.main, click.Command.invoke, click.Group.invoke) == original
    assert CliRunner().invoke(tool, ["deploy", "x"]).exit_code == 0
    assert spans.get_finished_spans() == ()


def test_a_failing_instrumentor_never_breaks_the_command(
    instrumented: ClickInstrumentor, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("instrumentor bug")

    monkeypatch.setattr(click_instrumentation, "_program_name", broken)
    monkeypatch.setattr(click_instrumentation, "_given_parameters", broken)
    result = CliRunner().invoke(tool, ["deploy", "prod"], prog_name="tool")
    assert result.exit_code == 0 and result.output == "deployed prod\n"
    assert sorted(span.name for span in spans.get_finished_spans()) == ["tool", "tool deploy"]
