"""OpenAI SDK: chat completions, the Responses API and embeddings, sync and async, streamed or not.

Each call is one CLIENT span, ``{gen_ai.operation.name} {gen_ai.request.model}``, with the
GenAI conventions' attributes (provider, request and response model, response id, finish
reasons, input/output/cache-read/reasoning tokens, ``server.address``/``server.port``), the
tools the model asked for, its cost, and the GenAI metrics; streams also get the time to their
first chunk and end their span when the stream ends. Prompts and completions are recorded only
with content capture on. Calls another GenAI instrumentation traces (contrib's openai-v2,
OpenLLMetry) are left to it, so each call has exactly one LLM span.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from otelkit import semconv as sc
from otelkit.config import current_policy
from otelkit.instrumentation import api, genai
from otelkit.instrumentation._lazy import LazyPatch, PatchingInstrumentor
from otelkit.instrumentation._safety import warn_once
from otelkit.instrumentation.genai import CallInfo, Outcome, as_int, get, text_of

_instruments = ("openai >= 1.40",)
PROVIDER = "openai"
AZURE_PROVIDER = "azure.ai.openai"

CHAT = "chat"
RESPONSES = "responses"
EMBEDDINGS = "embeddings"


# --- requests -------------------------------------------------------------------------------
def _server(instance: Any) -> tuple[str | None, int | None, str]:
    """The API host and port the client talks to, and the provider name it stands for."""
    client = getattr(instance, "_client", None)
    provider = AZURE_PROVIDER if "azure" in type(client).__name__.lower() else PROVIDER
    url = getattr(client, "base_url", None)
    host = getattr(url, "host", None)
    port = getattr(url, "port", None)
    if port is None and host:
        port = 443 if getattr(url, "scheme", "https") == "https" else 80
    return (str(host) if host else None), port, provider


def _chat_messages(messages: Any) -> list[dict[str, Any]]:
    """Chat messages in the GenAI conventions' message schema (roles, text and tool-call parts)."""
    converted = []
    for message in messages or ():
        parts: list[dict[str, Any]] = []
        text = text_of(get(message, "content"))
        if text:
            parts.append({"type": "text", "content": text})
        for call in get(message, "tool_calls") or ():
            function = get(call, "function")
            parts.append(
                {"type": "tool_call", "id": get(call, "id"), "name": get(function, "name"), "arguments": get(function, "arguments")}
            )
        if get(message, "role") == "tool":
            parts = [{"type": "tool_call_response", "id": get(message, "tool_call_id"), "response": text}]
        converted.append({"role": get(message, "role"), "parts": parts})
    return converted


def _responses_input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "parts": [{"type": "text", "content": value}]}]
    return _chat_messages(value)


