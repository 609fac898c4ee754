"""The ``otelkit`` command line: ``report`` output, ``--output``, and one-line errors for bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from otelkit import __version__
from otelkit.cli import cli
from otelkit.store import StoreWriter, connect_for_writing
from otelkit.store.writer import SPAN_COLUMNS

OTELKIT = Path(sys.executable).parent / "otelkit"


def span_row(span: int, start: int, duration_ms: int, name: str, op_type: str | None,
             status: str = "OK") -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
    values.update(
        trace_id=f"{span:032x}", span_id=f"{span:016x}", name=name, kind="INTERNAL", start_ns=start,
        end_ns=start + duration_ms * 1_000_000, status_code=status,
        attributes=json.dumps({"otelkit.operation.type": op_type} if op_type else {}),
    )
    return tuple(values[c] for c in SPAN_COLUMNS)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store with three recent operations and one span from two days ago."""
    path = tmp_path / "otelkit.db"
    now = time.time_ns()
    StoreWriter(str(path)).write_spans([
        span_row(1, now - 60 * 10**9, 120, "chat model-a", "llm"),
        span_row(2, now - 50 * 10**9, 80, "chat model-a", "llm", status="ERROR"),
        span_row(3, now - 40 * 10**9, 5, "web_search", "tool"),
        span_row(4, now - 30 * 10**9, 1, "load config", None),
        span_row(5, now - 2 * 86_400 * 10**9, 999, "nightly-job", "command"),
    ])  # fmt: skip
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("otelkit: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_json_report_over_the_default_period(db: Path) -> None:
    result = run("report", "--db", str(db), "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["summary"]["spans"] == 4 and document["summary"]["traces"] == 4
    assert document["summary"]["success_rate"] == 0.75
    ops = document["operations"]
    assert [(op["type"], op["name"], op["count"]) for op in ops] == [
        ("llm", "chat model-a", 2), ("tool", "web_search", 1), ("other", "load config", 1),
    ]  # fmt: skip
    assert ops[0]["p50_ms"] == 100.0 and ops[0]["success_rate"] == 0.5
    assert ops[0]["time_share"] == pytest.approx(200 / 206)


def test_period_all_includes_older_spans(db: Path) -> None:
    document = json.loads(run("report", "--db", str(db), "--format", "json", "--period", "all").stdout)
    assert document["summary"]["spans"] == 5
    assert document["operations"][0]["name"] == "nightly-job"


def test_table_report_lists_operations(db: Path) -> None:
    result = run("report", "--db", str(db), "--period", "7d")
    assert result.exit_code == 0, result.output
    for name in ("chat model-a", "web_search", "load config", "nightly-job", "Overview", "p95 ms"):
        assert name in result.stdout
    operations = result.stdout[result.stdout.index("Operations, most frequent first") :]
    assert operations.index("nightly-job") < operations.index("Commands")


def test_default_store_comes_from_the_environment(db: Path) -> None:
    result = run("report", "--format", "json", env={"OTELKIT_SQLITE_PATH": str(db)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["spans"] == 4


def test_output_writes_plain_text_to_a_file(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    result = run("report", "--db", str(db), "--output", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    text = target.read_text(encoding="utf-8")
    assert "web_search" in text and "\x1b[" not in text
    as_json = tmp_path / "report.json"
    assert run("report", "--db", str(db), "--format", "json", "--output", str(as_json)).exit_code == 0
    assert json.loads(as_json.read_text())["summary"]["spans"] == 4


def test_store_without_spans_is_an_empty_report(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    connect_for_writing(str(path)).close()
    table = run("report", "--db", str(path), "--period", "30d")
    assert table.exit_code == 0 and "no spans in the last 30d" in table.stderr
    as_json = run("report", "--db", str(path), "--format", "json")
    assert as_json.exit_code == 0
    document = json.loads(as_json.stdout)
    assert {key: document[key] for key in ("summary", "operations")} == {
        "summary": {"spans": 0, "traces": 0, "sessions": 0, "success_rate": None,
                    "p50_ms": None, "p95_ms": None, "p99_ms": None, "input_tokens": 0,
                    "output_tokens": 0, "cost_usd": 0.0, "unpriced_llm_calls": 0},
        "operations": [],
    }  # fmt: skip
    assert "no spans in the last 24h" in as_json.stderr


def test_missing_store(tmp_path: Path) -> None:
    assert_one_line_error(run("report", "--db", str(tmp_path / "nope.db")), "no otelkit store at", "nope.db")


def test_sqlite_file_that_is_not_an_otelkit_store(tmp_path: Path) -> None:
    path = tmp_path / "customers.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    assert_one_line_error(run("report", "--db", str(path)), "not an otelkit store")


def test_plain_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("meeting notes, definitely not SQLite\n" * 50)
    assert_one_line_error(run("report", "--db", str(path)), "not an otelkit store")


def test_empty_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    path.touch()
    assert_one_line_error(run("report", "--db", str(path)), "empty SQLite file")


@pytest.mark.parametrize("period", ["yesterday", "0h", "7"])
def test_bad_period(db: Path, period: str) -> None:
    assert_one_line_error(run("report", "--db", str(db), "--period", period), f"'{period}'")


def test_unwritable_output(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "report.txt"
    assert_one_line_error(run("report", "--db", str(db), "--output", str(target)), "cannot write", "report.txt")


def test_bad_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "otelkit.yaml"
    policy.write_text("store:\n  pth: x.db\n")
    assert_one_line_error(run("report", env={"OTELKIT_CONFIG": str(policy)}), "store.pth", "line 2")


def test_usage_mistakes_are_one_line(db: Path) -> None:
    assert_one_line_error(run("report", "--db", str(db), "--format", "xml"), "--format", "'xml'")
    assert_one_line_error(run("report", "--bogus"), "--bogus", "otelkit report --help")
    assert_one_line_error(run("no-such-command"), "no-such-command")


def test_help_and_version() -> None:
    top = run("--help")
    assert top.exit_code == 0 and "report" in top.stdout
    report_help = run("report", "--help")
    assert report_help.exit_code == 0
    for text in ("--db", "--period", "--format", "--output", "--section", "--service", "--jaeger-url", "overview",
                 "recommendations", "SINCE..UNTIL", "rollup"):
        assert text in report_help.stdout
    version = run("--version")
    assert version.exit_code == 0 and version.stdout.strip() == f"otelkit {__version__}"


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run([str(OTELKIT), "report", "--db", str(tmp_path / "none.db")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == f"otelkit: error: no otelkit store at {tmp_path / 'none.db'}\n"
    assert done.stdout == ""
