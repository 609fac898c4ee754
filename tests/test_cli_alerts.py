"""``otelkit alerts``: list (table, json, filters), ack, rules, and one-line errors for bad input."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from otelkit.processors.alert_rules import AlertEvent
from otelkit.processors.alert_sinks import alert_row
from otelkit.store import StoreWriter
from otelkit.store.schema import MIGRATIONS, SCHEMA_VERSION
from test_cli import assert_one_line_error, run

NOW = time.time_ns()
HOUR = 3600 * 10**9


def alert(uid: str, *, rule: str = "slow-llm", kind: str = "percentile", state: str = "firing",
          started_ns: int = NOW - HOUR // 2, value: float = 2500.0, threshold: float = 2000.0,
          message: str = "p95 of 40 spans over 300 s is 2,500 ms > 2,000 ms") -> AlertEvent:
    return AlertEvent(
        uid=uid, rule=rule, kind=kind, severity="warning", state=state, group_key="model=gpt-4o",
        value=value, threshold=threshold, message=message, started_ns=started_ns, fired_ns=started_ns,
        resolved_ns=started_ns + 10**9 if state == "resolved" else None, trace_id="ab" * 16, span_id="cd" * 8,
    )  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store with a firing alert, a resolved one, and one that started two days ago."""
    path = tmp_path / "otelkit.db"
    StoreWriter(str(path)).write_alerts([
        alert_row(alert("u1")),
        alert_row(alert("u2", rule="errors", kind="error_rate", state="resolved", value=0.25, threshold=0.1,
                        message="error rate 25.0% of 40 spans over 300 s > 10.0%", started_ns=NOW - HOUR)),
        alert_row(alert("u3", rule="budget", kind="daily_cost", value=21.5, threshold=20.0,
                        message="cost $21.5000 on 2026-01-01 (UTC) > budget $20.00", started_ns=NOW - 48 * HOUR)),
    ])  # fmt: skip
    return path


def test_list_shows_every_alert_newest_first(db: Path) -> None:
    result = run("alerts", "list", "--db", str(db))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = [line for line in lines if "slow-llm" in line or "errors" in line or "budget" in line]
    assert [("slow-llm" in r, "errors" in r, "budget" in r) for r in rows] == [
        (True, False, False), (False, True, False), (False, False, True)
    ]
    assert "2,500.0 ms" in rows[0] and "2,000.0 ms" in rows[0] and "25.0%" in rows[1] and "$21.5000" in rows[2]
    assert "model=gpt-4o" in rows[0] and "p95 of 40 spans" in rows[0]


def test_list_filters_by_state_and_period(db: Path) -> None:
    firing = json.loads(run("alerts", "list", "--db", str(db), "--state", "firing", "--format", "json").stdout)
    assert [a["rule"] for a in firing["alerts"]] == ["slow-llm", "budget"]
    recent = json.loads(run("alerts", "list", "--db", str(db), "--period", "24h", "--format", "json").stdout)
    assert [a["rule"] for a in recent["alerts"]] == ["slow-llm", "errors"]
    resolved = run("alerts", "list", "--db", str(db), "--state", "resolved", "--period", "10m")
    assert resolved.exit_code == 0 and resolved.stdout == "no resolved alerts in the last 10m\n"


def test_list_json_has_a_stable_shape(db: Path) -> None:
    document = json.loads(run("alerts", "list", "--db", str(db), "--format", "json").stdout)
    first = document["alerts"][0]
    assert set(first) == {
        "id", "rule", "kind", "severity", "state", "group_key", "started_ns", "fired_ns", "resolved_ns", "value",
        "threshold", "message", "trace_id", "span_id", "notifications", "acknowledged_at", "acknowledged_by",
    }  # fmt: skip
    assert (first["rule"], first["value"], first["trace_id"], first["acknowledged_by"]) == (
        "slow-llm", 2500.0, "ab" * 16, None
    )


def test_list_on_a_store_from_before_alerting_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA application_id = 0x6F746B31")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    result = run("alerts", "list", "--db", str(path))
    assert result.exit_code == 0 and result.stdout == "no alerts in the store\n"
    assert json.loads(run("alerts", "list", "--db", str(path), "--format", "json").stdout) == {"alerts": []}
    assert_one_line_error(run("alerts", "ack", "1", "--db", str(path)), "no alert with id 1")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # reading it upgraded it