def _describe(kind: str, instance: Any, kwargs: dict[str, Any]) -> CallInfo:
    host, port, provider = _server(instance)
    model = str(kwargs.get("model") or "unknown")
    streaming = bool(kwargs.get("stream"))
    if kind == EMBEDDINGS:
        formats = kwargs.get("encoding_format")
        return CallInfo(
            provider=provider,
            operation=sc.GEN_AI_OP_EMBEDDINGS,
            model=model,
            server_address=host,
            server_port=port,
            attributes={sc.GEN_AI_REQUEST_ENCODING_FORMATS: [formats] if isinstance(formats, str) else None},
        )
    attributes: dict[str, Any] = {
        sc.GEN_AI_REQUEST_TEMPERATURE: _number(kwargs.get("temperature")),
        sc.GEN_AI_REQUEST_TOP_P: _number(kwargs.get("top_p")),
        sc.GEN_AI_REQUEST_STREAM: True if streaming else None,
    }
    if kind == CHAT:
        attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = as_int(kwargs.get("max_completion_tokens")) or as_int(kwargs.get("max_tokens"))
        choices = as_int(kwargs.get("n"))
        attributes[sc.GEN_AI_REQUEST_CHOICE_COUNT] = choices if choices not in (None, 1) else None
        messages = kwargs.get("messages")
        info = CallInfo(
            provider, sc.GEN_AI_OP_CHAT, model, host, port, streaming, attributes,
            input_text=lambda: "\n".join(text_of(get(msg, "content")) for msg in messages or ()),
            input_messages=lambda: _chat_messages(messages),
        )  # fmt: skip
        return info
    attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = as_int(kwargs.get("max_output_tokens"))
    request_input = kwargs.get("input")
    instructions = kwargs.get("instructions")
    return CallInfo(
        provider, sc.GEN_AI_OP_CHAT, model, host, port, streaming, attributes,
        input_text=lambda: "\n".join(
            filter(None, [text_of(instructions), request_input if isinstance(request_input, str) else
                          "\n".join(text_of(get(item, "content")) for item in request_input or ())])
        ),
        input_messages=lambda: _responses_input(request_input),
        system_instructions=(lambda: [{"type": "text", "content": instructions}]) if isinstance(instructions, str) else None,
    )  # fmt: skip


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# --- responses ------------------------------------------------------------------------------
def _chat_outcome(response: Any) -> Outcome:
    outcome = Outcome(response_id=get(response, "id"), response_model=get(response, "model"))
    for choice in get(response, "choices") or ():
        reason = get(choice, "finish_reason")
        outcome.finish_reasons.append(str(reason) if reason else "")
        message = get(choice, "message")
        parts: list[dict[str, Any]] = []
        text = get(message, "content")
        if text:
            parts.append({"type": "text", "content": text})
            outcome.output_text += text
        for call in get(message, "tool_calls") or ():
            function = get(call, "function")
            name = get(function, "name")
            outcome.requested_tools.append(str(name))
            parts.append({"type": "tool_call", "id": get(call, "id"), "name": name, "arguments": get(function, "arguments")})
        outcome.output_messages.append({"role": "assistant", "parts": parts, "finish_reason": reason or ""})
    usage = get(response, "usage")
    if usage is not None:
        outcome.input_tokens = as_int(get(usage, "prompt_tokens"))
        outcome.output_tokens = as_int(get(usage, "completion_tokens"))
        outcome.cache_read_tokens = as_int(get(get(usage, "prompt_tokens_details"), "cached_tokens"))
        outcome.reasoning_tokens = as_int(get(get(usage, "completion_tokens_details"), "reasoning_tokens"))
    return outcome


_RESPONSE_STATUS_REASONS = {"completed": "stop", "failed": "error", "cancelled": "cancelled"}


def _responses_outcome(response: Any) -> Outcome:
    outcome = Outcome(response_id=get(response, "id"), response_model=get(response, "model"))
    status = get(response, "status")
    reason = _RESPONSE_STATUS_REASONS.get(str(status), str(status or ""))
    if status == "incomplete":
        reason = str(get(get(response, "incomplete_details"), "reason") or "incomplete")
    parts: list[dict[str, Any]] = []
    for item in get(response, "output") or ():
        item_type = get(item, "type")
        if item_type == "message":
            for part in get(item, "content") or ():
                text = get(part, "text")
                if isinstance(text, str):
                    parts.append({"type": "text", "content": text})
                    outcome.output_text += text
        elif item_type == "function_call":
            name = get(item, "name")
            outcome.requested_tools.append(str(name))
            parts.append({"type": "tool_call", "id": get(item, "call_id"), "name": name, "arguments": get(item, "arguments")})
            outcome.output_text += str(get(item, "arguments") or "")
    if outcome.requested_tools and reason == "stop":
        reason = "tool_calls"
    outcome.finish_reasons = [reason] if reason else []
    outcome.output_messages = [{"role": "assistant", "parts": parts, "finish_reason": reason}]
    usage = get(response, "usage")
    if usage is not None:
        outcome.input_tokens = as_int(get(usage, "input_tokens"))
        outcome.output_tokens = as_int(get(usage, "output_tokens"))
        outcome.cache_read_tokens = as_int(get(get(usage, "input_tokens_details"), "cached_tokens"))
        outcome.reasoning_tokens = as_int(get(get(usage, "output_tokens_details"), "reasoning_tokens"))
    return outcome


