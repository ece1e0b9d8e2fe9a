"""EVS: "Efficient Video Sampling: Pruning Temporally Redundant Tokens for Faster VLM Inference"
(Bagrov et al., NVIDIA, arXiv 2510.14624), as vLLM ships it.

This is the pruning a serving engine runs today: vLLM's ``--video-pruning-rate q`` (Qwen2.5-VL,
Qwen3-VL, Nemotron Nano VL) calls exactly this selection on every video before the LLM.

Followed: github.com/vllm-project/vllm at commit 926c71f (``vllm/multimodal/evs.py``:
``compute_retained_tokens_count``, ``compute_retention_mask``, ``compute_mrope_for_media``,
``recompute_mrope_positions``), and how ``Qwen2_5_VLForConditionalGeneration.
_postprocess_video_embeds_evs`` (``vllm/model_executor/models/qwen2_5_vl.py``, read at 002d181)
applies it. The selection code is the same at 094f117 (an older snapshot; only type annotations
differ). We follow the code vLLM ships, not the paper's text.

The selection, line by line as vLLM does it, on the video's embeddings as the LLM receives them
(the vision tower + projector / merger output: ``state.hidden`` of the visual tokens at the ``input``
hook), laid out ``[T, H, W, D]`` (``T`` layout frames, Qwen2-VL's temporal patches; ``H x W`` the
merged grid):

1. **Retained count, before anything is computed**, from the shape and ``q`` alone:
   ``k = max(H*W, int(T*H*W * (1 - q)))``: truncated, not rounded, and at least one whole frame.
2. **Dissimilarity**: ``1 - cosine(x[t, h, w], x[t-1, h, w])`` for ``t >= 1``: each token against
   the token at the same spatial position of the previous frame (``F.cosine_similarity``, its
   default ``eps``, in the embeddings' own dtype, as vLLM computes it).
3. **First frame**: its dissimilarity is the sentinel ``255`` (above any ``1 - cos <= 2``), so the
   whole first frame is always kept (and, since ``k >= H*W``, always fits).
4. **Top-k**: ``argsort(descending=True, stable=True)`` over the flattened ``(T, H, W)`` scores and
   the first ``k`` are kept: ties (exact repeats score 0, and are common in bf16) go to the earlier
   frame, then the earlier raster position. Nothing is merged; the kept tokens stay in order.

Defaults: ``pruning_rate = 0.7`` (keep 30 %, prune-bench's default budget; vLLM has no default:
pruning is off unless ``--video-pruning-rate`` is given).

Budgets: EVS acts before the LLM, so ``"input"``, ``"layer-average"`` and ``"flops"`` all mean the
fraction of visual tokens entering the LLM: ``for_budget`` sets ``q = 1 - keep``, and the kept
count is vLLM's ``max(H*W, int(T*H*W*(1 - q)))`` (truncation: one token under ``round`` at most;
also the float error of ``1 - q``, e.g. ``int(100 * (1 - 0.9)) = 9``, as in vLLM). Below one frame's
worth (``keep < 1/T``) the floor wins; either way, more than 5 % (relative) off ``keep`` is a warning.

Positions (``position_policy``, default ``"auto"``): vLLM keeps each retained token's original
M-RoPE ``(t, h, w)`` (``compute_mrope_for_media`` for the full grid, indexed by the retention
mask) on M-RoPE models, so ``"auto"`` is ``"keep"`` on the ``qwen2_vl`` and ``qwen3_vl`` families. On a 1-D RoPE model
the processor emits only ``k`` placeholder tokens (Nemotron Nano VL), i.e. the pruned video is a
shorter prompt with contiguous positions: ``"auto"`` is ``"reindex"`` elsewhere (LLaVA-OneVision,
which vLLM's EVS does not cover). ``"keep"`` / ``"reindex"`` force one.

Where we differ, and why:

* Text after the video (M-RoPE, ``"keep"``). vLLM's ``recompute_mrope_positions`` restarts the text
  after a pruned video at ``video start + W`` (``offset = mm_pos[3, 0] + base``, ``mm_pos[3]`` being
  the grid width) whatever the video's extent; the unpruned Qwen2.5-VL layout (HF's
  ``get_rope_index``, which the adapter gives every token) starts it at
  ``video start + max(t, h, w) + 1``. When the last temporal index
  ``(T-1) * second_per_grid * tokens_per_second`` exceeds ``W`` (16 temporal patches of 1 s at
  Qwen2.5-VL's 2 tokens/s reach 30), vLLM's following text shares positions with the video's later
  frames; decoding continues from there. We keep the original text positions (and
  ``next_position``); stages here never renumber text, and an upstream quirk of the position
  bookkeeping is not the selection we compare.
* Qwen2-VL. vLLM wires EVS into Qwen2.5-VL and Qwen3-VL, not Qwen2-VL; the ``qwen2_vl`` adapter runs
  it on both Qwen2-VL and Qwen2.5-VL checkpoints (the same selection on the same layout).
* One video per sample, no chunked prefill, no images: prune-bench's samples are single videos
  (vLLM scores each video of a prompt separately and never prunes images, which matches).
* Reindex on 1-D RoPE models, as above: vLLM has no 1-D RoPE model with EVS that uses positions
  the way LLaVA-OneVision does; a shorter prompt is the closest reading. LLaVA-OneVision's newline
  token is not visual: never scored or dropped.
* The grid must be complete (every position of every frame), as at the LLM input: mounted after
  another pre-LLM stage that removed tokens, EVS stops with an error instead of guessing a layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import warn_budget
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
from prune_bench.strategies.common.temporal import frame_grid_index

#: vLLM's score for first-frame tokens (``255 * torch.ones_like(...)``): above any ``1 - cos``.
FIRST_FRAME_SCORE = 255.0

#: Adapter families whose positions are M-RoPE ``(t, h, w)``, where vLLM keeps the original ones.
MROPE_FAMILIES: frozenset[str] = frozenset({"qwen2_vl", "qwen3_vl"})


class EVSConfig(StrategyConfig):
    pruning_rate: float = Field(
        0.7,
        ge=0,
        lt=1,
        description="q, vLLM's --video-pruning-rate: keep max(H*W, int(T*H*W*(1-q))) video tokens",
    )
    position_policy: Literal["auto", "keep", "reindex"] = Field(
        "auto",
        description="'auto': original M-RoPE positions on qwen2_vl and qwen3_vl (vLLM), contiguous on 1-D RoPE; or force one",
    )


def retained_tokens_count(tokens_per_frame: int, num_frames: int, q: float) -> int:
    """vLLM's ``compute_retained_tokens_count``: ``max(P, int(T * P * (1 - q)))``."""
    total = tokens_per_frame * num_frames
    return max(tokens_per_frame, int(total * (1 - q)))


