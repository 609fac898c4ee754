"""Zero-code tracing of the user's own functions: ``OTELKIT_AUTOWRAP="pkg.module:pattern,..."``.

Each spec names a module and a glob pattern matched against the qualified names of the
functions and methods defined in it (``run_*``, ``Pipeline.*``, ``*.execute``). When the
module is imported (or at once, if it already is) the matches are replaced by traced
``function`` operations. A spec that matches nothing logs one warning (at import, or at exit
when the module was never imported); a malformed spec logs one warning too. Neither stops the program. Generators are left alone (see the API docs).
"""

from __future__ import annotations

import atexit
import fnmatch
import inspect
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Collection, Iterator

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otelkit.config import current_policy
from otelkit.instrumentation.api import function

_log = logging.getLogger(__name__)
_MARK = "__otelkit_autowrapped__"


@dataclass(frozen=True)
class AutowrapSpec:
    """One ``module:pattern`` entry."""

    module: str
    pattern: str

    @classmethod
    def parse(cls, text: str) -> "AutowrapSpec":
        module, sep, pattern = text.strip().partition(":")
        if not sep or not module.strip() or not pattern.strip():
            raise ValueError(f"autowrap spec {text!r} is not 'module:pattern'")
        return cls(module.strip(), pattern.strip())


def _candidates(module: ModuleType) -> Iterator[tuple[Any, str, str, Any]]:
    """(owner, attribute, qualified name, raw attribute) for functions and methods defined in module."""
    for attr, value in list(vars(module).items()):
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            yield module, attr, attr, value
        elif inspect.isclass(value) and value.__module__ == module.__name__:
            for name, raw in list(vars(value).items()):
                target = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
                if inspect.isfunction(target):
                    yield value, name, f"{value.__qualname__}.{name}", raw


def _traced(raw: Any, full_name: str) -> Any:
    """The traced replacement for a function, staticmethod or classmethod."""
    if isinstance(raw, (staticmethod, classmethod)):
        return type(raw)(_traced(raw.__func__, full_name))
    wrapped = function(full_name)(raw)
    setattr(wrapped, _MARK, True)
    return wrapped


def _is_generator(raw: Any) -> bool:
    target = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


class AutowrapInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Wraps the functions named by ``OTELKIT_AUTOWRAP`` (or the policy's ``autowrap`` list)."""

    _restore: list[tuple[Any, str, Any]]
    _active = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        specs = kwargs.get("specs")
        texts = specs if specs is not None else current_policy().instrumentation.autowrap
        self._restore = []
        self._pending: set[AutowrapSpec] = set()
        self._active = True
        for text in texts:
            try:
                spec = AutowrapSpec.parse(text) if isinstance(text, str) else text
            except ValueError as exc:
                _log.warning("otelkit: %s; ignored", exc)
                continue
            self._pending.add(spec)
            wrapt.register_post_import_hook(lambda module, spec=spec: self._apply(module, spec), spec.module)
        if self._pending:
            atexit.register(self._report_unimported)

    def _apply(self, module: ModuleType, spec: AutowrapSpec) -> None:
        if not self._active:
            return
        self._pending.discard(spec)
        matched = 0
        try:
            for owner, attr, qualname, raw in _candidates(module):
                if not fnmatch.fnmatchcase(qualname, spec.pattern):
                    continue
                target = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
                if _is_generator(raw):
                    continue
                matched += 1
                if getattr(target, _MARK, False):
                    continue
                setattr(owner, attr, _traced(raw, f"{module.__name__}.{qualname}"))
                self._restore.append((owner, attr, raw))
        except Exception as exc:  # never break the user's import
            _log.warning("otelkit: autowrap of %s failed: %s", module.__name__, exc)
            return
        if matched == 0:
            _log.warning("otelkit: autowrap pattern %r matched nothing in module %s", spec.pattern, spec.module)

    def _report_unimported(self) -> None:
        """At exit: name the specs whose module the program never imported (typos show up here)."""
        if self._active:
            for spec in sorted(self._pending, key=lambda s: (s.module, s.pattern)):
                _log.warning("otelkit: autowrap module %s was never imported; %r matched nothing", spec.module, spec.pattern)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._active = False
        while self._restore:
            owner, attr, raw = self._restore.pop()
            setattr(owner, attr, raw)
