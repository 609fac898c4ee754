"""The README's demo: the example pipeline under opentelemetry-instrument, then otelkit report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import BIN, REPO


def test_example_pipeline_report(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    db = tmp_path / "demo.db"
    env = {**subprocess_env, "OTELKIT_SQLITE_PATH": str(db), "OTELKIT_AUTOWRAP": "release_helpers:*_artifact",
           "OTEL_SERVICE_NAME": "release-pipeline"}
    run = subprocess.run(["opentelemetry-instrument", "python", str(REPO / "examples" / "release_pipeline.py"),
                          "--releases", "6"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("published ")
    report = subprocess.run([str(BIN / "otelkit"), "report", "--db", str(db), "--period", "all", "--format", "json"],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    assert document["summary"]["sessions"] == 6 and document["summary"]["traces"] == 6
    types = {op["type"] for op in document["operations"]}
    assert types == {"command", "step", "template", "condition", "tool", "llm", "agent", "function"}
    commands = [op for op in document["operations"] if op["type"] == "command"]
    assert commands == [next(op for op in document["operations"] if op["name"] == "release")]
    assert commands[0]["count"] == 6
