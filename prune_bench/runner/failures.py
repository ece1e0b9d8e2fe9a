"""The items a run could not evaluate, kept beside the results: ``failures.jsonl`` in the results directory.

One JSON line per item (``item_id``, ``task``, ``error``: the one-line reason, e.g. an unreadable video).
A re-run skips these items, so a broken file does not stop a benchmark from finishing, and retries them
only when asked (``--retry-failed``). Only the writer of the directory (rank 0 in a data-parallel run)
writes the file, whole, through a temporary file and a rename, so a kill never leaves half of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FAILURES = "failures.jsonl"


class FailureLog:
    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / FAILURES

    def entries(self) -> list[dict[str, str]]:
        """The recorded failures (unreadable lines are ignored: the file is advice, not results)."""
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("item_id"), str):
                out.append(entry)
        return out

    def earlier_ids(self) -> frozenset[str]:
        return frozenset(e["item_id"] for e in self.entries())

    def write(self, failures: list[dict[str, str]], *, retried: bool) -> list[dict[str, str]]:
        """Record this run's ``failures``: with ``retried`` they replace the earlier ones (every earlier
        failure was run again), otherwise they are added to them. Returns every failure on record."""
        merged = {} if retried else {e["item_id"]: e for e in self.entries()}
        merged.update({f["item_id"]: f for f in failures})
        if not merged:
            self.path.unlink(missing_ok=True)
            return []
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            "".join(json.dumps(e, sort_keys=True) + "\n" for e in merged.values()), encoding="utf-8"
        )
        os.replace(tmp, self.path)
        return list(merged.values())
