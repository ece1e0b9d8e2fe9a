"""VisPruner: "Beyond Text-Visual Attention: Exploiting Visual Cues for Effective Token Pruning in VLMs"
(Zhang et al., ICCV 2025, arXiv 2412.01818).

Followed: the authors' code, github.com/Theia-4869/VisPruner at commit aefa01a: ``encode_images``
in ``llava/model/llava_arch.py`` (the ``[VisPruner]`` blocks) and ``feature_select`` in
``llava/model/multimodal_encoder/{clip,siglip}_encoder.py``. Text-agnostic, in the vision
encoder, per image; on video we apply it per frame (the code is image-only), on the pooled grid:

1. **Important tokens**: ``T_imp = int(T * r)`` tokens with the highest visual attention. CLIP uses
   the [CLS] row of the feature layer; SigLIP has no [CLS], and the code's ``siglip_encoder``
   averages the last layer's attention over queries (then heads): the attention each patch
   *receives*, which is ``ctx.vision_attention().received``.
2. **Diverse tokens**: the others, in order of decreasing attention, are deduplicated ToMe-style
   until ``T - T_imp`` remain: split alternately into A (even places) and B (odd places); each
   A-token's score is its largest cosine similarity to B; the ``min(8, R - (T - T_imp))`` A-tokens
   with the highest scores are removed; the survivors are re-ordered as [A by decreasing score, B]
   and the next round splits that order again, until ``T - T_imp`` remain.
3. The kept tokens stay in spatial order (an index mask); LLaVA splices them into the prompt, so
   positions are contiguous afterwards (``position_policy="reindex"``).

Defaults: ``T`` and ``r`` are the README's command-line arguments with no single default; we use
its MME example, 64 tokens at ``r = 0.75`` (48 important + 16 diverse), per frame.

Budgets: VisPruner prunes before the LLM, so every unit means the share of visual tokens entering
it: ``T = round(keep * P)`` per frame, ``r`` unchanged. Below one token a frame we warn.

Where we differ, and why:

* Similarity features. The code compares the vision tower's pre-projector features; this
  framework exposes the projected, pooled tokens the LLM receives and the feature layer's
  head-averaged keys (pooled the same way). We default to the tokens (``similarity="hidden"``);
  ``similarity="keys"`` uses the keys.
* LLaVA-OneVision pools the grid 2x2 after the projector; we score the pooled grid (the
  attention is pooled exactly like the features), as the SigLIP ports of VisionZip do.
* Inputs the code stops on. Its round indexes the kept A-tokens with
  ``arange(B).unsqueeze(-1).expand(-1, R // 2 - r)`` while ``argsort(...)[:, r:]`` has
  ``ceil(R / 2) - r`` entries, so it raises (indices that do not broadcast) whenever a round starts
  with an odd ``R`` (unless ``r = R // 2``): the first round's ``R`` is ``P - T_imp`` (196 - ``T_imp``
  on LLaVA-OneVision's pooled grid, ``T_imp = int(T * important_ratio)``), so about half of all
  budgets; and it raises
  (a negative ``expand``) when a round's quota ``r = min(8, R - (T - T_imp))`` exceeds ``R // 2``,
  which the last round can reach when fewer than 8 diverse tokens are asked for. Ours runs
  both: A is the ``ceil(R / 2)`` even places, a quota larger than A removes all of A and the
  next round goes on, so every frame ends with exactly ``T - T_imp`` diverse tokens.
* The attention ranking uses a stable sort so equal scores resolve by index.
* Engineering, not selection: every frame's matching runs in one batch (the code handles one image);
  the rounds stay sequential (each depends on the last), with no read back inside them, and the
  kept count (``T`` a frame) is known on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.strategies.common.temporal import frame_grid_index

#: A-tokens removed per deduplication round (hard-coded ``min(8, ...)`` in the code).
DEDUP_STEP = 8


class VisPrunerConfig(StrategyConfig):
    visual_token_num: int = Field(
        64, ge=1, description="T: tokens kept per frame, important + diverse (README MME example: 64)"
    )
    important_ratio: float = Field(
        0.75, ge=0, le=1, description="r: share of important tokens, T_imp = int(T * r) (README: 0.75 at 64)"
    )
    dedup_step: int = Field(DEDUP_STEP, ge=1, description="duplicates removed per matching round (code: 8)")
    similarity: Literal["hidden", "keys"] = Field(
        "hidden", description="features compared for duplicates: the LLM's input tokens or the tower's keys"
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="'reindex' as LLaVA's splice does, or 'keep' original position ids"
    )


def remove_duplicates(features: torch.Tensor, residual: torch.Tensor, keep: int, step: int) -> torch.Tensor:
    """VisPruner's iterative bipartite matching, batched over frames.

    :param features: ``[F, N, D]`` features of every token of every frame.
    :param residual: ``[F, R]`` candidate tokens of each frame, in the order the matching alternates.
    :param keep: tokens to leave per frame. :param step: most A-tokens removed per round.
    :returns: ``[F, keep]`` surviving tokens (fewer only when ``R < keep`` to begin with): a round
        whose quota exceeds its A set removes all of A and the next round goes on.
    """
    x = F.normalize(features.float(), dim=-1)
    while keep > 0:
        r = min(step, residual.shape[1] - keep)
        if r <= 0:
            break
        tokens = x.gather(1, residual[..., None].expand(-1, -1, x.shape[-1]))
        a, b = tokens[:, ::2], tokens[:, 1::2]
        scores = torch.bmm(a, b.transpose(1, 2)).amax(dim=-1)  # [F, ceil(R / 2)]
        distinct = scores.argsort(dim=-1, descending=True, stable=True)[:, r:]
        residual = torch.cat([residual[:, ::2].gather(1, distinct), residual[:, 1::2]], dim=1)
    return residual


def vispruner_keep_mask(
    attention: torch.Tensor, features: torch.Tensor, important: int, diverse: int, step: int = DEDUP_STEP
) -> torch.Tensor:
    """``[F, P]`` mask of the tokens VisPruner keeps in each frame.

    :param attention: ``[F, P]`` visual attention of each token. :param features: ``[F, P, D]``.
    """
    order = attention.float().argsort(dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(attention, dtype=torch.bool)
    keep.scatter_(1, order[:, :important], True)
    if diverse > 0:
        keep.scatter_(1, remove_duplicates(features, order[:, important:], diverse, step), True)
    return keep


class VisPruner(Strategy):
    name = "vispruner"
    summary = "per-frame important tokens by vision attention plus similarity-deduplicated diverse tokens (arXiv 2412.01818)"
    Config = VisPrunerConfig
    config: VisPrunerConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "dedup on vision keys": {"similarity": "keys"},
        "original positions (no reindex)": {"position_policy": "keep"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(VisPrunerConfig, cls.make_config(**options))
        per_frame = model.tokens_per_frame
        tokens = round(keep * per_frame)
        if tokens < 1:
            warn_budget(cls.name, keep, 1 / per_frame, "VisPruner keeps at least one token per frame")
            tokens = 1
        return cls(config=probe.model_copy(update={"visual_token_num": min(tokens, per_frame)}))

    def select(self, state: TokenState, ctx: StageContext) -> TokenState:
        cfg = self.config
        grid = frame_grid_index(state)  # [T, P]
        per_frame = grid.shape[1]
        total = min(cfg.visual_token_num, per_frame)
        if total >= per_frame:
            return state
        important = int(total * cfg.important_ratio)
        vision = ctx.vision_attention()
        features = state.hidden[grid] if cfg.similarity == "hidden" else vision.keys.to(state.device)
        keep_grid = vispruner_keep_mask(
            vision.received.to(state.device), features, important, total - important, cfg.dedup_step
        )
        keep = torch.ones(len(state), dtype=torch.bool, device=state.device)
        keep[grid] = keep_grid
        # every frame keeps exactly ``total`` (its candidates outnumber the diverse budget): no read back
        frames = grid.shape[0]
        return state.keep_mask(keep, kept=len(state) - frames * (per_frame - total))

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [
            Stage(
                "vispruner.important_diverse",
                "input",
                self.select,
                position_policy=self.config.position_policy,
                needs=frozenset({"vision_attention"}),
            )
        ]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(VisPruner)
