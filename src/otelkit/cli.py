"""The ``otelkit`` command line: one click group; each feature adds its command with ``@cli.command()``.

Bad input never ends in a traceback or a usage dump: every click error, and every
:class:`InputError` a command raises, is reported as one line, ``otelkit: error: <reason>``,
on stderr with exit code 2 (usage errors) or the error's own code.
"""

from __future__ import annotations

import dataclasses
import getpass
import io
import json
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import click
from rich.console import Console
from rich.live import Live
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from otelkit import __version__
from otelkit.alert_settings import Selector
from otelkit.config import ConfigError, load_policy
from otelkit.pricing import load_table
from otelkit.report import (
    Period,
    PeriodError,
    SectionError,
    build_report,
    parse_period,
    parse_sections,
    render_csv,
    render_html,
    render_json,
    render_table,
)
from otelkit.report.sections import SECTIONS
from otelkit.processors.sanitize import scrub_text
from otelkit.report.live import snapshot as live_snapshot
from otelkit.report.live_view import render_snapshot
from otelkit.report.reprice import reprice
from otelkit.processors.alert_rules import describe as describe_rule
from otelkit.store import StoreError, StoreWriter, connect_for_reading, connect_for_writing


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


db_option = click.option(
    "--db",
    metavar="PATH",
    default=None,
    help="The otelkit store to read.  [default: $OTELKIT_SQLITE_PATH, else ./otelkit.db]",
)
format_option = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)


def store_path(db: str | None) -> str:
    """The store to read: ``--db``, else the policy's store path ($OTELKIT_SQLITE_PATH, ./otelkit.db)."""
    if db is not None:
        return db
    try:
        return load_policy().store.path
    except ConfigError as exc:
        raise InputError(str(exc)) from None


