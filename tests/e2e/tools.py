"""Where the Go-built tools are: the Collector (otelcol-otelkit), Jaeger and telemetrygen.

Each is taken from ``OTELKIT_OTELCOL`` / ``OTELKIT_JAEGER`` / ``OTELKIT_TELEMETRYGEN`` when set,
else from what ``scripts/build-e2e-tools --check`` finds in its cache. A missing one skips the
test with one line saying why; ``OTELKIT_E2E_REQUIRED=1`` (set by ``.ci/run``) makes it a failure.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.support import REPO, clean_env

# Read at import: tests/conftest.py's autouse fixture clears every OTELKIT_* variable before a test.
_SETTINGS = {name: os.environ.get(name) for name in (
    "OTELKIT_OTELCOL", "OTELKIT_JAEGER", "OTELKIT_TELEMETRYGEN", "OTELKIT_E2E_CACHE")}  # fmt: skip
E2E_REQUIRED = os.environ.get("OTELKIT_E2E_REQUIRED") == "1"


@dataclass(frozen=True)
class Tool:
    what: str  # for the skip line
    variable: str
    cached_as: str  # the name ``build-e2e-tools --check`` prints


TOOLS = {
    "otelcol": Tool("Collector binary (otelcol-otelkit)", "OTELKIT_OTELCOL", "otelcol-otelkit"),
    "jaeger": Tool("Jaeger binary", "OTELKIT_JAEGER", "jaeger"),
    "telemetrygen": Tool("telemetrygen binary", "OTELKIT_TELEMETRYGEN", "telemetrygen"),
}


@functools.cache
def _cached_tools() -> dict[str, str]:
    """``name -> path`` of the tools the build script's cache holds; empty unless all are built."""
    cache = {"OTELKIT_E2E_CACHE": _SETTINGS["OTELKIT_E2E_CACHE"]} if _SETTINGS["OTELKIT_E2E_CACHE"] else {}
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "build-e2e-tools"), "--check"],
            env=clean_env(**cache), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def find_tool(key: str) -> Path:
    """The binary, or one skip line saying why not (a failure when OTELKIT_E2E_REQUIRED=1)."""
    tool = TOOLS[key]
    configured = _SETTINGS[tool.variable]
    found = configured or _cached_tools().get(tool.cached_as)
    if found and Path(found).is_file() and os.access(found, os.X_OK):
        return Path(found)
    where = f" at {configured} ({tool.variable})" if configured else ""
    reason = f"{tool.what} not found{where}: run scripts/build-e2e-tools (needs Go) or set {tool.variable}"
    if E2E_REQUIRED:
        pytest.fail(f"{reason} [OTELKIT_E2E_REQUIRED=1]", pytrace=False)
    pytest.skip(reason)
