"""Patch a library when the program imports it, not when otelkit starts.

``opentelemetry-instrument`` runs every installed instrumentor before the program starts.
Importing openai or anthropic there would cost every program that merely has them installed
half a second to over a second of start-up, so each instrumentor patches its library through a
post-import hook instead: at once if the module is already imported, else on its first import.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, ClassVar, Collection

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otelkit.instrumentation._safety import warn_once


class LazyPatch:
    """``apply`` once ``module`` is imported, while wanted; ``remove`` what was applied."""

    def __init__(self, module: str, apply: Callable[[], None], remove: Callable[[], None]) -> None:
        self.module = module
        self._apply = apply
        self._remove = remove
        self.wanted = False
        self.applied = False
        self._hooked = False

    def enable(self) -> None:
        self.wanted = True
        if self.module in sys.modules:
            self._on_import(sys.modules[self.module])
        elif not self._hooked:
            self._hooked = True
            wrapt.register_post_import_hook(self._on_import, self.module)

    def _on_import(self, module: Any) -> None:
        if not self.wanted or self.applied:
            return
        try:
            self._apply()
            self.applied = True
        except Exception as exc:
            warn_once(f"instrumenting {self.module}", exc)

    def disable(self) -> None:
        self.wanted = False
        if self.applied:
            self.applied = False
            self._remove()


class PatchingInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """A ``BaseInstrumentor`` whose work is its lazy patches: enabled by ``instrument()``,
    withdrawn by ``uninstrument()``."""

    instruments: ClassVar[tuple[str, ...]] = ()
    patches: ClassVar[tuple[LazyPatch, ...]] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.instruments

    def _instrument(self, **kwargs: Any) -> None:
        for patch in self.patches:
            patch.enable()

    def _uninstrument(self, **kwargs: Any) -> None:
        for patch in self.patches:
            patch.disable()
