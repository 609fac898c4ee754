"""``otelkit collector-config``: the policy rendered as Collector config, and the real Collector's verdict.

Rendering is checked key by key against the policy and the detectors; every regular expression
handed to the Collector is checked for what RE2 cannot run; the Collector's masking is checked
never to leave a secret the in-process sanitizer finds. With the otelkit Collector built
(``scripts/build-e2e-tools``; ``OTELKIT_OTELCOL`` or the default cache path), every shipped and
rendered config must pass ``validate``, and the agent pipeline runs for real between two
``otelkit serve`` stores.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import re
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from click.testing import CliRunner, Result

from otelkit import semconv as sc
from otelkit.cli import cli
from otelkit.collector_config import (
    COLLECTOR_VALUE,
    ENVIRONMENT,
    FEATURE_GATES,
    MASK,
    UNCHECKED_RULES,
    _glob_regex,
    build_config,
    emitted_regexes,
    re2_problem,
    render,
)
from otelkit.config import ConfigError, Policy, parse_policy
from otelkit.processors.detectors import BUILTIN, CHECKS, SAFE_KEYS
from otelkit.processors.sanitize import Scrubber
from otelkit.sampling_settings import SamplingSettings, TailSettings
from otelkit.sanitize_settings import BALANCED_RULES, SanitizeSettings

from e2e.tools import find_tool
from test_cli import assert_one_line_error
from test_detectors import FAKE, PEM

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "collector-config"
HMAC_KEY = "collector-test-key-0123456789abcdef"  # 32+ characters, as hmac-sha256 requires

CUSTOM_POLICY = """
sanitize:
  preset: strict
  disable: [email]
  modes:
    - {rule: jwt, mode: hash}
    - {rule: us_ssn, mode: drop}
  key_patterns:
    - {name: tenant_key, pattern: "tenant[-_]?secret"}
  value_patterns:
    - {name: pin, pattern: "pin=(?P<secret>[0-9]{4})", mode: hash}
  allow_keys: ["app.password_policy", "internal.*"]
  max_value_length: 1024
sampling:
  tail:
    keep_errors: false
    latency_threshold_ms: 250.7
    cost_threshold_usd: 0.5
    keep_ratio: 0.25
    decision_timeout_s: 12
    max_traces: 5000
    recent_decisions: 20000
