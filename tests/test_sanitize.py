"""The sanitize stage on real SDK spans and log records: every location, mode and guarantee."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

from otelkit import semconv as sc
from otelkit.config import ConfigError, Policy, parse_policy, reset_policy_cache
from otelkit.processors import sanitize
from otelkit.processors.chain import SpanChain, replace_span
from otelkit.processors.enrich import CostStage
from otelkit.processors.sanitize import (
    SanitizeLogRecordProcessor,
    SanitizeStage,
    Scrubber,
    export_log_record_processor,
    scrub_text,
)
from otelkit.sanitize_settings import ENV_SANITIZE_KEY, PatternRule, RuleMode, SanitizeSettings

OPENAI_KEY = "sk-proj-Xa12bC34dE56fG78hI90jK12lM34nO56pQ78"
HASH_KEY = "a-test-key-of-16+chars"
HASH = re.compile(r"\[HASH:([a-z_]+):([0-9a-f]{16})\]")


def stage_for(environ: dict[str, str] | None = None, **settings: Any) -> SanitizeStage:
    settings.setdefault("hash_key", HASH_KEY)
    return SanitizeStage(Scrubber.from_settings(SanitizeSettings(**settings), environ=environ or {}))


def finished(
    name: str = "op",
    attributes: dict[str, Any] | None = None,
    body: Callable[[Span], None] | None = None,
    resource: Resource | None = None,
    links: list[Link] | None = None,
) -> ReadableSpan:
    """One span finished by a real TracerProvider, before any otelkit stage."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource.create({sc.SERVICE_NAME: "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span(name, attributes=attributes, links=links) as span:
        if body is not None:
            body(span)
    provider.shutdown()
    (result,) = exporter.get_finished_spans()
    return result


def counts(span: ReadableSpan) -> tuple[Any, Any]:
    attrs = span.attributes or {}
    return attrs.get(sc.SANITIZE_REDACTED), attrs.get(sc.SANITIZE_RULES)


# --- spans: what passes, what is counted ----------------------------------------------------


def test_clean_span_passes_as_the_same_object() -> None:
    span = finished("build", {sc.OPERATION_TYPE: "step", sc.STEP_ID: "build", "retries": 3})
    assert stage_for()(span) is span


def test_attributes_scrubbed_by_key_and_value_and_counted_by_rule() -> None:
    span = finished(attributes={"db.password": "hunter2", "cmd": f"--key {OPENAI_KEY}", "step": "ok"})
    out = stage_for()(span)
    assert out is not None and out is not span
    assert out.attributes["db.password"] == "[REDACTED:password]"
    assert out.attributes["cmd"] == "--key [REDACTED:openai_key]"
    assert out.attributes["step"] == "ok"
    assert counts(out) == (2, ("openai_key", "password"))
    assert span.attributes["db.password"] == "hunter2"  # the SDK's span is never changed


def test_counts_name_rules_never_values() -> None:
    out = stage_for()(finished(attributes={"note": "mail jane@example.com"}))
    assert out is not None
    assert "jane" not in json.dumps([str(v) for v in counts(out)])


def test_correlation_keys_are_never_touched() -> None:
    email = "jane@example.com"
    attrs = {sc.SESSION_ID: email, sc.GEN_AI_CONVERSATION_ID: email, sc.OPERATION_TYPE: email, sc.SAMPLE_RATE: 0.5}
    span = finished(attributes=attrs)
    assert stage_for(preset="strict")(span) is span


def test_exception_message_and_stacktrace_in_events() -> None:
    def fail(span: Span) -> None:
        try:
            raise PermissionError(f"rejected {OPENAI_KEY} for jane@example.com")
        except PermissionError as exc:
            span.record_exception(exc)

    out = stage_for()(finished(body=fail))
    assert out is not None
    (event,) = out.events
    assert event.name == "exception"
    assert event.attributes[sc.EXCEPTION_MESSAGE] == "rejected [REDACTED:openai_key] for [REDACTED:email]"
    assert OPENAI_KEY not in event.attributes[sc.EXCEPTION_STACKTRACE]
    assert "[REDACTED:openai_key]" in event.attributes[sc.EXCEPTION_STACKTRACE]
    assert counts(out)[1] == ("email", "openai_key")


