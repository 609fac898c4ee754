"""Resource and scope row ids for converted rows, handed out without touching the store.

A store-writer process converts requests outside the store's lock, so conversion cannot
insert resource or scope rows; it gets provisional (negative) ids from :class:`CachedIds`,
which the same process turns into real row ids under the lock, just before it writes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import orjson

from otelkit.exporters.receiver.scrub import RowScrubber
from otelkit.store import StoreWriter
from otelkit.store.writer import LOG_COLUMNS, METRIC_COLUMNS, SPAN_COLUMNS

_ID_COLUMNS: dict[str, tuple[int, int]] = {
    "traces": (SPAN_COLUMNS.index("resource_id"), SPAN_COLUMNS.index("scope_id")),
    "metrics": (METRIC_COLUMNS.index("resource_id"), METRIC_COLUMNS.index("scope_id")),
    "logs": (LOG_COLUMNS.index("resource_id"), LOG_COLUMNS.index("scope_id")),
}
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class CachedIds:
    """Resource and scope row ids by content, for one store-writer process.

    A resource or scope seen for the first time gets a provisional (negative) id at once;
    :meth:`resolve`, called under the store's lock, interns it and rewrites the rows. Real ids
    are remembered, so a known resource costs one dictionary lookup."""

    def __init__(self) -> None:
        self._ids: dict[bytes, int] = {}  # content -> real id, or provisional until resolved
        self._pending: dict[int, tuple[bytes, Callable[[StoreWriter], int]]] = {}
        self._resolved: dict[int, int] = {}  # provisional -> real, for rows converted before
        self._next = -1

    def _id(self, key: bytes, intern: Callable[[StoreWriter], int]) -> int:
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = self._next
            self._pending[found] = (key, intern)
            self._next -= 1
        return found

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int:
        key = b"r" + orjson.dumps(attributes, option=_SORTED, default=str)
        return self._id(key, lambda writer: writer.resource_id(attributes, service_name))

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int:
        key = b"s" + orjson.dumps([name, version, attributes or {}], option=_SORTED, default=str)
        return self._id(key, lambda writer: writer.scope_id(name, version, attributes))

    def resolve(self, writer: StoreWriter, signal: str, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """``rows`` with their provisional ids replaced by real ones (interning what is new)."""
        for provisional, (key, intern) in list(self._pending.items()):
            real = intern(writer)
            self._resolved[provisional] = real
            self._ids[key] = real
            del self._pending[provisional]
        resolved = self._resolved
        r, s = _ID_COLUMNS[signal]
        out: list[Sequence[Any]] = []
        for row in rows:
            if row[r] is not None and row[r] < 0 or row[s] is not None and row[s] < 0:
                fixed = list(row)
                if fixed[r] is not None and fixed[r] < 0:
                    fixed[r] = resolved[fixed[r]]
                if fixed[s] is not None and fixed[s] < 0:
                    fixed[s] = resolved[fixed[s]]
                out.append(tuple(fixed))
            else:
                out.append(row)
        return out


class RequestIds:
    """The ids one request's conversion asks for, noting whether any is provisional; with
    ``--sanitize``, resources and scopes are scrubbed before they are interned."""

    def __init__(self, ids: CachedIds, scrub: RowScrubber | None) -> None:
        self._ids = ids
        self._scrub = scrub
        self.provisional = False

    def resource_id(self, attributes: Mapping[str, Any], service_name: str | None) -> int:
        hits: list[str] = []
        if self._scrub is not None:
            scrubbed, hits = self._scrub.attributes(attributes)
            attributes = attributes if scrubbed is None else scrubbed
        found = self._ids.resource_id(attributes, service_name)
        if self._scrub is not None:
            self._scrub.resource_hits[found] = tuple(hits)
        self.provisional |= found < 0
        return found

    def scope_id(self, name: str, version: str | None, attributes: Mapping[str, Any] | None = None) -> int:
        if self._scrub is not None and attributes:
            scrubbed, _hits = self._scrub.attributes(attributes)
            attributes = attributes if scrubbed is None else scrubbed
        found = self._ids.scope_id(name, version, attributes)
        self.provisional |= found < 0
        return found
