"""End to end: an unmodified click + jinja2 + openai + anthropic program under ``opentelemetry-instrument``.

The program (``examples/agent_cli.py``) knows nothing of otelkit: it reads the providers' base
URLs and keys from the environment, as the SDKs do, and talks to the local fakes this test starts.
"""

from __future__ import annotations

import json
import subprocess
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REPO
from otelkit.store import connect_for_reading
from providers.anthropic_server import FakeAnthropicServer
from providers.openai_server import FakeOpenAIServer



@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer]]:
    with FakeOpenAIServer(reply_text="A one-line summary.") as oai, FakeAnthropicServer(reply_text="Also a summary.") as ant:
        yield oai, ant


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["opentelemetry-instrument", "python", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_unmodified_agent_cli_is_traced_with_tokens_and_costs(
    tmp_path: Path, subprocess_env: dict[str, str], providers: tuple[FakeOpenAIServer, FakeAnthropicServer]
) -> None:
    oai, ant = providers
    shutil.copy(REPO / "examples" / "agent_cli.py", tmp_path / "agent.py")
    db = tmp_path / "agent.db"
    env = {
        **subprocess_env,
        "OTELKIT_SQLITE_PATH": str(db),
        "OPENAI_BASE_URL": oai.base_url, "OPENAI_API_KEY": "test",
        "ANTHROPIC_BASE_URL": ant.base_url, "ANTHROPIC_API_KEY": "test",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_SERVICE_NAME": "agent",
        # contrib's openai-v2 is installed with the test extras; a user who has only otelkit gets these spans
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",
    }  # fmt: skip
    asked = run(["agent.py", "ask", "releases", "--api-key-hint", "sk-secret"], env, tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "A one-line summary.\n"
    failed = run(["agent.py", "give-up", "--code", "3"], env, tmp_path)
    assert failed.returncode == 3, failed.stderr

    conn = connect_for_reading(str(db))
    rows = conn.execute(
        "SELECT name, operation_type, provider, model, input_tokens, output_tokens, cache_read_tokens, cost_usd,"
        " cost_status, trace_id, attributes, status_code FROM spans"
    ).fetchall()
    by_name: dict[str, list[tuple]] = {}
    for row in rows:
        by_name.setdefault(row[0], []).append(row)

    # click: the program and its subcommand, exit codes as the shell saw them; no parameter values
    (root_ok, root_failed) = sorted(by_name["agent.py"], key=lambda r: json.loads(r[10])["process.exit.code"])
    assert json.loads(root_ok[10])["process.exit.code"] == 0
    assert json.loads(root_failed[10])["process.exit.code"] == 3 and root_failed[11] == "ERROR"
    (ask,) = by_name["agent.py ask"]
    assert ask[1] == "command" and json.loads(ask[10])["otelkit.command.parameters"] == ["api_key_hint", "topic"]
    assert all("sk-secret" not in row[10] for row in rows)

    # jinja2: a compile, then three renders, the later ones from the cache
    renders = by_name["prompt.txt"]
    assert sorted(json.loads(r[10])["otelkit.template.cache_hit"] for r in renders) == [False, True, True]
    assert len(by_name["compile prompt.txt"]) == 1

    # LLM calls: one span each, tokens and cost
    (mini,) = by_name["chat gpt-4o-mini"]
    assert mini[1:9] == ("llm", "openai", "gpt-4o-mini", 12, 8, 4, pytest.approx((8 * 0.15 + 4 * 0.075 + 8 * 0.6) / 1e6), "priced")
    (streamed,) = by_name["chat gpt-4o"]
    assert streamed[8] == "estimated" and streamed[7] > 0
    (claude,) = by_name["chat claude-haiku-4-5"]
    assert claude[1:9] == ("llm", "anthropic", "claude-haiku-4-5", 33, 12, 5,
                           pytest.approx((25 * 1 + 5 * 0.1 + 3 * 1.25 + 12 * 5) / 1e6), "priced")  # fmt: skip
    assert {r[9] for r in (mini, streamed, claude, ask, root_ok)} == {ask[9]}  # one trace for the command
    assert not [r for r in rows if r[0] == "anthropic.messages.create"]

    # logs join the trace
    (log_trace,) = conn.execute("SELECT trace_id FROM log_records WHERE body = 'asked about releases'").fetchone()
    assert log_trace == ask[9]
