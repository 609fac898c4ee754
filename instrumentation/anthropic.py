"""Anthropic SDK: Messages (``create``, ``stream``, ``parse``, beta), sync and async, streamed or not.

Every Messages call passes through the client's ``request`` method (retries happen inside it),
so that is where one CLIENT span per call starts, ``chat {model}``, with the GenAI conventions'
attributes: provider, request and response model, response id, stop reason, tokens (input
includes cache reads and cache writes, per the conventions; both are also recorded on their
own), the tools the model asked for, and cost. Streams end their span when the stream ends.

The SDK traces its own calls by default (``anthropic.messages.create`` spans). While otelkit
instruments it, otelkit's span takes the place of the SDK's for the calls it traces, so each
call has exactly one LLM span; the ``traceparent`` header the SDK would have sent is still sent,
from otelkit's span, whenever the client's own propagation setting would have sent it.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, Mapping

from opentelemetry import propagate
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from otelkit import semconv as sc
from otelkit.instrumentation import api, genai
from otelkit.instrumentation._lazy import LazyPatch, PatchingInstrumentor
from otelkit.instrumentation._safety import warn_once
from otelkit.instrumentation.genai import CallInfo, Outcome, as_int, get, text_of

_instruments = ("anthropic >= 0.40",)
PROVIDER = "anthropic"
MESSAGES_PATH = "/v1/messages"

# Set while otelkit traces a call, so the SDK's own call span is not started for it.
_tracing: contextvars.ContextVar[bool] = contextvars.ContextVar("otelkit_anthropic_call", default=False)


def _given(value: Any) -> bool:
    """Whether a request field holds a value (the SDK fills unset fields with Omit/NotGiven)."""
    return value is not None and type(value).__name__ not in ("Omit", "NotGiven")


def _body(options: Any) -> dict[str, Any]:
    body = getattr(options, "json_data", None)
    merged = {k: v for k, v in body.items() if _given(v)} if isinstance(body, Mapping) else {}
    extra = getattr(options, "extra_json", None)
    if isinstance(extra, Mapping):
        merged.update(extra)
    return merged


def _is_messages_call(options: Any) -> bool:
    return str(getattr(options, "url", "")).rstrip("/").endswith(MESSAGES_PATH)


def _block_parts(content: Any) -> list[dict[str, Any]]:
    """Content blocks in the GenAI conventions' message schema."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content or ():
        kind = get(block, "type")
        if kind == "text":
            parts.append({"type": "text", "content": get(block, "text")})
        elif kind == "tool_use":
            parts.append({"type": "tool_call", "id": get(block, "id"), "name": get(block, "name"), "arguments": get(block, "input")})
        elif kind == "tool_result":
            parts.append({"type": "tool_call_response", "id": get(block, "tool_use_id"), "response": text_of(get(block, "content"))})
    return parts


def _describe(client: Any, body: dict[str, Any], streaming: bool) -> CallInfo:
    url = getattr(client, "base_url", None)
    host = getattr(url, "host", None)
    port = getattr(url, "port", None)
    if port is None and host:
        port = 443 if getattr(url, "scheme", "https") == "https" else 80
    messages = body.get("messages") or ()
    system = body.get("system")
    return CallInfo(
        provider=PROVIDER,
        operation=sc.GEN_AI_OP_CHAT,
        model=str(body.get("model") or "unknown"),
        server_address=str(host) if host else None,
        server_port=port,
        streaming=streaming,
        attributes={
            sc.GEN_AI_REQUEST_MAX_TOKENS: as_int(body.get("max_tokens")),
            sc.GEN_AI_REQUEST_TEMPERATURE: body.get("temperature") if isinstance(body.get("temperature"), float) else None,
            sc.GEN_AI_REQUEST_STREAM: True if streaming else None,
        },
        input_text=lambda: "\n".join([text_of(system), *(text_of(get(m, "content")) for m in messages)]),
        input_messages=lambda: [{"role": get(m, "role"), "parts": _block_parts(get(m, "content"))} for m in messages],
        system_instructions=(lambda: _block_parts(system)) if system else None,
    )


