"""The evaluation loop: items x strategy configurations, resumable through the results store.

Each item is encoded once (vision tower, projector, prompt) and every configuration runs on that
encoding; a configuration that already has a record for the item is skipped, so re-running the
same command continues where a killed run stopped.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from prune_bench.adapters.base import Adapter, AnswerResult
from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.core.flops import LayerTokens, LMShape, prefill_flops
from prune_bench.core.stages import PruningPlan
from prune_bench.core.strategy import BudgetUnit, Strategy
from prune_bench.runner.store import ResultStore


@dataclass(frozen=True)
class RunConfig:
    """One row of a comparison: a strategy at a budget, run in a mode."""

    strategy: Strategy
    keep: float
    unit: BudgetUnit
    mode: str = "drop"

    @property
    def label(self) -> str:
        return self.strategy.label

    def describe(self, context: dict[str, Any]) -> dict[str, Any]:
        return {
            "strategy": self.strategy.describe(),
            "keep": self.keep,
            "unit": self.unit,
            "mode": self.mode,
            **context,
        }

    def hash(self, context: dict[str, Any]) -> str:
        blob = json.dumps(self.describe(context), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def manifest(adapter: Adapter, context: dict[str, Any]) -> dict[str, Any]:
    device = adapter.device
    packages = {p: _version(p) for p in ("prune-bench", "torch", "transformers", "pluggy", "pydantic")}
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "packages": packages,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": str(adapter.model.dtype),
        **context,
    }


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except Exception:
        return "not installed"


def item_frames(item: VideoQAItem, num_frames: int) -> torch.Tensor:
    """The item's frames, ``num_frames`` of them sampled uniformly (decoded from disk if needed)."""
    if item.video is not None:
        video = item.video
        if video.shape[0] != num_frames:
            idx = torch.linspace(0, video.shape[0] - 1, num_frames).round().long()
            video = video[idx]
        return video
    if item.video_path is None:
        raise ValueError(f"item {item.item_id} has neither frames nor a video path")
    from prune_bench.benchmarks.video import load_video

    return load_video(item.video_path, num_frames).frames


def record_for(
    item: VideoQAItem, cfg: RunConfig, config_hash: str, result: AnswerResult, shape: LMShape
) -> dict[str, Any]:
    layers = [LayerTokens(c.attn_tokens, c.mlp_tokens) for c in result.counts]
    # The unpruned prompt: every non-visual token (stages leave text alone) plus every visual one.
    full_n = result.counts[0].attn_tokens - result.counts[0].attn_visual + result.total_visual
    full_layers = [LayerTokens(full_n, full_n)] * len(layers)
    exact, paper = prefill_flops(shape, layers, "exact"), prefill_flops(shape, layers, "paper")
    return {
        "config_hash": config_hash,
        "item_id": item.item_id,
        "task": item.task,
        "strategy": cfg.label,
        "keep": cfg.keep,
        "unit": cfg.unit,
        "mode": cfg.mode,
        "choice": result.choice,
        "answer": item.answer,
        "correct": result.choice == item.answer,
        "retention": {
            "input": result.input_retention,
            "layer_average": result.layer_average_retention,
            "decode": result.decode_retention,
        },
        "visual_per_layer": [(c.attn_visual + c.mlp_visual) / 2 for c in result.counts],
        "total_visual": result.total_visual,
        "flops": {
            "exact": exact,
            "paper": paper,
            "exact_full": prefill_flops(shape, full_layers, "exact"),
            "paper_full": prefill_flops(shape, full_layers, "paper"),
        },
        "timings_ms": result.timings_ms,
    }


def evaluate(
    adapter: Adapter,
    items: Sequence[VideoQAItem] | Iterable[VideoQAItem],
    configs: Sequence[RunConfig],
    store: ResultStore,
    context: dict[str, Any],
    *,
    num_frames: int,
    seed: int = 0,
    show_progress: bool = True,
) -> None:
    """Run every configuration on every item, skipping what ``store`` already holds."""
    info = adapter.model_info(num_frames)
    plans = [PruningPlan.of(c.strategy.stages(info), info.num_layers) for c in configs]
    hashes = [c.hash(context) for c in configs]
    needs_vision = any("vision_attention" in p.needs for p in plans)
    shape = LMShape.from_config(adapter.config.text_config)
    items = list(items)
    store.write_manifest(
        {
            **manifest(adapter, context),
            "configs": {h: c.describe(context) for h, c in zip(hashes, configs, strict=True)},
        }
    )
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        bar = progress.add_task("evaluating", total=len(items) * len(configs))
        for item in items:
            todo = [i for i, h in enumerate(hashes) if not store.done(h, item.item_id)]
            progress.advance(bar, len(configs) - len(todo))
            if not todo:
                continue
            frames = item_frames(item, num_frames)
            sample = adapter.encode(frames, item.question, item.options, capture_vision=needs_vision)
            for i in todo:
                result = adapter.run(sample, plans[i], mode=configs[i].mode, seed=seed)  # type: ignore[arg-type]
                store.append(record_for(item, configs[i], hashes[i], result, shape))
                progress.advance(bar)