def test_ack_records_who_once(db: Path) -> None:
    first = run("alerts", "ack", "1", "--by", "alice", "--db", str(db))
    assert first.exit_code == 0 and first.stdout == "otelkit: acknowledged alert 1 (slow-llm) as alice\n"
    again = run("alerts", "ack", "1", "--by", "bob", "--db", str(db))
    assert again.exit_code == 0 and "already acknowledged by alice" in again.stdout
    row = sqlite3.connect(db).execute("SELECT acknowledged_by, acknowledged_at FROM alerts WHERE id = 1").fetchone()
    assert row[0] == "alice" and row[1] >= NOW
    listed = json.loads(run("alerts", "list", "--db", str(db), "--format", "json").stdout)["alerts"]
    assert [a["acknowledged_by"] for a in listed] == ["alice", None, None]
    assert "alice" in run("alerts", "list", "--db", str(db)).stdout


def test_ack_defaults_to_the_current_user(db: Path) -> None:
    result = run("alerts", "ack", "2", "--db", str(db), env={"LOGNAME": "carol"})
    assert result.exit_code == 0 and result.stdout.endswith("as carol\n")


def test_alerts_bad_input_is_one_line(db: Path, tmp_path: Path) -> None:
    assert_one_line_error(run("alerts", "ack", "99", "--db", str(db)), "no alert with id 99 in")
    assert_one_line_error(run("alerts", "ack", "one", "--db", str(db)), "'one' is not a valid integer")
    assert_one_line_error(run("alerts", "ack", "1", "--by", " ", "--db", str(db)), "--by: expected a name")
    assert_one_line_error(run("alerts", "ack", "1", "--db", str(tmp_path / "missing.db")), "no otelkit store at")
    assert not (tmp_path / "missing.db").exists()
    assert_one_line_error(run("alerts", "list", "--db", str(tmp_path / "missing.db")), "no otelkit store at")
    assert_one_line_error(run("alerts", "list", "--db", str(db), "--period", "3y"), "3y")
    assert_one_line_error(run("alerts", "list", "--db", str(db), "--state", "open"), "'open' is not one of")
    assert_one_line_error(run("alerts", "frobnicate"), "No such command 'frobnicate'")


POLICY = """\
version: 1
store: {path: /tmp/somewhere/otelkit.db}
alerts:
  rules:
    - name: slow-llm
      kind: percentile
      threshold: 5000
      percentile: 99
      select: {operation_type: llm}
      group_by: [model]
    - {name: budget, kind: daily_cost, threshold: 20, severity: critical}
  webhooks:
    - {url: "https://hooks.example.com/services/T0/B0/s3cr3t", format: slack, headers: ["Authorization: Bearer xyz"]}
"""


def test_rules_prints_the_effective_rules_with_defaults(tmp_path: Path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_text(POLICY)
    result = run("alerts", "rules", env={"OTELKIT_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert "p99 over 300 s is more than 5,000 ms (at least 20 spans)" in result.stdout
    assert "cost of the UTC day is more than $20.00" in result.stdout and "critical" in result.stdout
    assert "operation_type=llm" in result.stdout and "300 s" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "alerts go to: log (otelkit.alerts), store /tmp/somewhere/otelkit.db, webhook https://hooks.example.com (slack)"
    )
    assert "s3cr3t" not in result.stdout and "xyz" not in result.stdout
    document = json.loads(run("alerts", "rules", "--format", "json", env={"OTELKIT_CONFIG": str(config)}).stdout)
    slow = document["rules"][0]
    assert (slow["window_s"], slow["min_count"], slow["occurrences"], slow["min_interval_s"]) == (300.0, 20, 1, 300.0)
    assert document["sinks"]["webhooks"][0]["headers"] == ["Authorization"]
    assert "s3cr3t" not in json.dumps(document)


def test_rules_without_a_policy_and_with_a_bad_one(tmp_path: Path) -> None:
    empty = run("alerts", "rules")
    assert empty.exit_code == 0 and empty.stdout == "no alert rules in the policy (add them under alerts.rules)\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nalerts:\n  rules:\n    - {name: r, kind: latency}\n")
    assert_one_line_error(run("alerts", "rules", env={"OTELKIT_CONFIG": str(bad)}),
                          "alerts.rules[0].threshold: a latency rule needs a threshold")
