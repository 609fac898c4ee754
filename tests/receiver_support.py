"""Runs ``otelkit serve`` in a subprocess on free 127.0.0.1 ports, for the receiver tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 30.0
_FIRST_LINE = re.compile(r"^otelkit serve: (?:grpc (?P<grpc>[\d.]+:\d+))?(?:, )?(?:http (?P<http>https?://[\d.]+:\d+))?; store ")


@dataclass
class Served:
    """A running ``otelkit serve``: its endpoints, its store, and its output so far."""

    process: subprocess.Popen[str]
    db: Path
    grpc: str | None
    http: str | None
    lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout_s)

    def output(self) -> str:
        return "\n".join(self.lines)


def start_server(db: Path, *extra: str, env: dict[str, str] | None = None) -> Served:
    """``otelkit serve --db DB`` on port 0 for both protocols (unless ``extra`` says otherwise),
    returned once its first line names the ports."""
    args = [sys.executable, "-c", "from otelkit.cli import main; main()", "serve", "--db", str(db)]
    if "--grpc-endpoint" not in extra:
        args += ["--grpc-endpoint", "127.0.0.1:0"]
    if "--http-endpoint" not in extra:
        args += ["--http-endpoint", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    first: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if not first:
                first.append(line)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.wait(0.05):
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("otelkit serve printed nothing")
    match = _FIRST_LINE.match(first[0]) if first else None
    if match is None:
        process.kill()
        process.wait(10)
        raise AssertionError(f"otelkit serve did not start: {lines}")
    return Served(process, db, match.group("grpc"), match.group("http"), lines)
