"""Click and Typer: every invoked command and subcommand as an otelkit ``command`` operation.

The program's own entry (``Command.main``) is the root span, named by the program as invoked,
with ``process.executable.name`` and ``process.exit.code``, so usage errors and ``sys.exit``
codes are seen exactly as the shell sees them; each subcommand is a child span named by its
command path (``release publish``). Spans carry the names of the parameters the user gave,
never their values (values can hold secrets; they would go through the sanitizer). Exit codes,
``SystemExit`` and click's own exceptions pass through untouched: the program exits as it would
without otelkit. Following the CLI conventions, a non-zero exit sets ``error.type`` to the code.

Typer (0.2x) ships its own copy of click as ``typer._click``; it is wrapped the same way when
``typer`` is imported, so Typer apps are traced with no dependency on how Typer is packaged.
"""

from __future__ import annotations

import contextvars
import os
import sys
from typing import Any, Callable

from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from otelkit import semconv as sc
from otelkit.instrumentation import api
from otelkit.instrumentation._lazy import LazyPatch, PatchingInstrumentor
from otelkit.instrumentation._safety import warn_once

_instruments = ("click >= 8.0",)

# The command whose main() is traced in this context: its root invoke() adds to that span.
_main_command: contextvars.ContextVar[Any] = contextvars.ContextVar("otelkit_click_main", default=None)
# The click Context whose invoke() span is open here (Group.invoke calls Command.invoke on it).
_invoking: contextvars.ContextVar[Any] = contextvars.ContextVar("otelkit_click_ctx", default=None)


_CLICK_PACKAGES = ("click", "typer")


def _from_click(exc: BaseException) -> bool:
    """Whether an exception is one of click's (or Typer's vendored click's) control-flow exceptions."""
    return type(exc).__module__.split(".", 1)[0] in _CLICK_PACKAGES


def _exit_code(exc: BaseException) -> int | None:
    """The process exit code an exception leaving a command stands for (None: not an exit)."""
    if isinstance(exc, SystemExit):
        code = exc.code
        return 0 if code is None else code if isinstance(code, int) else 1
    if _from_click(exc):
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int):
            return code  # Exit, ClickException, UsageError...
        if type(exc).__name__ == "Abort":
            return 1
    return None


def _close(spec: api._OperationSpec, handle: api.Operation, exc: BaseException | None, root: bool) -> None:
    """End the span for ``exc`` leaving the command: exits by code, other errors as exceptions."""
    try:
        code = 0 if exc is None else _exit_code(exc)
        if code is None:
            if root:
                handle.set_attribute(sc.PROCESS_EXIT_CODE, 1)
            spec.__exit__(type(exc), exc, None)
            return
        if root or exc is not None:
            handle.set_attribute(sc.PROCESS_EXIT_CODE, code)
        if code != 0:
            message = str(getattr(exc, "message", "") or "") or f"exit code {code}"
            by_code = isinstance(exc, SystemExit) or type(exc).__name__ == "Exit"
            handle.fail(message, error_type=str(code) if by_code else type(exc).__name__)
    except Exception as failure:
        warn_once("recording a click command's exit", failure)
    spec.__exit__(None, None, None)


def _given_parameters(ctx: Any) -> list[str]:
    """Names of the parameters the user supplied (command line, environment, prompt), not defaults."""
    return sorted(
        name
        for name in ctx.params
        if (source := ctx.get_parameter_source(name)) is not None and getattr(source, "name", "") != "DEFAULT"
    )


def _program_name(command: Any, kwargs: dict[str, Any]) -> str:
    name = kwargs.get("prog_name")
    if not name:
        import click.utils

        detect = getattr(click.utils, "_detect_program_name", None)
        name = detect() if detect is not None else os.path.basename(sys.argv[0] or "")
    return str(name or command.name or "command")


