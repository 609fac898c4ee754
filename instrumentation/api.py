"""The otelkit instrumentation API: one span (and one duration measurement) per operation.

Every operation (``command``, ``step``, ``template``, ``condition``, ``tool``, ``llm``,
``agent``, and ``function`` for autowrapped code) is both a decorator, for sync and async
functions (not generators), and a context manager, sync and async. Entering returns a handle
whose ``span`` is the live OpenTelemetry span; ``current_operation()`` finds it from inside a
decorated function. Telemetry never changes what the wrapped code returns or raises: a failure
inside otelkit is logged once and the user's code runs on.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from opentelemetry import baggage, context, trace
from opentelemetry.trace import INVALID_SPAN, SpanKind, Status, StatusCode

from otelkit import pricing
from otelkit import semconv as sc
from otelkit.instrumentation import aggregates
from otelkit.instrumentation import metrics as m
from otelkit.instrumentation._safety import warn_once as _warn_once

F = TypeVar("F", bound=Callable[..., Any])

_tracer: trace.Tracer = trace.get_tracer(sc.INSTRUMENTATION_SCOPE)
_resolved = not isinstance(_tracer, trace.ProxyTracer)


def _resolve_tracer() -> trace.Tracer:
    """The SDK's tracer once a global provider is set (it can be set only once), else the proxy.

    Calling the real tracer directly saves the proxy's indirection on every operation.
    """
    global _tracer, _resolved
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        _tracer = trace.get_tracer(sc.INSTRUMENTATION_SCOPE)
        _resolved = True
    return _tracer


_AGENT = sc.OperationType.AGENT.value
_AGENT_WORK = frozenset({sc.OperationType.LLM.value, sc.OperationType.TOOL.value})
_current: contextvars.ContextVar["Operation | None"] = contextvars.ContextVar("otelkit_operation", default=None)


def _is_failure(exc: BaseException) -> bool:
    """Whether an exception leaving an operation means the operation failed."""
    if isinstance(exc, SystemExit):
        return exc.code not in (None, 0)
    return not isinstance(exc, GeneratorExit)


def current_operation() -> "Operation | None":
    """The innermost otelkit operation running in this context, if any."""
    return _current.get()


class Operation:
    """A running operation: the handle a ``with`` block or ``current_operation()`` gives you."""

    __slots__ = ("span", "op_type", "name", "_start_ns", "_tokens", "_failed", "agent_name")

    def __init__(self, span: trace.Span, op_type: str, name: str, start_ns: int, agent_name: str | None = None) -> None:
        self.span = span
        self.op_type = op_type
        self.name = name
        self._start_ns = start_ns
        self._tokens: tuple[Any, Any] | None = None
        self._failed = False
        self.agent_name = agent_name  # the agent this operation runs in (itself, for an agent)

    def set_attribute(self, key: str, value: Any) -> None:
        """Add an attribute to the operation's span."""
        self.span.set_attribute(key, value)

    def fail(self, message: str, error_type: str = "failure") -> None:
        """Mark the operation failed without an exception (e.g. a tool that returned an error)."""
        self._failed = True
        self.span.set_status(Status(StatusCode.ERROR, message))
        self.span.set_attribute(sc.ERROR_TYPE, error_type)

    def detach(self) -> None:
        """Stop being this context's current span and operation; the span stays open until :meth:`end`.

        For work that outlives the call that started it (a stream consumed after ``create()``
        returned): call it where the operation was entered, before returning.
        """
        tokens, self._tokens = self._tokens, None
        if tokens is None:
            return
        try:
            ctx_token, op_token = tokens
            _current.reset(op_token)
            if ctx_token is not None:
                context.detach(ctx_token)
        except Exception as failure:
            _warn_once(f"detaching {self.op_type} '{self.name}'", failure)

    def end(self, exc: BaseException | None = None) -> None:
        """End a detached operation, as failed by ``exc`` if given; from any thread or task."""
        try:
            self._finish(exc)
        except Exception as failure:
            _warn_once(f"ending {self.op_type} '{self.name}'", failure)

    def _on_result(self, result: Any) -> None:
        """Hook for operations that derive attributes from the decorated function's result."""

    def _finish(self, exc: BaseException | None) -> None:
        end_ns = time.time_ns()
        span = self.span
        failed = self._failed
        if exc is not None and _is_failure(exc):
            failed = True
            error_type = type(exc).__qualname__
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))
            span.set_attribute(sc.ERROR_TYPE, error_type)
        span.end(end_ns)
        if m.recording():
            outcome = sc.OUTCOME_ERROR if failed else sc.OUTCOME_SUCCESS
            duration_s = (end_ns - self._start_ns) / 1e9
            aggregates.record_duration(self.op_type, self.name, outcome, duration_s)
            self._record_metrics(duration_s, failed)

    def _record_metrics(self, duration_s: float, failed: bool) -> None:
        """Hook for operation-specific metrics."""


