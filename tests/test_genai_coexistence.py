"""Other instrumentations of the same calls: exactly one LLM span per call, and every one priced.

Contrib's openai-v2 and the HTTP client instrumentation are the real packages, installed with the
test extras; the providers are the local fakes.
"""

from __future__ import annotations

from typing import Any, Iterator

import anthropic
import openai
import pytest
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otelkit import semconv as sc
from otelkit.config import Policy
from otelkit.distro import chain_stages
from otelkit.instrumentation.anthropic import AnthropicInstrumentor
from otelkit.instrumentation.openai import OpenAIInstrumentor
from otelkit.instrumentation.session import SessionSpanProcessor
from otelkit.processors.chain import SpanChain
from providers.anthropic_server import FakeAnthropicServer
from providers.openai_server import FakeOpenAIServer

MESSAGES: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def chained(switch: Any) -> InMemorySpanExporter:
    """Finished spans after otelkit's processor chain (as exported), for this test."""
    exporter = InMemorySpanExporter()
    switch.targets = [SessionSpanProcessor(), SpanChain(chain_stages(Policy()), SimpleSpanProcessor(exporter))]
    return exporter


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reply_text="Sunny.") as server:
        yield server


@pytest.fixture
def openai_client(openai_server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    openai_server.reset()
    with openai.OpenAI(base_url=openai_server.base_url, api_key="test", max_retries=0) as client:
        yield client


def genai_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if sc.GEN_AI_OPERATION_NAME in (s.attributes or {})]


def test_http_client_spans_nest_under_the_one_llm_span(openai_client: openai.OpenAI, chained: InMemorySpanExporter) -> None:
    ours, http = OpenAIInstrumentor(), HTTPX2ClientInstrumentor()
    ours.instrument()
    http.instrument()
    try:
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    finally:
        http.uninstrument()
        ours.uninstrument()
    (llm,) = genai_spans(chained)
    (post,) = [s for s in chained.get_finished_spans() if s is not llm]
    assert post.parent.span_id == llm.context.span_id
    assert sc.GEN_AI_OPERATION_NAME not in post.attributes


@pytest.mark.parametrize("contrib_outside", [True, False], ids=["contrib-outside", "contrib-inside"])
def test_contrib_openai_v2_beside_ours_gives_one_priced_span(
    openai_client: openai.OpenAI, chained: InMemorySpanExporter, contrib_outside: bool
) -> None:
    contrib_module = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    contrib, ours = contrib_module.OpenAIInstrumentor(), OpenAIInstrumentor()
    first, second = (ours, contrib) if contrib_outside else (contrib, ours)
    first.instrument()
    second.instrument()
    try:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        openai_client.embeddings.create(model="text-embedding-3-small", input="x")
    finally:
        second.uninstrument()
        first.uninstrument()
    chat, embeddings = genai_spans(chained)
    assert chat.instrumentation_scope.name != "otelkit" and embeddings.instrumentation_scope.name != "otelkit"
    # contrib records tokens but no cost: the enrich stage prices them from the table
    assert chat.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert chat.attributes[sc.GEN_AI_USAGE_COST] == pytest.approx((12 * 0.15 + 8 * 0.60) / 1e6)
    assert chat.attributes[sc.COST_STATUS] == "priced"
    assert embeddings.attributes[sc.COST_STATUS] == "priced"


def test_the_anthropic_sdks_own_spans_are_priced_too(chained: InMemorySpanExporter) -> None:
    with FakeAnthropicServer(reply_text="Sunny.") as server, anthropic.Anthropic(
        base_url=server.base_url, api_key="test", max_retries=0
    ) as client:
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    (span,) = genai_spans(chained)
    assert span.name == "anthropic.messages.create"  # otelkit's instrumentor is off here
    # the SDK counts 25 + 5 cache reads + 3 cache writes as input and names writes cache_write
    assert span.attributes[sc.GEN_AI_USAGE_COST] == pytest.approx((25 * 1 + 5 * 0.1 + 3 * 1.25 + 12 * 5) / 1e6)


def test_anthropic_with_http_instrumentation_is_one_llm_span(chained: InMemorySpanExporter) -> None:
    ours, http = AnthropicInstrumentor(), HTTPX2ClientInstrumentor()
    ours.instrument()
    http.instrument()
    try:
        with FakeAnthropicServer(reply_text="Sunny.") as server, anthropic.Anthropic(
            base_url=server.base_url, api_key="test", max_retries=0
        ) as client:
            client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    finally:
        http.uninstrument()
        ours.uninstrument()
    (llm,) = genai_spans(chained)
    assert llm.instrumentation_scope.name == "otelkit"
    assert [s.parent.span_id for s in chained.get_finished_spans() if s is not llm] == [llm.context.span_id]
