"""Carries the OpenTelemetry context (current span, baggage, so ``session.id``) into threads.

``threading.Thread`` and ``ThreadPoolExecutor`` do not copy context, so without this a span
or session started in a worker thread would lose its parent and its session. Contrib's
``opentelemetry-instrumentation-threading`` does the same job, but its current release pins an
older ``opentelemetry-instrumentation`` than the SDK it must run beside, so otelkit cannot
depend on it; if it is installed too, both attach the same context, which is harmless.
"""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any, Callable, Collection

from opentelemetry import context
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

_ATTR = "_otelkit_parent_context"


def _start(wrapped: Callable[..., Any], instance: threading.Thread, args: Any, kwargs: Any) -> Any:
    setattr(instance, _ATTR, context.get_current())
    return wrapped(*args, **kwargs)


def _run(wrapped: Callable[..., Any], instance: threading.Thread, args: Any, kwargs: Any) -> Any:
    parent = getattr(instance, _ATTR, None)
    if parent is None:
        return wrapped(*args, **kwargs)
    token = context.attach(parent)
    try:
        return wrapped(*args, **kwargs)
    finally:
        context.detach(token)


def _submit(wrapped: Callable[..., Any], instance: futures.ThreadPoolExecutor, args: Any, kwargs: Any) -> Any:
    fn, rest = args[0], args[1:]
    parent = context.get_current()

    def in_parent_context(*inner_args: Any, **inner_kwargs: Any) -> Any:
        token = context.attach(parent)
        try:
            return fn(*inner_args, **inner_kwargs)
        finally:
            context.detach(token)

    return wrapped(in_parent_context, *rest, **kwargs)


class ThreadContextInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Propagates context from ``Thread.start()`` and ``ThreadPoolExecutor.submit()`` callers."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        wrap_function_wrapper(threading.Thread, "start", _start)
        wrap_function_wrapper(threading.Thread, "run", _run)
        wrap_function_wrapper(futures.ThreadPoolExecutor, "submit", _submit)

    def _uninstrument(self, **kwargs: Any) -> None:
        unwrap(threading.Thread, "start")
        unwrap(threading.Thread, "run")
        unwrap(futures.ThreadPoolExecutor, "submit")
