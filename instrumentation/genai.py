"""What the GenAI instrumentors (OpenAI, Anthropic) share: starting the LLM operation, recording a
response, following a stream to its end, and standing aside for another GenAI instrumentation.

An instrumentor describes a call (:class:`CallInfo`), starts it with :func:`begin` (the span is
current while the request runs, so HTTP client spans nest under it), and after the call returns
either records the response (:func:`record`) or hands back a proxy of the stream
(:func:`follow_stream`) that ends the span when the stream is exhausted, fails, is closed, or is
dropped. Usage the provider reported is recorded as is; a stream that reported none is counted
with :mod:`otelkit.instrumentation.tokens` and marked estimated.
"""

from __future__ import annotations

import json
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

import wrapt
from opentelemetry import context, trace
from opentelemetry.trace import SpanKind

from otelkit import semconv as sc
from otelkit.config import current_policy
from otelkit.instrumentation import aggregates, api
from otelkit.instrumentation import metrics as m
from otelkit.instrumentation import tokens
from otelkit.instrumentation._safety import warn_once

# Other GenAI instrumentations of the same client libraries: when one of them traces a call,
# otelkit records nothing for it, so each call has exactly one LLM span.
FOREIGN_WRAPPER_MODULES = (
    "opentelemetry.instrumentation.openai",  # contrib's openai-v2, OpenLLMetry's openai
    "opentelemetry.instrumentation.anthropic",
    "opentelemetry.util.genai",
)
# opentelemetry-util-genai marks the context of a call its handler traces under this key.
UTIL_GENAI_CONTEXT_KEY = "opentelemetry.genai.client.inference.context"


@dataclass
class CallInfo:
    """What is known about a call before it is made."""

    provider: str
    operation: str
    model: str
    server_address: str | None = None
    server_port: int | None = None
    streaming: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)
    input_text: Callable[[], str] = lambda: ""  # the prompt as text, for estimating input tokens
    input_messages: Callable[[], list[dict[str, Any]]] | None = None  # for content capture
    system_instructions: Callable[[], list[dict[str, Any]]] | None = None


@dataclass
class Outcome:
    """What a response (or a whole stream) said: ids, reasons, usage, tools requested, output."""

    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    requested_tools: list[str] = field(default_factory=list)
    output_messages: list[dict[str, Any]] = field(default_factory=list)
    output_text: str = ""  # everything the model produced, for estimating output tokens
    embedding_dimensions: int | None = None


class Accumulator(Protocol):
    """Gathers a stream's items into an :class:`Outcome`."""

    def add(self, item: Any) -> None: ...

    def outcome(self) -> Outcome: ...


def capture_content() -> bool:
    """Whether prompts and completions are recorded (``OTELKIT_CAPTURE_CONTENT``, off by default)."""
    return current_policy().instrumentation.capture_content


def content_json(value: Any) -> str:
    """GenAI message attributes are JSON strings (the conventions' message schema)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _foreign_wrapper_below(wrapped: Any) -> bool:
    """Whether a wrapper from another GenAI instrumentation sits under ours on this method."""
    current = wrapped
    for _ in range(8):
        wrapper = getattr(current, "_self_wrapper", None)
        if wrapper is not None:
            target = getattr(wrapper, "func", wrapper)
            module = getattr(target, "__module__", "") or ""
            if module.startswith(FOREIGN_WRAPPER_MODULES):
                return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return False
    return False


def _foreign_span_current() -> bool:
    """Whether another instrumentation's GenAI client span is the current span (it wrapped outside us)."""
    if context.get_value(UTIL_GENAI_CONTEXT_KEY) is not None:
        return True
    span = trace.get_current_span()
    scope = getattr(span, "instrumentation_scope", None)
    if scope is None or scope.name == sc.INSTRUMENTATION_SCOPE or getattr(span, "kind", None) is not SpanKind.CLIENT:
        return False
    attributes = getattr(span, "attributes", None) or {}
    return sc.GEN_AI_OPERATION_NAME in attributes


def defer_to_other_instrumentation(wrapped: Any) -> bool:
    """True when another GenAI instrumentation traces this call, inside or outside our wrapper."""
    try:
        return _foreign_span_current() or _foreign_wrapper_below(wrapped)
    except Exception as exc:
        warn_once("looking for other GenAI instrumentations", exc)
        return False


_specs: dict[tuple[str, str, str], api._OperationSpec] = {}


def begin(info: CallInfo) -> api.LLMCall | None:
    """Start the LLM operation for a call, current in this context; None if it could not start."""
    key = (info.model, info.provider, info.operation)
    spec = _specs.get(key)
    if spec is None:
        if len(_specs) >= 1024:
            _specs.clear()
        spec = _specs[key] = api.llm(info.model, info.provider, info.operation)
    attributes = {key_: value for key_, value in info.attributes.items() if value is not None}
    if info.server_address:
        attributes[sc.SERVER_ADDRESS] = info.server_address
    if info.server_port is not None:
        attributes[sc.SERVER_PORT] = info.server_port
    handle = spec.begin(attributes)
    if not isinstance(handle, api.LLMCall):
        return None
    span = handle.span
    if capture_content():
        try:
            if info.input_messages is not None:
                span.set_attribute(sc.GEN_AI_INPUT_MESSAGES, content_json(info.input_messages()))
            if info.system_instructions is not None:
                instructions = info.system_instructions()
                if instructions:
                    span.set_attribute(sc.GEN_AI_SYSTEM_INSTRUCTIONS, content_json(instructions))
        except Exception as exc:
            warn_once(f"capturing the {info.provider} request content", exc)
    return handle


