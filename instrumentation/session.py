"""Sessions: a ``session.id`` that every span started inside carries.

The id travels in OpenTelemetry baggage, so it follows the context into asyncio tasks, into
threads (with the threading instrumentation ``opentelemetry-instrument`` loads), and into other
processes through the standard W3C baggage propagator. :class:`SessionSpanProcessor` stamps it
on spans from any instrumentation, not only otelkit's.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Any, Callable, TypeVar

from opentelemetry import baggage, context
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Span as ApiSpan

from otelkit.semconv import BAGGAGE_SESSION_ID, INSTRUMENTATION_SCOPE, SESSION_ID

F = TypeVar("F", bound=Callable[..., Any])
_entered: contextvars.ContextVar[tuple[object, ...]] = contextvars.ContextVar("otelkit_sessions", default=())


def current_session_id(ctx: Context | None = None) -> str | None:
    """The session id in effect in ``ctx`` (default: the current context), if any."""
    value = baggage.get_baggage(BAGGAGE_SESSION_ID, ctx)
    return str(value) if value is not None else None


class session:  # noqa: N801 - used like a function: ``with session("s-1"):`` / ``@session("s-1")``
    """Run a block, function or coroutine inside session ``session_id``."""

    def __init__(self, session_id: str) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("session id must be a non-empty string")
        self.session_id = session_id

    def __enter__(self) -> str:
        token = context.attach(baggage.set_baggage(BAGGAGE_SESSION_ID, self.session_id))
        _entered.set((*_entered.get(), token))
        return self.session_id

    def __exit__(self, *exc_info: object) -> None:
        # Tokens live in the context (task, thread) that entered, so one shared instance
        # used by concurrent tasks detaches each task's own token.
        *outer, token = _entered.get()
        _entered.set(tuple(outer))
        context.detach(token)

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    def __call__(self, fn: F) -> F:
        session_id = self.session_id
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with session(session_id):
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with session(session_id):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]


class SessionSpanProcessor(SpanProcessor):
    """Adds ``session.id`` from baggage to spans that other instrumentations start.

    otelkit's own spans set it themselves at start, so they are skipped here.
    """

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == INSTRUMENTATION_SCOPE:
            return
        value = baggage.get_baggage(BAGGAGE_SESSION_ID, parent_context)
        if value is not None:
            span.set_attribute(SESSION_ID, str(value))

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def stamp_session(span: ApiSpan) -> None:
    """Set ``session.id`` on ``span`` from the current baggage (used by otelkit's own spans)."""
    value = baggage.get_baggage(BAGGAGE_SESSION_ID)
    if value is not None:
        span.set_attribute(SESSION_ID, str(value))
