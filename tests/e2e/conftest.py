"""The real binaries the end-to-end tests run, and fixtures that run them.

The Collector (otelcol-otelkit), Jaeger and telemetrygen are built with Go by
``scripts/build-e2e-tools`` into a cache outside the repository. Each is taken from
``OTELKIT_OTELCOL`` / ``OTELKIT_JAEGER`` / ``OTELKIT_TELEMETRYGEN`` when set, else from what
``scripts/build-e2e-tools --check`` finds in the cache. Where one is missing (no Go on a
laptop), each test that needs it skips with one line saying why; ``OTELKIT_E2E_REQUIRED=1``
(set by ``.ci/run``) turns that skip into a failure, so CI cannot pass without running them.

Every process a fixture starts is stopped at teardown, and a failing test shows their logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Generator, Iterator

import pytest

from e2e.support import Collector, Jaeger, Serve
from e2e.tools import find_tool


@pytest.fixture(scope="session")
def otelcol_bin() -> Path:
    return find_tool("otelcol")


@pytest.fixture(scope="session")
def jaeger_bin() -> Path:
    return find_tool("jaeger")


@pytest.fixture(scope="session")
def telemetrygen_bin() -> Path:
    return find_tool("telemetrygen")


# --- logs of failing tests ------------------------------------------------------------------

Log = tuple[str, Callable[[], str]]
_LOGS = pytest.StashKey[list[Log]]()
_SESSION_LOGS: list[Log] = []


def show_log_on_failure(node: pytest.Item, name: str, log: Callable[[], str]) -> None:
    node.stash.setdefault(_LOGS, []).append((name, log))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report carries the output of every process it ran (and the session's Jaeger)."""
    report: pytest.TestReport = yield
    if report.failed:
        for name, log in [*item.stash.get(_LOGS, []), *_SESSION_LOGS]:
            report.sections.append((f"{name} log", log() or "(empty)"))
    return report


# --- processes ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def jaeger(jaeger_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    """One Jaeger for the session (in-memory storage); each test sends under its own service name."""
    running = Jaeger(jaeger_bin, tmp_path_factory.mktemp("jaeger"))
    entry: Log = ("jaeger (session)", lambda: running.process.log())
    _SESSION_LOGS.append(entry)
    try:
        running.start()
        yield running
    finally:
        running.process.stop()
        _SESSION_LOGS.remove(entry)


@pytest.fixture
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Serve]:
    """``otelkit serve`` into ``tmp_path/otelkit.db``, running (tests may stop and restart it)."""
    server = Serve(tmp_path / "otelkit.db")
    show_log_on_failure(request.node, "otelkit serve", server.log)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def start_collector(
    request: pytest.FixtureRequest, tmp_path: Path, otelcol_bin: Path, jaeger: Jaeger, serve: Serve
) -> Iterator[Callable[[Path], Collector]]:
    """Starts the Collector on a config file, exporting to the session's Jaeger and this test's
    ``otelkit serve``; stopped before them at teardown."""
    started: list[Collector] = []

    def start(config: Path) -> Collector:
        assert serve.grpc is not None
        collector = Collector(otelcol_bin, config, tmp_path, jaeger=jaeger.otlp_endpoint, serve=serve.grpc)
        started.append(collector)
        show_log_on_failure(request.node, "collector", lambda: collector.process.log())
        collector.start()
        return collector

    try:
        yield start
    finally:
        for collector in started:
            collector.process.stop()
