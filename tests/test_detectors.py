"""The sanitize rules as data: every detector's positives and negatives, key patterns, presets."""

from __future__ import annotations

import re

import pytest

from otelkit.processors.detectors import BUILTIN, CHECKS, SAFE_KEYS, Rule, rules_for
from otelkit.processors.sanitize import Scrubber
from otelkit.sanitize_settings import BUILTIN_RULES, STRICT_EXTRA_RULES, PatternRule, RuleMode, SanitizeSettings

BALANCED = Scrubber.from_settings(SanitizeSettings())
STRICT = Scrubber.from_settings(SanitizeSettings(preset="strict"))

FAKE = {
    "openai_key": "sk-proj-Xa12bC34dE56fG78hI90jK12lM34nO56pQ78",
    "openai_legacy": "sk-" + "A1b2C3d4E5" * 4 + "T3BlbkFJ",
    "anthropic_key": "sk-ant-api03-" + "Zy98Xw76Vu54" * 3 + "-AbCdEf",
    "github_token": "ghp_" + "a1B2c3D4e5F6" * 3,
    "github_pat": "github_pat_11ABCDEFG0" + "x1Y2z3" * 6,
    "gitlab_token": "glpat-" + "Ab3dE6gH9jK2mN5pQ8sT",
    "slack_token": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "stripe_key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "google_api_key": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
    "-----END RSA PRIVATE KEY-----"
)


def redacted(scrubber: Scrubber, text: str) -> str:
    return scrubber.scrub_text(text)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (f"calling with {FAKE['openai_key']} now", "openai_key"),
        (FAKE["openai_legacy"], "openai_key"),
        (FAKE["anthropic_key"], "anthropic_key"),
        (f"token {FAKE['github_token']}", "github_token"),
        (FAKE["github_pat"], "github_token"),
        (FAKE["gitlab_token"], "gitlab_token"),
        (FAKE["slack_token"], "slack_token"),
        ("https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX", "slack_token"),
        (FAKE["stripe_key"], "stripe_key"),
        (FAKE["google_api_key"], "google_api_key"),
        (f"key id {FAKE['aws_access_key']}", "aws_access_key"),
        (f"jwt={FAKE['jwt']}", "jwt"),
        ("mail jane.doe+ops@example.co.uk today", "email"),
        ("card 4111 1111 1111 1111", "credit_card"),
        ("card 4111-1111-1111-1111", "credit_card"),
        ("card 5555555555554444", "credit_card"),
        ("ssn 123-45-6789", "us_ssn"),
        ("Cookie: sessionid=abc123def; theme=dark", "session_cookie"),
    ],
)
def test_value_detectors_find_their_secret(text: str, rule: str) -> None:
    secret = next((v for v in FAKE.values() if v in text), None)
    out = redacted(BALANCED, text)
    assert f"[REDACTED:{rule}]" in out
    if secret is not None:
        assert secret not in out


@pytest.mark.parametrize(
    "text",
    [
        "sk-this-is-a-hyphenated-phrase-not-a-key",  # no digits: prose, not a key
        "task-1234567890123456789012345",  # 'sk-' inside a word
        "ghp_short",
        "glpat-short",
        "xoxb-1",
        "sk_live_short",
        "AIzaShort",
        "AKIA1234",
        "eyJhbGciOiJIUzI1NiJ9",  # a JWT header alone
        "user@localhost",
        "pip install pkg@1.2.3",
        "@decorator",
        "card 4111 1111 1111 1112",  # Luhn fails
        "ns 1795400000000000000",  # a timestamp, not a card
        "ssn 000-12-3456",
        "ssn 666-12-3456",
        "ssn 912-34-5678",
        "ssn 123-00-4567",
        "ssn 123-45-0000",
        "released 2024-01-15",
        "author: Jane Doe",
        "password = read_password()",  # code in a stack trace
        'headers = {"Authorization": f"Bearer {token}"}',
        '{"max_tokens": 100, "token_count": n, "refresh_token_expires_in": 3600}',
        "the bearer bonds",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
        "https://api.openai.com/v1/chat/completions",
        "gpt-4o-2024-08-06",
        "otelkit.operation.type=step",
        "10.0.0.1 and fe80::1",  # IP addresses are kept in balanced
    ],
)
def test_clean_text_is_left_alone(text: str) -> None:
    assert redacted(BALANCED, text) == text


