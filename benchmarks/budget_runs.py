"""The budget table's run cache: one JSON line per finished run, keyed by everything that decides its result.

A rerun of ``benchmarks/budget_table.py`` skips every run whose key is already in the file, so an interrupted
benchmark resumes where it stopped and finished runs can be committed while others are still training. The
file is rewritten atomically under a lock (:mod:`nasprune.fsutil`), so a reader never sees half a line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nasprune.fsutil import atomic_write_text, file_lock

__all__ = ["RunCache", "run_key"]


def run_key(**parts: Any) -> str:
    """16 hex characters of the SHA-256 of ``parts`` as canonical JSON."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class RunCache:
    """Finished runs in a JSON-lines file; every record has a ``key``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())

    def get(self, key: str) -> dict[str, Any] | None:
        return next((r for r in self.records() if r["key"] == key), None)

    def add(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``record`` (it must hold ``key``), replacing an earlier record with the same key."""
        record = dict(record)
        with file_lock(self.path):
            kept = [r for r in self.records() if r["key"] != record["key"]]
            lines = [json.dumps(r, sort_keys=True) for r in [*kept, record]]
            atomic_write_text(self.path, "\n".join(lines) + "\n")
        return record
