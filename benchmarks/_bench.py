"""Small helpers shared by the benchmark scripts (not a benchmark itself).

The scripts are run as ``python benchmarks/<name>.py``, so this module is importable by its
plain name from their directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import statistics
from importlib import metadata


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, accepting ``200_000`` and ``200k``/``1m`` forms."""
    cleaned = text.strip().lower().replace("_", "").replace(",", "")
    scale = 1
    if cleaned.endswith("k"):
        cleaned, scale = cleaned[:-1], 1_000
    elif cleaned.endswith("m"):
        cleaned, scale = cleaned[:-1], 1_000_000
    try:
        value = int(float(cleaned) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: like :func:`positive_int` but 0 is allowed (meaning "skip")."""
    if text.strip() == "0":
        return 0
    return positive_int(text)


def median(values: list[float]) -> float:
    return statistics.median(values)


def count_rows(path: str, table: str) -> int:
    """Rows in ``table`` of the SQLite file at ``path`` (0 before the store exists), read-only."""
    if not os.path.exists(path):
        return 0
    conn = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True)
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if exists else 0
    finally:
        conn.close()


def distinct_traces(path: str) -> int:
    """Distinct trace ids among the stored spans, read-only."""
    conn = sqlite3.connect(f"file:{os.path.abspath(path)}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()[0]
    finally:
        conn.close()


def empty_store(path: str) -> None:
    """Delete every span and event row and checkpoint the WAL, so the next run starts
    from an empty store of the same file (through a separate connection, between batches)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for table in ("spans", "span_events"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def max_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def environment_line() -> str:
    """One line naming what the figures were measured with."""

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"

    return (
        f"python {platform.python_version()}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"otelkit {version('otelkit')}, SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"
