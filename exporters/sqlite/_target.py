"""What the three SQLite exporters share: which file to write, and resource/scope row ids."""

from __future__ import annotations

from typing import Any

from otelkit.config import current_policy
from otelkit.semconv import SERVICE_NAME
from otelkit.store.writer import StoreWriter, shared_writer


def resolve_writer(path: str | None) -> StoreWriter:
    """The writer for ``path``, else ``OTELKIT_SQLITE_PATH`` / the policy's store path."""
    store = current_policy().store
    return shared_writer(path or store.path, store.busy_timeout_ms, store.cache_size_mib)


class RowIds:
    """Caches the store row ids of SDK Resource and InstrumentationScope objects.

    Keyed by object identity (the SDK reuses one Resource per provider and one scope per
    tracer), holding a reference so an id is never recycled while cached.
    """

    def __init__(self, writer: StoreWriter) -> None:
        self._writer = writer
        self._resources: dict[int, tuple[Any, int, str | None]] = {}
        self._scopes: dict[int, tuple[Any, int]] = {}

    def resource(self, resource: Any) -> tuple[int | None, str | None]:
        """(row id, service.name) of an SDK Resource."""
        if resource is None:
            return None, None
        hit = self._resources.get(id(resource))
        if hit is None:
            attrs = dict(resource.attributes)
            service = attrs.get(SERVICE_NAME)
            service = str(service) if service is not None else None
            hit = (resource, self._writer.resource_id(attrs, service), service)
            self._resources[id(resource)] = hit
        return hit[1], hit[2]

    def scope(self, scope: Any) -> int | None:
        """Row id of an SDK InstrumentationScope."""
        if scope is None:
            return None
        hit = self._scopes.get(id(scope))
        if hit is None:
            attrs = getattr(scope, "attributes", None) or {}
            hit = (scope, self._writer.scope_id(scope.name, scope.version, dict(attrs)))
            self._scopes[id(scope)] = hit
        return hit[1]
