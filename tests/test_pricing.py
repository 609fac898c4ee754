"""The pricing table: lookups by provider and model, cost arithmetic, policy overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from otelkit import semconv as sc
from otelkit.config import ConfigError, ModelPrice, Policy, load_policy, parse_policy
from otelkit.pricing import PricingTable, cost_usd, current_table, load_table, vendored_table_text


def test_vendored_table_loads_and_is_versioned() -> None:
    table = load_table(Policy())
    assert table.version
    assert "USD" in vendored_table_text()
    assert len(table.tiers) == 1 and len(table.tiers[0]) > 20


@pytest.mark.parametrize(
    ("provider", "model", "entry"),
    [
        ("openai", "gpt-4o", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # longest match, not gpt-4o
        ("azure.ai.openai", "gpt-4.1-nano", "gpt-4.1-nano"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("aws.bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
        (None, "openai/gpt-5-mini", "gpt-5-mini"),
        ("OpenAI", "GPT-4o", None),  # providers are spelled as the conventions do
        ("anthropic", "gpt-4o", None),  # another provider's model
        ("openai", "gpt-4oo", None),  # a prefix must end at a separator
        ("openai", "gpt-5.4", None),  # a newer version is another model, not a snapshot
        ("anthropic", "claude-opus-4-8", None),
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("openai", "gpt-4o-latest", "gpt-4o"),
        ("openai", "totally-new-model", None),
        ("openai", "", None),
    ],
)
def test_lookup_picks_the_most_specific_entry(provider: str | None, model: str, entry: str | None) -> None:
    found = current_table().lookup(provider, model)
    assert (found.model if found else None) == entry


def test_cost_counts_each_input_token_once_at_its_own_price() -> None:
    price = ModelPrice(model="m", input=2.0, cached_input=0.5, cache_write=2.5, output=8.0)
    # 1M input: 300k cache reads, 200k cache writes, 500k plain; 100k output
    assert cost_usd(price, 1_000_000, 100_000, 300_000, 200_000) == pytest.approx(1.0 + 0.15 + 0.5 + 0.8)
    # cached counts larger than the input are clamped: never negative plain input
    assert cost_usd(price, 10, 0, 50) == pytest.approx(10 * 0.5 / 1e6)
    # no cached prices: cached tokens cost the input price
    assert cost_usd(ModelPrice(model="m", input=1.0, output=1.0), 1_000_000, 0, 1_000_000) == pytest.approx(1.0)


def test_price_attributes_uses_the_response_model_first() -> None:
    cost, price = current_table().price_attributes(
        {
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
            sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 1_000_000,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: 0,
        }
    )
    assert price is not None and price.model == "gpt-4o-mini"
    assert cost == pytest.approx(0.15)
    older = {sc.GEN_AI_SYSTEM: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_USAGE_OUTPUT_TOKENS: 10}
    assert current_table().price_attributes(older)[1] is not None  # the older provider attribute works too


def test_policy_entries_win_over_the_table_and_globs_match(tmp_path: Path) -> None:
    policy = parse_policy(
        "pricing:\n  models:\n"
        "    - {provider: openai, model: gpt-4o, input: 1, output: 2}\n"
        "    - {model: 'acme-*', input: 3, output: 4}\n"
    )
    table = load_table(policy)
    assert table.lookup("openai", "gpt-4o-2024-08-06").input == 1  # type: ignore[union-attr]
    assert table.lookup("openai", "gpt-4o-mini").model == "gpt-4o-mini"  # type: ignore[union-attr]
    assert table.lookup("acme", "acme-large-2").input == 3  # type: ignore[union-attr]


def test_policy_table_replaces_the_vendored_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "prices.yaml"
    own.write_text('version: "mine"\nmodels:\n  - {provider: openai, model: house-model, input: 1, output: 1}\n')
    config = tmp_path / "otelkit.yaml"
    config.write_text(f"pricing:\n  table: {own}\n")
    monkeypatch.setenv("OTELKIT_CONFIG", str(config))
    table = current_table()
    assert table.version == "mine"
    assert table.lookup("openai", "house-model") is not None
    assert table.lookup("openai", "gpt-4o") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pricing:\n  models:\n    - {input: 1}\n", "pricing.models[0].model: a model name or pattern is required (line 3)"),
        ("pricing:\n  models:\n    - {model: x, input: -1}\n", "pricing.models[0].input: a price must be zero or more"),
        ("pricing:\n  models:\n    - {model: x, inputs: 1}\n", "unknown key 'pricing.models[0].inputs' (line 3)"),
        ("pricing:\n  models:\n    - {model: x, output: cheap}\n", "pricing.models[0].output: expected a float"),
    ],
)
def test_bad_pricing_entries_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        parse_policy(text)


def test_unreadable_table_file_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "otelkit.yaml"
    config.write_text(f"pricing:\n  table: {tmp_path / 'missing.yaml'}\n")
    with pytest.raises(ConfigError, match="pricing.table: cannot read"):
        load_table(load_policy(config, environ={}))


def test_broken_override_falls_back_to_the_vendored_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "otelkit.yaml"
    config.write_text(f"pricing:\n  table: {tmp_path / 'missing.yaml'}\n")
    monkeypatch.setenv("OTELKIT_CONFIG", str(config))
    assert current_table().lookup("openai", "gpt-4o") is not None
    assert "using the vendored pricing table" in caplog.text


def test_lookup_results_are_cached_per_model() -> None:
    table = PricingTable(tiers=((ModelPrice(model="a", input=1),),))
    assert table.lookup(None, "a-1") is table.lookup(None, "a-1")
    assert table.lookup(None, "b") is None


def test_token_counts_that_are_not_whole_numbers_are_unpriced_not_errors() -> None:
    attrs = {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_USAGE_INPUT_TOKENS: float("inf")}
    assert current_table().price_attributes(attrs) == (None, None)  # unpriced, never a silent $0
