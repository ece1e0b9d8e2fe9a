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
    from prune_bench.core.compose import build_strategy
    from prune_bench.core.plugins import registry
    from prune_bench.runner.evaluate import RunConfig, evaluate
    from prune_bench.runner.store import ResultStore
    from prune_bench.runner.summary import summarize

    adapter = LlavaOnevisionAdapter.from_pretrained(str(path), device=device)
    bench = SyntheticVideoQA(
        split="test",
        num_items=s.eval_items,
        num_frames=s.num_frames,
        size=s.shape.image_size,
        seed=s.eval_seed,
    )
    info = adapter.model_info(s.num_frames)
    reg = registry()
    configs = [RunConfig(build_strategy("none", 1.0, "input", info, reg), 1.0, "input")]
    if s.eval_random_keep:
        keep = s.eval_random_keep
        configs.append(RunConfig(build_strategy("random", keep, "input", info, reg), keep, "input"))
    context = {"model": str(path), "benchmark": bench.name, "frames": s.num_frames, "purpose": "model card"}
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        evaluate(
            adapter,
            bench.items(),
            configs,
            store,
            context,
            num_frames=s.num_frames,
            show_progress=show_progress,
        )
        rows = summarize(store.records())
    result: dict[str, dict[str, float]] = {}
    for row in rows:
        label = "none" if row.strategy == "none" else f"{row.strategy} keep {row.keep:g}"
        result[label] = {**{t: round(a, 1) for t, a in row.accuracy.items()}, "avg": round(row.average, 1)}
    return result
