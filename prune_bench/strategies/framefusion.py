"""FrameFusion: "Combining Similarity and Importance for Video Token Reduction on Large Vision Language
Models" (Fu et al., ICCV 2025, arXiv 2501.01986).

Followed: the authors' code, github.com/thu-nics/FrameFusion at commit fbec1d2: ``FrameFusion`` in
``framefusion/main.py`` and its Qwen2 hooks in ``framefusion/models/qwen2/modeling_qwen2.py``
(``apply_framefusion(model, cost=0.3, similarity_lower_bound=0.6, ratio_lower_bound=0.1)``, the
README's LLaVA-Video setting).

* **Similarity (merging)**: every visual token is compared (cosine of the current hidden states)
  with the previous surviving token at the same patch position (``patch_type`` = position inside
  the frame), i.e. the same place one frame earlier. Tokens with similarity ``>= S_th`` are merged:
  each run of consecutive merged tokens of one position is averaged (uniformly) into the unmerged
  token before it, which keeps its place and position id.
* **Cascade**: merging runs before layer 0's attention and again after the attention of each layer
  while the merged share of that round is at least ``ratio_lower_bound``; the round that falls
  below it is the last. If a round would merge more than the budget allows (the sparsity the
  pruning step would need now), exactly the most similar tokens up to that bound are merged and
  both merging and pruning stop.
* **Importance (pruning)**: after merging stops, at the next layer's attention, the last prompt
  token's attention (one row, mean over heads) ranks the visual tokens and the top
  ``round(n * (1 - sparsity))`` are kept, ``sparsity`` chosen so the whole run meets the budget.
* Original positions are kept (the code slices ``cos``/``sin``): ``position_policy="keep"``.

In this framework the merge before layer 0 is a ``"pre"`` stage at layer 0 and the later rounds and
the pruning are one ``"post"`` stage at every layer that does nothing once its work is done; the
per-sample state (``finish_merging``, ``finish_pruning``, sparsities) lives in ``ctx.memory``, so
nothing leaks between samples (the official module must be ``prepare()``-d per sample).

Budgets: FrameFusion's budget is ``cost``, the compute of the LLM relative to the unpruned one,
which its ``_compute_pruning_ratio`` counts as the mean over layers of the share of visual tokens
(whole layers, a hard-coded depth of 28). ``for_budget`` sets ``cost = keep`` for every unit
(``"input"`` has no meaning for a method that reduces tokens gradually inside the LLM), and the
pruning sparsity (and the merge bound) is solved under this framework's ledger instead: the exact
visual counts of every half layer already run, the model's real depth, and the half-layer
convention for a post-attention stage. The achieved layer-average retention then equals ``keep``
up to rounding, unless merging alone stays above it until the last layer.

Where we differ, and why:

* Accounting, as above (the official formula is off by the half layers and on non-28-layer models).
* The similarity threshold 0.6 is the README's LLaVA-Video value; the paper lists per-model values
  (0.5 for Qwen2-VL); LLaVA-OneVision has no official value.
* A spent budget. With a very small ``ratio_lower_bound`` (or a small ``cost``) merging can go on
  round after round, each merging a little; once the rounds so far have used the whole budget, the
  official ``_compute_pruning_ratio`` raises ``ValueError("The cost is too small")`` (its remaining
  compute is negative) at the next merge or prune step and the sample fails. Ours goes on: the
  remaining per-layer target is then zero or negative, so the merge bound no longer binds (rounds
  merge by the threshold alone while they merge at least ``ratio_lower_bound``), and the prune step
  keeps no visual token for the layers left (the target clamped at 0); the run overshoots ``cost``
  and its row gets the budget warning. Why: one sample's budget arithmetic should not abort a sweep,
  and the overshoot stays visible in the measured retention.
* The LLaVA-OneVision newline token is not visual: never merged or pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import Stage
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
from prune_bench.strategies.common.select import last_token_visual_attention, topk_visual

IGNORE = -2.0
_KEY = "framefusion"


class FrameFusionConfig(StrategyConfig):
    cost: float = Field(
        0.3, gt=0, le=1, description="compute budget: mean visual share over layers (README: 0.3)"
    )
    similarity_threshold: float = Field(
        0.6, description="S_th: merge tokens at least this similar to their predecessor (LLaVA-Video: 0.6)"
    )
    ratio_lower_bound: float = Field(
        0.1, ge=0, le=1, description="stop merging after a round that merges less than this share"
    )


def same_patch_similarity(state: TokenState) -> tuple[torch.Tensor, torch.Tensor]:
    """Visual tokens ordered by (patch position, sequence order) and each one's cosine similarity
    with its predecessor in that order (``IGNORE`` where the predecessor is another position)."""
    vis = state.visual_index
    cols = state.frame_grid[1]
    patch = state.row[vis] * cols + state.col[vis]
    order = vis[torch.argsort(patch * (len(state) + 1) + vis)]
    patch = state.row[order] * cols + state.col[order]
    h = state.hidden[order].float()
    sim = F.cosine_similarity(h[1:], h[:-1], dim=-1)
    sim = sim.masked_fill(patch[1:] != patch[:-1], IGNORE)
    return order, torch.cat([sim.new_full((min(1, order.numel()),), IGNORE), sim])


def merge_into_predecessors(state: TokenState, order: torch.Tensor, merged: torch.Tensor) -> TokenState:
    """Average every run of merged tokens (consecutive in ``order``) into the unmerged token before it."""
    pos = torch.arange(order.numel(), device=state.device)
    run_start = torch.cummax(torch.where(merged, torch.zeros_like(pos), pos), dim=0).values
    target = torch.arange(len(state), device=state.device)
    target[order] = order[run_start]
    return state.merge(target, weighting="uniform")


class FrameFusion(Strategy):
    name = "framefusion"
    summary = "merge temporally similar tokens in shallow layers, then prune by attention (arXiv 2501.01986)"
    Config = FrameFusionConfig
    config: FrameFusionConfig

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        return cls(config=cls.make_config(**options).model_copy(update={"cost": keep}))

    # ------------------------------------------------------------------------------ budget
    def _target_count(self, mem: dict[str, Any], remaining_halves: int) -> float:
        """Visual tokens every remaining half layer may see so the whole run averages ``cost``."""
        total = self.config.cost * mem["n_input"] * 2 * mem["num_layers"]
        return (total - mem["halves"]) / max(remaining_halves, 1)

    def _merge_round(self, state: TokenState, mem: dict[str, Any], remaining_halves: int) -> TokenState:
        n = state.num_visual
        if n == 0:
            mem["finish_merging"] = mem["finish_pruning"] = True
            return state
        upper = 1.0 - self._target_count(mem, remaining_halves) / n
        order, sim = same_patch_similarity(state)
        merged = sim >= self.config.similarity_threshold
        ratio = float(merged.sum()) / n
        if ratio < upper:
            mem["sparsity"].append(ratio)
            if ratio < self.config.ratio_lower_bound:
                mem["finish_merging"] = True
        else:
            k = min(max(int(upper * n), 0), int((sim > IGNORE).sum()))
            merged = torch.zeros_like(merged)
            merged[torch.topk(sim, k).indices] = True
            mem["finish_merging"] = mem["finish_pruning"] = True
        if not bool(merged.any()):
            return state
        return merge_into_predecessors(state, order, merged)

    # ------------------------------------------------------------------------------- stages
    def merge_before_layer0(self, state: TokenState, ctx: StageContext) -> TokenState:
        mem = ctx.memory.setdefault(_KEY, {})
        mem.update(
            n_input=state.num_visual,
            num_layers=ctx.num_layers,
            halves=0.0,
            sparsity=[],
            finish_merging=False,
            finish_pruning=False,
        )
        return self._merge_round(state, mem, 2 * ctx.num_layers)

    def after_attention(self, state: TokenState, ctx: StageContext) -> TokenState:
        mem = ctx.memory[_KEY]
        layer = ctx.layer or 0
        if mem["finish_pruning"]:
            return state
        n = state.num_visual
        # this layer's attention half, and (after layer 0) the previous layer's MLP half, saw n tokens
        mem["halves"] += n if layer == 0 else 2 * n
        remaining = 1 + 2 * (ctx.num_layers - 1 - layer)
        if not mem["finish_merging"]:
            return self._merge_round(state, mem, remaining)
        mem["finish_pruning"] = True
        keep = round(min(max(self._target_count(mem, remaining), 0.0), float(n)))
        return topk_visual(state, last_token_visual_attention(state, ctx), keep)

    def stages(self, model: ModelInfo) -> list[Stage]:
        out = [Stage("framefusion.merge", "layer", self.merge_before_layer0, layer=0, site="pre")]
        out += [
            Stage("framefusion.merge_or_prune", "layer", self.after_attention, layer=layer, site="post")
            for layer in range(model.num_layers)
        ]
        return out


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(FrameFusion)
