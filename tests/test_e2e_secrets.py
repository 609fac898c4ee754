"""End to end: one of every secret type planted in every place, and none of them leaves the process.

An unmodified program runs under ``opentelemetry-instrument`` with a policy that fires an alert
to a webhook and to the store. It plants each secret in span names and attributes, event
attributes, an exception's message and stack trace, the status description, link attributes,
resource attributes, a log record, URL userinfo and query strings, JSON in a string attribute
and the GenAI message attributes (content capture on, against the local fake OpenAI API). Then
every text column of every table of the store, every webhook payload and everything the program
printed (including the ``otelkit.alerts`` log) are searched for each secret.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from providers.openai_server import FakeOpenAIServer
from webhook_receiver import Receiver

SECRETS = {
    "aws_access_key": "AKIAZ7Q3XK2PLM4VBN8W",
    "github_token": "ghp_1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVwXyZ12",
    "gitlab_token": "glpat-Xy9zAb3Cd5Ef7Gh1Jk2L",
    "slack_token": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "openai_key": "sk-proj-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkL",
    "anthropic_key": "sk-ant-api03-Zx9Cv8Bn7Mq6Lw5Ke4Jr3",
    "stripe_key": "sk_live_51HabcdEFGHijklMNOPqrstu",
    "google_api_key": "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "pem": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
    "bearer": "abc123DEF456ghi789JKL",
    "email": "jane.doe@example.com",
    "card": "4111 1111 1111 1111",
    "ssn": "123-45-6789",
    "url_password": "hunter2-url-pass",
    "query_token": "qtok9876543210zyx",
    "password_value": "correct-horse-battery",
}
PEM_BLOCK = f"-----BEGIN PRIVATE KEY-----\n{SECRETS['pem']}\n-----END PRIVATE KEY-----"

PROGRAM = '''
import json
import logging
import sys

import openai
from opentelemetry import trace
from opentelemetry.trace import Link

import otelkit

S = json.loads(sys.argv[1])
PEM = sys.argv[2]
# every secret as it shows up in real text: self-describing tokens as they are, the rest labelled
SHAPED = ("aws_access_key", "github_token", "gitlab_token", "slack_token", "openai_key", "anthropic_key",
          "stripe_key", "google_api_key", "jwt", "email", "card", "ssn")
everything = " ".join(
    [S[name] for name in SHAPED]
    + [f"password={S['password_value']}", f"Authorization: Bearer {S['bearer']}",
       f"https://deployer:{S['url_password']}@example.com/?access_token={S['query_token']}", PEM]
)
log = logging.getLogger("app")
log.propagate = True
tracer = trace.get_tracer("app")

with otelkit.session("s-1"):
    with otelkit.command("deploy " + S["email"]):
        with otelkit.tool("fetch " + S["github_token"], attributes={
            "password": S["password_value"],
            "note": everything,
            "card": int(S["card"].replace(" ", "")),
            "url": f"https://deployer:{S['url_password']}@example.com/path?access_token={S['query_token']}&page=2",
            "payload": json.dumps({"password": S["password_value"], "nested": {"text": everything}}),
        }) as op:
            op.span.add_event("login", {"header": "Bearer " + S["bearer"], "detail": everything})
        other = tracer.start_span("background")
        with tracer.start_as_current_span("linked", links=[Link(other.get_span_context(), {"why": everything})]):
            pass
        other.end()
        try:
            with otelkit.step("upload"):
                raise ValueError("upload failed: " + everything)
        except ValueError:
            pass
        log.warning("deploying with %s", everything)
        client = openai.OpenAI(max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "system", "content": "key " + S["openai_key"]},
            {"role": "user", "content": everything},
        ])
print("done")
'''


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reply_text="Your key is " + SECRETS["anthropic_key"] + " and " + SECRETS["jwt"]) as server:
        yield server


def every_text_in(db: Path) -> str:
    """All text in every table and column of the store, one big string."""
    conn = sqlite3.connect(db)
    chunks = []
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        for row in conn.execute(f"SELECT {', '.join(columns)} FROM {table}"):
            chunks.extend(str(value) for value in row if value is not None)
    return "\n".join(chunks)


def found(secret: str, text: str) -> bool:
    return secret in text or secret.replace(" ", "") in text or json.dumps(secret)[1:-1] in text


def test_no_planted_secret_reaches_the_store_the_alerts_or_the_logs(
    tmp_path: Path, subprocess_env: dict[str, str], provider: FakeOpenAIServer
) -> None:
    receiver = Receiver()
    db = tmp_path / "secrets.db"
    policy = tmp_path / "otelkit.yaml"
    policy.write_text(textwrap.dedent(f"""
        alerts:
          rules:
            - {{name: any-tool, kind: latency, threshold: 0, select: {{operation_type: tool}}}}
            - {{name: failures, kind: error_burst, threshold: 1, window_s: 60}}
          webhooks:
            - {{url: "{receiver.url}", format: json, backoff_s: 0.05}}
            - {{url: "{receiver.url}", format: slack, backoff_s: 0.05}}
    """))
    (tmp_path / "app.py").write_text(textwrap.dedent(PROGRAM))
    env = {
        **subprocess_env,
        "OTELKIT_SQLITE_PATH": str(db),
        "OTELKIT_CONFIG": str(policy),
        "OTELKIT_CAPTURE_CONTENT": "true",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",
        "OTEL_RESOURCE_ATTRIBUTES": f"deploy.owner={SECRETS['email']},deploy.token={SECRETS['slack_token']}",
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_API_KEY": "test",
        "OTELKIT_SANITIZE_KEY": "a-test-key-of-sixteen-or-more",
    }
    run = subprocess.run(
        ["opentelemetry-instrument", "python", "app.py", json.dumps(SECRETS), PEM_BLOCK],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert receiver.wait_for(4)  # two rules fired, each to two webhooks
    receiver.close()

    store = every_text_in(db)
    payloads = "\n".join(body.decode() for _, _, body in receiver.requests)
    printed = run.stdout + run.stderr
    assert "[REDACTED:" in store and "any-tool" in payloads
    leaks = {
        (name, where)
        for name, secret in SECRETS.items()
        for where, text in (("store", store), ("webhooks", payloads), ("output", printed))
        if found(secret, text)
    }
    assert leaks == set()

    conn = sqlite3.connect(db)
    # the program's telemetry did arrive: spans of every kind, the log record, the GenAI content, the alerts
    names = {row[0] for row in conn.execute("SELECT name FROM spans")}
    assert {"background", "linked", "upload", "chat gpt-4o-mini"} <= names
    assert conn.execute("SELECT count(*) FROM log_records WHERE body LIKE 'deploying with%'").fetchone()[0] == 1
    # the otelkit.alerts log lines went the way of the program's logs: into the store, scrubbed
    assert conn.execute("SELECT count(*) FROM log_records WHERE body LIKE 'otelkit alert state=firing%'").fetchone()[0] == 2
    assert conn.execute("SELECT count(*) FROM spans WHERE json_extract(attributes, '$.\"gen_ai.input.messages\"') IS NOT NULL").fetchone()[0] == 1
    assert {row[0] for row in conn.execute("SELECT rule FROM alerts")} == {"any-tool", "failures"}
    (rules,) = conn.execute(
        "SELECT json_extract(attributes, '$.\"otelkit.sanitize.rules\"') FROM spans WHERE operation_type = 'tool'"
    ).fetchone()
    assert {"password", "email", "credit_card", "url_userinfo", "url_query", "github_token"} <= set(json.loads(rules))