def record(handle: api.LLMCall, info: CallInfo, outcome: Outcome, estimated_ok: bool = False) -> None:
    """Put a response's outcome on the span: ids, reasons, tools, usage (estimated when missing), content."""
    handle.set_response(
        model=outcome.response_model,
        response_id=outcome.response_id,
        finish_reasons=outcome.finish_reasons or None,
    )
    span = handle.span
    extra: dict[str, Any] = {}
    if outcome.requested_tools:
        extra[sc.LLM_REQUESTED_TOOLS] = list(outcome.requested_tools)
    if outcome.embedding_dimensions is not None:
        extra[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = outcome.embedding_dimensions
    if capture_content() and outcome.output_messages:
        extra[sc.GEN_AI_OUTPUT_MESSAGES] = content_json(outcome.output_messages)
    if extra:
        span.set_attributes(extra)
    if outcome.input_tokens is None and outcome.output_tokens is None:
        if not estimated_ok:
            return
        model = outcome.response_model or info.model
        input_tokens, method = tokens.count(info.input_text(), model)
        output_tokens, _ = tokens.count(outcome.output_text, model)
        span.set_attribute(sc.TOKENS_ESTIMATED_BY, method)
        handle.record_usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=True)
        return
    handle.record_usage(
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
        cache_read_tokens=outcome.cache_read_tokens,
        cache_creation_tokens=outcome.cache_creation_tokens,
        reasoning_tokens=outcome.reasoning_tokens,
    )


def failed(handle: api.LLMCall, exc: BaseException) -> None:
    """The call raised: the span stops being current and ends as failed (the caller re-raises)."""
    handle.detach()
    handle.end(exc)


def finish(handle: api.LLMCall, info: CallInfo, outcome_of: Callable[[], Outcome]) -> None:
    """Record a finished response and end the span; a failure to read it is logged, the span still ends."""
    try:
        record(handle, info, outcome_of())
    except Exception as exc:
        warn_once(f"reading a {info.provider} response", exc)
    handle.end()


class StreamState:
    """One stream being followed: its span, what has arrived, and whether the span has ended."""

    def __init__(self, handle: api.LLMCall, info: CallInfo, accumulator: Accumulator) -> None:
        self.handle = handle
        self.info = info
        self.accumulator = accumulator
        self.started = time.monotonic()
        self.first_chunk = False
        self.done = False

    def on_item(self, item: Any) -> None:
        try:
            if not self.first_chunk:
                self.first_chunk = True
                elapsed = time.monotonic() - self.started
                self.handle.span.set_attribute(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, elapsed)
                if m.recording():
                    aggregates.record_first_chunk(self.info.operation, self.info.provider, self.info.model, elapsed)
            self.accumulator.add(item)
        except Exception as exc:
            warn_once(f"reading a {self.info.provider} stream chunk", exc)

    def finish(self, exc: BaseException | None = None) -> None:
        """End the span once: on exhaustion, error, close, or when the stream is dropped unfinished."""
        if self.done:
            return
        self.done = True
        try:
            record(self.handle, self.info, self.accumulator.outcome(), estimated_ok=True)
        except Exception as failure:
            warn_once(f"reading a {self.info.provider} stream", failure)
        self.handle.end(exc)


class SyncStream(wrapt.ObjectProxy):  # type: ignore[misc]
    """A provider's stream, unchanged to the caller, that ends its LLM span when the stream ends."""

    def __init__(self, stream: Any, state: StreamState) -> None:
        super().__init__(stream)
        self._self_state = state
        weakref.finalize(self, state.finish)

    def __iter__(self) -> "SyncStream":
        return self

    def __next__(self) -> Any:
        try:
            item = next(self.__wrapped__)
        except StopIteration:
            self._self_state.finish()
            raise
        except BaseException as exc:
            self._self_state.finish(exc)
            raise
        self._self_state.on_item(item)
        return item

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_state.finish()

    def __enter__(self) -> "SyncStream":
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_state.finish(exc)


class AsyncStream(wrapt.ObjectProxy):  # type: ignore[misc]
    """The async counterpart of :class:`SyncStream`."""

    def __init__(self, stream: Any, state: StreamState) -> None:
        super().__init__(stream)
        self._self_state = state
        weakref.finalize(self, state.finish)

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_state.finish()
            raise
        except BaseException as exc:
            self._self_state.finish(exc)
            raise
        self._self_state.on_item(item)
        return item

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_state.finish()

    async def aclose(self) -> Any:
        return await self.close()

    async def __aenter__(self) -> "AsyncStream":
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_state.finish(exc)


def follow_stream(stream: Any, handle: api.LLMCall, info: CallInfo, accumulator: Accumulator, is_async: bool) -> Any:
    """The stream to give the caller: a proxy that ends the span, or the stream itself if that fails."""
    try:
        state = StreamState(handle, info, accumulator)
        return AsyncStream(stream, state) if is_async else SyncStream(stream, state)
    except Exception as exc:
        warn_once(f"following a {info.provider} stream", exc)
        handle.end()
        return stream


def text_of(content: Any) -> str:
    """The text in a message's content: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Iterable) and not isinstance(content, (bytes, Mapping)):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text") or part.get("content")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
            else:
                text = getattr(part, "text", None)
                if isinstance(text, str):
                    parts.append(text)
        return "\n".join(parts)
    return str(content)


_MISSING = object()


def get(obj: Any, name: str, default: Any = None) -> Any:
    """A field of an SDK model object or of a plain dict (requests are dicts, responses models).

    Called a dozen times per LLM call, so the common cases come first: ``isinstance`` against
    the ``Mapping`` ABC is slow enough to show up in the per-call overhead.
    """
    if obj is None:
        return default
    if type(obj) is dict:
        return obj.get(name, default)
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        return obj.get(name, default) if isinstance(obj, Mapping) else default
    return value


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
