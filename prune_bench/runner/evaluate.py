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

from prune_bench.adapters.base import Adapter, AnswerResult, EncodedSample
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
    from prune_bench.core.plugins import registry

    packages = {p: _version(p) for p in ("prune-bench", "torch", "transformers", "pluggy", "pydantic")}
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "packages": packages,
        "plugins": registry().plugins(),
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


@dataclass(frozen=True)
class SampledFrames:
    """An item's frames and how they were obtained: which indices, which decoder, which rule."""

    frames: torch.Tensor
    indices: tuple[int, ...]
    decoder: str
    sampling: str

    def describe(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "decoder": self.decoder, "sampling": self.sampling}


def item_frames(item: VideoQAItem, num_frames: int, *, sample_fps: float | None = None) -> SampledFrames:
    """The item's frames: ``num_frames`` uniformly (or at ``sample_fps``), decoded from disk if needed.

    A file-backed item's ``start``/``end`` bounds restrict sampling to that span.
    """
    if item.video is not None:
        video = item.video
        idx = torch.arange(video.shape[0])
        if video.shape[0] != num_frames:
            idx = torch.linspace(0, video.shape[0] - 1, num_frames).round().long()
            video = video[idx]
        return SampledFrames(video, tuple(idx.tolist()), "in-memory", "uniform")
    if item.video_path is None:
        raise ValueError(f"item {item.item_id} has neither frames nor a video path")
    from prune_bench.benchmarks.video import load_video

    loaded = load_video(item.video_path, num_frames, sample_fps=sample_fps, start=item.start, end=item.end)
    rule = "uniform" if sample_fps is None else f"{sample_fps:g} fps, at most {num_frames}"
    if item.start is not None or item.end is not None:
        rule += f", within {item.start}-{item.end} s"
    return SampledFrames(loaded.frames, loaded.indices, loaded.decoder, rule)


def encode_item(
    adapter: Adapter, item: VideoQAItem, frames: torch.Tensor, capture_vision: bool
) -> tuple[EncodedSample, str]:
    """Encode ``item``, in the benchmark's own prompt when it has one the model can take.

    Returns the sample and which prompt was used: ``"benchmark"`` or ``"model"``.
    """
    benchmark_format = adapter.prompt_format.with_benchmark_prompt() if item.prompt is not None else None
    if benchmark_format is None:
        return adapter.encode(frames, item.question, item.options, capture_vision=capture_vision), "model"
    prompt: str = item.prompt  # type: ignore[assignment]  # not None: it made benchmark_format
    sample = adapter.encode(
        frames, prompt, item.options, capture_vision=capture_vision, prompt_format=benchmark_format
    )
    return sample, "benchmark"


def record_for(
    item: VideoQAItem,
    cfg: RunConfig,
    config_hash: str,
    result: AnswerResult,
    shape: LMShape,
    frames: SampledFrames | None = None,
    prompt: str | None = None,
) -> dict[str, Any]:
    """One result line. ``frames`` and ``prompt`` add the sampled frame indices, decoder and the
    prompt used (newer fields; readers must not expect them in older records)."""
    layers = [LayerTokens(c.attn_tokens, c.mlp_tokens) for c in result.counts]
    # The unpruned prompt: every non-visual token (stages leave text alone) plus every visual one.
    full_n = result.counts[0].attn_tokens - result.counts[0].attn_visual + result.total_visual
    full_layers = [LayerTokens(full_n, full_n)] * len(layers)
    exact, paper = prefill_flops(shape, layers, "exact"), prefill_flops(shape, layers, "paper")
    record: dict[str, Any] = {
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
    if item.groups:
        record["groups"] = dict(item.groups)
    if frames is not None:
        record["frames"] = frames.describe()
    if prompt is not None:
        record["prompt"] = prompt
    return record


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
    sample_fps: float | None = None,
) -> None:
    """Run every configuration on every item, skipping what ``store`` already holds.

    With ``sample_fps`` an item may get fewer than ``num_frames`` frames; its plans are then built
    for the frames it has (each strategy keeps the knobs it chose for ``num_frames``).
    """
    plans_by_frames: dict[int, list[PruningPlan]] = {}

    def plans_for(frames: int) -> list[PruningPlan]:
        if frames not in plans_by_frames:
            info = adapter.model_info(frames)
            plans_by_frames[frames] = [
                PruningPlan.of(c.strategy.stages(info), info.num_layers) for c in configs
            ]
        return plans_by_frames[frames]

    hashes = [c.hash(context) for c in configs]
    needs_vision = any("vision_attention" in p.needs for p in plans_for(num_frames))
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
            frames = item_frames(item, num_frames, sample_fps=sample_fps)
            sample, prompt = encode_item(adapter, item, frames.frames, needs_vision)
            plans = plans_for(frames.frames.shape[0])
            for i in todo:
                result = adapter.run(sample, plans[i], mode=configs[i].mode, seed=seed)  # type: ignore[arg-type]
                store.append(record_for(item, configs[i], hashes[i], result, shape, frames, prompt))
                progress.advance(bar)
