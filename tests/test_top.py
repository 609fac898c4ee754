"""``otelkit top``: the snapshot's figures against values worked out here from the spans written,
the rendering (plain, live, hostile names, empty state) and the command's options and errors."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any, Iterable

import pytest
from rich.console import Console

from otelkit import semconv as sc
from otelkit.report.live import snapshot
from otelkit.report.live_view import render_snapshot, sparkline
from otelkit.store import StoreError, StoreWriter, connect_for_reading, connect_for_writing
from otelkit.store.schema import MIGRATIONS
from otelkit.store.writer import ALERT_COLUMNS, SPAN_COLUMNS
from test_cli import assert_one_line_error, run

S = 1_000_000_000
MIN = 60 * S
C = 1_767_225_600 * S  # 2026-01-01T00:00:00Z: the start of the current minute
NOW = C + 30 * S  # half way through it: a 5m window lasts 5.5 minutes
ENV = {"COLUMNS": "160"}


@dataclass(frozen=True)
class Span:
    """A span as the test describes it; :meth:`row` is what the store receives."""

    trace: int
    span: int
    start: int
    ms: float
    name: str
    op: str
    parent: int | None = None
    status: str = "OK"
    rate: int = 1
    service: str = "agent"
    session: str | None = None
    tokens: tuple[int, int] | None = None
    cost: float | None = None

    @property
    def end(self) -> int:
        return self.start + int(self.ms * 1_000_000)

    def row(self) -> tuple[Any, ...]:
        attrs: dict[str, Any] = {sc.OPERATION_TYPE: self.op}
        if self.rate != 1:
            attrs[sc.SAMPLE_RATE] = self.rate
        if self.session:
            attrs[sc.SESSION_ID] = self.session
        if self.tokens:
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS], attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = self.tokens
        if self.cost is not None:
            attrs[sc.GEN_AI_USAGE_COST] = self.cost
        values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
        values.update(
            trace_id=f"{self.trace:032x}", span_id=f"{self.span:016x}",
            parent_span_id=None if self.parent is None else f"{self.parent:016x}", name=self.name,
            kind="INTERNAL", service_name=self.service, start_ns=self.start, end_ns=self.end,
            status_code=self.status, attributes=json.dumps(attrs),
        )  # fmt: skip
        return tuple(values[c] for c in SPAN_COLUMNS)


SPANS: tuple[Span, ...] = (
    # trace 1, session s-alpha, 2 minutes ago: an agent run, an LLM call, a failed tool call
    Span(1, 11, C - 2 * MIN + 10 * S, 4000, "agent run", "agent", session="s-alpha"),
    Span(1, 12, C - 2 * MIN + 11 * S, 1500, "chat gpt-4o", "llm", parent=11, session="s-alpha", tokens=(100, 50),
         cost=0.002),
    Span(1, 13, C - 2 * MIN + 13 * S, 300, "web_search", "tool", parent=11, status="ERROR", session="s-alpha"),
    # trace 2, session s-beta, a minute ago, sampled 1 in 4
    Span(2, 21, C - MIN + 5 * S, 2000, "agent run", "agent", rate=4, session="s-beta"),
    Span(2, 22, C - MIN + 6 * S, 900, "chat gpt-4o", "llm", parent=21, rate=4, session="s-beta", tokens=(200, 80),
         cost=0.01),
    Span(2, 23, C - MIN + 7 * S, 250, "web_search", "tool", parent=21, rate=4, session="s-beta"),
    # trace 3, the current minute, failed, sampled 1 in 2, no session
    Span(3, 31, C + 10 * S, 100, "cli command", "command", status="ERROR", rate=2),
    # the window's first instant, and the instant before it
    Span(4, 41, C - 5 * MIN, 20, "edge", "function"),
    Span(5, 51, C - 5 * MIN - 1, 30, "edge", "function"),
    # older than the window, still in the sparkline's 15 minutes; and two hours ago
    Span(6, 61, C - 10 * MIN, 5000, "agent run", "agent", status="ERROR", session="s-gamma"),
    Span(7, 71, C - 120 * MIN, 800, "nightly", "command", session="s-old"),
    # another service, 3 minutes ago, sampled 1 in 3, with an LLM call that has no price
    Span(8, 81, C - 3 * MIN, 700, "invoice", "command", rate=3, service="billing", session="s-bill"),
    Span(8, 82, C - 3 * MIN + S // 10, 500, "chat claude", "llm", parent=81, rate=3, service="billing",
         session="s-bill", tokens=(300, 100)),
    # sessions ending exactly window_s before now (active) and 1 ns earlier (not), two recent ones
    Span(9, 91, NOW - 301 * S, 1000, "ping", "function", session="s-edge-in"),
    Span(10, 101, NOW - 301 * S - 1, 1000, "ping", "function", session="s-edge-out"),
    Span(11, 111, C - 30 * S, 10, "ping", "function", session="s-x1"),
    Span(12, 121, C - 20 * S, 10, "ping", "function", session="s-x2"),
    # a clock two minutes ahead: after now, in no bucket the view shows
    Span(13, 131, C + 2 * MIN, 60, "future", "function"),
)  # fmt: skip

ALERTS: tuple[dict[str, Any], ...] = tuple(
    {"uid": f"u{i}", "rule": rule, "kind": "error_rate", "severity": severity, "state": state, "group_key": "",
     "started_ns": C - minutes * MIN, "fired_ns": C - minutes * MIN, "resolved_ns": None, "value": 0.5,
     "threshold": 0.1, "message": f"{rule} fired {minutes} minutes before", "trace_id": None, "span_id": None,
     "notifications": 1}
    for i, (rule, severity, state, minutes) in enumerate([
        ("r-40", "warning", "firing", 40), ("r-5", "critical", "firing", 5), ("r-90", "warning", "resolved", 90),
        ("r-20", "error", "resolved", 20), ("r-1", "warning", "firing", 1), ("r-30", "warning", "firing", 30),
        ("r-60", "error", "firing", 60),
    ])
)  # fmt: skip


def write_store(path: Path, spans: Iterable[Span], alerts: Iterable[dict[str, Any]] = ()) -> Path:
    writer = StoreWriter(str(path))
    writer.write_spans([s.row() for s in spans])
    writer.write_alerts([tuple(a[c] for c in ALERT_COLUMNS) for a in alerts])
    writer.close()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return write_store(tmp_path / "otelkit.db", SPANS, ALERTS)


def take(path: Path, window_s: int = 300, service: str | None = None, now_ns: int = NOW) -> dict[str, Any]:
    conn = connect_for_reading(str(path))
    try:
        return snapshot(conn, now_ns, window_s, service)
    finally:
        conn.close()


# --- what the figures should be, worked out from SPANS --------------------------------------


def selected(spans: Iterable[Span], first_bucket: int, last_bucket: int, service: str | None) -> list[Span]:
    """Spans that started in the minutes first_bucket .. last_bucket (inclusive) of the service."""
    return [
        s for s in spans
        if first_bucket <= s.start < last_bucket + MIN and (service is None or s.service == service)
    ]  # fmt: skip


def weighted_p95_ms(spans: list[Span]) -> float:
    """The duration at rank floor((W - 1) * 0.95) of the durations, each repeated by its weight."""
    expanded = sorted(s.ms for s in spans for _ in range(s.rate))
    return expanded[math.floor((len(expanded) - 1) * 0.95)]


def expected_sessions(spans: Iterable[Span], since_ns: int, service: str | None) -> dict[str, dict[str, Any]]:
    """Per session: its service (that of its first span), lifetime weighted figures, last end."""
    by_session: dict[str, list[Span]] = {}
    for s in spans:
        if s.session:
            by_session.setdefault(s.session, []).append(s)
    result = {}
    for session, members in by_session.items():
        last = max(s.end for s in members)
        owner = min(members, key=lambda s: s.start).service
        if last >= since_ns and (service is None or owner == service):
            result[session] = {
                "id": session, "service": owner, "spans": sum(s.rate for s in members),
                "tool_calls": sum(s.rate for s in members if s.op == "tool"),
                "errors": sum(s.rate for s in members if s.status == "ERROR"),
                "cost_usd": sum(s.rate * (s.cost or 0) for s in members),
                "first_ns": min(s.start for s in members), "last_ns": last,
            }  # fmt: skip
    return result


def test_figures_match_the_spans_written(db: Path) -> None:
    snap = take(db)
    window = selected(SPANS, C - 5 * MIN, C, None)
    minutes = 5.5
    spans = sum(s.rate for s in window)
    roots = sum(s.rate for s in window if s.parent is None)
    errors = sum(s.rate for s in window if s.status == "ERROR")
    tokens_in = sum(s.rate * s.tokens[0] for s in window if s.tokens)
    tokens_out = sum(s.rate * s.tokens[1] for s in window if s.tokens)
    cost = sum(s.rate * s.cost for s in window if s.cost is not None)
    # the same figures, worked out by hand once, so a mistake in the helpers above shows too
    assert (spans, roots, errors, tokens_in, tokens_out, cost) == (28, 15, 3, 1800, 670, pytest.approx(0.042))
    assert snap["window"] == {"seconds": 300, "start_ns": C - 5 * MIN, "minutes": minutes}
    assert snap["spans"] == spans and snap["requests"] == roots and snap["errors"] == errors
    assert snap["requests_per_minute"] == pytest.approx(roots / minutes)
    assert snap["spans_per_minute"] == pytest.approx(spans / minutes)
    assert snap["error_rate"] == pytest.approx(errors / spans)
    assert snap["p95_ms"] == pytest.approx(weighted_p95_ms(window), rel=0.01)
    assert weighted_p95_ms(window) == 2000
    assert (snap["input_tokens"], snap["output_tokens"]) == (tokens_in, tokens_out)
    assert snap["tokens_per_minute"] == pytest.approx((tokens_in + tokens_out) / minutes)
    assert snap["cost_usd"] == pytest.approx(cost)
    assert snap["cost_per_hour"] == pytest.approx(cost / minutes * 60)
    assert snap["unpriced_llm_calls"] == 3  # the billing LLM call, sampled 1 in 3, has tokens and no cost
    assert snap["now_ns"] == NOW and snap["service"] is None


def test_per_minute_series_covers_the_last_15_minutes(db: Path) -> None:
    series = take(db)["per_minute"]
    expected = []
    for bucket in range(C - 14 * MIN, C + 1, MIN):
        members = selected(SPANS, bucket, bucket, None)
        expected.append({
            "bucket_ns": bucket,
            "requests": sum(s.rate for s in members if s.parent is None),
            "errors": sum(s.rate for s in members if s.status == "ERROR"),
            "spans": sum(s.rate for s in members),
        })  # fmt: skip
    assert series == expected
    # minutes 10 (an old error), 6 (the span just before the window) and 0 (now) by hand
    assert [p["spans"] for p in series] == [0, 0, 0, 0, 1, 0, 0, 0, 1, 3, 0, 6, 3, 14, 2]
    assert series[4]["errors"] == 1 and series[-1] == {"bucket_ns": C, "requests": 2, "errors": 2, "spans": 2}


def test_top_operations_by_weighted_count(db: Path) -> None:
    snap = take(db)
    window = selected(SPANS, C - 5 * MIN, C, None)
    groups: dict[tuple[str, str], list[Span]] = {}
    for s in window:
        groups.setdefault((s.op, s.name), []).append(s)
    ranked = sorted(groups, key=lambda k: (-sum(s.rate for s in groups[k]), k))[:5]
    assert [(op["type"], op["name"]) for op in snap["operations"]] == ranked
    # three tie at 5 (ordered by type), then ping (4), then invoice and chat claude tie at 3: invoice
    assert ranked == [("agent", "agent run"), ("llm", "chat gpt-4o"), ("tool", "web_search"),
                      ("function", "ping"), ("command", "invoice")]  # fmt: skip
    for op in snap["operations"]:
        members = groups[(op["type"], op["name"])]
        count = sum(s.rate for s in members)
        errors = sum(s.rate for s in members if s.status == "ERROR")
        assert op["count"] == count and op["errors"] == errors
        assert op["per_minute"] == pytest.approx(count / 5.5)
        assert op["error_rate"] == pytest.approx(errors / count)
        assert op["p95_ms"] == pytest.approx(weighted_p95_ms(members), rel=0.01)
    assert snap["operations"][2]["error_rate"] == pytest.approx(0.2)


def test_active_sessions(db: Path) -> None:
    snap = take(db)
    expected = expected_sessions(SPANS, NOW - 300 * S, None)
    assert set(expected) == {"s-alpha", "s-beta", "s-bill", "s-edge-in", "s-x1", "s-x2"}
    assert snap["active_sessions"] == len(expected) == 6
    newest = sorted(expected.values(), key=lambda s: -s["last_ns"])[:5]
    assert [s["id"] for s in snap["recent_sessions"]] == ["s-x2", "s-x1", "s-beta", "s-alpha", "s-bill"]
    for got, want in zip(snap["recent_sessions"], newest):
        assert {**got, "cost_usd": pytest.approx(want["cost_usd"])} == {**want, "cost_usd": got["cost_usd"]}
    beta = snap["recent_sessions"][2]
    assert (beta["spans"], beta["tool_calls"], beta["cost_usd"]) == (12, 4, pytest.approx(0.04))


def test_latest_alerts_newest_first(db: Path) -> None:
    alerts = take(db)["latest_alerts"]
    newest = sorted(ALERTS, key=lambda a: -a["fired_ns"])[:5]
    assert [a["rule"] for a in alerts] == [a["rule"] for a in newest] == ["r-1", "r-5", "r-20", "r-30", "r-40"]
    for got, want in zip(alerts, newest):
        for field in ("rule", "kind", "severity", "state", "group_key", "fired_ns", "resolved_ns", "message"):
            assert got[field] == want[field]
    assert alerts[0]["id"] == 5  # the fifth row written


def test_service_filter(db: Path) -> None:
    snap = take(db, service="billing")
    window = selected(SPANS, C - 5 * MIN, C, "billing")
    assert snap["spans"] == sum(s.rate for s in window) == 6
    assert snap["requests_per_minute"] == pytest.approx(3 / 5.5)
    assert snap["error_rate"] == 0 and snap["cost_usd"] == 0 and snap["unpriced_llm_calls"] == 3
    assert snap["tokens_per_minute"] == pytest.approx(3 * 400 / 5.5)
    assert [(op["name"], op["count"]) for op in snap["operations"]] == [("invoice", 3), ("chat claude", 3)]
    assert snap["active_sessions"] == 1 and [s["id"] for s in snap["recent_sessions"]] == ["s-bill"]
    assert [p["spans"] for p in snap["per_minute"]][-4] == 6 and sum(p["spans"] for p in snap["per_minute"]) == 6
    assert len(snap["latest_alerts"]) == 5  # alerts carry no service: never filtered


@pytest.mark.parametrize("window_s", [60, 90, 900, 3600])
def test_other_windows_cover_whole_minutes_plus_the_current_one(db: Path, window_s: int) -> None:
    snap = take(db, window_s=window_s)
    whole = window_s // 60
    window = selected(SPANS, C - whole * MIN, C, None)
    assert snap["window"]["minutes"] == whole + 0.5
    assert snap["spans"] == sum(s.rate for s in window)
    assert snap["requests_per_minute"] == pytest.approx(sum(s.rate for s in window if s.parent is None) / (whole + 0.5))
    assert snap["active_sessions"] == len(expected_sessions(SPANS, NOW - window_s * S, None))


def test_a_window_shorter_than_a_minute_is_refused(db: Path) -> None:
    with pytest.raises(ValueError, match="at least 60"):
        take(db, window_s=59)


def test_empty_window_has_zero_rates_and_no_percentile(db: Path) -> None:
    snap = take(db, now_ns=NOW + 24 * 60 * MIN)
    rates = ("spans", "requests_per_minute", "spans_per_minute", "tokens_per_minute", "cost_per_hour")
    assert [snap[name] for name in rates] == [0, 0, 0, 0, 0]
    assert snap["error_rate"] is None and snap["p95_ms"] is None and snap["operations"] == []
    assert snap["active_sessions"] == 0 and snap["recent_sessions"] == []
    assert len(snap["latest_alerts"]) == 5


def test_a_store_from_before_the_rollups_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    for version in (0, 1):
        for statement in MIGRATIONS[version].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA application_id = 0x6F746B31")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    with pytest.raises(StoreError, match="schema version 2 predates the rollups"):
        snapshot(conn, NOW)
    conn.close()


# --- rendering ---------------------------------------------------------------------------------


def plain(renderable: Any, width: int = 160) -> str:
    console = Console(file=StringIO(), width=width, no_color=True, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_sparkline_heights() -> None:
    assert sparkline([0, 1, 2, 4, 8]) == "·▁▂▄█"
    assert sparkline([0, 0]) == "··" and sparkline([0.01, 100]) == "▁█"


def test_view_shows_every_panel(db: Path) -> None:
    text = plain(render_snapshot(take(db), width=160))
    assert re.search(r"Requests/min\s+2\.7\b", text) and re.search(r"Spans/min\s+5\.1\b", text)
    assert re.search(r"Error rate\s+10\.7%", text) and re.search(r"Tokens/min\s+449\b", text)
    assert re.search(r"Cost/hour\s+\$0\.4582 \(\+3 unpriced\)", text)
    assert "·" * 4 + sparkline([p["requests"] for p in take(db)["per_minute"]])[4:] in text
    assert "web_search" in text and "s-alpha" in text and "r-1 fired 1 minutes before" in text
    assert "Active sessions: 6 (5 most recent)" in text and "s-edge-in" not in text
    narrow = plain(render_snapshot(take(db), width=80), width=80)
    assert all(len(line) <= 80 for line in narrow.splitlines()) and "Requests/min" in narrow


def test_hostile_names_show_literally(tmp_path: Path, frozen_clock: None) -> None:
    spans = [
        Span(1, 1, C - MIN, 100, "[bold]x", "tool", session="[red]s[/red]", service=":smile: svc"),
        Span(1, 2, C - MIN + S, 50, "<b>", "function", parent=1, session="[red]s[/red]", service=":smile: svc"),
    ]
    alert = {**ALERTS[0], "rule": "[blink]rule", "message": "[link=http://x]click[/link] <i>"}
    path = write_store(tmp_path / "hostile.db", spans, [alert])
    colored = Console(file=StringIO(), width=160, force_terminal=True, color_system="truecolor")
    colored.print(render_snapshot(take(path), width=160))
    as_seen = re.sub(r"\x1b\[[0-9;]*m", "", colored.file.getvalue())  # type: ignore[attr-defined]
    result = run("top", "--db", str(path), "--iterations", "1", env=ENV)
    literals = ("[bold]x", "<b>", "[red]s[/red]", ":smile: svc", "[blink]rule", "[link=http://x]click[/link] <i>")
    for text in (as_seen, result.stdout):
        for literal in literals:
            assert literal in text, (literal, text)


def test_empty_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    connect_for_writing(str(path)).close()
    text = plain(render_snapshot(take(path), width=120))
    assert "no spans in the last 5 minutes" in text and "no alerts in the store" in text
    assert "Requests/min" not in text


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads the clock; the test's spans are placed around NOW."""
    monkeypatch.setattr(time, "time_ns", lambda: NOW)