def test_anthropic_key_is_named_as_such_not_as_openai() -> None:
    assert redacted(BALANCED, FAKE["anthropic_key"]) == "[REDACTED:anthropic_key]"


def test_pem_private_key_block_is_redacted_whole_even_when_cut_off() -> None:
    out = redacted(BALANCED, f"key:\n{PEM}\nafter")
    assert out == "key:\n[REDACTED:private_key]\nafter"
    cut = redacted(BALANCED, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA")
    assert cut == "[REDACTED:private_key]"


def test_aws_secret_key_only_when_labelled() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    labelled = redacted(BALANCED, f"aws_secret_access_key = {secret}")
    assert labelled == "aws_secret_access_key = [REDACTED:aws_secret_key]"
    assert redacted(BALANCED, f"blob {secret}") == f"blob {secret}"


def test_bearer_tokens_keep_the_scheme() -> None:
    assert redacted(BALANCED, "Authorization: Bearer abc.def-123456") == "Authorization: Bearer [REDACTED:bearer_token]"


def test_labelled_secrets_keep_the_label() -> None:
    assert redacted(BALANCED, "db_password: hunter2, user=bob") == "db_password: [REDACTED:labelled_secret], user=bob"
    assert redacted(BALANCED, 'X-Api-Key="k-77a"') == 'X-Api-Key="[REDACTED:labelled_secret]"'
    assert redacted(BALANCED, "secret_key: s3cr3t") == "secret_key: [REDACTED:labelled_secret]"
    assert redacted(BALANCED, "Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic [REDACTED:labelled_secret]"


def test_url_userinfo_and_sensitive_query_values() -> None:
    dsn = redacted(BALANCED, "postgres://admin:s3cret@db.internal:5432/app")
    assert dsn == "postgres://[REDACTED:url_userinfo]@db.internal:5432/app"
    url = redacted(BALANCED, "https://x.example/cb?code=abc&state=ok&X-Amz-Signature=f00d&page=2")
    assert url == "https://x.example/cb?code=[REDACTED:url_query]&state=ok&X-Amz-Signature=[REDACTED:url_query]&page=2"


@pytest.mark.parametrize(
    ("text", "rule"),
    [("from 10.0.0.1", "ipv4"), ("from 2001:db8::8a2e:370:7334", "ipv6"), ("loopback ::1", "ipv6")],
)
def test_ip_addresses_only_when_enabled(text: str, rule: str) -> None:
    assert redacted(BALANCED, text) == text
    assert f"[REDACTED:{rule}]" in redacted(STRICT, text)
    enabled = Scrubber.from_settings(SanitizeSettings(enable=(rule,)))
    assert f"[REDACTED:{rule}]" in redacted(enabled, text)


@pytest.mark.parametrize("text", ["std::string", "at 12:30:45", "mac 00:1a:2b:3c:4d:5e", "version 1.2.3"])
def test_ip_detectors_ignore_lookalikes(text: str) -> None:
    assert redacted(STRICT, text) == text


def test_high_entropy_tokens_only_in_strict() -> None:
    token = "Zx9Qw2Lm8Rt5Yp3Vb7Nc1Kd4Hf6Jg0Sa"
    assert redacted(BALANCED, f"vendor {token}") == f"vendor {token}"
    assert redacted(STRICT, f"vendor {token}") == "vendor [REDACTED:high_entropy]"
    sha = "3f786850e387550fdab836ed7e6dc881de23001b"
    assert redacted(STRICT, f"commit {sha}") == f"commit {sha}"


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("db.password", "password"),
        ("userPassword", "password"),
        ("passwd", "password"),
        ("client_secret", "secret"),
        ("access_token", "token"),
        ("x-auth-token", "token"),
        ("x-api-key", "api_key"),
        ("apiKey", "api_key"),
        ("http.request.header.authorization", "auth"),
        ("basicAuth", "auth"),
        ("aws.credentials", "credential"),
        ("http.request.header.cookie", "cookie"),
        ("set-cookie", "cookie"),
        ("sessionid", "session_cookie"),
        ("tls.private_key", "private_key"),
        ("card_number", "credit_card"),
        ("user.ssn", "us_ssn"),
        ("jwt", "jwt"),
    ],
)
def test_sensitive_keys_match_their_rule(key: str, rule: str) -> None:
    assert BALANCED.scrub_attributes({key: "x"}, []) == {key: f"[REDACTED:{rule}]"}


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "authority",
        "git.author",
        "tokens",
        "max_tokens",
        "token_count",
        "token_type",
        "tokenizer",
        "bypass_cache",
        "passenger",
        "session.id",
        "monkey",
        "user.email",  # personal data keys only in strict
    ],
)
def test_ordinary_keys_are_not_sensitive(key: str) -> None:
    assert BALANCED.scrub_attributes({key: "plain value"}, []) is None


