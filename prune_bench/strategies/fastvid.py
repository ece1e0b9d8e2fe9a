"""FastVID: "Dynamic Density Pruning for Fast Video Large Language Models" (Shen et al., NeurIPS 2025,
arXiv 2503.11187).

Followed: the authors' code, github.com/LunarShen/FastVID at commit a40a109, the LLaVA-OneVision
path: the ``FastVID`` block at the top of ``Qwen2Model.forward`` in
``fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py`` and the
defaults of ``fastvid_llavaonevision/scripts/eval.sh`` (``fastvid_retention_ratio=0.10``,
``DySeg_c=8``, ``DySeg_tau=0.9``, ``STPrune_d=0.4``, ``DTM_p=4``, ``DTM_beta=0.6``). Text-agnostic,
before the first decoder layer, on the projected, pooled per-frame tokens (``P`` a frame):

1. **DySeg**: cosine similarity of consecutive frames' global features; a segment boundary after
   the ``c - 1`` least similar transitions AND after every transition below ``tau``.
2. Per frame ``retain = int(P * rho)``, ``salient = retain - int(retain * d)``,
   ``context = retain - salient``.
3. **ATS**: every frame keeps its top-``salient`` tokens by vision attention.
4. Anchor frames: in a segment of ``L`` frames every ``p``-th frame counted from the segment's END
   is an anchor frame and gets ``(context * L) // ceil(L / p)`` context tokens; other frames none.
5. **STPrune / DTM**: on each frame's non-salient tokens, the DPC-kNN score (k = 4, distances over
   ``sqrt(D)``; :mod:`~prune_bench.strategies.common.dpc_knn`) picks the anchor frame's top tokens
   as anchors. Every non-salient token of the anchor frame (single-frame case, the code's
   ``count == context``) or of the whole segment (multi-frame case) joins its most cosine-similar
   anchor of that frame, itself included; the anchor becomes ``w * anchor + (1 - w) * mean(joined)``
   with ``w = max(1 / (count + 1), beta)``. Each anchor frame does this independently, so a token of
   a multi-frame segment is folded into one anchor of every anchor frame of its segment.
6. Kept tokens stay in place and keep their ORIGINAL positions (the code sets
   ``position_ids = cache_position = keep_indices`` and slices cos/sin): ``position_policy="keep"``.

Scores (where we differ, and why): for LLaVA-OneVision the authors load SigLIP's attention-pooling
(MAP) head separately and use its pooled output as the frame's global feature and its probe
attention over the patches as saliency. That head is not part of the LLaVA checkpoint and this
framework does not load it. We use what FastVID itself uses where no MAP head exists (its
Qwen2.5-VL path): the frame feature is the mean of the frame's tokens, and the saliency is the
attention each patch receives in the vision tower's feature layer (``ctx.vision_attention()``,
pooled like the features), the same no-[CLS] SigLIP stand-in the VisionZip and HoliTom ports use.
Other differences: the density tie-break noise (``rand * 1e-6``) is left out for determinism; where
the code would crash we clamp (an anchor frame asking for more anchors than it has non-salient
tokens, ``c - 1`` above the number of transitions); the LLaVA-OneVision newline token is not visual
and is always kept; the frame count and grid come from the token layout, not from ``set_my_kwargs``.
The DTM compares each anchor frame's anchors only with the tokens of the frames it pools (the code
loops over segments and their anchor frames; we pad the anchor frames' pools into one batch): the
same assignments and sums, so the kept tokens are the code's and the merged values differ from a
dense all-frames product only by float rounding.

Budgets: FastVID prunes before the LLM, so every unit means the fraction of visual tokens entering
it, and the knob is ``rho``. The code keeps ``int(P * rho)`` tokens a frame; ``for_budget`` sets
``rho = round(keep * P) / P`` so that this count is ``keep * P`` rounded, as the other per-frame
strategies do (at ``keep = 0.10`` and ``P = 196``: 20 tokens, where the authors' ``rho = 0.10``
gives 19; pass ``retention_ratio`` to :class:`FastVID` directly for their exact setting). A segment
whose anchor budget does not divide evenly keeps a few tokens less. Below one token a frame we warn
and keep one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.strategies.common.dpc_knn import dpc_knn_score
from prune_bench.strategies.common.temporal import frame_grid_index
from prune_bench.strategies.common.transfer import host_to_device


class FastVIDConfig(StrategyConfig):
    retention_ratio: float = Field(
        0.10, gt=0, le=1, description="rho: share of each frame's tokens kept (fastvid_retention_ratio)"
    )
    segments: int = Field(
        8, ge=1, description="c: DySeg cuts at the c-1 least similar frame transitions (fastvid_DySeg_c)"
    )
    tau: float = Field(
        0.9, description="DySeg also cuts where consecutive frames' cosine < tau (fastvid_DySeg_tau)"
    )
    context_share: float = Field(
        0.4,
        ge=0,
        le=1,
        description="d: share of the retained tokens that are context anchors (fastvid_STPrune_d)",
    )
    anchor_stride: int = Field(
        4, ge=1, description="p: every p-th frame from a segment's end is an anchor frame (fastvid_DTM_p)"
    )
    beta: float = Field(
        0.6, ge=0, le=1, description="lower bound of the anchor's own weight in its merge (fastvid_DTM_beta)"
    )
    density_k: int = Field(4, ge=1, description="neighbours of the DPC-kNN density (hard-coded 4)")
    position_policy: PositionPolicy = Field(
        "keep", description="'keep' original position ids as the code does, or 'reindex'"
    )


def per_frame_budget(tokens_per_frame: int, rho: float, d: float) -> tuple[int, int]:
    """(salient, context) tokens a frame, with the code's ``int()`` truncations."""
    retain = int(tokens_per_frame * rho)
    salient = retain - int(retain * d)
    return salient, retain - salient


