"""Jinja2: every template compile and render as an otelkit ``template`` operation.

Render spans are named after the template and carry its name, the size of the output (in
characters) and, for templates loaded through an environment's loader, whether that load came
from the environment's template cache (``otelkit.template.cache_hit``), so a per-template hit
rate is one query away. Compiles (a cache miss, or ``from_string``) are their own
``compile <name>`` spans, so the cost of a cold cache shows up where it is paid.
"""

from __future__ import annotations

import contextvars
import weakref
from typing import Any, Callable

from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from otelkit import semconv as sc
from otelkit.instrumentation import api
from otelkit.instrumentation._lazy import LazyPatch, PatchingInstrumentor
from otelkit.instrumentation._safety import warn_once

_instruments = ("jinja2 >= 3.0",)
_UNNAMED = "<string>"
_PHASE_RENDER = "render"
_PHASE_COMPILE = "compile"



class _Load:
    """One template load: the template (weakly), whether it came from the cache, and whether a
    render has reported it yet. Mutable so that a render in a copied context (``asyncio.run``
    inside a sync render) marks it reported for the caller's context too."""

    __slots__ = ("template", "hit", "reported")

    def __init__(self, template: Any, hit: bool) -> None:
        self.template = weakref.ref(template)
        self.hit = hit
        self.reported = False


# The last template loaded in this context; the next render of that template reports whether it
# came from the cache (later renders of the same object are cache hits: nothing is compiled).
_last_load: contextvars.ContextVar[_Load | None] = contextvars.ContextVar("otelkit_jinja2_load", default=None)
# The template whose render span is open here, so a sync render of an async environment (which
# runs render_async inside) gets one span, not two.
_rendering: contextvars.ContextVar[Any] = contextvars.ContextVar("otelkit_jinja2_rendering", default=None)
_specs: dict[tuple[str, str], api._OperationSpec] = {}


def _spec(name: str, phase: str) -> api._OperationSpec:
    """The operation for a template name and phase, made once (spans are started per call)."""
    key = (name, phase)
    spec = _specs.get(key)
    if spec is None:
        if len(_specs) >= 4096:
            _specs.clear()
        span_name = name if phase == _PHASE_RENDER else f"{phase} {name}"
        spec = api._OperationSpec(
            sc.OperationType.TEMPLATE, span_name, span_name, {sc.TEMPLATE_NAME: name, sc.TEMPLATE_PHASE: phase}
        )
        _specs[key] = spec
    return spec


def _cache_hit(template: Any) -> bool | None:
    """Whether this render's template came from the environment cache; None when no loader was involved."""
    record = _last_load.get()
    if record is not None and not record.reported and record.template() is template:
        record.reported = True
        return record.hit
    if template.name is not None and getattr(template.environment, "loader", None) is not None:
        return True  # an object kept from an earlier load: nothing is compiled for this render
    return None


def _traced_load(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """Environment._load_template: note whether the template came from the environment's cache."""
    try:
        cache = instance.cache
        name = args[0] if args else kwargs["name"]
        before = cache.get((weakref.ref(instance.loader), name)) if cache is not None and instance.loader else None
    except Exception as exc:
        warn_once("inspecting the jinja2 template cache", exc)
        return wrapped(*args, **kwargs)
    template = wrapped(*args, **kwargs)
    try:
        _last_load.set(_Load(template, before is not None and template is before))
    except Exception as exc:
        warn_once("recording a jinja2 template load", exc)
    return template


def _traced_compile(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if not is_instrumentation_enabled():
        return wrapped(*args, **kwargs)
    try:
        name = kwargs.get("name", args[1] if len(args) > 1 else None) or _UNNAMED
        spec = _spec(str(name), _PHASE_COMPILE)
    except Exception as exc:
        warn_once("starting a jinja2 compile span", exc)
        return wrapped(*args, **kwargs)
    with spec:
        return wrapped(*args, **kwargs)


def _render_setup(template: Any) -> tuple[api._OperationSpec, bool | None]:
    return _spec(str(template.name or _UNNAMED), _PHASE_RENDER), _cache_hit(template)


def _record_output(handle: api.Operation, cache_hit: bool | None, output: Any) -> None:
    try:
        if cache_hit is not None:
            handle.set_attribute(sc.TEMPLATE_CACHE_HIT, cache_hit)
        handle.set_attribute(sc.TEMPLATE_OUTPUT_SIZE, len(output))
    except Exception as exc:
        warn_once("recording a jinja2 render's output", exc)


def _traced_render(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if not is_instrumentation_enabled() or _rendering.get() is instance:
        return wrapped(*args, **kwargs)
    try:
        spec, cache_hit = _render_setup(instance)
    except Exception as exc:
        warn_once("starting a jinja2 render span", exc)
        return wrapped(*args, **kwargs)
    token = _rendering.set(instance)
    try:
        with spec as handle:
            output = wrapped(*args, **kwargs)
            _record_output(handle, cache_hit, output)
            return output
    finally:
        _rendering.reset(token)


async def _traced_render_async(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if not is_instrumentation_enabled() or _rendering.get() is instance:
        return await wrapped(*args, **kwargs)
    try:
        spec, cache_hit = _render_setup(instance)
    except Exception as exc:
        warn_once("starting a jinja2 async render span", exc)
        return await wrapped(*args, **kwargs)
    token = _rendering.set(instance)
    try:
        with spec as handle:
            output = await wrapped(*args, **kwargs)
            _record_output(handle, cache_hit, output)
            return output
    finally:
        _rendering.reset(token)


def _render_async_wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    """Template.render_async is a coroutine function: return the traced coroutine."""
    return _traced_render_async(wrapped, instance, args, kwargs)


def _wrap() -> None:
    wrap_function_wrapper("jinja2.environment", "Environment._load_template", _traced_load)
    wrap_function_wrapper("jinja2.environment", "Environment.compile", _traced_compile)
    wrap_function_wrapper("jinja2.environment", "Template.render", _traced_render)
    wrap_function_wrapper("jinja2.environment", "Template.render_async", _render_async_wrapper)


def _unwrap() -> None:
    import jinja2.environment

    unwrap(jinja2.environment.Environment, "_load_template")
    unwrap(jinja2.environment.Environment, "compile")
    unwrap(jinja2.environment.Template, "render")
    unwrap(jinja2.environment.Template, "render_async")
    _last_load.set(None)
    _specs.clear()


class Jinja2Instrumentor(PatchingInstrumentor):
    """Traces Jinja2 template compiles and renders (``Template.render`` and ``render_async``),
    from the program's first import of ``jinja2``."""

    instruments = _instruments
    patches = (LazyPatch("jinja2", _wrap, _unwrap),)
