"""``otelkit report --reprice``: stored GenAI costs recomputed from the current pricing table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from otelkit import semconv as sc
from otelkit.cli import cli
from otelkit.store import StoreWriter, connect_for_reading
from otelkit.store.writer import SPAN_COLUMNS

DAY = 86_400 * 10**9


def llm_row(span: int, start: int, attributes: dict[str, Any]) -> tuple[Any, ...]:
    values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
    values.update(
        trace_id=f"{span:032x}", span_id=f"{span:016x}", name="chat", kind="CLIENT", start_ns=start,
        end_ns=start + 1_000_000, status_code="OK",
        attributes=json.dumps({sc.GEN_AI_OPERATION_NAME: "chat", **attributes}),
    )  # fmt: skip
    return tuple(values[c] for c in SPAN_COLUMNS)


def usage(provider: str, model: str, tokens_in: int, tokens_out: int, **extra: Any) -> dict[str, Any]:
    return {
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: model,
        sc.GEN_AI_USAGE_INPUT_TOKENS: tokens_in,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: tokens_out,
        **extra,
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "otelkit.db"
    now = time.time_ns()
    StoreWriter(str(path)).write_spans([
        # priced with yesterday's (wrong) price
        llm_row(1, now - 3_600 * 10**9, usage("openai", "gpt-4o", 1_000_000, 0, **{sc.GEN_AI_USAGE_COST: 99.0, sc.COST_STATUS: "priced"})),
        # a model that had no price when it ran
        llm_row(2, now - 3_600 * 10**9, usage("acme", "acme-1", 1_000_000, 1_000_000, **{sc.COST_STATUS: "unpriced"})),
        # estimated tokens stay estimated
        llm_row(3, now - 3_600 * 10**9, usage("openai", "gpt-4o-mini", 0, 1_000_000, **{sc.COST_STATUS: "estimated"})),
        # outside a 24h window
        llm_row(4, now - 3 * DAY, usage("openai", "gpt-4o", 1_000_000, 0, **{sc.GEN_AI_USAGE_COST: 99.0, sc.COST_STATUS: "priced"})),
    ])  # fmt: skip
    return path


def stored(path: Path) -> dict[int, tuple[Any, Any]]:
    conn = connect_for_reading(str(path))
    rows = conn.execute("SELECT span_id, cost_usd, cost_status FROM spans").fetchall()
    return {int(span_id, 16): (None if cost is None else round(cost, 6), status) for span_id, cost, status in rows}


def test_reprice_applies_the_current_table_to_the_period(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "otelkit.yaml"
    policy.write_text("pricing:\n  models:\n    - {provider: acme, model: acme-1, input: 1, output: 2}\n")
    monkeypatch.setenv("OTELKIT_CONFIG", str(policy))
    result = CliRunner().invoke(cli, ["report", "--db", str(store), "--period", "24h", "--reprice", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "re-priced 3 LLM calls" in result.stderr and "3 changed, 0 unpriced" in result.stderr
    assert stored(store) == {
        1: (2.5, "priced"),  # gpt-4o input at $2.50/M
        2: (3.0, "priced"),  # the policy's new acme price
        3: (0.6, "estimated"),  # gpt-4o-mini output at $0.60/M
        4: (99.0, "priced"),  # outside the window: untouched
    }
    summary = json.loads(result.stdout)["summary"]
    assert summary["cost_usd"] == pytest.approx(6.1)
    assert summary["unpriced_llm_calls"] == 0
    assert summary["input_tokens"] == 2_000_000 and summary["output_tokens"] == 2_000_000


def test_reprice_marks_models_without_a_price_unpriced(store: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--db", str(store), "--period", "all", "--reprice", "--format", "json"])
    assert result.exit_code == 0, result.output
    after = stored(store)
    assert after[2] == (None, "unpriced") and after[4] == (2.5, "priced")
    assert json.loads(result.stdout)["summary"]["unpriced_llm_calls"] == 1
    again = CliRunner().invoke(cli, ["report", "--db", str(store), "--period", "all", "--reprice"])
    assert "0 changed, 1 unpriced" in again.stderr


def test_reprice_with_a_bad_policy_is_a_one_line_error(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "otelkit.yaml"
    policy.write_text("pricing:\n  models:\n    - {model: x, input: free}\n")
    monkeypatch.setenv("OTELKIT_CONFIG", str(policy))
    result = CliRunner().invoke(cli, ["report", "--db", str(store), "--reprice"])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "pricing.models[0].input" in result.stderr
    assert stored(store)[1] == (99.0, "priced")


def test_reprice_needs_an_existing_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--db", str(tmp_path / "none.db"), "--reprice"])
    assert result.exit_code == 2 and "no otelkit store" in result.stderr
    assert not (tmp_path / "none.db").exists()