def dynamic_segments(frame_features: torch.Tensor, segments: int, tau: float) -> torch.Tensor:
    """DySeg: segment id of every frame from its global feature ``[T, D]``."""
    t = frame_features.shape[0]
    f = F.normalize(frame_features.float(), dim=-1)
    sim = (f[:-1] * f[1:]).sum(dim=-1)  # [T - 1]
    cut = sim < tau
    cut[sim.topk(min(segments - 1, t - 1), largest=False).indices] = True
    starts = torch.zeros(t, dtype=torch.long, device=f.device)
    starts[1:] = cut.long()
    return torch.cumsum(starts, dim=0)


def anchor_token_counts(frame_segment: torch.Tensor, context: int, stride: int) -> torch.Tensor:
    """Context tokens of every frame: ``(context * L) // ceil(L / p)`` for every ``p``-th frame
    counted from its segment's end, 0 for the others."""
    # segment lengths, padded to one slot a frame (bincount would read the largest id back on CUDA)
    lengths = torch.zeros_like(frame_segment).scatter_add_(0, frame_segment, torch.ones_like(frame_segment))
    length = lengths[frame_segment]
    last = (torch.cumsum(lengths, 0) - 1)[frame_segment]
    from_end = last - torch.arange(frame_segment.numel(), device=frame_segment.device)
    per_anchor = (context * length) // ((length + stride - 1) // stride)
    return torch.where(from_end % stride == 0, per_anchor, torch.zeros_like(per_anchor))