def test_links_status_description_and_span_name() -> None:
    other = finished("other").context
    link = Link(other, {"peer.url": "https://bob:pw@peer.example/x"})

    def fail(span: Span) -> None:
        span.set_status(Status(StatusCode.ERROR, "login failed for jane@example.com"))

    out = stage_for()(finished("mail bob@example.com", links=[link], body=fail))
    assert out is not None
    assert out.name == "mail [REDACTED:email]"
    assert out.links[0].attributes["peer.url"] == "https://[REDACTED:url_userinfo]@peer.example/x"
    assert out.links[0].context == other
    assert out.status.status_code is StatusCode.ERROR
    assert out.status.description == "login failed for [REDACTED:email]"


def test_resource_is_scrubbed_once_per_resource_object() -> None:
    resource = Resource.create({sc.SERVICE_NAME: "svc", "deployment.owner": "ops@example.com"})
    stage = stage_for()
    first, second = (stage(finished(resource=resource)) for _ in range(2))
    assert first is not None and second is not None
    assert first.resource.attributes["deployment.owner"] == "[REDACTED:email]"
    assert first.resource.attributes[sc.SERVICE_NAME] == "svc"
    assert first.resource is second.resource  # worked out once, shared by every span
    assert counts(first) == counts(second) == (1, ("email",))


def test_json_in_string_attributes_is_parsed_scrubbed_and_reserialized() -> None:
    messages = [
        {"role": "user", "parts": [{"type": "text", "content": "I am jane@example.com"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "name": "deploy", "arguments": {"api_key": "abc", "region": "eu"}}],
        },
    ]
    span = finished(attributes={sc.GEN_AI_INPUT_MESSAGES: json.dumps(messages)})
    out = stage_for()(span)
    assert out is not None
    parsed = json.loads(out.attributes[sc.GEN_AI_INPUT_MESSAGES])
    assert parsed[0]["parts"][0]["content"] == "I am [REDACTED:email]"
    assert parsed[1]["parts"][0]["arguments"] == {"api_key": "[REDACTED:api_key]", "region": "eu"}
    assert parsed[1]["role"] == "assistant"
    assert counts(out) == (2, ("api_key", "email"))


