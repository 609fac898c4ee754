"""Plain helper functions with no otelkit code: the README traces them with OTELKIT_AUTOWRAP."""

from __future__ import annotations

import hashlib
import time


def checksum_artifact(name: str, size_kib: int) -> str:
    """Pretend to hash a build artifact."""
    digest = hashlib.sha256()
    chunk = name.encode() * 64
    for _ in range(size_kib):
        digest.update(chunk)
    return digest.hexdigest()[:12]


def upload_artifact(name: str) -> str:
    """Pretend to upload an artifact (no network: it sleeps)."""
    time.sleep(0.002)
    return f"s3://releases/{name}"