def open_for_period(db: str | None, period: str) -> tuple[Period, str, sqlite3.Connection]:
    """The parsed ``--period``, the store's path and a read-only connection; one-line errors."""
    try:
        window = parse_period(period)
    except PeriodError as exc:
        raise InputError(str(exc)) from None
    path = store_path(db)
    try:
        return window, path, connect_for_reading(path)
    except StoreError as exc:
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
@db_option
@click.option(
    "--period",
    default="24h",
    show_default=True,
    help="The window: all; a length back from now with unit m, h, d or w (90m, 24h, 7d, 30d); "
    "or SINCE..UNTIL in ISO 8601, UTC unless an offset is given (2026-11-01..2026-11-08, 2026-11-20T09:00..).",
)
@click.option(
    "--section",
    "section_names",
    metavar="NAME[,NAME]",
    default=None,
    help=f"Only these sections, in this order: {', '.join(SECTIONS)}.  [default: all]",
)
@click.option("--service", metavar="NAME", default=None, help="Only spans (and sessions) of this service.name.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts, csv for spreadsheets (long form), html for one self-contained file.",
)
@click.option("--output", metavar="FILE", default=None, help="Write the report to FILE instead of stdout.")
@click.option(
    "--jaeger-url",
    metavar="URL",
    default=None,
    help="Jaeger UI base URL (http://localhost:16686): every trace id in the report links to its trace there.",
)
@click.option(
    "--exact/--rollups",
    "exact",
    default=None,
    help="Read the window from the spans themselves (exact percentiles), or from the rollup tables.  "
    "[default: exact when the window holds at most 50,000 spans]",
)
@click.option(
    "--reprice",
    is_flag=True,
    help="First recompute the cost of the period's LLM calls from the current pricing table "
    "(the vendored one, or the policy's pricing section) and store it.",
)
def report(
    db: str | None,
    period: str,
    section_names: str | None,
    service: str | None,
    output_format: str,
    output: str | None,
    jaeger_url: str | None,
    exact: bool | None,
    reprice: bool,
) -> None:
    """What ran, what failed, what was slow, what it cost, which tools were used.

    Sections: overview (totals, compared with the previous period), operations (popularity,
    success, latency, where the time goes, critical paths), llm (by model, provider and agent;
    cost per day; unpriced models), tools (usage, frequent sequences), templates, conditions,
    errors (categories, trend, messages, hotspots, bursts), sessions (with a complexity score),
    anomalies (latency spikes beyond 3 standard deviations), recommendations.

    Spans count in the window they started in. Counts, totals and percentiles are weighted by
    each span's sample rate. Reports over large windows read rollup tables the store keeps as it
    writes (percentiles within 1%); small windows are computed exactly from the spans. The JSON
    shape is documented in docs/report-format.md; keys are only ever added.
    """
    try:
        names = parse_sections(section_names)
    except SectionError as exc:
        raise InputError(str(exc)) from None
    if jaeger_url is not None and not jaeger_url.startswith(("http://", "https://")):
        raise InputError(f"invalid --jaeger-url {jaeger_url!r}: expected an http:// or https:// URL")
    window, path, conn = open_for_period(db, period)
    now_ns = time.time_ns()
    if reprice:
        _reprice_store(path, window.since_ns(now_ns))
    try:
        pricing = load_table(load_policy())
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    try:
        with Progress(transient=True, console=Console(stderr=True), disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("report", total=len(names) + 1)

            def step(name: str) -> None:
                progress.update(task, description=f"report: {name}", advance=0 if name == "reading the window" else 1)

            document = build_report(
                conn, window, now_ns, sections=names, service=service, jaeger_url=jaeger_url, pricing=pricing,
                scrub=scrub_text, exact=exact, progress=step,
            )  # fmt: skip
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot read the store: {exc}") from None
    finally:
        conn.close()
    if not document["summary"]["spans"]:
        click.echo(f"otelkit: no spans in {window.description}", err=True)
    write_output(_render(document, output_format, output), output)


def _render(document: dict[str, Any], output_format: str, output: str | None) -> str:
    if output_format == "json":
        return render_json(document)
    if output_format == "csv":
        return render_csv(document)
    if output_format == "html":
        try:
            return render_html(document)
        except RuntimeError as exc:
            raise InputError(str(exc)) from None
    to_terminal = output is None and sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if to_terminal else None
    return render_table(document, color=to_terminal, width=width)


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


# --- otelkit alerts ------------------------------------------------------------------------

_ALERT_FIELDS = (
    "id", "rule", "kind", "severity", "state", "group_key", "started_ns", "fired_ns", "resolved_ns",
    "value", "threshold", "message", "trace_id", "span_id", "notifications", "acknowledged_at",
    "acknowledged_by",
)  # fmt: skip


@cli.group(cls=OtelkitGroup)
def alerts() -> None:
    """Alerts raised by the policy's rules: list them, acknowledge them, show the rules."""


def _read_alerts(conn: sqlite3.Connection, state: str, since_ns: int | None) -> list[dict[str, Any]]:
    """Stored alerts, newest first (none from a store written before alerting existed)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alerts'").fetchone() is None:
        return []
    where: list[str] = []
    params: list[Any] = []
    if state != "all":
        where.append("state = ?")
        params.append(state)
    if since_ns is not None:
        where.append("started_ns >= ?")
        params.append(since_ns)
    sql = f"SELECT {', '.join(_ALERT_FIELDS)} FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_ns DESC, id DESC"
    return [dict(zip(_ALERT_FIELDS, row)) for row in conn.execute(sql, params)]


def _utc(ns: int | None) -> str:
    return "-" if ns is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ns / 1e9))


def _alert_value(kind: str, value: float | None) -> str:
    """A value in its rule's unit: ms for durations, % for rates, $ for cost, counts otherwise."""
    if value is None:
        return "-"
    if kind in ("latency", "percentile"):
        return f"{value:,.1f} ms"
    if kind in ("error_rate", "success_rate"):
        return f"{value:.1%}"
    if kind == "daily_cost":
        return f"${value:,.4f}"
    return f"{value:,.0f}"


def _print_tables(*renderables: Any) -> None:
    """Rich tables on a terminal; plain text, without trailing blanks, into a pipe or file."""
    color = sys.stdout.isatty()
    console = Console(
        file=io.StringIO(),
        force_terminal=color,
        no_color=not color,
        color_system="auto" if color else None,
        width=shutil.get_terminal_size().columns if color else 10_000,
        highlight=False,
        emoji=False,
    )
    for renderable in renderables:
        console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    click.echo(text if color else "".join(line.rstrip() + "\n" for line in text.splitlines()), nl=False)


@alerts.command(name="list")
@db_option
@click.option(
    "--state",
    type=click.Choice(["firing", "resolved", "all"]),
    default="all",
    show_default=True,
    help="Which alerts: still firing, resolved, or both.",
)
@click.option(
    "--period",
    default="all",
    show_default=True,
    help="Only alerts that started within it: all, or a number with unit m, h, d or w (90m, 24h, 7d, 2w).",
)
@format_option
def list_alerts(db: str | None, state: str, period: str, output_format: str) -> None:
    """Stored alerts, newest first: one row per alert, updated as it repeats and resolves.

    An alert still firing in a program that has exited stays firing; acknowledge it with
    'otelkit alerts ack ID'.

    \b
    JSON (--format json): {"alerts": [{id, rule, kind, severity, state, group_key, started_ns,
    fired_ns, resolved_ns, value, threshold, message, trace_id, span_id, notifications,
    acknowledged_at, acknowledged_by}]}; times are Unix nanoseconds.
    """
    window, path, conn = open_for_period(db, period)
    try:
        rows = _read_alerts(conn, state, window.since_ns())
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot read the store: {exc}") from None
    finally:
        conn.close()
    if output_format == "json":
        click.echo(json.dumps({"alerts": rows}, indent=2))
        return
    which = "" if state == "all" else f"{state} "
    if not rows:
        click.echo(f"no {which}alerts in {window.description}")
        return
    table = Table(title=f"otelkit alerts ({which or 'all '}in {window.description}), newest first", title_justify="left")
    headers = ("ID", "State", "Severity", "Rule", "Group", "Started", "Value", "Threshold", "Message", "Trace", "Acknowledged")
    for header in headers:
        table.add_column(header, justify="right" if header in ("ID", "Value", "Threshold") else "left")
    for row in rows:
        acknowledged = f"{row['acknowledged_by']} {_utc(row['acknowledged_at'])}" if row["acknowledged_at"] else "-"
        cells = (
            str(row["id"]), row["state"], row["severity"], row["rule"], row["group_key"] or "-",
            _utc(row["started_ns"]), _alert_value(row["kind"], row["value"]),
            _alert_value(row["kind"], row["threshold"]), row["message"], row["trace_id"] or "-", acknowledged,
        )  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    _print_tables(table)


@alerts.command()
@click.argument("alert_id", metavar="ID", type=int)
@click.option("--by", default=None, help="Who acknowledges it.  [default: the current user]")
@click.option(
    "--db",
    metavar="PATH",
    default=None,
    help="The otelkit store.  [default: $OTELKIT_SQLITE_PATH, else ./otelkit.db]",
)
def ack(alert_id: int, by: str | None, db: str | None) -> None:
    """Acknowledge alert ID (from 'otelkit alerts list'): record who and when, once."""
    if by is None:
        try:
            by = getpass.getuser()
        except (KeyError, OSError):
            by = "unknown"
    if not by.strip():
        raise InputError("--by: expected a name")
    path = store_path(db)
    try:
        connect_for_reading(path).close()
    except StoreError as exc:
        raise InputError(str(exc)) from None
    now_ns = time.time_ns()
    writer = StoreWriter(path)
    try:
        result = writer.acknowledge_alert(alert_id, by, now_ns)
    except (StoreError, sqlite3.Error) as exc:
        raise InputError(f"{path}: cannot acknowledge: {exc}") from None
    finally:
        writer.close()
    if result is None:
        raise InputError(f"no alert with id {alert_id} in {path}")
    rule, who, when = result
    if when == now_ns and who == by:
        click.echo(f"otelkit: acknowledged alert {alert_id} ({rule}) as {by}")
    else:
        click.echo(f"otelkit: alert {alert_id} ({rule}) was already acknowledged by {who} at {_utc(when)}")


def _selection(select: Selector) -> str:
    parts = [
        f"{name}={getattr(select, name)}"
        for name in ("operation_type", "name", "model", "agent")
        if getattr(select, name) is not None
    ]
    parts.extend(select.attributes)
    return " ".join(parts) or "all spans"


@alerts.command()
@format_option
def rules(output_format: str) -> None:
    """The effective alert rules of the policy ($OTELKIT_CONFIG), every default filled in, and where alerts go.

    Webhooks are shown by host only: their URLs often carry a secret.
    """
    try:
        policy = load_policy()
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    settings = policy.alerts
    webhooks = [
        {"host": hook.host, "format": hook.format, "timeout_s": hook.timeout_s, "max_retries": hook.max_retries,
         "backoff_s": hook.backoff_s, "queue_size": hook.queue_size,
         "headers": [name for name, _ in hook.header_pairs()]}
        for hook in settings.webhooks
    ]  # fmt: skip
    store = policy.store.path if settings.store else None
    if output_format == "json":
        document = {
            "enabled": settings.enabled,
            "rules": [{**dataclasses.asdict(rule), "condition": describe_rule(rule)} for rule in settings.rules],
            "sinks": {"log": settings.log, "store": store, "webhooks": webhooks},
            "max_groups": settings.max_groups,
            "shutdown_timeout_s": settings.shutdown_timeout_s,
        }
        click.echo(json.dumps(document, indent=2))
        return
    if not settings.rules:
        click.echo("no alert rules in the policy (add them under alerts.rules)")
        return
    table = Table(title="Alert rules" + ("" if settings.enabled else " (disabled: alerts.enabled is false)"), title_justify="left")
    for header in ("Name", "Kind", "Severity", "Fires when", "Spans", "Group by", "After", "Repeat every"):
        table.add_column(header)
    for rule in settings.rules:
        cells = (
            rule.name, rule.kind, rule.severity, describe_rule(rule), _selection(rule.select),
            ",".join(rule.group_by) or "-", f"{rule.occurrences}x", f"{rule.min_interval_s:g} s",
        )  # fmt: skip
        table.add_row(*(Text(cell) for cell in cells))
    sinks = (["log (otelkit.alerts)"] if settings.log else []) + ([f"store {store}"] if store else [])
    sinks += [f"webhook {hook['host']} ({hook['format']})" for hook in webhooks]
    _print_tables(table, Text(f"alerts go to: {', '.join(sinks) or 'nowhere (log, store and webhooks are off)'}"))


# --- otelkit top ---------------------------------------------------------------------------

_TOP_MAX_WINDOW_S = 86_400
_TOP_MAX_INTERVAL_S = 3600.0
_TOP_PLAIN_WIDTH = 120  # plain output's width unless $COLUMNS says otherwise


def _top_interval(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """``--interval``: seconds between refreshes, above 0 and at most an hour (NaN and inf refused)."""
    try:
        seconds = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= _TOP_MAX_INTERVAL_S:
        raise click.BadParameter(f"{value!r}: expected seconds above 0 and at most {_TOP_MAX_INTERVAL_S:g}")
    return seconds


def _top_window(text: str) -> int:
    """``--window`` in seconds: a duration from 1m to 24h. ``all`` and ``SINCE..UNTIL`` (fixed
    times, which do not move with now) are no window to watch."""
    try:
        period = parse_period(text)
    except PeriodError:
        period = Period(text, None)
    seconds = None if getattr(period, "fixed", False) else period.seconds
    if seconds is None or seconds > _TOP_MAX_WINDOW_S:
        raise InputError(
            f"invalid window {text!r}: expected a duration from 1m to 24h, such as 5m, 15m or 1h "
            "(for longer periods use 'otelkit report')"
        )
    return seconds


def _top_snapshot(path: str, window_s: int, service: str | None) -> dict[str, Any]:
    """One snapshot from a fresh read-only connection, so each refresh sees what was written since."""
    try:
        conn = connect_for_reading(path)
    except StoreError as exc:
        raise InputError(str(exc)) from None
    try:
        return live_snapshot(conn, time.time_ns(), window_s, service)
    except StoreError as exc:
        raise InputError(f"{path}: {exc}") from None
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot read the store: {exc}") from None
    finally:
        conn.close()


def _top_snapshots(
    take: Callable[[], dict[str, Any]], interval: float, iterations: int | None
) -> Iterator[dict[str, Any]]:
    """Snapshots ``interval`` seconds apart: ``iterations`` of them, or until interrupted."""
    taken = 0
    while True:
        yield take()
        taken += 1
        if iterations is not None and taken >= iterations:
            return
        time.sleep(interval)


def _top_on_terminal() -> bool:
    """Redraw in place on a terminal; print text into a pipe or file (tests replace this)."""
    return sys.stdout.isatty()


def _top_live(snapshots: Iterator[dict[str, Any]]) -> None:
    """Redraw the view in place on the terminal (the first snapshot is taken before drawing, so
    a bad store fails with its one-line error)."""
    console = Console(highlight=False, emoji=False)
    first = next(snapshots)
    with Live(render_snapshot(first, width=console.width), console=console, auto_refresh=False) as live:
        for snap in snapshots:
            live.update(render_snapshot(snap, width=console.width), refresh=True)


def _top_plain(snapshots: Iterator[dict[str, Any]]) -> None:
    """Each snapshot as plain text (no colour, no trailing blanks), a blank line between them."""
    width = shutil.get_terminal_size((_TOP_PLAIN_WIDTH, 24)).columns
    for index, snap in enumerate(snapshots):
        console = Console(
            file=io.StringIO(), width=width, no_color=True, color_system=None, force_terminal=False,
            highlight=False, emoji=False,
        )  # fmt: skip
        console.print(render_snapshot(snap, width=width))
        text = console.file.getvalue()  # type: ignore[attr-defined]
        click.echo(("\n" if index else "") + "".join(line.rstrip() + "\n" for line in text.splitlines()), nl=False)


@cli.command()
@db_option
@click.option(
    "--interval",
    metavar="SECONDS",
    default="2",
    show_default=True,
    callback=_top_interval,
    help="Seconds between refreshes (above 0, at most 3600).",
)
@click.option(
    "--window",
    metavar="DURATION",
    default="5m",
    show_default=True,
    help="How far back the figures look: 1m to 24h (5m, 15m, 1h).",
)
@click.option("--service", metavar="NAME", default=None, help="Only spans and sessions of this service.name.")
@click.option(
    "--iterations",
    metavar="N",
    type=click.IntRange(min=1),
    default=None,
    help="Refresh N times, then exit.  [default: until Ctrl-C]",
)
def top(db: str | None, interval: float, window: str, service: str | None, iterations: int | None) -> None:
    """A live view of the last few minutes: traffic, errors, latency, tokens, cost, sessions, alerts.

    The window is the last whole minutes of --window plus the current, partial minute; rates
    divide by exactly that time. Spans count in the minute they started, once they have ended
    and been written. Counts are weighted by each span's sample rate.

    \b
    Requests/min  root spans (one per trace) per minute
    Spans/min     spans per minute
    Error rate    spans with status ERROR / spans
    p95           95th percentile span duration (within 1%)
    Tokens/min    input + output tokens per minute
    Cost/hour     the window's LLM cost as a rate per hour (unpriced calls not included)
    Sessions      sessions whose latest span ended within the window
    Alerts        the 5 alerts fired most recently

    On a terminal the view redraws in place; into a pipe or file each refresh is printed as
    plain text, separated by a blank line. Ctrl-C exits quietly.
    """
    window_s = _top_window(window)
    path = store_path(db)
    snapshots = _top_snapshots(lambda: _top_snapshot(path, window_s, service), interval, iterations)
    try:
        if _top_on_terminal():
            _top_live(snapshots)
        else:
            _top_plain(snapshots)
    except KeyboardInterrupt:
        return


@cli.command()
@click.option("--db", metavar="PATH", default=None,
              help="The otelkit store to write (created if missing).  [default: $OTELKIT_SQLITE_PATH, else ./otelkit.db]")
@click.option("--grpc-endpoint", metavar="HOST:PORT", default="127.0.0.1:4317", show_default=True,
              help="OTLP/gRPC listen address; port 0 picks a free port; 'none' turns gRPC off.")
@click.option("--http-endpoint", metavar="HOST:PORT", default="127.0.0.1:4318", show_default=True,
              help="OTLP/HTTP listen address; port 0 picks a free port; 'none' turns HTTP off.")
@click.option("--token-file", metavar="FILE", default=None,
              help="Require 'Authorization: Bearer <token>', one accepted token per line of FILE.")
@click.option("--tls-cert", metavar="FILE", default=None, help="Serve TLS on both protocols with this certificate (PEM).")
@click.option("--tls-key", metavar="FILE", default=None, help="The private key of --tls-cert (PEM).")
@click.option("--tls-client-ca", metavar="FILE", default=None, help="Require client certificates signed by this CA (mTLS).")
@click.option("--sanitize", is_flag=True, default=False,
              help="Scrub secrets and personal data with the policy's sanitize rules before storing (for senders that do not).")
@click.option("--max-body-mib", type=click.IntRange(min=1, max=1024), default=20, show_default=True,
              help="Largest request accepted, after decompression.")
@click.option("--queue-items", type=click.IntRange(min=1000), default=200_000, show_default=True,
              help="Items (spans, points, records) waiting to be committed before senders get 503 / UNAVAILABLE.")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=None,
              help="Store-writer processes converting and committing in parallel.  [default: one per core, up to 4]")
def serve(db: str | None, grpc_endpoint: str, http_endpoint: str, token_file: str | None, tls_cert: str | None,
          tls_key: str | None, tls_client_ca: str | None, sanitize: bool, max_body_mib: int,
          queue_items: int, workers: int | None) -> None:  # fmt: skip
    """Receive OTLP traces, metrics and logs from any language or a Collector into the store.

    The first line of output names the ports bound. SIGTERM or Ctrl-C stops taking requests,
    commits everything already acknowledged, and exits.
    """
    from otelkit.exporters.receiver.auth import TokenError, Tokens
    from otelkit.exporters.receiver.server import EndpointError, Receiver, ReceiverSettings, TLSFiles, default_workers

    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise InputError("--tls-client-ca needs --tls-cert and --tls-key")
    grpc_at = None if grpc_endpoint.strip().lower() == "none" else grpc_endpoint
    http_at = None if http_endpoint.strip().lower() == "none" else http_endpoint
    try:
        policy = load_policy()
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    store = policy.store
    try:
        settings = ReceiverSettings(
            db=db or store.path, grpc_endpoint=grpc_at, http_endpoint=http_at,
            busy_timeout_ms=store.busy_timeout_ms, cache_size_mib=store.cache_size_mib, policy=policy, sanitize=sanitize,
            tokens=Tokens.from_file(token_file) if token_file else Tokens(),
            tls=TLSFiles(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None,
            max_body=max_body_mib * 1024 * 1024, queue_items=queue_items,
            workers=workers or default_workers(),
        )  # fmt: skip
        receiver = Receiver(settings)
        receiver.start()
    except (TokenError, EndpointError, StoreError) as exc:
        raise InputError(str(exc)) from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    scheme = "https" if settings.tls else "http"
    bound = [f"grpc {_host_of(grpc_at)}:{receiver.grpc_port}" if grpc_at else "",
             f"http {scheme}://{_host_of(http_at)}:{receiver.http_port}" if http_at else ""]  # fmt: skip
    click.echo(f"otelkit serve: {', '.join(b for b in bound if b)}; store {settings.db}")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        committed = receiver.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counters = receiver.ingest.counters
    click.echo(
        "otelkit serve: stopped; committed "
        + ", ".join(f"{counters.accepted[s]:,} {noun}" for s, noun in
                    (("traces", "spans"), ("metrics", "metric points"), ("logs", "log records")))  # fmt: skip
        + ("" if committed else " (some accepted items could not be committed: see the log)")
    )


def _host_of(endpoint: str | None) -> str:
    host = (endpoint or "").rpartition(":")[0]
    return host


@cli.command(name="collector-config")
@click.option("--policy", "policy_path", metavar="FILE", default=None,
              help="The otelkit policy to render.  [default: $OTELKIT_CONFIG, else the built-in defaults]")
@click.option("--mode", type=click.Choice(["agent", "gateway"]), default="agent", show_default=True,
              help="agent: one per host, OTLP on 127.0.0.1; gateway: a central tier, plus span metrics (RED).")
@click.option("--output", metavar="FILE", default=None, help="Write the config to FILE instead of stdout.")
def collector_config(policy_path: str | None, mode: str, output: str | None) -> None:
    """Render an OpenTelemetry Collector config whose redaction and tail sampling come from the policy.

    The policy's sanitize section (preset, rules, enable/disable, modes, key and value
    patterns, allow_keys, max_value_length) becomes the redaction processor (and a transform
    for span names, status messages and value length); sampling.tail (keep_errors,
    latency_threshold_ms, cost_threshold_usd, keep_ratio, decision_timeout_s, max_traces)
    becomes the tail_sampling processor. The rest is fixed: OTLP in, memory_limiter, batch,
    OTLP out to Jaeger and 'otelkit serve' with retries and persistent queues; endpoints, ports
    and the queue directory are ${env:...} settings listed in the file's header.

    A pattern of your own that the Collector's RE2 regular expressions cannot run (look-around,
    back-references, ...) is an error. Validate the result with
    'otelcol-otelkit validate --config FILE'.
    """
    from otelkit.collector_config import FEATURE_GATES, collector_rules, render
    from otelkit.config import ENV_CONFIG
    from otelkit.sanitize_settings import ENV_SANITIZE_KEY

    try:
        policy = load_policy(policy_path)
        text = render(policy, mode, source=policy_path or os.environ.get(ENV_CONFIG) or None)
        hashed = any(rule.mode == "hash" for rule in collector_rules(policy.sanitize))
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    write_output(text, output)
    if hashed:
        click.echo(f"otelkit: note: hash-mode rules need {ENV_SANITIZE_KEY} (32+ characters) in the Collector's "
                   "environment; the policy's hash_key is not copied into the config", err=True)  # fmt: skip
    if policy.sampling.tail.enabled and policy.sampling.tail.keep_ratio < 1:
        click.echo("otelkit: note: sampling.tail.enabled is on, so traces from otelkit processes are sampled twice "
                   "(in-process and in the Collector); turn one of them off", err=True)  # fmt: skip
    if output is not None:
        click.echo(f"otelkit: wrote the {mode} Collector config to {output}; run it with: otelcol-otelkit "
                   f"--config {output} --feature-gates={','.join(FEATURE_GATES)}", err=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    """The console-script entry point (``otelkit``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="otelkit")
