"""Regenerates ``docs/report-example.html``: the HTML report of the demo pipeline.

Runs ``examples/release_pipeline.py`` under ``opentelemetry-instrument`` into a temporary store
(the README's first command, with more releases), then renders ``otelkit report --format html``
of it, with trace ids linked to a local Jaeger UI.

    python examples/make_report_example.py [--releases 60] [--output docs/report-example.html]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=60, help="how many releases the demo runs")
    parser.add_argument("--output", default=str(HERE.parent / "docs" / "report-example.html"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        db = str(Path(scratch) / "demo.db")
        env = {
            **os.environ,
            "OTELKIT_SQLITE_PATH": db,
            "OTELKIT_AUTOWRAP": "release_helpers:*_artifact",
            "OTEL_SERVICE_NAME": "release-pipeline",
            "OTEL_TRACES_EXPORTER": "sqlite",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        demo = [str(BIN / "opentelemetry-instrument"), sys.executable, str(HERE / "release_pipeline.py"),
                "--releases", str(args.releases)]  # fmt: skip
        subprocess.run(demo, env=env, check=True, cwd=HERE)
        report = [str(BIN / "otelkit"), "report", "--db", db, "--period", "all", "--format", "html",
                  "--jaeger-url", "http://localhost:16686", "--output", args.output]  # fmt: skip
        subprocess.run(report, env=env, check=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
