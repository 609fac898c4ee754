"""The ``otelkit`` command line: one click group; each feature adds its command with ``@cli.command()``.

Bad input never ends in a traceback or a usage dump: every click error, and every
:class:`InputError` a command raises, is reported as one line, ``otelkit: error: <reason>``,
on stderr with exit code 2 (usage errors) or the error's own code.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import click
from rich.console import Console
from rich.progress import Progress

from otelkit import __version__
from otelkit.config import ConfigError, load_policy
from otelkit.pricing import load_table
from otelkit.report import PeriodError, build_report, parse_period, render_json, render_table
from otelkit.report.reprice import reprice
from otelkit.store import StoreError, connect_for_reading, connect_for_writing


class InputError(click.ClickException):
    """Bad input from the user (a path, a value, a file); shown as one line, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        """One line on stderr, whatever the message contained."""
        message = " ".join(self.format_message().split())
        click.echo(f"otelkit: error: {message}", err=True)


# Shown by click as they are: our own one-line errors, and the help a bare ``otelkit`` prints
# (click 8.2+ raises it as an error; older versions simply exit).
_SHOWN_AS_IS: tuple[type[click.ClickException], ...] = (
    InputError,
    getattr(click.exceptions, "NoArgsIsHelpError", InputError),
)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Re-raise click errors as :class:`InputError`, pointing usage mistakes at ``--help``."""
    try:
        yield
    except _SHOWN_AS_IS:
        raise
    except click.ClickException as exc:
        message = exc.format_message()
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            message = f"{message.rstrip('.')} (see '{exc.ctx.command_path} --help')"
        error = InputError(message)
        error.exit_code = exc.exit_code
        raise error from None


class OtelkitGroup(click.Group):
    """A group whose own and its commands' click errors are reported as one line."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        """Parse the group's own options; a mistake is one line."""
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Resolve and run the command; its parse and click errors are one line."""
        with _one_line_errors():
            return super().invoke(ctx)


@click.group(name="otelkit", cls=OtelkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="otelkit", message="%(prog)s %(version)s")
def cli() -> None:
    """OpenTelemetry-native telemetry for command pipelines and AI agents."""


def store_path(db: str | None) -> str:
    """The store to read: ``--db``, else the policy's store path ($OTELKIT_SQLITE_PATH, ./otelkit.db)."""
    if db is not None:
        return db
    try:
        return load_policy().store.path
    except ConfigError as exc:
        raise InputError(str(exc)) from None


def write_output(text: str, output: str | None) -> None:
    """Write to ``--output`` (created or replaced) or to stdout."""
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None


@cli.command()
@click.option(
    "--db",
    metavar="PATH",
    default=None,
    help="The otelkit store to read.  [default: $OTELKIT_SQLITE_PATH, else ./otelkit.db]",
)
@click.option(
    "--period",
    default="24h",
    show_default=True,
    help="How far back to look: all, or a number with unit m, h, d or w (90m, 24h, 7d, 30d, 2w).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)
@click.option("--output", metavar="FILE", default=None, help="Write the report to FILE instead of stdout.")
@click.option(
    "--reprice",
    is_flag=True,
    help="First recompute the cost of the period's LLM calls from the current pricing table "
    "(the vendored one, or the policy's pricing section) and store it.",
)
def report(db: str | None, period: str, output_format: str, output: str | None, reprice: bool) -> None:
    """Totals and per-operation counts, success rates and latency percentiles.

    Operations are (operation type, span name) pairs, slowest p95 first; spans count when they
    started inside the period.

    \b
    JSON (--format json) is a stable shape:
      summary:    spans, traces, sessions, success_rate (0..1), p50_ms, p95_ms, p99_ms
      operations: [{type, name, count, success_rate, p50_ms, p95_ms, p99_ms, time_share}]
    success_rate is the fraction of spans whose status is not ERROR; time_share is the
    operation's summed duration over all operations' (0..1); an empty period gives
    spans 0, null rates and percentiles, and no operations.

    Percentiles are exact over every span, by linear interpolation between closest ranks
    (type 7: numpy's default, statistics.quantiles(method="inclusive")).
    """
    try:
        window = parse_period(period)
    except PeriodError as exc:
        raise InputError(str(exc)) from None
    path = store_path(db)
    try:
        conn = connect_for_reading(path)
    except StoreError as exc:
        raise InputError(str(exc)) from None
    now_ns = time.time_ns()
    if reprice:
        _reprice_store(path, window.since_ns(now_ns))
    try:
        document = build_report(conn, window, now_ns)
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot read the store: {exc}") from None
    finally:
        conn.close()
    if output_format == "json":
        text = render_json(document)
        if not document["operations"]:
            click.echo(f"otelkit: no spans in {window.description}", err=True)
    else:
        to_terminal = output is None and sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if to_terminal else None
        text = render_table(document, window, color=to_terminal, width=width)
    write_output(text, output)


def _reprice_store(path: str, since_ns: int | None) -> None:
    """Re-price the stored LLM calls of the window, with progress on a terminal and a summary line."""
    try:
        policy = load_policy()
        table = load_table(policy)
        conn = connect_for_writing(path, policy.store.busy_timeout_ms)
    except (ConfigError, StoreError) as exc:
        raise InputError(str(exc)) from None
    try:
        with Progress(transient=True, console=Console(stderr=True), disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("re-pricing LLM calls", total=None)
            result = reprice(conn, table, since_ns, lambda n: progress.advance(task, n))
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot re-price the store: {exc}") from None
    finally:
        conn.close()
    click.echo(
        f"otelkit: re-priced {result.spans:,} LLM calls with pricing table {table.version or '(unversioned)'}: "
        f"{result.changed:,} changed, {result.unpriced:,} unpriced",
        err=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The console-script entry point (``otelkit``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="otelkit")