def test_json_strings_inside_json_are_scrubbed_too() -> None:
    arguments = json.dumps({"password": "hunter2"})
    value = json.dumps([{"role": "assistant", "parts": [{"type": "tool_call", "arguments": arguments}]}])
    out = stage_for()(finished(attributes={sc.GEN_AI_OUTPUT_MESSAGES: value}))
    assert out is not None
    inner = json.loads(json.loads(out.attributes[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["arguments"])
    assert inner == {"password": "[REDACTED:password]"}


def test_credit_card_numbers_held_as_ints() -> None:
    attrs = {"payment.ref": 4111111111111111, "order.id": 4111111111111112, "retries": 3}
    out = stage_for()(finished(attributes=attrs))
    assert out is not None
    assert out.attributes["payment.ref"] == "[REDACTED:credit_card]"
    assert out.attributes["order.id"] == 4111111111111112  # fails Luhn
    assert out.attributes["retries"] == 3


def test_sequences_are_scrubbed_element_by_element() -> None:
    out = stage_for()(finished(attributes={sc.PROCESS_COMMAND_ARGS: ("app", "--password=hunter2", "--verbose")}))
    assert out is not None
    assert out.attributes[sc.PROCESS_COMMAND_ARGS] == ("app", "--password=[REDACTED:labelled_secret]", "--verbose")


def test_str_subclass_values_are_scrubbed_like_str() -> None:
    class Markup(str):  # jinja2's Markup, a StrEnum, numpy.str_: text the SDK keeps as it is
        pass

    attrs = {"template.output": Markup(f"key {OPENAI_KEY}"), "args": (Markup("--password=hunter2"),)}
    out = stage_for()(finished(attributes=attrs))
    assert out is not None
    assert out.attributes["template.output"] == "key [REDACTED:openai_key]"
    assert out.attributes["args"] == ("--password=[REDACTED:labelled_secret]",)
    assert counts(out) == (2, ("labelled_secret", "openai_key"))
    body = OrderedDict(user="jane@example.com", steps=[1, 2])
    scrubbed = Scrubber.from_settings(SanitizeSettings()).scrub_body(body, [])
    assert scrubbed == {"user": "[REDACTED:email]", "steps": [1, 2]}


# --- modes ----------------------------------------------------------------------------------


def test_hash_mode_is_joinable_and_depends_on_the_key() -> None:
    stage = stage_for(mode="hash")
    one = stage(finished(attributes={"from": "jane@example.com", "card": "4111 1111 1111 1111"}))
    two = stage(finished(attributes={"to": "jane@example.com", "n": 4111111111111111}))
    other = stage_for(mode="hash", hash_key="another-key-of-16+chars")(finished(attributes={"to": "jane@example.com"}))
    assert one is not None and two is not None and other is not None
    marker = HASH.fullmatch(one.attributes["from"])
    assert marker is not None and marker.group(1) == "email"
    assert one.attributes["from"] == two.attributes["to"]
    assert one.attributes["card"] == two.attributes["n"]  # spaced string and int: same card, same hash
    assert other.attributes["to"] != one.attributes["from"]
    assert "jane" not in one.attributes["from"]


def test_hash_key_from_the_environment_wins_over_the_policy() -> None:
    from_env = stage_for(environ={ENV_SANITIZE_KEY: "the-environment-key"}, mode="hash")
    same_env = stage_for(environ={ENV_SANITIZE_KEY: "the-environment-key"}, mode="hash", hash_key="x" * 16)
    policy_only = stage_for(mode="hash")
    values = [s(finished(attributes={"to": "jane@example.com"})) for s in (from_env, same_env, policy_only)]
    hashed = [span.attributes["to"] for span in values if span is not None]
    assert hashed[0] == hashed[1] != hashed[2]


def test_without_a_key_hashes_use_a_process_key_and_warn_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sanitize, "_warned_random_key", threading.Event())
    caplog.set_level(logging.WARNING, logger="otelkit.processors.sanitize")
    settings = SanitizeSettings(mode="hash")
    first, second = Scrubber.from_settings(settings, environ={}), Scrubber.from_settings(settings, environ={})
    assert first.scrub_text("jane@example.com") == second.scrub_text("jane@example.com")
    assert HASH.fullmatch(first.scrub_text("jane@example.com"))
    warnings = [r for r in caplog.records if "random key" in r.getMessage()]
    assert len(warnings) == 1 and ENV_SANITIZE_KEY in warnings[0].getMessage()


def test_drop_mode_removes_attributes_and_json_members() -> None:
    stage = stage_for(mode="drop")
    messages = json.dumps({"note": "ok", "contact": "jane@example.com", "token": "abc"})
    out = stage(finished(attributes={"db.password": "x", "to": "jane@example.com", "keep": "y", "m": messages}))
    assert out is not None
    assert "db.password" not in out.attributes and "to" not in out.attributes
    assert out.attributes["keep"] == "y"
    assert json.loads(out.attributes["m"]) == {"note": "ok"}
    assert counts(out) == (4, ("email", "password", "token"))


def test_drop_mode_redacts_text_that_cannot_be_removed() -> None:
    out = stage_for(mode="drop")(finished("mail jane@example.com"))
    assert out is not None and out.name == "[REDACTED:email]"


def test_per_rule_mode_overrides() -> None:
    stage = stage_for(modes=(RuleMode("email", "hash"), RuleMode("password", "drop")))
    out = stage(finished(attributes={"to": "jane@example.com", "pwd": "x", "k": OPENAI_KEY}))
    assert out is not None
    assert HASH.fullmatch(out.attributes["to"]) and "pwd" not in out.attributes
    assert out.attributes["k"] == "[REDACTED:openai_key]"


# --- truncation and idempotence -------------------------------------------------------------


def test_long_values_are_truncated_with_a_marker() -> None:
    out = stage_for(max_value_length=64)(finished(attributes={"note": "a" * 200, "short": "b" * 64}))
    assert out is not None
    assert out.attributes["note"] == "a" * (64 - len("[TRUNCATED:200]")) + "[TRUNCATED:200]"
    assert out.attributes["short"] == "b" * 64
    assert counts(out) == (1, ("truncated",))


def test_a_secret_across_the_cut_is_redacted_not_half_kept() -> None:
    value = "word " * 8 + OPENAI_KEY + " tail" * 8
    wide, narrow = (stage_for(max_value_length=n)(finished(attributes={"note": value})) for n in (80, 64))
    assert wide is not None and narrow is not None
    assert wide.attributes["note"] == "word " * 8 + "[REDACTED:openai_key] tai[TRUNCATED:124]"
    assert narrow.attributes["note"] == "word " * 8 + "[TRUNCATED:124]"  # never a marker cut in half


def test_a_secret_cut_where_scanning_stops_is_not_kept_after_markers_shrank_the_text() -> None:
    # Only the first max_value_length + 8192 characters are scanned; a long private key
    # shrinks to a short marker, so what was kept would reach the end of the scanned part.
    pem = "-----BEGIN PRIVATE KEY-----" + "A" * 8188 + "-----END PRIVATE KEY-----"
    value = pem + " " + OPENAI_KEY + " tail" * 10
    out = stage_for(max_value_length=64)(finished(attributes={"note": value}))
    assert out is not None
    assert out.attributes["note"].startswith("[REDACTED:private_key] ")
    assert OPENAI_KEY[:8] not in out.attributes["note"]
    card = stage_for(max_value_length=64)(finished(attributes={"note": pem + " 4111 1111 1111 1111 tail"}))
    assert card is not None and "4111" not in card.attributes["note"]


@pytest.mark.parametrize("mode", ["redact", "hash", "drop"])
def test_scrubbing_twice_changes_nothing(mode: str) -> None:
    stage = stage_for(mode=mode, max_value_length=256)
    attrs = {
        "cmd": f"curl -H 'Authorization: Bearer abcdefgh12345' https://u:p@x.example/?token=t {OPENAI_KEY}",
        "card": 4111111111111111,
        "hex": "[HASH:email:0123456789012345] 4111 1111 1111 1111",
        "long": "z" * 300,
        sc.GEN_AI_INPUT_MESSAGES: json.dumps([{"role": "user", "content": "jane@example.com", "secret": "s"}]),
    }
    once = stage(finished("to jane@example.com", attributes=attrs))
    assert once is not None
    twice = stage(once)
    assert twice is not None
    assert dict(twice.attributes) == dict(once.attributes)
    assert twice.name == once.name
    assert counts(twice) == counts(once)


# --- presets, allow-list, user patterns ------------------------------------------------------


def test_preset_off_scrubs_nothing() -> None:
    span = finished(attributes={"db.password": "hunter2", "k": OPENAI_KEY, "long": "a" * 10_000})
    off = stage_for(preset="off")
    assert off(span) is span and not off.active
    assert stage_for().active


def test_allow_listed_keys_are_kept() -> None:
    stage = stage_for(allow_keys=("app.public_token", "app.debug.*"))
    attrs = {"app.public_token": "pk-1", "app.debug.contact": "jane@example.com", "app.token": "t"}
    out = stage(finished(attributes=attrs))
    assert out is not None
    assert out.attributes["app.public_token"] == "pk-1"
    assert out.attributes["app.debug.contact"] == "jane@example.com"
    assert out.attributes["app.token"] == "[REDACTED:token]"


def test_user_key_and_value_patterns() -> None:
    stage = stage_for(
        key_patterns=(PatternRule("internal", "^x-internal-", "drop"),),
        value_patterns=(
            PatternRule("employee_pin", r"pin=(?P<secret>\d{4})"),
            PatternRule("ticket", r"TCK-\d{6}", "hash"),
        ),
    )
    attrs = {"x-internal-route": "r1", "note": "pin=1234 for TCK-123456", "other": "TCK-12 pin=12"}
    out = stage(finished(attributes=attrs))
    assert out is not None
    assert "x-internal-route" not in out.attributes
    assert re.fullmatch(r"pin=\[REDACTED:employee_pin\] for \[HASH:ticket:[0-9a-f]{16}\]", out.attributes["note"])
    assert out.attributes["other"] == "TCK-12 pin=12"


# --- the chain and the process-wide helpers ---------------------------------------------------


def test_stage_runs_in_the_chain_after_enrich() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    stages = [CostStage(), SanitizeStage.from_policy(Policy())]
    provider.add_span_processor(SpanChain(stages, SimpleSpanProcessor(exporter)))
    attrs = {sc.GEN_AI_REQUEST_MODEL: "gpt-4o", sc.GEN_AI_USAGE_INPUT_TOKENS: 10, "prompt.note": OPENAI_KEY}
    with provider.get_tracer("t").start_as_current_span("chat gpt-4o", attributes=attrs):
        pass
    provider.shutdown()
    (span,) = exporter.get_finished_spans()
    assert span.attributes["prompt.note"] == "[REDACTED:openai_key]"
    assert span.attributes[sc.COST_STATUS] in ("priced", "unpriced")
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 10


def test_scrub_text_follows_the_process_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert scrub_text(f"key {OPENAI_KEY}") == "key [REDACTED:openai_key]"
    policy = tmp_path / "policy.yaml"
    policy.write_text('sanitize:\n  preset: "off"\n')  # quoted: YAML reads a bare off as false
    monkeypatch.setenv("OTELKIT_CONFIG", str(policy))
    reset_policy_cache()
    assert scrub_text(f"key {OPENAI_KEY}") == f"key {OPENAI_KEY}"


# --- log records ----------------------------------------------------------------------------


def logged(policy: Policy, emit: Callable[[Any], None]) -> tuple[Any, Any]:
    """What an unscrubbed and a scrubbed exporter received for the same records."""
    raw, clean = InMemoryLogRecordExporter(), InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({sc.SERVICE_NAME: "svc", "host.owner": "ops@example.com"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(raw))
    provider.add_log_record_processor(export_log_record_processor(policy, SimpleLogRecordProcessor)(clean))
    emit(provider.get_logger("app"))
    provider.shutdown()
    return raw.get_finished_logs(), clean.get_finished_logs()


def test_log_bodies_attributes_and_resource_are_scrubbed_on_a_copy() -> None:
    def emit(logger: Any) -> None:
        try:
            raise ValueError(f"bad key {OPENAI_KEY}")
        except ValueError as exc:
            logger.emit(
                body=f"login by jane@example.com with {OPENAI_KEY}",
                attributes={"user.password": "hunter2", sc.LOG_SESSION_ID: "s-1", "n": 1},
                exception=exc,
            )

    (raw,), (clean,) = logged(Policy(), emit)
    record = clean.log_record
    assert record.body == "login by [REDACTED:email] with [REDACTED:openai_key]"
    assert record.attributes["user.password"] == "[REDACTED:password]"
    assert record.attributes[sc.LOG_SESSION_ID] == "s-1"
    assert record.attributes[sc.EXCEPTION_MESSAGE] == "bad key [REDACTED:openai_key]"
    assert OPENAI_KEY not in record.attributes[sc.EXCEPTION_STACKTRACE]
    assert clean.resource.attributes["host.owner"] == "[REDACTED:email]"
    assert record.attributes[sc.SANITIZE_REDACTED] == 6
    assert raw.log_record.body == f"login by jane@example.com with {OPENAI_KEY}"  # the shared record is untouched
    assert raw.log_record.attributes["user.password"] == "hunter2"


def test_structured_log_bodies_are_scrubbed_member_by_member() -> None:
    body = {"event": "signup", "email": "jane@example.com", "token": "t"}
    (_,), (clean,) = logged(Policy(), lambda logger: logger.emit(body=body))
    assert clean.log_record.body == {"event": "signup", "email": "[REDACTED:email]", "token": "[REDACTED:token]"}


def test_log_bodies_of_bytes_that_are_not_utf8_are_scrubbed_too() -> None:
    body = b"\xff\xfe upload for jane@example.com with " + OPENAI_KEY.encode()
    (_,), (clean,) = logged(Policy(), lambda logger: logger.emit(body=body))
    assert OPENAI_KEY not in str(clean.log_record.body) and "jane@example.com" not in str(clean.log_record.body)
    assert clean.log_record.attributes[sc.SANITIZE_RULES] == ("email", "openai_key")
    binary = bytes(range(256))
    (_,), (kept,) = logged(Policy(), lambda logger: logger.emit(body=binary))
    assert kept.log_record.body == binary  # nothing found: the bytes pass as they were


def test_clean_log_records_are_passed_on_as_they_are() -> None:
    scrubber = Scrubber.from_settings(SanitizeSettings(), environ={})
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({sc.SERVICE_NAME: "svc"}))
    seen: list[Any] = []

    class Spy(SimpleLogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            seen.append(log_record)
            super().on_emit(log_record)

    provider.add_log_record_processor(SanitizeLogRecordProcessor(Spy(exporter), scrubber))
    provider.get_logger("app").emit(body="step done", attributes={"step": "build"})
    provider.shutdown()
    assert len(seen) == 1 and seen[0].log_record.body == "step done"
    assert sc.SANITIZE_REDACTED not in seen[0].log_record.attributes


def test_off_policy_leaves_the_export_processor_unwrapped() -> None:
    off = Policy(sanitize=SanitizeSettings(preset="off"))
    assert export_log_record_processor(off, SimpleLogRecordProcessor) is SimpleLogRecordProcessor


# --- failures close, never open -------------------------------------------------------------


def test_a_value_that_cannot_be_scrubbed_is_redacted_whole(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="otelkit.processors.sanitize")
    nested = "[" * 40 + json.dumps(f"jane@example.com {OPENAI_KEY}") + "]" * 40
    stage = stage_for()
    out = stage(finished(attributes={"deep": nested, "to": "bob@example.com", "ok": "fine"}))
    again = stage(finished(attributes={"deep": nested + " "}))
    assert out is not None and again is not None
    assert out.attributes["deep"] == "[REDACTED:sanitize_error]"
    assert out.attributes["to"] == "[REDACTED:email]" and out.attributes["ok"] == "fine"
    assert counts(out) == (2, ("email", "sanitize_error"))
    assert again.attributes["deep"] == "[REDACTED:sanitize_error]"
    assert stage.scrubber.failures == 2
    errors = [r for r in caplog.records if "could not scrub" in r.getMessage()]
    assert len(errors) == 1 and "jane" not in errors[0].getMessage()


def test_a_span_that_cannot_be_scrubbed_keeps_only_its_ids_and_safe_keys() -> None:
    span = finished("mail jane@example.com", attributes={sc.OPERATION_TYPE: "step", "to": "jane@example.com"})
    broken = replace_span(span, events=(object(),))
    out = stage_for()(broken)
    assert out is not None
    assert out.context == span.context and out.start_time == span.start_time
    assert out.name == "[REDACTED:sanitize_error]"
    assert dict(out.attributes) == {
        sc.OPERATION_TYPE: "step",
        sc.SANITIZE_REDACTED: 1,
        sc.SANITIZE_RULES: ("sanitize_error",),
    }
    assert out.events == () and out.resource.attributes[sc.SERVICE_NAME] == "svc"


# --- settings -------------------------------------------------------------------------------


def test_policy_file_sanitize_section() -> None:
    policy = parse_policy(
        """
sanitize:
  preset: strict
  mode: hash
  max_value_length: 1024
  enable: [ipv4]
  disable: email, high_entropy
  modes:
    - {rule: openai_key, mode: redact}
  key_patterns:
    - {name: internal_ref, pattern: "^x-internal-", mode: drop}
  value_patterns:
    - {name: employee_id, pattern: "EMP-\\\\d{6}"}
  allow_keys: ["app.public_*"]
  hash_key: a-long-enough-key-123
"""
    )
    settings = policy.sanitize
    assert settings.disable == ("email", "high_entropy")
    assert settings.modes == (RuleMode("openai_key", "redact"),)
    assert settings.value_patterns == (PatternRule("employee_id", r"EMP-\d{6}"),)
    scrubber = Scrubber.from_settings(settings, environ={})
    assert scrubber.scrub_text(f"{OPENAI_KEY} EMP-123456 jane@example.com").startswith("[REDACTED:openai_key] [HASH:")
    assert scrubber.scrub_text("jane@example.com") == "jane@example.com"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sanitize:\n  preset: paranoid\n", "sanitize.preset: expected one of strict, balanced, off"),
        ("sanitize:\n  mode: shred\n", "sanitize.mode: expected one of redact, hash, drop"),
        ("sanitize:\n  max_value_length: 10\n", "sanitize.max_value_length: expected 0 (no limit) or at least 64"),
        ("sanitize:\n  enable: [ipv5]\n", "sanitize.enable: unknown rule 'ipv5'"),
        ("sanitize:\n  disable: [emial]\n", "sanitize.disable: unknown rule 'emial'"),
        ("sanitize:\n  modes:\n    - {rule: nope, mode: hash}\n", "sanitize.modes: unknown rule 'nope'"),
        ("sanitize:\n  modes:\n    - {rule: email, mode: burn}\n", "sanitize.modes[0].mode: expected one of"),
        ("sanitize:\n  value_patterns:\n    - {name: x, pattern: '(a'}\n", "value_patterns[0].pattern: not a valid"),
        ("sanitize:\n  value_patterns:\n    - {name: x, pattern: 'a*'}\n", "value_patterns[0].pattern: 'a*' matches"),
        ("sanitize:\n  key_patterns:\n    - {name: Bad Name, pattern: x}\n", "key_patterns[0].name: a rule name"),
        ("sanitize:\n  key_patterns:\n    - {name: email, pattern: x}\n", "rule name 'email' is already used"),
        ("sanitize:\n  hash_key: short\n", "sanitize.hash_key: use at least 16 characters"),
        ("sanitize:\n  pattern: x\n", "unknown key 'sanitize.pattern' (line 2)"),
    ],
)
def test_settings_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_policy(text)
    assert message in str(caught.value)
    assert "(line " in str(caught.value)