def snapshots_in(output: str) -> list[str]:
    return output.split("\n\notelkit top")


def test_command_prints_the_figures(db: Path, frozen_clock: None) -> None:
    result = run("top", "--db", str(db), "--iterations", "1", env=ENV)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("otelkit top  all services  00:00:30Z\n") and len(snapshots_in(out)) == 1
    assert re.search(r"Requests/min\s+2\.7\b", out) and re.search(r"Error rate\s+10\.7%", out)
    p95 = float(re.search(r"p95\s+([\d,.]+) ms", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert p95 == pytest.approx(2000, rel=0.01)
    assert re.search(r"Tokens/min\s+449\b", out) and "$0.4582 (+3 unpriced)" in out
    assert "Active sessions: 6" in out and "chat gpt-4o" in out and "r-1" in out and "r-60" not in out
    assert "\x1b[" not in out and all(line == line.rstrip() for line in out.splitlines())


def test_command_window_and_service(db: Path, frozen_clock: None) -> None:
    result = run("top", "--db", str(db), "--iterations", "1", "--window", "1m", "--service", "billing", env=ENV)
    assert result.exit_code == 0, result.output
    assert "service billing" in result.stdout
    assert "no spans from service 'billing' in the last 1 minute" in result.stdout
    wide = run("top", "--db", str(db), "--iterations", "1", "--window", "15m", env=ENV)
    spans = sum(s.rate for s in selected(SPANS, C - 15 * MIN, C, None))
    assert re.search(rf"Spans/min\s+{spans / 15.5:.1f}\b", wide.stdout) and "Last 15 minutes" in wide.stdout


def test_each_refresh_reads_the_store_again(db: Path, frozen_clock: None, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    def write_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        write_store(db, [Span(20 + len(waits), 200 + len(waits), C + 20 * S, 10, "late", "command")])

    monkeypatch.setattr(time, "sleep", write_while_waiting)
    result = run("top", "--db", str(db), "--iterations", "3", "--interval", "0.05", env=ENV)
    assert result.exit_code == 0, result.output
    parts = snapshots_in(result.stdout)
    assert waits == [0.05, 0.05] and len(parts) == 3
    for part, requests in zip(parts, (15, 16, 17)):
        assert re.search(rf"Requests\s+{requests}\b", part), part


def test_two_iterations_print_two_snapshots(db: Path) -> None:
    result = run("top", "--db", str(db), "--iterations", "2", "--interval", "0.05", env=ENV)
    assert result.exit_code == 0, result.output
    parts = snapshots_in(result.stdout)
    assert len(parts) == 2 and all("Latest alerts" in part for part in parts)


def test_ctrl_c_exits_quietly(db: Path, frozen_clock: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)
    result = run("top", "--db", str(db), env=ENV)
    assert result.exit_code == 0 and result.stderr == ""
    assert len(snapshots_in(result.stdout)) == 1 and "Requests/min" in result.stdout


def test_on_a_terminal_the_view_is_live(db: Path, frozen_clock: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("otelkit.cli._top_on_terminal", lambda: True)
    result = run("top", "--db", str(db), "--iterations", "2", "--interval", "0.01", env={**ENV, "FORCE_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.stdout  # drawn with terminal control codes, not printed as text
    seen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stdout)
    assert re.search(r"Requests/min\s+2\.7\b", seen) and "[bold]" not in seen


def test_command_on_an_empty_window(db: Path) -> None:
    result = run("top", "--db", str(db), "--iterations", "1", env=ENV)  # the real clock: years after the spans
    assert result.exit_code == 0 and "no spans in the last 5 minutes" in result.stdout
    assert "r-1" in result.stdout


def test_command_errors_are_one_line(db: Path, tmp_path: Path) -> None:
    assert_one_line_error(run("top", "--db", str(tmp_path / "missing.db"), "--iterations", "1"), "no otelkit store at")
    assert not (tmp_path / "missing.db").exists()
    foreign = tmp_path / "customers.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    assert_one_line_error(run("top", "--db", str(foreign), "--iterations", "1"), "not an otelkit store")
    for interval in ("0", "-1", "nan", "inf", "soon", "3601"):
        assert_one_line_error(run("top", "--db", str(db), "--interval", interval), "--interval", f"'{interval}'")
    for window in ("all", "0m", "25h", "2d", "7", "soon", "2026-01-01..2026-01-02"):
        assert_one_line_error(run("top", "--db", str(db), "--window", window), f"invalid window '{window}'")
    assert_one_line_error(run("top", "--db", str(db), "--iterations", "0"), "--iterations")


def test_help_names_every_option_and_figure() -> None:
    result = run("top", "--help")
    assert result.exit_code == 0
    for text in ("--db", "--interval", "--window", "--service", "--iterations", "Requests/min", "Cost/hour", "p95"):
        assert text in result.stdout
    assert "top" in run("--help").stdout