"""


def custom_policy() -> Policy:
    return parse_policy(CUSTOM_POLICY, "custom.yaml")


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def redaction(config: dict[str, Any], name: str = "redaction") -> dict[str, Any]:
    return config["processors"][name]


def statements(config: dict[str, Any], context: str) -> list[str]:
    groups = config["processors"]["transform/sanitize"]["trace_statements"]
    return next(g["statements"] for g in groups if g["context"] == context)


# --- shipped files --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["agent", "gateway"])
def test_shipped_configs_are_the_default_policy_rendered(mode: str) -> None:
    shipped = (SHIPPED / f"{mode}.yaml").read_text(encoding="utf-8")
    assert shipped == render(Policy(), mode), (
        f"collector-config/{mode}.yaml is stale: regenerate it with "
        f"'otelkit collector-config --mode {mode} --output collector-config/{mode}.yaml'"
    )


# --- policy → redaction ---------------------------------------------------------------------


def test_default_policy_maps_every_balanced_rule_into_redaction() -> None:
    config = build_config(Policy(), "agent")
    proc = redaction(config)
    assert proc["allow_all_keys"] is True and proc["redact_all_types"] is True and proc["summary"] == "info"
    assert "redaction/hash" not in config["processors"] and "hash_function" not in proc
    keyed = [n for n in BALANCED_RULES if BUILTIN[n].key]
    assert proc["blocked_key_patterns"] == [f"(?i){BUILTIN[n].key}" for n in keyed]
    valued = [n for n in BALANCED_RULES if BUILTIN[n].value]
    assert proc["blocked_values"] == [COLLECTOR_VALUE.get(n, BUILTIN[n].value) for n in valued]
    assert set(proc["ignored_keys"]) == set(SAFE_KEYS)
    assert proc["ignored_key_patterns"] == [r"^gen_ai\.usage\."]
    # strict-only rules stay out of the balanced default
    assert f"(?i){BUILTIN['pii_key'].key}" not in proc["blocked_key_patterns"]
    assert COLLECTOR_VALUE["ipv6"] not in proc["blocked_values"]


def test_value_rules_also_scrub_span_names_status_messages_and_event_names() -> None:
    config = build_config(Policy(), "agent")
    span, event = statements(config, "span"), statements(config, "spanevent")
    email = BUILTIN["email"].value
    assert email is not None
    quoted = '"' + email.replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert f'replace_pattern(span.name, {quoted}, "{MASK}")' in span
    assert f'replace_pattern(span.status.message, {quoted}, "{MASK}")' in span
    assert f'replace_pattern(spanevent.name, {quoted}, "{MASK}")' in event
    assert "truncate_all(span.attributes, 4096)" in span
    assert config["processors"]["transform/sanitize"]["log_statements"] == [
        {"context": "log", "statements": ["truncate_all(log.attributes, 4096)"]}
    ]


def test_custom_policy_rules_modes_and_allow_list_appear() -> None:
    config = build_config(custom_policy(), "gateway")
    masked, hashed = redaction(config), redaction(config, "redaction/hash")
    # user key pattern first, case-insensitive like in-process; strict-only rules present; email disabled
    assert masked["blocked_key_patterns"][0] == "(?i)tenant[-_]?secret"
    assert f"(?i){BUILTIN['pii_key'].key}" in masked["blocked_key_patterns"]
    assert COLLECTOR_VALUE["ipv6"] in masked["blocked_values"]
    assert BUILTIN["high_entropy"].value in masked["blocked_values"]
    assert BUILTIN["email"].value not in masked["blocked_values"] + hashed.get("blocked_values", [])
    # drop is masked (the Collector cannot drop by rule); hash goes to the HMAC processor
    assert COLLECTOR_VALUE["us_ssn"] in masked["blocked_values"]
    assert hashed["hash_function"] == "hmac-sha256" and hashed["hmac_key"] == "${env:OTELKIT_SANITIZE_KEY}"
    assert hashed["blocked_values"] == ["pin=(?P<secret>[0-9]{4})", BUILTIN["jwt"].value]
    assert hashed["blocked_key_patterns"] == [f"(?i){BUILTIN['jwt'].key}"]
    assert BUILTIN["jwt"].value not in masked["blocked_values"]
    # allow_keys: literal keys ignored exactly, globs as anchored patterns, for both processors
    for proc in (masked, hashed):
        assert "app.password_policy" in proc["ignored_keys"]
        assert r"^internal\..*$" in proc["ignored_key_patterns"]
    assert "truncate_all(span.attributes, 1024)" in statements(config, "span")
    traces = config["service"]["pipelines"]["traces"]["processors"]
    assert traces[:4] == ["memory_limiter", "redaction", "redaction/hash", "transform/sanitize"]


def test_custom_policy_tail_rules_map_onto_tail_sampling() -> None:
    config = build_config(custom_policy(), "agent")
    tail = config["processors"]["tail_sampling"]
    assert tail["decision_wait"] == "12s" and tail["num_traces"] == 5000
    assert tail["decision_cache"] == {"sampled_cache_size": 20000, "non_sampled_cache_size": 20000}
    by_name = {p["name"]: p for p in tail["policies"]}
    assert set(by_name) == {"slow", "costly", "rest"}  # keep_errors: false
    assert by_name["slow"]["latency"] == {"threshold_ms": 250}
    assert by_name["costly"]["ottl_condition"]["span"] == [f'span.attributes["{sc.GEN_AI_USAGE_COST}"] > 0.5']
    assert by_name["rest"]["probabilistic"] == {"sampling_percentage": 25.0}
    weights = config["processors"]["transform/sample_rate"]["trace_statements"][0]
    assert weights["conditions"] == ['scope.attributes["tailsampling.policy"] == "rest"']
    assert weights["statements"][1] == f'set(span.attributes["{sc.SAMPLE_RATE}"], 4.0) where span.attributes["{sc.SAMPLE_RATE}"] == nil'


def test_default_tail_rules_keep_errors_slow_costly_and_a_tenth_of_the_rest() -> None:
    policies = build_config(Policy(), "agent")["processors"]["tail_sampling"]["policies"]
    assert [p["name"] for p in policies] == ["errors", "slow", "costly", "rest"]
    assert policies[0]["status_code"] == {"status_codes": ["ERROR"]}
    assert policies[1]["latency"] == {"threshold_ms": 1000}
    assert policies[3]["probabilistic"] == {"sampling_percentage": 10.0}


def test_off_preset_and_keep_everything_leave_those_processors_out() -> None:
    policy = Policy(sanitize=SanitizeSettings(preset="off"), sampling=SamplingSettings(tail=TailSettings(keep_ratio=1.0)))
    config = build_config(policy, "agent")
    assert set(config["processors"]) == {"memory_limiter", "batch"}
    assert config["service"]["pipelines"]["traces"]["processors"] == ["memory_limiter", "batch"]


def test_a_tail_section_that_keeps_nothing_is_refused() -> None:
    tail = TailSettings(keep_errors=False, latency_threshold_ms=None, cost_threshold_usd=None, keep_ratio=0.0)
    with pytest.raises(ConfigError, match="drop every trace"):
        build_config(Policy(sampling=SamplingSettings(tail=tail)), "agent")


def test_gateway_adds_span_metrics_from_unsampled_spans() -> None:
    config = build_config(Policy(), "gateway")
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces/spanmetrics"]["exporters"] == ["span_metrics"]
    assert "tail_sampling" not in pipelines["traces/spanmetrics"]["processors"]
    assert "redaction" in pipelines["traces/spanmetrics"]["processors"]  # span names and resources feed the metrics
    assert pipelines["metrics"]["receivers"] == ["otlp", "span_metrics"]
    assert {"name": sc.OPERATION_TYPE} in config["connectors"]["span_metrics"]["dimensions"]
    assert "connectors" not in build_config(Policy(), "agent")
    assert "${env:OTELKIT_COLLECTOR_HOST:-127.0.0.1}" in config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]


def test_exporters_retry_forever_from_a_persistent_queue() -> None:
    config = build_config(Policy(), "agent")
    for name in ("otlp_grpc/jaeger", "otlp_grpc/otelkit"):
        exporter = config["exporters"][name]
        assert exporter["sending_queue"]["storage"] == "file_storage"
        assert exporter["retry_on_failure"]["enabled"] and exporter["retry_on_failure"]["max_elapsed_time"] == "0s"
    assert config["extensions"]["file_storage"]["create_directory"] is True
    assert config["service"]["extensions"] == ["health_check", "file_storage"]
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp_grpc/jaeger", "otlp_grpc/otelkit"]
    assert config["service"]["pipelines"]["logs"]["exporters"] == ["otlp_grpc/otelkit"]  # Jaeger takes traces only


def test_every_setting_is_an_env_variable_with_a_default() -> None:
    text = render(Policy(), "agent")
    for setting in ENVIRONMENT:
        if setting.agent is not None:
            assert f"${{env:{setting.name}:-{setting.agent}}}" in text
    assert "OTELKIT_COLLECTOR_HOST" not in yaml.safe_load(text)["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]


def test_bad_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mode"):
        build_config(Policy(), "sidecar")


# --- RE2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("pin=(?=[0-9])", "look-ahead"),
        ("(?<!x)secret", "negative look-behind"),
        (r"(a)\1", "back-reference"),
        ("(?P<q>a)(?P=q)", "back-reference"),
        ("(a)?(?(1)b|c)", "conditional"),
        ("(?>ab)", "atomic group"),
        ("a++", "possessive"),
        ("a{1001}", "repeat count"),
        ("a{,5}", "{,n}"),
        (r"key\Z", r"\Z"),
        (r"caf\u00e9", r"\u"),
        ("(?x) a b", "x"),
        ("(?#note)a", "comment"),
        ("(?u:a)", "flag"),
        ("(unclosed", "not a valid"),
    ],
)
def test_re2_problems_are_named(pattern: str, problem: str) -> None:
    found = re2_problem(pattern)
    assert found is not None and problem in found


@pytest.mark.parametrize("pattern", [r"(?i:bearer\s+)(?P<secret>\S+)", r"[\]{,]x", r"a{0,5}\b$", r"\{,3\}", "(?im)^a.b$", "[(?=]"])
def test_re2_compatible_patterns_pass(pattern: str) -> None:
    assert re2_problem(pattern) is None


@pytest.mark.parametrize("policy", [Policy(), custom_policy(), Policy(sanitize=SanitizeSettings(preset="strict"))],
                         ids=["default", "custom", "strict"])  # fmt: skip
@pytest.mark.parametrize("mode", ["agent", "gateway"])
def test_every_emitted_regex_is_re2_compatible(policy: Policy, mode: str) -> None:
    regexes = emitted_regexes(build_config(policy, mode))
    assert len(regexes) > 20
    for pattern in regexes:
        assert re2_problem(pattern) is None, pattern
        re.compile(pattern)
        assert "(?=" not in pattern and "(?!" not in pattern and "(?<=" not in pattern and "(?<!" not in pattern


def test_builtin_detectors_are_all_re2_compatible() -> None:
    for rule in BUILTIN.values():
        for pattern in (rule.key, rule.value, rule.hint):
            assert pattern is None or re2_problem(pattern) is None, (rule.name, pattern)


def test_a_user_pattern_re2_cannot_run_is_refused_naming_the_rule() -> None:
    policy = parse_policy('sanitize:\n  key_patterns:\n    - {name: tenant, pattern: "tenant(?!_id)"}\n')
    with pytest.raises(ConfigError, match=r"sanitize\.key_patterns: rule 'tenant' uses a negative look-ahead"):
        build_config(policy, "agent")


def test_a_dollar_brace_in_a_pattern_survives_the_collector_env_expansion() -> None:
    policy = parse_policy('sanitize:\n  value_patterns:\n    - {name: tmpl, pattern: "a\\\\${2}b"}\n')
    proc = redaction(build_config(policy, "agent"))
    assert proc["blocked_values"][0] == "a\\$${2}b"  # the Collector reads $$ as $
    assert "a\\${2}b" in emitted_regexes(build_config(policy, "agent"))


# --- what the Collector masks ---------------------------------------------------------------


def collector_mask(config: dict[str, Any], text: str) -> str:
    """What the redaction processors do to a string value (RE2 reads \\b, \\s, \\w as ASCII)."""
    for name, proc in config["processors"].items():
        if name.split("/")[0] == "redaction":
            for pattern in proc.get("blocked_values", []):
                text = re.sub(re.compile(pattern.replace("$$", "$"), re.ASCII), MASK, text)
    return text


SECRET_TEXTS = [
    *(f"value {secret} here" for secret in FAKE.values()),
    f"key:\n{PEM}\nafter",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "Authorization: Bearer abc.def-123456",
    "db_password: hunter2, user=bob",
    'X-Api-Key="k-77a"',
    "postgres://admin:s3cret@db.internal:5432/app",
    "https://x.example/cb?code=abc&state=ok&X-Amz-Signature=f00d&page=2",
    "mail jane.doe+ops@example.co.uk today",
    "card 4111 1111 1111 1111 and 5555555555554444",
    "ssn 123-45-6789",
    "Cookie: sessionid=abc123def; theme=dark",
    "from 10.0.0.1 and 2001:db8::8a2e:370:7334 and ::1",
    "vendor Zx9Qw2Lm8Rt5Yp3Vb7Nc1Kd4Hf6Jg0Sa",
]


@pytest.mark.parametrize("preset", ["balanced", "strict"])
@pytest.mark.parametrize("text", SECRET_TEXTS)
def test_the_collector_masks_everything_the_in_process_sanitizer_removes(preset: str, text: str) -> None:
    settings = SanitizeSettings(preset=preset)
    scrubbed = Scrubber.from_settings(settings).scrub_text(text)
    masked = collector_mask(build_config(Policy(sanitize=settings), "agent"), text)
    removed = [token for token in re.findall(r"[^\s,;=\"'@:/?&]{4,}", text) if token not in scrubbed]
    assert removed or scrubbed == text
    for token in removed:
        assert token not in masked, (token, masked)


def test_checks_the_collector_cannot_run_only_over_redact() -> None:
    config = build_config(Policy(), "agent")
    assert Scrubber.from_settings(SanitizeSettings()).scrub_text("card 4111 1111 1111 1112") == "card 4111 1111 1111 1112"
    assert collector_mask(config, "card 4111 1111 1111 1112") == f"card {MASK}"  # Luhn fails, masked anyway
    assert set(UNCHECKED_RULES) == {n for n, r in BUILTIN.items() if r.check} - set(COLLECTOR_VALUE)


def _python_with_check(rule: str, text: str) -> str:
    detector = BUILTIN[rule]
    assert detector.value is not None and detector.check is not None
    out, last = [], 0
    for match in re.finditer(detector.value, text):
        if CHECKS[detector.check](match):
            out.append(text[last : match.start()] + MASK)
            last = match.end()
    return "".join(out) + text[last:]


def test_ssn_regex_is_exactly_the_rule_and_its_check() -> None:
    rng = random.Random(7)
    texts = ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "665-01-0001", "a123-45-6789"]
    texts += [f"x {rng.randint(0, 999):03d}-{rng.randint(0, 99):02d}-{rng.randint(0, 9999):04d} y" for _ in range(3000)]
    ssn = re.compile(COLLECTOR_VALUE["us_ssn"], re.ASCII)
    for text in texts:
        assert ssn.sub(MASK, text) == _python_with_check("us_ssn", text), text


@pytest.mark.parametrize(
    "text",
    [
        "addr fe80::1 here", "::1", "x ::1", "2001:db8::8a2e:370:7334", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "std::string", "Foo::bar", "12:30:45", "a::b", "fe80::", "fe80::xyz", "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4",
        "a :: b", "[2001:db8::1]:8080", "http://[::1]:80/", "fe80::1%eth0", "dead:beef::cafe", "deadbeef::1",
        "mac 00:1a:2b:3c:4d:5e", "11:22:33:44:55:66:77:88", "see fe80::1, and ::2.",
    ],
)  # fmt: skip
def test_ipv6_regex_agrees_with_the_rule_and_its_check(text: str) -> None:
    assert re.sub(re.compile(COLLECTOR_VALUE["ipv6"], re.ASCII), MASK, text) == _python_with_check("ipv6", text)


@pytest.mark.parametrize("text", ["1:2:3:4:5:6:7:8:9", "1::2::3"])
def test_ipv6_regex_over_redacts_only_malformed_addresses(text: str) -> None:
    assert _python_with_check("ipv6", text) == text
    assert MASK in re.sub(re.compile(COLLECTOR_VALUE["ipv6"], re.ASCII), MASK, text)


@pytest.mark.parametrize("glob", ["internal.*", "app.?ey", "x[ab]*", "x[!ab]", "a]b", "[]x]", "lit[", "a.b*c"])
def test_allow_key_globs_match_like_fnmatch(glob: str) -> None:
    regex = re.compile(_glob_regex(glob))
    assert re2_problem(_glob_regex(glob)) is None
    for key in ["internal.x", "internal", "app.key", "app.kkey", "xa", "xab", "xc", "xb", "a]b", "]", "x", "lit[",
                "a.bc", "a.bzzc", "aXbc"]:  # fmt: skip
        assert bool(regex.search(key)) == fnmatch.fnmatchcase(key, glob), (glob, key)


# --- the command ----------------------------------------------------------------------------


def test_command_prints_the_config_for_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "otelkit.yaml"
    path.write_text(CUSTOM_POLICY, encoding="utf-8")
    result = run("collector-config", "--policy", str(path), "--mode", "gateway")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == build_config(custom_policy(), "gateway")
    assert f"otelkit collector-config --mode gateway --policy {path}" in result.stdout
    assert "OTELKIT_SANITIZE_KEY" in result.stderr  # the hash rules need the key


def test_command_reads_otelkit_config_and_writes_output(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("sampling:\n  tail: {keep_ratio: 0.5}\n", encoding="utf-8")
    out = tmp_path / "agent.yaml"
    result = run("collector-config", "--output", str(out), env={"OTELKIT_CONFIG": str(policy)})
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    config = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert config["processors"]["tail_sampling"]["policies"][-1]["probabilistic"] == {"sampling_percentage": 50.0}
    assert f"--feature-gates={FEATURE_GATES[0]}" in result.stderr


def test_command_warns_when_the_policy_also_tail_samples_in_process(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("sampling:\n  tail: {enabled: true}\n", encoding="utf-8")
    result = run("collector-config", "--policy", str(policy))
    assert result.exit_code == 0 and "sampled twice" in result.stderr


@pytest.mark.parametrize(
    ("args", "policy_text", "fragments"),
    [
        (["--mode", "sidecar"], None, ["--mode", "sidecar"]),
        ([], "sanitize: {preset: nope}\n", ["sanitize.preset", "line 1"]),
        ([], 'sanitize:\n  value_patterns:\n    - {name: pin, pattern: "pin=(?=[0-9])"}\n', ["'pin'", "look-ahead"]),
        ([], "sampling:\n  tail: {keep_errors: false, latency_threshold_ms: null, cost_threshold_usd: null, keep_ratio: 0}\n",
         ["drop every trace"]),
        (["--policy", "/nonexistent/otelkit.yaml"], None, ["cannot read policy file"]),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], policy_text: str | None, fragments: list[str]) -> None:
    if policy_text is not None:
        path = tmp_path / "p.yaml"
        path.write_text(policy_text, encoding="utf-8")
        args = [*args, "--policy", str(path)]
    assert_one_line_error(run("collector-config", *args), *fragments)


def test_unwritable_output_is_one_line_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(run("collector-config", "--output", str(tmp_path / "missing" / "a.yaml")), "cannot write")


# --- the real Collector ---------------------------------------------------------------------


def otelcol() -> Path:
    """The otelcol-otelkit binary, or a skip (a failure when OTELKIT_E2E_REQUIRED=1)."""
    return find_tool("otelcol")


def collector_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTELKIT_")}
    env.update(OTELKIT_COLLECTOR_STORAGE_DIR=str(tmp_path / "queue"), OTELKIT_SANITIZE_KEY=HMAC_KEY, **extra)
    return env


def validate(binary: Path, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "validate", "--config", str(config), f"--feature-gates={','.join(FEATURE_GATES)}"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["agent.yaml", "gateway.yaml"])
def test_shipped_configs_pass_collector_validate(name: str, tmp_path: Path) -> None:
    binary = otelcol()
    result = validate(binary, SHIPPED / name, collector_env(tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "policy_text",
    [CUSTOM_POLICY, "sanitize: {preset: strict}\n", "sanitize: {preset: off}\nsampling: {tail: {keep_ratio: 1}}\n",
     "sanitize: {mode: hash}\nsampling: {tail: {keep_errors: false, latency_threshold_ms: null, cost_threshold_usd: null}}\n"],
    ids=["custom", "strict", "off", "all-hash"],
)  # fmt: skip
@pytest.mark.parametrize("mode", ["agent", "gateway"])
def test_rendered_configs_pass_collector_validate(policy_text: str, mode: str, tmp_path: Path) -> None:
    binary = otelcol()
    policy = tmp_path / "otelkit.yaml"
    policy.write_text(policy_text, encoding="utf-8")
    out = tmp_path / f"{mode}.yaml"
    result = run("collector-config", "--policy", str(policy), "--mode", mode, "--output", str(out))
    assert result.exit_code == 0, result.output
    checked = validate(binary, out, collector_env(tmp_path))
    assert checked.returncode == 0, checked.stderr


def test_collector_validate_rejects_what_it_cannot_run(tmp_path: Path) -> None:
    """The check above means something: validate compiles the regexes and needs the HMAC key."""
    binary = otelcol()
    config = build_config(Policy(sanitize=SanitizeSettings(mode="hash")), "agent")
    bad = json.loads(json.dumps(config))
    bad["processors"]["redaction/hash"]["blocked_values"].append("pin=(?=[0-9])")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False), encoding="utf-8")
    assert validate(binary, path, collector_env(tmp_path)).returncode != 0
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    assert validate(binary, good, collector_env(tmp_path)).returncode == 0
    no_key = collector_env(tmp_path)
    del no_key["OTELKIT_SANITIZE_KEY"]
    assert validate(binary, good, no_key).returncode != 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningCollector:
    """A shipped config running between two ``otelkit serve`` stores (one standing in for Jaeger)."""

    def __init__(self, mode: str, tmp_path: Path) -> None:
        from receiver_support import start_server

        binary = otelcol()
        self.jaeger_db, self.otelkit_db = tmp_path / "jaeger.db", tmp_path / "otelkit.db"
        self.log_path = tmp_path / "collector.log"
        self.servers = [start_server(self.jaeger_db), start_server(self.otelkit_db)]
        jaeger, served = self.servers
        ports = {name: free_port() for name in ("GRPC", "HTTP", "HEALTH", "METRICS")}
        self.port = ports["GRPC"]
        env = collector_env(
            tmp_path,
            OTELKIT_COLLECTOR_GRPC_PORT=str(ports["GRPC"]), OTELKIT_COLLECTOR_HTTP_PORT=str(ports["HTTP"]),
            OTELKIT_COLLECTOR_HEALTH_PORT=str(ports["HEALTH"]), OTELKIT_COLLECTOR_METRICS_PORT=str(ports["METRICS"]),
            OTELKIT_JAEGER_ENDPOINT=str(jaeger.grpc), OTELKIT_SERVE_ENDPOINT=str(served.grpc),
        )  # fmt: skip
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [str(binary), "--config", str(SHIPPED / f"{mode}.yaml"), f"--feature-gates={','.join(FEATURE_GATES)}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports['HEALTH']}/", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the Collector did not start: {self.log_path.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(30)
        self.log.close()
        for server in self.servers:
            server.stop()


@pytest.fixture
def collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningCollector]:
    running = RunningCollector(request.param, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def send(port: int, build: Any) -> None:
    """Spans made by ``build(tracer, now_ns)``, exported over OTLP/gRPC to the Collector."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "collector-test"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    build(provider.get_tracer("test"), time.time_ns())
    provider.shutdown()


