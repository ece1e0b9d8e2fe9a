"""Append-only, resumable results: one JSON line per (run configuration, item).

A record is written with one ``write`` of a complete line and flushed to disk before the next item
starts, so a run killed at any moment loses at most the item in flight; a torn last line (killed
mid-write) is ignored on reading and the item is simply computed again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class ResultStore:
    """Results of one output directory: ``results.jsonl`` plus ``manifest.json``."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "results.jsonl"
        self._drop_torn_tail()
        self._done: set[tuple[str, str]] = {(r["config_hash"], r["item_id"]) for r in self.records()}

    def _drop_torn_tail(self) -> None:
        """Cut a partial last line left by a killed run, so the next append starts on a fresh line."""
        if not self.path.exists():
            return
        with self.path.open("rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # torn write from a killed run
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue

    def done(self, config_hash: str, item_id: str) -> bool:
        return (config_hash, item_id) in self._done

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._done.add((record["config_hash"], record["item_id"]))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Record each run's manifest (appended: a resumed run adds its own)."""
        path = self.dir / "manifest.json"
        runs = json.loads(path.read_text()) if path.exists() else []
        runs.append(manifest)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(runs, indent=2, sort_keys=True))
        tmp.replace(path)