def _traced_main(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    if not is_instrumentation_enabled() or _main_command.get() is not None:
        return wrapped(*args, **kwargs)
    try:
        name = _program_name(instance, kwargs)
        spec = api._OperationSpec(
            sc.OperationType.COMMAND,
            name,
            name,
            {
                sc.COMMAND_NAME: name,
                sc.COMMAND_PATH: name,
                sc.PROCESS_EXECUTABLE_NAME: os.path.basename(sys.argv[0] or "") or name,
            },
        )
    except Exception as exc:
        warn_once("starting a click main span", exc)
        return wrapped(*args, **kwargs)
    return _run(spec, spec.__enter__(), _main_command, instance, True, wrapped, args, kwargs)


def _run(
    spec: api._OperationSpec,
    handle: api.Operation,
    marker: contextvars.ContextVar[Any],
    value: Any,
    root: bool,
    wrapped: Callable[..., Any],
    args: Any,
    kwargs: Any,
) -> Any:
    """Run the command with ``marker`` set to ``value``, then close its span by how it left."""
    token = marker.set(value)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        marker.reset(token)
        _close(spec, handle, exc, root=root)
        raise
    marker.reset(token)
    _close(spec, handle, None, root=root)
    return result


def _describe(handle: api.Operation, ctx: Any) -> None:
    try:
        handle.set_attribute(sc.COMMAND_PARAMETERS, _given_parameters(ctx))
    except Exception as exc:
        warn_once("recording click parameters", exc)


def _traced_invoke(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    ctx = args[0] if args else kwargs.get("ctx")
    if not is_instrumentation_enabled() or ctx is None or _invoking.get() is ctx:
        return wrapped(*args, **kwargs)
    if ctx.parent is None and _main_command.get() is instance:
        # The root command: main()'s span is this command's span.
        api_handle = api.current_operation()
        if api_handle is not None:
            _describe(api_handle, ctx)
        token = _invoking.set(ctx)
        try:
            return wrapped(*args, **kwargs)
        finally:
            _invoking.reset(token)
    try:
        path = str(ctx.command_path or instance.name or "command")
        root = ctx.parent is None
        attributes = {sc.COMMAND_NAME: str(ctx.info_name or instance.name or path), sc.COMMAND_PATH: path}
        if root:
            attributes[sc.PROCESS_EXECUTABLE_NAME] = os.path.basename(sys.argv[0] or "") or path
        spec = api._OperationSpec(sc.OperationType.COMMAND, path, path, attributes)
    except Exception as exc:
        warn_once("starting a click command span", exc)
        return wrapped(*args, **kwargs)
    handle = spec.__enter__()
    _describe(handle, ctx)
    return _run(spec, handle, _invoking, ctx, root, wrapped, args, kwargs)


# (module, class, method, wrapper) for click itself, and for Typer and its vendored click.
_CLICK_TARGETS = (
    ("click.core", "Command", "main", _traced_main),
    ("click.core", "Command", "invoke", _traced_invoke),
    ("click.core", "Group", "invoke", _traced_invoke),
)
_TYPER_TARGETS = (
    ("typer._click.core", "Command", "main", _traced_main),
    ("typer._click.core", "Command", "invoke", _traced_invoke),
    ("typer._click.core", "Group", "invoke", _traced_invoke),
    ("typer.core", "TyperCommand", "main", _traced_main),
    ("typer.core", "TyperGroup", "main", _traced_main),
    ("typer.core", "TyperGroup", "invoke", _traced_invoke),
)


def _apply(targets: tuple[tuple[str, str, str, Callable[..., Any]], ...]) -> None:
    for module, owner, method, wrapper in targets:
        cls = getattr(sys.modules.get(module) or __import__(module, fromlist=[owner]), owner, None)
        if cls is not None and method in vars(cls):
            wrap_function_wrapper(module, f"{owner}.{method}", wrapper)


def _remove(targets: tuple[tuple[str, str, str, Callable[..., Any]], ...]) -> None:
    for module, owner, method, _ in targets:
        cls = getattr(sys.modules.get(module), owner, None)
        if cls is not None and hasattr(vars(cls).get(method), "__wrapped__"):
            unwrap(cls, method)


class ClickInstrumentor(PatchingInstrumentor):
    """Traces click and Typer commands: ``main`` as the root, ``invoke`` of each command below
    (from the program's first import of each)."""

    instruments = _instruments
    patches = (
        LazyPatch("click", lambda: _apply(_CLICK_TARGETS), lambda: _remove(_CLICK_TARGETS)),
        LazyPatch("typer", lambda: _apply(_TYPER_TARGETS), lambda: _remove(_TYPER_TARGETS)),
    )