def stored(db: Path) -> list[tuple[str, str, str, dict[str, Any], str | None]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT trace_id, name, status_code, attributes, status_message FROM spans").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [(t, n, s, json.loads(a or "{}"), m) for t, n, s, a, m in rows]


@pytest.mark.parametrize("collector", ["agent"], indirect=True)
def test_agent_pipeline_redacts_tail_samples_and_reweights_for_real(collector: RunningCollector) -> None:
    from opentelemetry.trace import Status, StatusCode

    def build(tracer: Any, now: int) -> None:
        with tracer.start_as_current_span(f"login {FAKE['github_token']}") as span:  # an error trace: kept
            span.set_attribute("db.password", "hunter2")
            span.set_attribute("note", f"key {FAKE['anthropic_key']} for jane.doe@example.com")
            span.set_attribute(sc.GEN_AI_REQUEST_MODEL, "gpt-4o")
            span.set_status(Status(StatusCode.ERROR, f"failed with {FAKE['openai_key']}"))
        slow = tracer.start_span("slow job", start_time=now - 3 * 10**9)  # a slow trace: kept
        slow.end(end_time=now)
        for index in range(300):  # the rest: about a tenth kept, re-weighted to rate 10
            with tracer.start_as_current_span("fast") as span:
                span.set_attribute("index", index)

    send(collector.port, build)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = stored(collector.otelkit_db)
        if {"slow job"} <= {r[1] for r in rows} and any(r[2] == "ERROR" for r in rows):
            if len(stored(collector.jaeger_db)) >= 2:
                break
        time.sleep(0.5)
    time.sleep(3)  # the ratio-kept traces of the last decision round
    rows = stored(collector.otelkit_db)
    error = next(r for r in rows if r[2] == "ERROR")
    text = json.dumps(error)
    for secret in ("hunter2", FAKE["github_token"], FAKE["anthropic_key"], FAKE["openai_key"], "jane.doe@example.com"):
        assert secret not in text
    assert error[3]["db.password"] == MASK and error[1] == f"login {MASK}" and error[4] == f"failed with {MASK}"
    assert error[3][sc.GEN_AI_REQUEST_MODEL] == "gpt-4o"  # safe keys untouched
    assert sc.SAMPLE_RATE not in error[3]  # kept by a rule: weight unchanged
    fast = [r for r in rows if r[1] == "fast"]
    assert 5 <= len(fast) <= 70, len(fast)
    assert all(r[3][sc.SAMPLE_RATE] == pytest.approx(10.0) for r in fast)
    assert {r[0] for r in stored(collector.jaeger_db)} == {r[0] for r in rows}  # the same traces to both backends


def metric_names(db: Path) -> dict[str, float]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT name, max(coalesce(value, count)) FROM metric_points WHERE json_extract(attributes, '$.\"span.name\"') = 'red'"
            " GROUP BY name"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    return {name: value for name, value in rows}


@pytest.mark.parametrize("collector", ["gateway"], indirect=True)
def test_gateway_counts_every_span_in_red_metrics_before_sampling(collector: RunningCollector) -> None:
    def build(tracer: Any, now: int) -> None:
        for _ in range(40):
            with tracer.start_as_current_span("red") as span:
                span.set_attribute(sc.OPERATION_TYPE, "tool")

    send(collector.port, build)
    deadline = time.monotonic() + 60  # span metrics flush every 15 s
    names: dict[str, float] = {}
    while time.monotonic() < deadline:
        names = metric_names(collector.otelkit_db)
        if names.get("traces.span.metrics.calls") == 40:
            break
        time.sleep(1)
    assert names.get("traces.span.metrics.calls") == 40, names  # all 40, though tail sampling keeps ~4
    assert "traces.span.metrics.duration" in names
    assert len([r for r in stored(collector.otelkit_db) if r[1] == "red"]) < 40