def _embeddings_outcome(response: Any) -> Outcome:
    outcome = Outcome(response_model=get(response, "model"))
    usage = get(response, "usage")
    outcome.input_tokens = as_int(get(usage, "prompt_tokens"))
    data = get(response, "data") or ()
    if data:
        vector = get(data[0], "embedding")
        if isinstance(vector, list):
            outcome.embedding_dimensions = len(vector)
    return outcome


_OUTCOMES: dict[str, Callable[[Any], Outcome]] = {CHAT: _chat_outcome, RESPONSES: _responses_outcome, EMBEDDINGS: _embeddings_outcome}


class _ChatChunks:
    """Chat completion chunks gathered into one outcome: text and tool calls per choice, usage."""

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.model: str | None = None
        self.texts: dict[int, str] = {}
        self.reasons: dict[int, str] = {}
        self.calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        self.response_id = self.response_id or get(chunk, "id")
        self.model = self.model or get(chunk, "model")
        if get(chunk, "usage") is not None:
            self.usage = get(chunk, "usage")
        for choice in get(chunk, "choices") or ():
            index = get(choice, "index", 0) or 0
            delta = get(choice, "delta")
            text = get(delta, "content")
            if text:
                self.texts[index] = self.texts.get(index, "") + text
            for call in get(delta, "tool_calls") or ():
                slot = self.calls.setdefault(index, {}).setdefault(get(call, "index", 0) or 0, {"arguments": ""})
                function = get(call, "function")
                if get(call, "id"):
                    slot["id"] = get(call, "id")
                if get(function, "name"):
                    slot["name"] = get(function, "name")
                slot["arguments"] += get(function, "arguments") or ""
            if get(choice, "finish_reason"):
                self.reasons[index] = str(get(choice, "finish_reason"))

    def outcome(self) -> Outcome:
        outcome = Outcome(response_id=self.response_id, response_model=self.model)
        for index in sorted(set(self.texts) | set(self.reasons) | set(self.calls)):
            text = self.texts.get(index, "")
            parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text else []
            outcome.output_text += text
            for call in self.calls.get(index, {}).values():
                outcome.requested_tools.append(str(call.get("name")))
                outcome.output_text += call["arguments"]
                parts.append({"type": "tool_call", **call})
            reason = self.reasons.get(index, "")
            outcome.finish_reasons.append(reason)
            outcome.output_messages.append({"role": "assistant", "parts": parts, "finish_reason": reason})
        if self.usage is not None:
            usage = _chat_outcome({"usage": self.usage})
            outcome.input_tokens, outcome.output_tokens = usage.input_tokens, usage.output_tokens
            outcome.cache_read_tokens, outcome.reasoning_tokens = usage.cache_read_tokens, usage.reasoning_tokens
        return outcome


class _ResponseEvents:
    """Responses API stream events: the final response when it arrives, else the text so far."""

    _FINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self) -> None:
        self.final: Any = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.text = ""

    def add(self, event: Any) -> None:
        kind = get(event, "type")
        if kind in self._FINAL:
            self.final = get(event, "response")
        elif kind == "response.created":
            response = get(event, "response")
            self.response_id, self.model = get(response, "id"), get(response, "model")
        elif kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            self.text += get(event, "delta") or ""

    def outcome(self) -> Outcome:
        if self.final is not None:
            return _responses_outcome(self.final)
        return Outcome(response_id=self.response_id, response_model=self.model, output_text=self.text)


# --- wrappers -------------------------------------------------------------------------------
def _is_stream(result: Any) -> bool:
    kind = type(result)
    return hasattr(kind, "__next__") or hasattr(kind, "__anext__")


def _is_raw(result: Any) -> bool:
    """A ``with_raw_response`` result (the response models are pydantic models; raw ones are not)."""
    import pydantic

    return not isinstance(result, pydantic.BaseModel) and hasattr(result, "http_response") and hasattr(result, "parse")