def evs_retention_mask(video: torch.Tensor, q: float) -> torch.Tensor:
    """vLLM's ``compute_retention_mask`` on a ``[T, P, D]`` video (``P = H * W`` in raster order).

    :returns: ``[T, P]`` boolean, true for the ``retained_tokens_count(P, T, q)`` kept tokens.
    """
    t, p, _ = video.shape
    dissimilarity = 1 - F.cosine_similarity(video[1:], video[:-1], dim=-1)  # [T-1, P], video's dtype
    first = torch.full((1, p), FIRST_FRAME_SCORE, dtype=dissimilarity.dtype, device=video.device)
    scores = torch.cat([first, dissimilarity], dim=0).flatten()
    order = torch.argsort(scores, descending=True, stable=True)
    keep = torch.zeros(t * p, dtype=torch.bool, device=video.device)
    keep[order[: retained_tokens_count(p, t, q)]] = True
    return keep.view(t, p)


class EVS(Strategy):
    name = "evs"
    summary = (
        "drop tokens that repeat the previous frame's token at the same place (vLLM's EVS, arXiv 2510.14624)"
    )
    Config = EVSConfig
    config: EVSConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "original positions (keep)": {"position_policy": "keep"},
        "contiguous positions (reindex)": {"position_policy": "reindex"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        # Before the LLM: every unit is the fraction of visual tokens entering it.
        q = 1.0 - keep
        per_frame, total = model.tokens_per_frame, model.num_frames * model.tokens_per_frame
        if total:
            count = retained_tokens_count(per_frame, model.num_frames, q)
            if abs(count / total - keep) > 0.05 * keep:
                why = (
                    "EVS keeps at least the whole first frame (vLLM's minimum)"
                    if count == per_frame
                    else f"vLLM truncates the count: int({total} * (1 - q)) = {count} of {total}"
                )
                warn_budget(cls.name, keep, count / total, why)
        return cls(pruning_rate=q, **options)

    def policy(self, model: ModelInfo) -> PositionPolicy:
        """The position policy this config means on ``model`` (``"auto"`` resolved as vLLM does)."""
        policy = self.config.position_policy
        if policy == "auto":
            return "keep" if model.family in MROPE_FAMILIES else "reindex"
        return policy

    def select(self, state: TokenState, ctx: StageContext) -> TokenState:
        if state.num_visual == 0:
            return state
        grid = frame_grid_index(state)  # [T, P] indices into the state, raster order per frame
        keep = evs_retention_mask(state.hidden[grid], self.config.pruning_rate)
        mask = torch.ones(len(state), dtype=torch.bool, device=state.device)
        mask[grid[~keep]] = False
        return state.keep_mask(mask)

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [Stage("evs.temporal_redundancy", "input", self.select, position_policy=self.policy(model))]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(EVS)
