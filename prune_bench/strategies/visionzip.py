"""VisionZip: "Longer is Better but Not Necessary in Vision Language Models" (Yang et al., CVPR 2025,
arXiv 2412.04467), in its video form for LLaVA-OneVision.

Followed: the official repository github.com/dvlab-research/VisionZip at commit 3151f6d defines
the method (dominant tokens by the attention they receive in the vision tower's feature layer,
contextual tokens by merging the rest on key similarity, 54 dominant : 10 contextual at 64
tokens), but it only supports CLIP towers with a [CLS] token. The SigLIP / LLaVA-OneVision port we
follow is the one video papers compare against: github.com/cokeshao/HoliTom at commit e9b2972,
``visionzip/llava_arch.py`` (``WRAPPER=visionzip SPATIAL_TOKENS=20|30|40|50`` in
``scripts/eval_ov-7b_visionzip.sh`` for 10/15/20/25 % retention). Per frame, on the pooled grid:

1. **Dominant**: SigLIP has no [CLS], so the score is the mean attention a patch *receives* in the
   feature layer (mean over heads and queries), 2x2-pooled exactly like the features; keep the top
   ``dominant = int(S * 54/64)`` of the frame's ``P`` tokens.
2. **Contextual**: the remaining ``P - dominant`` tokens, in spatial order, are compared by cosine
   similarity of the feature layer's head-averaged keys (pooled the same way). Every
   ``step = max(1, (P - dominant) // contextual)``-th of them is a target (the first
   ``contextual = S - dominant``); every other one goes to its most similar target.
3. A contextual token is ``target + mean(assigned tokens)``: a sum, not an average, as the code
   does (``contextual_tokens = target_hidden + aggregated_hidden``); ``contextual_combine="mean"``
   gives the average of the group instead.

``S`` is ``SPATIAL_TOKENS`` (the port's default 50 of 196, i.e. about 25 %); the split is the
authors' 54:10 at every budget (``DOMINANT_RATIO = 54/64``). The selection runs at the ``input``
hook on the projected, pooled tokens with ``ctx.vision_attention()``; it is batched over frames.

Budgets: VisionZip prunes before the LLM, so ``"input"``, ``"layer-average"`` and ``"flops"`` all
mean the fraction of visual tokens entering the LLM; ``S = round(keep * P)`` per frame (the port's
20/30/40/50 of 196 are these values rounded up to tens). Below one token a frame we warn.

Positions: the original code splices the shortened sequence into the prompt, so positions are
contiguous (``position_policy="reindex"``, the default); ``"keep"`` keeps original ids.

Where we differ, and why:

* Order. For video (``mm_newline_position="one_token"``) the port emits each frame as [the
  dominant tokens in position order (``masked_select`` of the top-k mask, not the top-k order),
  then the contextual tokens in their targets' position order]; only its ``"grid"`` branch (images)
  sorts all of them back by position. We keep every token in its original (spatial) place, merged
  tokens at their target's place, so the two orders agree within the dominant tokens and within the
  contextual ones but interleave differently: with re-indexed positions each contextual token
  spatially before the frame's last dominant token gets an earlier RoPE position than in the port
  (where all contextual tokens follow all dominant ones), and the dominant tokens after it a later
  one; the kept set and the merged values are the same. We prefer not to scramble spatial order,
  which the framework's layout (frame/row/col) relies on.
* Edge cases the port crashes on (``contextual = 0`` divides by zero; fewer remaining tokens than
  contextual targets mismatches shapes) are handled: no contextual tokens, or fewer targets.
* Attention is computed from the tower's captured q/k (no eager tower).
* Engineering, not selection: batched over frames (the port loops over them); which remaining slots
  are targets, and how many tokens each frame merges or drops, are known on the host, so the stage
  reads back only the layout's grid and the merge's target check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.strategies.common.temporal import frame_grid_index
from prune_bench.strategies.common.transfer import host_to_device

DOMINANT_RATIO = 54 / 64


class VisionZipConfig(StrategyConfig):
    spatial_tokens: int = Field(
        50, ge=1, description="tokens kept per frame, dominant + contextual (HoliTom port: SPATIAL_TOKENS=50)"
    )
    dominant_ratio: float = Field(
        DOMINANT_RATIO, ge=0, le=1, description="share of dominant tokens (authors: 54 of 64)"
    )
    contextual_combine: Literal["sum", "mean"] = Field(
        "sum", description="contextual token = target + mean(assigned) as coded ('sum'), or the group mean"
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="'reindex' positions contiguously as the original splicing does, or 'keep'"
    )


def split_budget(spatial_tokens: int, dominant_ratio: float) -> tuple[int, int]:
    """(dominant, contextual) per frame: ``dominant = int(S * ratio)``, the rest contextual."""
    dominant = int(spatial_tokens * dominant_ratio)
    return dominant, spatial_tokens - dominant


def contextual_positions(rest: int, contextual: int) -> tuple[list[int], list[int]]:
    """(targets, members): places among a frame's ``rest`` non-dominant tokens (in spatial order) of
    the contextual targets, every ``max(1, rest // contextual)``-th from the first, at most
    ``contextual`` of them, and of the tokens merged into them."""
    step = max(1, rest // contextual)
    targets = list(range(0, rest, step))[:contextual]
    chosen = set(targets)
    return targets, [i for i in range(rest) if i not in chosen]


def visionzip_assign(
    received: torch.Tensor, keys: torch.Tensor, dominant: int, contextual: int
) -> torch.Tensor:
    """Per-frame VisionZip selection on a ``[T, P]`` grid.

    :param received: attention each token receives, ``[T, P]``.
    :param keys: the tokens' keys for the similarity, ``[T, P, d]``.
    :returns: ``[T, P]`` slot (within the frame) each token ends up in: itself for dominant tokens
        and contextual targets, its target for merged tokens, ``-1`` for dropped tokens.
    """
    t, p = received.shape
    device = received.device
    slots = torch.arange(p, device=device)
    dominant = min(dominant, p)
    is_dom = torch.zeros(t, p, dtype=torch.bool, device=device)
    is_dom.scatter_(1, received.float().topk(dominant, dim=1).indices, True)
    assign = torch.where(is_dom, slots[None, :].expand(t, p), torch.full_like(is_dom, -1, dtype=torch.long))
    rest = p - dominant
    if contextual <= 0 or rest == 0:
        return assign
    # the non-dominant slots of each frame, in spatial order ([T, rest])
    remaining = torch.sort(is_dom.long() * p + slots[None, :], dim=1).values[:, :rest]
    # every step-th remaining slot is a target: which ones is known on the host (no mask to read back)
    target_pos, member_pos = contextual_positions(rest, contextual)
    targets = remaining[:, host_to_device(target_pos, device)]
    members = remaining[:, host_to_device(member_pos, device)]
    k = F.normalize(keys.float(), dim=-1)
    k_targets = k.gather(1, targets[..., None].expand(-1, -1, k.shape[-1]))
    k_members = k.gather(1, members[..., None].expand(-1, -1, k.shape[-1]))
    best = torch.bmm(k_members, k_targets.transpose(1, 2)).argmax(dim=2)  # [T, m]
    assign.scatter_(1, targets, targets)
    assign.scatter_(1, members, targets.gather(1, best))
    return assign


class VisionZip(Strategy):
    name = "visionzip"
    summary = "per-frame dominant tokens by vision attention plus merged contextual tokens (arXiv 2412.04467)"
    Config = VisionZipConfig
    config: VisionZipConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "contextual = group mean": {"contextual_combine": "mean"},
        "original positions (no reindex)": {"position_policy": "keep"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cls.make_config(**options)
        per_frame = model.tokens_per_frame
        spatial = round(keep * per_frame)
        if spatial < 1:
            warn_budget(cls.name, keep, 1 / per_frame, "VisionZip keeps at least one token per frame")
            spatial = 1
        return cls(config=probe.model_copy(update={"spatial_tokens": min(spatial, per_frame)}))

    def select(self, state: TokenState, ctx: StageContext) -> TokenState:
        grid = frame_grid_index(state)  # [T, P] state indices
        per_frame = grid.shape[1]
        spatial = min(self.config.spatial_tokens, per_frame)
        dominant, contextual = split_budget(spatial, self.config.dominant_ratio)
        if dominant + contextual >= per_frame:
            return state
        vision = ctx.vision_attention()
        received, keys = vision.received.to(state.device), vision.keys.to(state.device)
        assign = visionzip_assign(received, keys, dominant, contextual)
        n = len(state)
        frames = grid.shape[0]
        # per frame, known on the host: the tokens merged into a target, and those dropped
        rest = per_frame - min(dominant, per_frame)
        merged_away = len(contextual_positions(rest, contextual)[1]) if contextual > 0 and rest else 0
        dropped_count = 0 if contextual > 0 and rest else rest
        n_reps = n - frames * merged_away
        target = torch.arange(n, device=state.device)
        dropped = torch.zeros(n, dtype=torch.bool, device=state.device)
        kept_slot = assign >= 0
        target[grid] = torch.where(kept_slot, grid.gather(1, assign.clamp_min(0)), grid)
        dropped[grid] = ~kept_slot
        merged = state.merge(target, weighting="uniform", kept=n_reps)
        own = target == torch.arange(n, device=state.device)
        by_role = torch.argsort(own.to(torch.uint8), descending=True, stable=True)  # reps, then members
        representatives = by_role[:n_reps]
        if self.config.contextual_combine == "sum":
            plus_mean = self._target_plus_mean(state, target, by_role[n_reps:])
            merged = merged.with_hidden(plus_mean[representatives])
        return merged.keep_mask(~dropped[representatives], kept=n_reps - frames * dropped_count)

    @staticmethod
    def _target_plus_mean(state: TokenState, target: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """The port's contextual token: its target's hidden state plus the mean of the assigned ones
        (``members``: the tokens with another target, in index order)."""
        n = len(state)
        h = state.hidden.float()
        total = torch.zeros_like(h).index_add_(0, target[members], h[members])
        ones = torch.ones(members.numel(), device=state.device)
        count = torch.zeros(n, device=state.device).index_add_(0, target[members], ones)
        out = h + total / count.clamp_min(1)[:, None]
        return out.to(state.hidden.dtype)

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [
            Stage(
                "visionzip.dominant_contextual",
                "input",
                self.select,
                position_policy=self.config.position_policy,
                needs=frozenset({"vision_attention"}),
            )
        ]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(VisionZip)
