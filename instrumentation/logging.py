"""Log correlation: stdlib ``logging`` records and structlog events carry the trace, span and session.

Every ``LogRecord`` gets ``trace_id`` and ``span_id`` (lowercase hex, all zeros outside a span)
and ``session_id`` (empty outside a session), so a format such as
``%(levelname)s [%(trace_id)s %(session_id)s] %(message)s`` joins logs to traces and sessions.
When structlog is installed, its event dicts get the same keys through a processor placed
before the renderer, in the configuration in effect and in any later ``structlog.configure``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Collection, MutableMapping

import wrapt
from opentelemetry import baggage, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otelkit import semconv as sc
from otelkit.instrumentation._safety import warn_once

INVALID_TRACE_ID = "0" * 32
INVALID_SPAN_ID = "0" * 16
_UNCORRELATED = (INVALID_TRACE_ID, INVALID_SPAN_ID, "")


def correlation() -> tuple[str, str, str]:
    """(trace_id, span_id, session_id) of the current context, as logs carry them."""
    ctx = trace.get_current_span().get_span_context()
    session = baggage.get_baggage(sc.BAGGAGE_SESSION_ID)
    if not ctx.is_valid:
        return INVALID_TRACE_ID, INVALID_SPAN_ID, "" if session is None else str(session)
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", "" if session is None else str(session)


class _CorrelatingFactory:
    """A LogRecord factory that stamps correlation fields on the records of the factory it wraps."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        fields = record.__dict__
        try:
            fields[sc.LOG_TRACE_ID], fields[sc.LOG_SPAN_ID], fields[sc.LOG_SESSION_ID] = correlation()
        except Exception as exc:  # the fields stay present, so the user's log format still works
            fields[sc.LOG_TRACE_ID], fields[sc.LOG_SPAN_ID], fields[sc.LOG_SESSION_ID] = _UNCORRELATED
            warn_once("adding trace ids to a log record", exc)
        return record


def add_correlation(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: add trace_id, span_id and session_id to the event (kept if already set)."""
    try:
        trace_id, span_id, session_id = correlation()
        event_dict.setdefault(sc.LOG_TRACE_ID, trace_id)
        event_dict.setdefault(sc.LOG_SPAN_ID, span_id)
        if session_id:
            event_dict.setdefault(sc.LOG_SESSION_ID, session_id)
    except Exception as exc:
        warn_once("adding trace ids to a structlog event", exc)
    return event_dict


def _with_processor(processors: Any) -> list[Any]:
    """``processors`` with :func:`add_correlation` placed before the last one (the renderer)."""
    chain = [p for p in processors if p is not add_correlation]
    chain.insert(max(len(chain) - 1, 0), add_correlation)
    return chain


def _traced_configure(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        if kwargs.get("processors") is not None:
            kwargs = {**kwargs, "processors": _with_processor(kwargs["processors"])}
    except Exception as exc:
        warn_once("adding the correlation processor to structlog", exc)
    return wrapped(*args, **kwargs)


def _structlog_on(module: Any) -> None:
    """Wrap ``structlog.configure`` (package and ``_config`` module) and add the processor now."""
    try:
        import structlog
        import structlog._config as config

        if not hasattr(config.configure, "__wrapped__"):
            wrapper = wrapt.FunctionWrapper(config.configure, _traced_configure)
            config.configure = wrapper
            structlog.configure = wrapper
        structlog.configure(processors=structlog.get_config()["processors"])
    except Exception as exc:
        warn_once("instrumenting structlog", exc)


def _structlog_off() -> None:
    config = sys.modules.get("structlog._config")
    if config is None:
        return
    import structlog

    configure = vars(config).get("configure")
    if hasattr(configure, "__wrapped__"):
        config.configure = configure.__wrapped__
        structlog.configure = config.configure
    processors = structlog.get_config()["processors"]
    if add_correlation in processors:
        structlog.configure(processors=[p for p in processors if p is not add_correlation])


class LoggingCorrelationInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds trace_id, span_id and session_id to stdlib log records and structlog events."""

    _structlog_wanted = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        current = logging.getLogRecordFactory()
        if not isinstance(current, _CorrelatingFactory):
            logging.setLogRecordFactory(_CorrelatingFactory(current))
        LoggingCorrelationInstrumentor._structlog_wanted = True
        if "structlog" in sys.modules:
            _structlog_on(sys.modules["structlog"])
        else:
            wrapt.register_post_import_hook(self._on_structlog_import, "structlog")

    @staticmethod
    def _on_structlog_import(module: Any) -> None:
        if LoggingCorrelationInstrumentor._structlog_wanted:
            _structlog_on(module)

    def _uninstrument(self, **kwargs: Any) -> None:
        current = logging.getLogRecordFactory()
        if isinstance(current, _CorrelatingFactory):
            logging.setLogRecordFactory(current.inner)
        LoggingCorrelationInstrumentor._structlog_wanted = False
        _structlog_off()