def _usage(outcome: Outcome, usage: Any) -> None:
    """Anthropic's ``input_tokens`` excludes cached tokens; the conventions' input count includes them."""
    if usage is None:
        return
    plain = as_int(get(usage, "input_tokens"))
    read = as_int(get(usage, "cache_read_input_tokens"))
    written = as_int(get(usage, "cache_creation_input_tokens"))
    if plain is not None or read is not None or written is not None:
        outcome.input_tokens = (plain or 0) + (read or 0) + (written or 0)
    outcome.cache_read_tokens = read if read is not None else outcome.cache_read_tokens
    outcome.cache_creation_tokens = written if written is not None else outcome.cache_creation_tokens
    output = as_int(get(usage, "output_tokens"))
    if output is not None:
        outcome.output_tokens = output


def _message_outcome(message: Any) -> Outcome:
    outcome = Outcome(response_id=get(message, "id"), response_model=get(message, "model"))
    reason = get(message, "stop_reason")
    outcome.finish_reasons = [str(reason)] if reason else []
    content = get(message, "content") or ()
    for block in content:
        if get(block, "type") == "tool_use":
            outcome.requested_tools.append(str(get(block, "name")))
        elif get(block, "type") == "text":
            outcome.output_text += get(block, "text") or ""
    outcome.output_messages = [{"role": "assistant", "parts": _block_parts(content), "finish_reason": str(reason or "")}]
    _usage(outcome, get(message, "usage"))
    return outcome


class _MessageEvents:
    """A Messages stream's events gathered into one outcome."""

    def __init__(self) -> None:
        self.outcome_so_far = Outcome()
        self.blocks: dict[int, dict[str, Any]] = {}
        self.reason = ""

    def add(self, event: Any) -> None:
        kind = get(event, "type")
        outcome = self.outcome_so_far
        if kind == "message_start":
            message = get(event, "message")
            outcome.response_id, outcome.response_model = get(message, "id"), get(message, "model")
            _usage(outcome, get(message, "usage"))
        elif kind == "content_block_start":
            block = get(event, "content_block")
            entry: dict[str, Any] = {"type": get(block, "type"), "text": "", "input": ""}
            if entry["type"] == "tool_use":
                entry.update(id=get(block, "id"), name=get(block, "name"))
            self.blocks[get(event, "index", 0) or 0] = entry
        elif kind == "content_block_delta":
            delta = get(event, "delta")
            entry = self.blocks.setdefault(get(event, "index", 0) or 0, {"type": "text", "text": "", "input": ""})
            if get(delta, "type") == "text_delta":
                entry["text"] += get(delta, "text") or ""
            elif get(delta, "type") == "input_json_delta":
                entry["input"] += get(delta, "partial_json") or ""
        elif kind == "message_delta":
            self.reason = str(get(get(event, "delta"), "stop_reason") or self.reason)
            _usage(outcome, get(event, "usage"))

    def outcome(self) -> Outcome:
        outcome = self.outcome_so_far
        parts: list[dict[str, Any]] = []
        for _, block in sorted(self.blocks.items()):
            if block["type"] == "tool_use":
                outcome.requested_tools.append(str(block.get("name")))
                parts.append({"type": "tool_call", "id": block.get("id"), "name": block.get("name"), "arguments": block["input"]})
                outcome.output_text += block["input"]
            elif block["text"]:
                parts.append({"type": "text", "content": block["text"]})
                outcome.output_text += block["text"]
        outcome.finish_reasons = [self.reason] if self.reason else []
        outcome.output_messages = [{"role": "assistant", "parts": parts, "finish_reason": self.reason}]
        return outcome


def _with_trace_headers(client: Any, options: Any) -> Any:
    """A copy of the request options carrying otelkit's ``traceparent``, when the SDK would send one."""
    settings = getattr(client, "_open_telemetry", None)
    if getattr(client, "_tracer", None) is None or not (isinstance(settings, Mapping) and settings.get("propagation", True)):
        return options
    from anthropic._compat import model_copy

    copied = model_copy(options)
    headers = dict(copied.headers) if isinstance(copied.headers, Mapping) else {}
    propagate.inject(headers)
    copied.headers = headers
    return copied


