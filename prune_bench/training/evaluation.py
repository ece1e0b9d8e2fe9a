"""Held-out accuracy of a saved model directory, measured through the adapter and the project's
evaluation loop (what the model card reports)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prune_bench.training.settings import TrainSettings


def evaluate_model_dir(
    path: str | Path, s: TrainSettings, device: str, show_progress: bool = False
) -> dict[str, dict[str, float]]:
    """Accuracy per task (and ``avg``) of the saved model on the ``test`` split, for the unpruned
    model and (when ``s.eval_random_keep``) random pruning, through the project's evaluation loop."""
    from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
    from prune_bench.benchmarks.synthetic import SyntheticVideoQA
    from prune_bench.runner.evaluate import evaluate
    from prune_bench.runner.store import ResultStore
    from prune_bench.runner.summary import summarize
    from prune_bench.session import Session

    adapter = LlavaOnevisionAdapter.from_pretrained(str(path), device=device)
    bench = SyntheticVideoQA(
        split="test",
        num_items=s.eval_items,
        num_frames=s.num_frames,
        size=s.shape.image_size,
        seed=s.eval_seed,
    )
    sessions = [Session(adapter, "none", unit="input", num_frames=s.num_frames)]
    if s.eval_random_keep:
        sessions.append(
            Session(adapter, "random", keep=s.eval_random_keep, unit="input", num_frames=s.num_frames)
        )
    context = {"model": str(path), "benchmark": bench.name, "frames": s.num_frames, "purpose": "model card"}
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        evaluate(sessions, bench.items(), store, context, show_progress=show_progress)
        rows = summarize(store.records())
    result: dict[str, dict[str, float]] = {}
    for row in rows:
        label = "none" if row.strategy == "none" else f"{row.strategy} keep {row.keep:g}"
        result[label] = {**{t: round(a, 1) for t, a in row.accuracy.items()}, "avg": round(row.average, 1)}
    return result
