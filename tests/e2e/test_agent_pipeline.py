"""The whole path with real binaries: an unmodified agent CLI → the Collector → Jaeger and ``otelkit serve``.

``examples/agent_cli.py`` (click, jinja2, openai, anthropic; no otelkit code) runs under
``opentelemetry-instrument`` with the standard OTLP exporter pointed at otelcol-otelkit, which
runs the config ``otelkit collector-config`` renders from a policy and exports to Jaeger and to
``otelkit serve``. The program's own scrubbing is turned off, so the secrets it puts into its
prompts and its log leave the process: only the Collector's redaction, rendered from the
policy, stands between them and the two backends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from e2e.support import BIN, REPO, Collector, Jaeger, Serve, render_config
from providers.anthropic_server import FakeAnthropicServer
from providers.openai_server import FakeOpenAIServer
from test_e2e_secrets import SECRETS, every_text_in

COLLECTOR_POLICY = """
sampling:
  tail:
    latency_threshold_ms: 1   # the CLI's trace lasts longer, so the 'slow' rule keeps it whatever the ratio
    keep_ratio: 0.25
    decision_timeout_s: 5
"""
# The program's policy: no in-process scrubbing (the Collector's is under test), no tokenizer download.
APP_POLICY = """
sanitize: {preset: off}
instrumentation: {tokenizer: estimate}
"""
PLANTED = {name: SECRETS[name] for name in ("openai_key", "github_token", "aws_access_key", "email")}
TOPIC = "the release of " + " ".join(PLANTED.values())
MASK = "****"


@pytest.fixture(scope="module")
def providers() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer]]:
    with FakeOpenAIServer(reply_text="A one-line summary.") as oai, FakeAnthropicServer(reply_text="Also a summary.") as ant:
        yield oai, ant


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def parent_of(span: dict[str, Any]) -> str | None:
    parents = [ref["spanID"] for ref in span["references"] if ref["refType"] == "CHILD_OF"]
    assert len(parents) <= 1, span["references"]
    return parents[0] if parents else None


def test_agent_cli_trace_reaches_jaeger_and_the_store_whole_and_redacted(
    start_collector: Callable[[Path], Collector], jaeger: Jaeger, serve: Serve, tmp_path: Path,
    subprocess_env: dict[str, str], providers: tuple[FakeOpenAIServer, FakeAnthropicServer],
) -> None:  # fmt: skip
    config, rendered = render_config(tmp_path, COLLECTOR_POLICY)
    policies = {policy["name"]: policy for policy in rendered["processors"]["tail_sampling"]["policies"]}
    assert policies["slow"]["latency"]["threshold_ms"] == 1  # the file the Collector runs holds the policy
    collector = start_collector(config)
    oai, ant = providers
    service = f"agent-cli-{uuid.uuid4().hex[:8]}"
    (tmp_path / "app-policy.yaml").write_text(APP_POLICY, encoding="utf-8")
    env = {
        **subprocess_env,
        "OTEL_SERVICE_NAME": service,
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        # contrib's openai-v2 is installed with the test extras; a user who has only otelkit gets these spans
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",
        "OTELKIT_CONFIG": str(tmp_path / "app-policy.yaml"), "OTELKIT_CAPTURE_CONTENT": "true",
        "OPENAI_BASE_URL": oai.base_url, "OPENAI_API_KEY": "test",
        "ANTHROPIC_BASE_URL": ant.base_url, "ANTHROPIC_API_KEY": "test",
    }  # fmt: skip
    program = [str(REPO / "examples" / "agent_cli.py"), "ask", TOPIC, "--api-key-hint", PLANTED["github_token"]]
    run = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, *program],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == "A one-line summary.\n"
    collector.wait_delivered()  # the program flushed at exit; now everything has left the Collector

    # Jaeger: the service, one trace, its operations and their parent/child structure
    assert service in jaeger.services()
    (found,) = jaeger.traces(service)
    trace_id = found["traceID"]
    trace = jaeger.trace(trace_id)
    spans = {span["spanID"]: span for span in trace["spans"]}
    assert {trace["processes"][span["processID"]]["serviceName"] for span in spans.values()} == {service}
    names = Counter(span["operationName"] for span in spans.values())
    assert names == {
        "agent_cli.py": 1, "agent_cli.py ask": 1, "compile prompt.txt": 1, "prompt.txt": 3,
        "chat gpt-4o-mini": 1, "chat gpt-4o": 1, "chat claude-haiku-4-5": 1, "POST": 3,
    }  # fmt: skip
    parents = {span_id: parent_of(span) for span_id, span in spans.items()}
    by_name = {span["operationName"]: span_id for span_id, span in spans.items()}
    root, ask = by_name["agent_cli.py"], by_name["agent_cli.py ask"]
    assert parents[root] is None and parents[ask] == root
    chats = {span_id for span_id, span in spans.items() if span["operationName"].startswith("chat ")}
    inside_ask = {s for s, span in spans.items() if span["operationName"] in ("prompt.txt", "compile prompt.txt")} | chats
    assert {parents[span_id] for span_id in inside_ask} == {ask}
    http_calls = [parents[span_id] for span_id, span in spans.items() if span["operationName"] == "POST"]
    assert sorted(map(str, http_calls)) == sorted(chats)  # one HTTP call under each LLM call

    # GenAI attributes, as the instrumentors set them
    mini, streamed, claude = (tags(spans[by_name[f"chat {model}"]]) for model in ("gpt-4o-mini", "gpt-4o", "claude-haiku-4-5"))
    assert {key: mini[key] for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
                                       "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                                       "otelkit.operation.type", "otelkit.cost.status", "span.kind")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 8,
        "otelkit.operation.type": "llm", "otelkit.cost.status": "priced", "span.kind": "client",
    }  # fmt: skip
    assert mini["gen_ai.usage.cost"] == pytest.approx((8 * 0.15 + 4 * 0.075 + 8 * 0.6) / 1e6)
    assert streamed["gen_ai.request.stream"] is True and streamed["otelkit.cost.status"] == "estimated"
    assert (claude["gen_ai.provider.name"], claude["gen_ai.usage.input_tokens"], claude["gen_ai.usage.output_tokens"]) == (
        "anthropic", 33, 12)  # fmt: skip

    # the planted secrets left the program in the prompts (no in-process [REDACTED:...] marker),
    # and the Collector masked them
    for chat in (mini, streamed, claude):
        assert MASK in chat["gen_ai.input.messages"] and "the release of" in chat["gen_ai.input.messages"]
    assert not [name for name, secret in PLANTED.items() if secret in json.dumps(trace)]
    assert "[REDACTED" not in json.dumps(trace)

    # the store behind otelkit serve: the same trace, the same spans, the same structure
    stored = serve.rows(
        "SELECT span_id, parent_span_id, name, service_name, provider, model, input_tokens, output_tokens"
        " FROM spans WHERE trace_id = ?", trace_id,
    )  # fmt: skip
    assert {row[:3] for row in stored} == {(span_id, parents[span_id], spans[span_id]["operationName"]) for span_id in spans}
    assert len(stored) == len(spans) and {row[3] for row in stored} == {service}
    assert ("openai", "gpt-4o-mini", 12, 8) in {row[4:] for row in stored}
    (log_body,) = serve.rows("SELECT body FROM log_records WHERE trace_id = ? AND body LIKE 'asked about%'", trace_id)
    assert log_body[0].startswith("asked about the release of ") and MASK in log_body[0]
    assert serve.rows("SELECT count(*) FROM metric_points WHERE service_name = ? AND name = 'gen_ai.client.token.usage'",
                      service)[0][0] > 0  # fmt: skip
    store_text = every_text_in(serve.db)
    assert not [name for name, secret in PLANTED.items() if secret in store_text]