class LLMCall(Operation):
    """The handle of an ``llm`` operation: record what the model used and answered."""

    __slots__ = ("provider", "operation", "response_model")

    def __init__(self, span: trace.Span, op_type: str, name: str, start_ns: int, agent_name: str | None = None) -> None:
        super().__init__(span, op_type, name, start_ns, agent_name)
        self.provider = ""
        self.operation = sc.GEN_AI_OP_CHAT
        self.response_model: str | None = None

    def record_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cost_usd: float | None = None,
        *,
        cache_creation_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        estimated: bool = False,
    ) -> None:
        """Record token usage and its cost.

        Input tokens include cached ones (read and written), per the GenAI conventions. Without
        ``cost_usd`` the call is priced from the pricing table (response model, else request
        model); a model the table lacks is marked ``otelkit.cost.status=unpriced``, never a
        silent zero. ``estimated`` says the counts were estimated (a stream without usage).
        """
        attributes: dict[str, Any] = {}
        recording = m.recording()
        for key, tokens, token_type in (
            (sc.GEN_AI_USAGE_INPUT_TOKENS, input_tokens, sc.TOKEN_TYPE_INPUT),
            (sc.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens, sc.TOKEN_TYPE_OUTPUT),
        ):
            if tokens is not None:
                attributes[key] = int(tokens)
                if recording:
                    aggregates.record_tokens(self.operation, self.provider, self.name, token_type, int(tokens))
        for key, tokens in (
            (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read_tokens),
            (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, cache_creation_tokens),
            (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning_tokens),
        ):
            if tokens is not None:
                attributes[key] = int(tokens)
        if cost_usd is None and (input_tokens is not None or output_tokens is not None):
            price = pricing.current_table().lookup(self.provider or None, self.response_model or self.name)
            if price is not None:
                cost_usd = pricing.cost_usd(
                    price, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens
                )
        if cost_usd is not None:
            attributes[sc.GEN_AI_USAGE_COST] = float(cost_usd)
            status = sc.CostStatus.ESTIMATED if estimated else sc.CostStatus.PRICED
            attributes[sc.COST_STATUS] = status.value
            if recording:
                aggregates.add_cost(self.operation, self.provider, self.name, float(cost_usd))
        elif input_tokens is not None or output_tokens is not None:
            attributes[sc.COST_STATUS] = sc.CostStatus.UNPRICED.value
        if attributes:
            self.span.set_attributes(attributes)

    def set_response(
        self, model: str | None = None, response_id: str | None = None, finish_reasons: Sequence[str] | None = None
    ) -> None:
        """Record what the provider answered with: the actual model, response id, finish reasons."""
        attributes: dict[str, Any] = {}
        if model is not None:
            self.response_model = model
            attributes[sc.GEN_AI_RESPONSE_MODEL] = model
        if response_id is not None:
            attributes[sc.GEN_AI_RESPONSE_ID] = response_id
        if finish_reasons is not None:
            attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
        if attributes:
            self.span.set_attributes(attributes)

    def _record_metrics(self, duration_s: float, failed: bool) -> None:
        aggregates.record_gen_ai_duration(self.operation, self.provider, self.name, duration_s)


class ConditionCheck(Operation):
    """The handle of a ``condition`` operation: record the result and the branch taken."""

    __slots__ = ("branches",)

    def __init__(self, span: trace.Span, op_type: str, name: str, start_ns: int, agent_name: str | None = None) -> None:
        super().__init__(span, op_type, name, start_ns, agent_name)
        self.branches: tuple[str, str] | None = None

    def check(self, result: Any, branch: str | None = None) -> Any:
        """Record ``bool(result)`` and the branch taken; returns ``result`` for use in ``if``."""
        outcome = bool(result)
        self.span.set_attribute(sc.CONDITION_RESULT, outcome)
        if branch is None and self.branches is not None:
            branch = self.branches[0] if outcome else self.branches[1]
        if branch is not None:
            self.span.set_attribute(sc.CONDITION_BRANCH, branch)
        return result

    def _on_result(self, result: Any) -> None:
        self.check(result)


