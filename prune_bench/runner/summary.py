"""Aggregate result records into one row per (strategy, keep): accuracy per task and efficiency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import mean, median
from typing import Any


@dataclass
class SummaryRow:
    strategy: str
    keep: float
    unit: str
    items: int
    accuracy: dict[str, float] = field(default_factory=dict)  # per task, 0..100
    average: float = 0.0
    retention: dict[str, float] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)  # mean prefill FLOPs per item
    flops_ratio: dict[str, float] = field(default_factory=dict)  # vs the same items unpruned
    prefill_ms: float = 0.0
    pruning_ms: float = 0.0


def summarize(records: Iterable[dict[str, Any]], hashes: set[str] | None = None) -> list[SummaryRow]:
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if hashes is not None and r["config_hash"] not in hashes:
            continue
        groups[(r["strategy"], r["keep"], r["unit"])].append(r)
    rows = []
    for (strategy, keep, unit), recs in groups.items():
        by_task: dict[str, list[bool]] = defaultdict(list)
        for r in recs:
            by_task[r["task"]].append(bool(r["correct"]))
        acc = {t: 100.0 * sum(v) / len(v) for t, v in sorted(by_task.items())}
        rows.append(
            SummaryRow(
                strategy=strategy,
                keep=keep,
                unit=unit,
                items=len(recs),
                accuracy=acc,
                # Average of task accuracies (tasks weigh equally, as papers average benchmarks).
                average=mean(acc.values()) if acc else 0.0,
                retention={
                    k: mean(r["retention"][k] for r in recs) for k in ("input", "layer_average", "decode")
                },
                flops={c: mean(r["flops"][c] for r in recs) for c in ("exact", "paper")},
                flops_ratio={
                    c: sum(r["flops"][c] for r in recs) / sum(r["flops"][f"{c}_full"] for r in recs)
                    for c in ("exact", "paper")
                },
                prefill_ms=median(r["timings_ms"].get("prefill", 0.0) for r in recs),
                pruning_ms=median(r["timings_ms"].get("pruning", 0.0) for r in recs),
            )
        )
    rows.sort(key=lambda r: (r.strategy != "none", r.strategy, r.keep))
    return rows