def test_personal_data_keys_in_strict() -> None:
    hits: list[str] = []
    assert STRICT.scrub_attributes({"user.email": "x", "first_name": "y"}, hits) == {
        "user.email": "[REDACTED:pii_key]",
        "first_name": "[REDACTED:pii_key]",
    }


def test_correlation_and_otelkit_keys_are_never_touched() -> None:
    email = "jane@example.com"
    attributes = {key: email for key in SAFE_KEYS} | {"gen_ai.usage.input_tokens": 4111111111111111}
    assert STRICT.scrub_attributes(attributes, []) is None


def test_luhn_check() -> None:
    pattern = re.compile(BUILTIN["credit_card"].value or "")
    valid, invalid = pattern.search("4012888888881881"), pattern.search("4012888888881882")
    assert valid is not None and invalid is not None
    assert CHECKS["luhn"](valid) and not CHECKS["luhn"](invalid)


def test_builtin_rules_are_data_a_collector_can_use() -> None:
    assert set(BUILTIN) == set(BUILTIN_RULES)
    for rule in BUILTIN.values():
        assert rule.key or rule.value, rule.name
        for pattern in (rule.key, rule.value):
            if pattern:
                re.compile(pattern)
                # RE2 (the Collector's regex engine) has no look-around and no back-references
                assert not re.search(r"\(\?<?[=!]|\\[1-9]", pattern), rule.name
        assert rule.check is None or rule.check in CHECKS


def test_presets_select_rule_sets() -> None:
    balanced = {rule.name for rule in rules_for(SanitizeSettings())}
    strict = {rule.name for rule in rules_for(SanitizeSettings(preset="strict"))}
    assert "ipv4" not in balanced and "email" in balanced and "openai_key" in balanced
    assert strict == balanced | set(STRICT_EXTRA_RULES)
    assert rules_for(SanitizeSettings(preset="off", value_patterns=(PatternRule("x", "x{3}"),))) == ()


def test_rules_for_applies_enable_disable_modes_and_user_patterns_first() -> None:
    settings = SanitizeSettings(
        mode="hash",
        enable=("ipv4",),
        disable=("email",),
        modes=(RuleMode("openai_key", "drop"), RuleMode("ticket", "redact")),
        key_patterns=(PatternRule("internal_ref", "^x-internal-", "drop"),),
        value_patterns=(PatternRule("ticket", r"TCK-\d{6}"),),
    )
    rules = rules_for(settings)
    by_name = {rule.name: rule for rule in rules}
    assert [rule.name for rule in rules[:2]] == ["internal_ref", "ticket"]
    assert by_name["internal_ref"] == Rule("internal_ref", key="^x-internal-", mode="drop")
    assert by_name["ticket"].mode == "redact"
    assert by_name["openai_key"].mode == "drop"
    assert by_name["password"].mode == "hash"
    assert "ipv4" in by_name and "email" not in by_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111 1111 1111 1111 123-45-6789", "[REDACTED:credit_card] [REDACTED:us_ssn]"),  # a number next to the card
        ("3782 822463 10005", "[REDACTED:credit_card]"),  # Amex as printed
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),  # fails Luhn
    ],
)
def test_card_layouts_next_to_other_numbers(text: str, expected: str) -> None:
    from otelkit.processors.sanitize import scrub_text

    assert scrub_text(text) == expected


def test_operation_and_step_names_are_scanned_like_span_names() -> None:
    from otelkit import semconv as sc
    from otelkit.processors.sanitize import default_scrubber

    scrubbed = default_scrubber().scrub_attributes(
        {sc.OPERATION_NAME: "deploy jane.doe@example.com", sc.STEP_TYPE: "build ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ12"}, []
    )
    assert scrubbed == {sc.OPERATION_NAME: "deploy [REDACTED:email]", sc.STEP_TYPE: "build [REDACTED:github_token]"}