class _OperationSpec:
    """A configured operation: used as a decorator or (async) context manager, any number of times."""

    handle_class: type[Operation] = Operation

    def __init__(
        self,
        op_type: sc.OperationType,
        name: str,
        span_name: str,
        attributes: Mapping[str, Any],
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        self.op_type = op_type.value
        self.name = name
        self.span_name = span_name
        self.attributes = {sc.OPERATION_TYPE: op_type.value, **attributes}
        self.kind = kind

    def _configure(self, handle: Operation) -> None:
        """Hook for handle settings that come from the spec (provider, branches...)."""

    def begin(self, attributes: Mapping[str, Any] | None = None) -> Operation | None:
        """Start the operation as this context's current one, for callers that end it themselves
        (instrumentors): pair with :meth:`Operation.detach` and :meth:`Operation.end`. None if
        otelkit could not start it. ``attributes`` are added to the spec's, at span start."""
        return self._start(attributes)

    def _start(self, extra: Mapping[str, Any] | None = None) -> Operation | None:
        try:
            start_ns = time.time_ns()
            tracer = _tracer if _resolved else _resolve_tracer()
            session_id = baggage.get_baggage(sc.BAGGAGE_SESSION_ID)
            attributes = self.attributes
            if extra:
                attributes = {**attributes, **extra}
            if session_id is not None:
                attributes = {**attributes, sc.SESSION_ID: str(session_id)}
            parent = _current.get()
            agent_name = self.name if self.op_type == _AGENT else (parent.agent_name if parent is not None else None)
            if agent_name is not None and self.op_type in _AGENT_WORK and sc.GEN_AI_AGENT_NAME not in attributes:
                # LLM and tool calls made inside an agent name it, so usage can be reported per agent.
                attributes = {**attributes, sc.GEN_AI_AGENT_NAME: agent_name}
            span = tracer.start_span(self.span_name, kind=self.kind, attributes=attributes, start_time=start_ns)
            handle = self.handle_class(span, self.op_type, self.name, start_ns, agent_name)
            self._configure(handle)
            handle._tokens = (context.attach(trace.set_span_in_context(span)), _current.set(handle))
            return handle
        except Exception as exc:  # telemetry must never break the user's call
            _warn_once(f"starting {self.op_type} '{self.name}'", exc)
            return None

    @staticmethod
    def _end(handle: Operation | None, exc: BaseException | None) -> None:
        if handle is None:
            return
        try:
            if handle._tokens is not None:
                ctx_token, op_token = handle._tokens
                _current.reset(op_token)
                if ctx_token is None:  # a no-op handle: nothing was started
                    return
                context.detach(ctx_token)
            handle._finish(exc)
        except Exception as failure:
            _warn_once(f"ending {handle.op_type} '{handle.name}'", failure)

    @staticmethod
    def _result(handle: Operation | None, result: Any) -> None:
        if handle is not None:
            try:
                handle._on_result(result)
            except Exception as failure:
                _warn_once(f"recording the result of {handle.op_type} '{handle.name}'", failure)

    def __enter__(self) -> Operation:
        handle = self._start()
        if handle is None:  # otelkit could not start it: enter a no-op handle in its place
            handle = Operation(INVALID_SPAN, self.op_type, self.name, 0)
            handle._tokens = (None, _current.set(handle))
        return handle

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        # The innermost operation entered in this context (task, thread) is the one this block
        # entered; a per-instance stack would mix them up when one instance is shared.
        self._end(_current.get(), exc)

    async def __aenter__(self) -> Operation:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            # A generator runs in its caller's context between yields, so a span made current
            # inside it would leak into the caller: say so instead of tracing it wrongly.
            raise TypeError(
                f"otelkit: cannot decorate generator {fn.__qualname__}; use 'with {self.op_type}(...)' inside it"
            )
        if inspect.iscoroutinefunction(fn):
            return self._wrap_coroutine(fn)  # type: ignore[return-value]
        return self._wrap_function(fn)  # type: ignore[return-value]

    def _wrap_function(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        start, end, result_of = self._start, self._end, self._result

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            handle = start()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                end(handle, exc)
                raise
            result_of(handle, result)
            end(handle, None)
            return result

        return traced

    def _wrap_coroutine(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        start, end, result_of = self._start, self._end, self._result

        @functools.wraps(fn)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            handle = start()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                end(handle, exc)
                raise
            result_of(handle, result)
            end(handle, None)
            return result

        return traced


class _LLMSpec(_OperationSpec):
    handle_class = LLMCall

    def __init__(self, model: str, provider: str, operation: str) -> None:
        super().__init__(
            sc.OperationType.LLM,
            model,
            f"{operation} {model}",
            {sc.GEN_AI_OPERATION_NAME: operation, sc.GEN_AI_PROVIDER_NAME: provider, sc.GEN_AI_REQUEST_MODEL: model},
            SpanKind.CLIENT,
        )
        self.provider = provider
        self.operation = operation

    def _configure(self, handle: Operation) -> None:
        assert isinstance(handle, LLMCall)
        handle.provider = self.provider
        handle.operation = self.operation


class _ConditionSpec(_OperationSpec):
    handle_class = ConditionCheck

    def __init__(self, expression: str, branches: tuple[str, str] | None) -> None:
        super().__init__(sc.OperationType.CONDITION, expression, expression, {sc.CONDITION_EXPRESSION: expression})
        self.branches = branches

    def _configure(self, handle: Operation) -> None:
        assert isinstance(handle, ConditionCheck)
        handle.branches = self.branches


def _extra(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(attributes) if attributes else {}


def command(name: str, attributes: Mapping[str, Any] | None = None) -> _OperationSpec:
    """A command a user or script invoked (``deploy``, ``build --release``)."""
    return _OperationSpec(sc.OperationType.COMMAND, name, name, {sc.COMMAND_NAME: name, **_extra(attributes)})


def step(step_type: str, step_id: str | None = None, attributes: Mapping[str, Any] | None = None) -> _OperationSpec:
    """One step of a pipeline; ``step_id`` tells instances of the same step type apart."""
    attrs = {sc.STEP_TYPE: step_type, **_extra(attributes)}
    if step_id is not None:
        attrs[sc.STEP_ID] = step_id
    return _OperationSpec(sc.OperationType.STEP, step_type, step_type, attrs)


def template(name: str, attributes: Mapping[str, Any] | None = None) -> _OperationSpec:
    """Rendering the template ``name``."""
    return _OperationSpec(sc.OperationType.TEMPLATE, name, name, {sc.TEMPLATE_NAME: name, **_extra(attributes)})


def condition(expression: str, branches: tuple[str, str] | None = None) -> _OperationSpec:
    """Evaluating a condition; records ``otelkit.condition.result`` and the branch taken.

    As a decorator, the function's return value is the result; in a ``with`` block, call
    ``handle.check(value)``. ``branches`` names the (true, false) branches.
    """
    return _ConditionSpec(expression, branches)


def tool(name: str, attributes: Mapping[str, Any] | None = None) -> _OperationSpec:
    """A tool call (``execute_tool {name}`` in the GenAI conventions)."""
    return _OperationSpec(
        sc.OperationType.TOOL,
        name,
        f"{sc.GEN_AI_OP_EXECUTE_TOOL} {name}",
        {sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OP_EXECUTE_TOOL, sc.GEN_AI_TOOL_NAME: name, **_extra(attributes)},
    )


def llm(model: str, provider: str, operation: str = sc.GEN_AI_OP_CHAT) -> _OperationSpec:
    """A call to a language model; the handle records tokens, cost and the response model."""
    return _LLMSpec(model, provider, operation)


def agent(name: str, attributes: Mapping[str, Any] | None = None) -> _OperationSpec:
    """An agent invocation (``invoke_agent {name}`` in the GenAI conventions)."""
    return _OperationSpec(
        sc.OperationType.AGENT,
        name,
        f"{sc.GEN_AI_OP_INVOKE_AGENT} {name}",
        {sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: name, **_extra(attributes)},
    )


def function(qualified_name: str) -> _OperationSpec:
    """A plain function traced by name (what ``OTELKIT_AUTOWRAP`` applies)."""
    return _OperationSpec(
        sc.OperationType.FUNCTION, qualified_name, qualified_name, {sc.CODE_FUNCTION_NAME: qualified_name}
    )


__all__: Iterable[str] = [
    "ConditionCheck",
    "LLMCall",
    "Operation",
    "agent",
    "command",
    "condition",
    "current_operation",
    "function",
    "llm",
    "step",
    "template",
    "tool",
]
