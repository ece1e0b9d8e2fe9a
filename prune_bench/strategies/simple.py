"""Baselines every comparison needs: the full model, random tokens, and uniform subsampling.

* ``none``: no pruning; the reference row.
* ``random``: a uniformly random subset of visual tokens, seeded per sample; at the input by
  default, or after the attention of a chosen decoder layer (``layer``).
* ``uniform``: the same budget spent evenly: the same evenly spaced positions in every frame
  (``spatial``), or every k-th frame whole (``temporal``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import full_layers, kept_for_layer_average
from prune_bench.core.stages import Stage
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
from prune_bench.strategies.common.select import budget_count, keep_visual_subset


class NoneConfig(StrategyConfig):
    pass


class NoPruning(Strategy):
    name = "none"
    summary = "the unpruned model (reference row)"
    Config = NoneConfig

    def stages(self, model: ModelInfo) -> list[Stage]:
        return []


class RandomConfig(StrategyConfig):
    keep: float = Field(
        0.3, gt=0, le=1, description="fraction of the visual tokens present at the stage to keep"
    )
    layer: int | None = Field(
        None, ge=0, description="prune after this decoder layer's attention; None prunes at the LLM input"
    )


class RandomPruning(Strategy):
    name = "random"
    summary = "keep a random subset of visual tokens (seeded per sample)"
    Config = RandomConfig
    uses_randomness = True
    config: RandomConfig

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        layer = options.get("layer")
        ratio = keep
        if layer is not None and unit != "input":
            # Layers 0..layer-1 and half of layer `layer` (its attention) see every token.
            ratio = kept_for_layer_average(keep, model.num_layers, full_layers(layer, "post"))
        return cls(keep=min(1.0, max(ratio, 1e-3)), **options)

    def stages(self, model: ModelInfo) -> list[Stage]:
        keep = self.config.keep

        def random_subset(state: TokenState, ctx: StageContext) -> TokenState:
            n = state.num_visual
            perm = torch.randperm(n, generator=ctx.generator, device=ctx.generator.device)
            return keep_visual_subset(state, perm[: budget_count(n, keep)])

        if self.config.layer is None:
            return [Stage("random.subset", "input", random_subset)]
        return [Stage("random.subset", "layer", random_subset, layer=self.config.layer, site="post")]


class UniformConfig(StrategyConfig):
    keep: float = Field(0.3, gt=0, le=1, description="fraction of visual tokens kept at the LLM input")
    mode: Literal["spatial", "temporal"] = Field(
        "spatial",
        description="spatial: the same evenly spaced positions in every frame; temporal: every k-th frame",
    )


class UniformPruning(Strategy):
    name = "uniform"
    summary = "uniform spatial subsampling per frame (or frame striding) at the LLM input"
    Config = UniformConfig
    config: UniformConfig

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        return cls(keep=keep, **options)

    def stages(self, model: ModelInfo) -> list[Stage]:
        keep, mode = self.config.keep, self.config.mode

        def uniform(state: TokenState, ctx: StageContext) -> TokenState:
            vis = state.visual_index
            frame = state.frame[vis]
            rows, cols = state.frame_grid
            per_frame = rows * cols
            if mode == "spatial":
                k = budget_count(per_frame, keep)
                slots = torch.linspace(0, per_frame - 1, k, device=state.device).round().long()
                local = state.row[vis] * cols + state.col[vis]
                chosen = torch.isin(local, slots)
            else:
                frames = state.num_frames
                k = budget_count(frames, keep)
                picked = torch.linspace(0, frames - 1, k, device=state.device).round().long()
                chosen = torch.isin(frame, picked)
            return keep_visual_subset(state, chosen)

        return [Stage(f"uniform.{mode}", "input", uniform)]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    for cls in (NoPruning, RandomPruning, UniformPruning):
        register(cls)
