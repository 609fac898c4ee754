"""The policy file: defaults, validation errors that name key and line, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from otelkit.config import ConfigError, Policy, current_policy, load_policy, parse_policy, reset_policy_cache


def test_defaults_without_any_file() -> None:
    policy = load_policy(environ={})
    assert policy == Policy()
    assert policy.store.path == "./otelkit.db"
    assert policy.instrumentation.capture_content is False


def test_file_values_are_typed_and_frozen(tmp_path: Path) -> None:
    path = tmp_path / "otelkit.yaml"
    path.write_text(
        "version: 1\nstore:\n  path: /data/t.db\n  busy_timeout_ms: 5000\n"
        "instrumentation:\n  capture_content: true\n  autowrap: [app.jobs:run_*, 'app.cli:*']\n"
    )
    policy = load_policy(path, environ={})
    assert policy.store.path == "/data/t.db" and policy.store.busy_timeout_ms == 5000
    assert policy.instrumentation.autowrap == ("app.jobs:run_*", "app.cli:*")
    with pytest.raises(AttributeError):
        policy.store.path = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("store:\n  pth: x.db\n", "unknown key 'store.pth' (line 2)"),
        ("store:\n  busy_timeout_ms: soon\n", "store.busy_timeout_ms: expected a int, got 'soon' (line 2)"),
        ("instrumentation:\n  capture_content: maybe\n", "instrumentation.capture_content: expected a bool"),
        ("store: [1, 2]\n", "store: expected a mapping (line 1)"),
        ("version: 7\n", "unsupported policy version 7"),
        ("store:\n  path: [unclosed\n", "not valid YAML"),
    ],
)
def test_errors_name_the_key_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("store:\n  path: from-file.db\ninstrumentation:\n  autowrap: a:b\n")
    env = {
        "OTELKIT_CONFIG": str(path),
        "OTELKIT_SQLITE_PATH": "from-env.db",
        "OTELKIT_AUTOWRAP": "c:d, e:f",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
    }
    policy = load_policy(environ=env)
    assert policy.store.path == "from-env.db"
    assert policy.instrumentation.autowrap == ("a:b", "c:d", "e:f")
    assert policy.instrumentation.capture_content is True
    env["OTELKIT_CAPTURE_CONTENT"] = "off"
    assert load_policy(environ=env).instrumentation.capture_content is False


def test_bad_boolean_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="OTELKIT_CAPTURE_CONTENT"):
        load_policy(environ={"OTELKIT_CAPTURE_CONTENT": "perhaps"})


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy(tmp_path / "nope.yaml", environ={})


def test_runtime_policy_falls_back_to_defaults_on_a_bad_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("store:\n  nope: 1\n")
    monkeypatch.setenv("OTELKIT_CONFIG", str(bad))
    reset_policy_cache()
    assert current_policy() == Policy()
    assert "unknown key 'store.nope'" in caplog.text