def _prepare(kind: str, instance: Any, kwargs: dict[str, Any]) -> tuple[CallInfo, dict[str, Any]]:
    info = _describe(kind, instance, kwargs)
    if kind == CHAT and info.streaming and "stream_options" not in kwargs and current_policy().instrumentation.stream_usage:
        kwargs = {**kwargs, "stream_options": {"include_usage": True}}
    return info, kwargs


def _complete(kind: str, handle: api.LLMCall, info: CallInfo, result: Any, is_async: bool) -> Any:
    """Record a returned result; a stream comes back wrapped so its span ends with it."""
    if _is_stream(result):
        accumulator = _ChatChunks() if kind == CHAT else _ResponseEvents()
        return genai.follow_stream(result, handle, info, accumulator, is_async)
    if _is_raw(result):
        if info.streaming:  # a raw stream is parsed by the caller, out of our sight
            handle.end()
            return result
        genai.finish(handle, info, lambda: _OUTCOMES[kind](result.parse()))
        return result
    genai.finish(handle, info, lambda: _OUTCOMES[kind](result))
    return result


def _start(kind: str, wrapped: Any, instance: Any, kwargs: dict[str, Any]) -> tuple[api.LLMCall | None, CallInfo | None, dict[str, Any]]:
    if not is_instrumentation_enabled() or genai.defer_to_other_instrumentation(wrapped):
        return None, None, kwargs
    try:
        info, kwargs = _prepare(kind, instance, kwargs)
        return genai.begin(info), info, kwargs
    except Exception as exc:
        warn_once(f"starting an openai {kind} span", exc)
        return None, None, kwargs


def _sync_wrapper(kind: str) -> Callable[..., Any]:
    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        handle, info, kwargs = _start(kind, wrapped, instance, kwargs)
        if handle is None or info is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            genai.failed(handle, exc)
            raise
        handle.detach()
        return _complete(kind, handle, info, result, is_async=False)

    return traced


def _async_wrapper(kind: str) -> Callable[..., Any]:
    async def traced_call(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        handle, info, kwargs = _start(kind, wrapped, instance, kwargs)
        if handle is None or info is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            genai.failed(handle, exc)
            raise
        handle.detach()
        return _complete(kind, handle, info, result, is_async=True)

    def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        return traced_call(wrapped, instance, args, kwargs)

    return traced


# (module, class, method, kind, async)
_TARGETS = (
    ("openai.resources.chat.completions", "Completions", "create", CHAT, False),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", CHAT, True),
    ("openai.resources.chat.completions", "Completions", "parse", CHAT, False),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", CHAT, True),
    ("openai.resources.responses", "Responses", "create", RESPONSES, False),
    ("openai.resources.responses", "AsyncResponses", "create", RESPONSES, True),
    ("openai.resources.responses", "Responses", "parse", RESPONSES, False),
    ("openai.resources.responses", "AsyncResponses", "parse", RESPONSES, True),
    ("openai.resources.embeddings", "Embeddings", "create", EMBEDDINGS, False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", EMBEDDINGS, True),
)


def _present() -> list[tuple[Any, str, str, str, bool]]:
    """The targets this openai version has: (class, module, attribute path, kind, async)."""
    found = []
    for module_name, owner, method, kind, is_async in _TARGETS:
        try:
            cls = getattr(importlib.import_module(module_name), owner)
        except (ImportError, AttributeError):
            continue
        if hasattr(cls, method):
            found.append((cls, module_name, f"{owner}.{method}", kind, is_async))
    return found


def _wrap() -> None:
    for _, module_name, path, kind, is_async in _present():
        wrap_function_wrapper(module_name, path, (_async_wrapper if is_async else _sync_wrapper)(kind))


def _unwrap() -> None:
    for cls, _, path, _, _ in _present():
        method = path.split(".", 1)[1]
        if hasattr(vars(cls).get(method), "__wrapped__"):
            unwrap(cls, method)


class OpenAIInstrumentor(PatchingInstrumentor):
    """Traces the OpenAI SDK's chat completions, Responses API and embeddings (from its first import)."""

    instruments = _instruments
    patches = (LazyPatch("openai", _wrap, _unwrap),)