def density_merge(
    tokens: torch.Tensor,
    score: torch.Tensor,
    anchors: torch.Tensor,
    pool: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FastVID's DTM for every anchor frame at once.

    :param tokens: ``[T, M, D]`` non-salient tokens of every frame.
    :param score: ``[T, M]`` their DPC-kNN scores within their frame.
    :param anchors: ``[T]`` anchors each frame picks (0: not an anchor frame).
    :param pool: ``[T, T]``: ``pool[t, u]`` when frame ``u``'s tokens merge into frame ``t``'s anchors.
    :returns: ``(index [T, a], valid [T, a], merged [T, a, D])``: anchor slots (into ``M``), which
        slots are real, and the anchors' merged features
        ``w * anchor + (1 - w) * mean(joined)``, ``w = max(1 / (count + 1), beta)`` (a frame that is
        no anchor frame keeps its unmerged tokens there).

    Only the anchor frames, and for each only the frames it pools, are compared and summed (padded
    to the widest pool): one host read for the anchor counts and pool widths, instead of comparing
    every anchor with every token of the video.
    """
    t, m, d = tokens.shape
    counts = torch.stack([anchors, pool.sum(dim=1)]).tolist() if t else [[], []]  # the one host read
    a = max(counts[0], default=0)
    index = score.topk(a, dim=1).indices  # [T, a]
    valid = torch.arange(a, device=tokens.device)[None, :] < anchors[:, None]
    x = tokens.float()
    anchor_x = x.gather(1, index[..., None].expand(-1, -1, d))  # [T, a, D]
    frames = [f for f in range(t) if counts[0][f] > 0]
    if not frames:
        return index, valid, anchor_x
    width = max(counts[1][f] for f in frames)
    af = host_to_device(frames, tokens.device)  # [A] anchor frames
    # each anchor frame's pooled frames, in frame order, padded with a frame flagged invalid
    pooled = torch.argsort((~pool[af]).to(torch.int8), dim=1, stable=True)[:, :width]  # [A, W]
    real = pool[af].gather(1, pooled)  # [A, W]
    unit = F.normalize(x, dim=-1)
    members = unit[pooled].reshape(len(frames), width * m, d)  # [A, W*M]
    sim = torch.bmm(F.normalize(anchor_x[af], dim=-1), members.transpose(1, 2))  # [A, a, W*M]
    best = sim.masked_fill(~valid[af][..., None], -torch.inf).argmax(dim=1)  # [A, W*M]
    joins = real.repeat_interleave(m, dim=1).float()
    onehot = F.one_hot(best, a).float() * joins[..., None]  # [A, W*M, a]
    count = onehot.sum(dim=1)  # [A, a]
    mean = torch.bmm(onehot.transpose(1, 2), x[pooled].reshape(len(frames), width * m, d))
    mean = mean / count.clamp_min(1)[..., None]
    w = (1.0 / (count + 1)).clamp_min(beta)[..., None]
    merged = anchor_x.index_copy(0, af, w * anchor_x[af] + (1 - w) * mean)
    return index, valid, merged


class FastVID(Strategy):
    name = "fastvid"
    summary = "dynamic temporal segments + salient and density-anchored context tokens (arXiv 2503.11187)"
    Config = FastVIDConfig
    config: FastVIDConfig

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(FastVIDConfig, cls.make_config(**options))
        per_frame = model.tokens_per_frame
        tokens = round(keep * per_frame)
        if tokens < 1:
            warn_budget(cls.name, keep, 1 / per_frame, "FastVID keeps at least one token per frame")
            tokens = 1
        # a hair above tokens / P so that the code's int(P * rho) cannot truncate below it
        rho = (tokens + 1e-6) / per_frame
        return cls(config=probe.model_copy(update={"retention_ratio": min(1.0, rho)}))

    def select(self, state: TokenState, ctx: StageContext) -> TokenState:
        cfg = self.config
        grid = frame_grid_index(state)  # [T, P]
        frames, per_frame = grid.shape
        salient, context = per_frame_budget(per_frame, cfg.retention_ratio, cfg.context_share)
        if salient + context >= per_frame:
            return state
        device = state.device
        feats = state.hidden[grid]  # [T, P, D]
        frame_segment = dynamic_segments(feats.float().mean(dim=1), cfg.segments, cfg.tau)
        segment = torch.full((len(state),), -1, dtype=torch.long, device=device)
        segment[grid] = frame_segment[:, None].expand_as(grid)

        keep = torch.zeros(frames, per_frame, dtype=torch.bool, device=device)
        received = ctx.vision_attention().received.to(device).float()
        keep.scatter_(1, received.topk(salient, dim=1).indices, True)
        rest = per_frame - salient
        slots = torch.arange(per_frame, device=device)
        non_salient = torch.sort(keep.long() * per_frame + slots[None, :], dim=1).values[:, :rest]  # [T, M]

        hidden = state.hidden.clone()
        anchors = anchor_token_counts(frame_segment, context, cfg.anchor_stride).clamp_max(rest)
        if context > 0 and bool((anchors > 0).any()):
            tokens = feats.gather(1, non_salient[..., None].expand(-1, -1, feats.shape[-1]))
            score, _ = dpc_knn_score(tokens.float(), cfg.density_k)
            # the code routes a frame whose share equals the plain per-frame context to the
            # single-frame merge (its own tokens) and the others to the segment-wide merge
            frame = torch.arange(frames, device=device)
            single = anchors == context
            pool = torch.where(
                single[:, None],
                frame[:, None] == frame[None, :],
                frame_segment[:, None] == frame_segment[None, :],
            )
            index, valid, merged = density_merge(tokens, score, anchors, pool, cfg.beta)
            slot = non_salient.gather(1, index)  # [T, a] frame slots of the anchors, distinct
            where = grid.gather(1, slot)
            # padding slots write their own value back: no boolean-mask index (a host sync each)
            hidden[where] = torch.where(valid[..., None], merged.to(hidden.dtype), hidden[where])
            keep.scatter_(1, slot, valid)  # anchor slots are non-salient, so False until now
        full = torch.ones(len(state), dtype=torch.bool, device=device)
        full[grid] = keep
        return replace(state, hidden=hidden, segment=segment).keep_mask(full)

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [
            Stage(
                "fastvid.density_prune",
                "frame",
                self.select,
                position_policy=self.config.position_policy,
                needs=frozenset({"vision_attention"}),
            )
        ]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(FastVID)