def _start(instance: Any, args: Any, kwargs: dict[str, Any]) -> tuple[api.LLMCall | None, CallInfo | None, Any, Any]:
    """(handle, call info, options to send, the ``_tracing`` token) for a Messages call, else Nones."""
    options = args[1] if len(args) > 1 else kwargs.get("options")
    if not is_instrumentation_enabled() or options is None or not _is_messages_call(options):
        return None, None, options, None
    if genai.defer_to_other_instrumentation(None):
        return None, None, options, None
    try:
        info = _describe(instance, _body(options), bool(kwargs.get("stream")))
        handle = genai.begin(info)
        if handle is None:
            return None, None, options, None
        token = _tracing.set(True)
        try:
            options = _with_trace_headers(instance, options)
        except Exception as exc:
            warn_once("adding trace headers to an anthropic request", exc)
        return handle, info, options, token
    except Exception as exc:
        warn_once("starting an anthropic span", exc)
        return None, None, options, None


def _call_args(args: Any, kwargs: dict[str, Any], options: Any) -> tuple[Any, dict[str, Any]]:
    if len(args) > 1:
        return (args[0], options, *args[2:]), kwargs
    return args, {**kwargs, "options": options}


def _complete(handle: api.LLMCall, info: CallInfo, result: Any, is_async: bool) -> Any:
    if hasattr(result, "__next__") or hasattr(result, "__anext__"):
        return genai.follow_stream(result, handle, info, _MessageEvents(), is_async)
    if hasattr(result, "http_response") and hasattr(result, "parse"):
        if info.streaming or not getattr(result, "is_closed", False):
            handle.end()  # the caller reads (and parses) the body later, out of our sight
            return result
        genai.finish(handle, info, lambda: _message_outcome(result.parse()))
        return result
    genai.finish(handle, info, lambda: _message_outcome(result))
    return result


def _returned(handle: api.LLMCall, token: Any, exc: BaseException | None = None) -> None:
    """The request returned (or raised): the SDK may trace again, and the span stops being current
    here (ended now on an error, when its stream ends otherwise)."""
    _tracing.reset(token)
    handle.detach()
    if exc is not None:
        handle.end(exc)


def _traced_request(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    handle, info, options, token = _start(instance, args, kwargs)
    if handle is None or info is None:
        return wrapped(*args, **kwargs)
    call_args, call_kwargs = _call_args(args, kwargs, options)
    try:
        result = wrapped(*call_args, **call_kwargs)
    except BaseException as exc:
        _returned(handle, token, exc)
        raise
    _returned(handle, token)
    return _complete(handle, info, result, is_async=False)


async def _traced_request_async(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    handle, info, options, token = _start(instance, args, kwargs)
    if handle is None or info is None:
        return await wrapped(*args, **kwargs)
    call_args, call_kwargs = _call_args(args, kwargs, options)
    try:
        result = await wrapped(*call_args, **call_kwargs)
    except BaseException as exc:
        _returned(handle, token, exc)
        raise
    _returned(handle, token)
    return _complete(handle, info, result, is_async=True)


def _async_request(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    return _traced_request_async(wrapped, instance, args, kwargs)


def _sdk_call_span(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """The SDK's own call span, except for the calls otelkit traces."""
    if _tracing.get():
        return None
    return wrapped(*args, **kwargs)


def _wrap() -> None:
    import anthropic._base_client as base

    wrap_function_wrapper(base, "SyncAPIClient.request", _traced_request)
    wrap_function_wrapper(base, "AsyncAPIClient.request", _async_request)
    if hasattr(base, "start_api_call_span"):
        wrap_function_wrapper(base, "start_api_call_span", _sdk_call_span)


def _unwrap() -> None:
    import anthropic._base_client as base

    unwrap(base.SyncAPIClient, "request")
    unwrap(base.AsyncAPIClient, "request")
    if hasattr(getattr(base, "start_api_call_span", None), "__wrapped__"):
        base.start_api_call_span = base.start_api_call_span.__wrapped__


class AnthropicInstrumentor(PatchingInstrumentor):
    """Traces the Anthropic SDK's Messages calls (one span per call, in place of the SDK's own),
    from the program's first import of ``anthropic``."""

    instruments = _instruments
    patches = (LazyPatch("anthropic", _wrap, _unwrap),)
