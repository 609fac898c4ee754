"""The otelkit SQLite store: schema and migrations (:mod:`.schema`), the write path (:mod:`.writer`)."""

from otelkit.store.schema import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    StoreError,
    connect_for_reading,
    connect_for_writing,
)
from otelkit.store.writer import StoreWriter, shared_writer

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "StoreError",
    "StoreWriter",
    "connect_for_reading",
    "connect_for_writing",
    "shared_writer",
]
