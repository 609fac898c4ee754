"""Instrumentors patch a library on its first import, so start-up never imports what a program does not use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otelkit.instrumentation._lazy import LazyPatch


def test_patch_waits_for_the_import_and_can_be_withdrawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "otelkit_lazy_target.py").write_text("def greet():\n    return 'hello'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[str] = []
    patch = LazyPatch("otelkit_lazy_target", lambda: calls.append("apply"), lambda: calls.append("remove"))
    patch.enable()
    assert calls == [] and "otelkit_lazy_target" not in sys.modules
    import otelkit_lazy_target  # noqa: F401

    assert calls == ["apply"] and patch.applied
    patch.disable()
    patch.enable()  # already imported: applied at once
    assert calls == ["apply", "remove", "apply"]
    patch.disable()


def test_a_patch_that_fails_is_logged_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "otelkit_lazy_broken.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def fail() -> None:
        raise RuntimeError("cannot patch")

    LazyPatch("otelkit_lazy_broken", fail, lambda: None).enable()
    import otelkit_lazy_broken

    assert otelkit_lazy_broken.VALUE == 1
    assert "instrumenting otelkit_lazy_broken failed" in caplog.text


def test_instrumenting_imports_none_of_the_libraries() -> None:
    script = (
        "import sys\n"
        "from otelkit.instrumentation.openai import OpenAIInstrumentor\n"
        "from otelkit.instrumentation.anthropic import AnthropicInstrumentor\n"
        "from otelkit.instrumentation.jinja2 import Jinja2Instrumentor\n"
        "for cls in (OpenAIInstrumentor, AnthropicInstrumentor, Jinja2Instrumentor):\n"
        "    cls().instrument()\n"
        "print(sorted(m for m in ('openai', 'anthropic', 'jinja2') if m in sys.modules))\n"
        "import openai, anthropic\n"
        "from openai.resources.chat.completions import Completions\n"
        "from anthropic._base_client import SyncAPIClient\n"
        "print(hasattr(Completions.create, '__wrapped__'), hasattr(SyncAPIClient.request, '__wrapped__'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "True True"]
