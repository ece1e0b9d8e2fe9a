"""Hand-made result records (no model): two tasks, the reference and two strategies at two budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prune_bench.runner.store import ResultStore

FULL = 1000.0
# strategy, keep, unit -> (correct per item of task a (4 items), of task b (2 items), flops fraction, tokens)
PLAN: dict[tuple[str, float, str], tuple[list[bool], list[bool], float, float]] = {
    ("none", 1.0, "layer-average"): ([True, True, True, False], [True, False], 1.0, 100.0),  # a 75, b 50
    ("fastv", 0.5, "layer-average"): ([True, True, False, False], [True, False], 0.6, 50.0),  # a 50, b 50
    ("visionzip", 0.5, "layer-average"): ([True, True, True, True], [False, False], 0.55, 50.0),  # 100, 0
    ("fastv", 0.25, "layer-average"): ([True, False, False, False], [False, False], 0.4, 25.0),  # 25, 0
    ("visionzip", 0.25, "layer-average"): ([True, True, False, False], [True, True], 0.3, 25.0),  # 50, 100
}


def make_records(
    plan: dict[tuple[str, float, str], tuple[list[bool], list[bool], float, float]] = PLAN, layers: int = 4
) -> list[dict[str, Any]]:
    """Records shaped like ``record_for``'s, with known accuracies, FLOPs and tokens per layer."""
    out = []
    for (strategy, keep, unit), (task_a, task_b, flops, tokens) in plan.items():
        items = [("a", i, c) for i, c in enumerate(task_a)] + [("b", i, c) for i, c in enumerate(task_b)]
        for task, i, correct in items:
            per_layer = [100.0] + [tokens] * (layers - 1) if strategy == "fastv" else [tokens] * layers
            out.append(
                {
                    "config_hash": f"{strategy}-{keep}-{unit}",
                    "item_id": f"{task}{i}",
                    "task": task,
                    "strategy": strategy,
                    "keep": keep,
                    "unit": unit,
                    "mode": "drop",
                    "choice": "A" if correct else "B",
                    "answer": "A",
                    "correct": correct,
                    "retention": {"input": tokens / 100, "layer_average": keep, "decode": tokens / 100},
                    "visual_per_layer": per_layer,
                    "total_visual": 100,
                    "flops": {
                        "exact": flops * FULL,
                        "paper": flops * FULL / 2,
                        "exact_full": FULL,
                        "paper_full": FULL / 2,
                    },
                    "timings_ms": {"prefill": 10.0, "pruning": 1.0},
                }
            )
    return out


@pytest.fixture
def records() -> list[dict[str, Any]]:
    return make_records()


@pytest.fixture
def store_dir(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    store = ResultStore(tmp_path / "results")
    for r in records:
        store.append(r)
    return store.dir
