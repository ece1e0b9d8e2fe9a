"""FlashVID: "Efficient Video Large Language Models via Training-free Tree-based Spatiotemporal Token
Merging" (Fan et al., ICLR 2026 oral, arXiv 2602.08024).

Followed: the authors' code, github.com/Fanziyang-v/FlashVID at commit 1d37422
(``flashvid/utils.py``: ``flashvid_compression``, ``segment_compression``, ``segment``,
``additional_segment``, ``spatiotemporal_compression``, ``dpc_knn``, ``fastv_prune``;
``flashvid/token_selection.py``; the LLaVA-OneVision path ``flashvid/llava_arch.py`` +
``siglip_encoder.py`` + ``modeling_qwen2.py``, the Qwen2.5-VL path ``modeling_qwen2_5_vl.py`` and the
Qwen3-VL path ``modeling_qwen3_vl.py``), with the settings of ``scripts/llava_ov.sh``,
``qwen2_5_vl.sh`` and ``qwen3_vl.sh`` (``retention_ratio`` 0.10 to 0.25, ``expansion=1.25``,
``alpha=0.7``, ``temporal_threshold=0.8``, ``segment_threshold=0.9``; ``min_segment_num`` 8 for LLaVA,
4 for Qwen; ``token_selection_method`` ``attn_div_v2`` for LLaVA, ``attn_div`` for Qwen;
``pruning_layer=20`` and ``llm_retention_ratio=0.3``, on Qwen3-VL 28 (of 36) and 0.1). These per-family
settings are the defaults of the ``None`` options (family ``llava_onevision``, ``qwen2_vl`` for
Qwen2/2.5-VL, ``qwen3_vl``; a family the code does not cover, InternVL, gets LLaVA's). Text-agnostic
before the LLM, on the projected, pooled tokens (``P`` a frame):

1. **DySeg**: cosine similarity of consecutive frames' mean tokens; a cut wherever it is below
   ``segment_threshold``, and, while there are fewer than ``min_segments`` segments, also at the least
   similar remaining transitions (``complementary_segment``).
2. Per frame ``budget = ceil(P * retention_ratio * expansion)``, of which ``ceil(budget * alpha)`` go
   to ADTS and the rest to TSTM.
3. **ADTS** (per frame): a greedy max-min diversity selection on cosine distances whose column ``j``
   is calibrated by token ``j``'s vision attention (the attention a patch receives in the tower's
   feature layer, mean over heads and queries, pooled like the features:
   ``ctx.vision_attention().received``) and, for ``attn_div_v2``, also by its event relevance (its
   dot product with the mean token of its segment). First pick: the largest second-smallest entry of
   a column; then the largest minimum over the picked rows. ``attn`` is plain top-k attention,
   ``div`` the uncalibrated greedy.
4. **TSTM** (per segment of 2+ frames): every token ADTS left links to its most cosine-similar
   ADTS-free token of the previous frame when that similarity exceeds ``temporal_threshold``; the
   links form redundancy trees rooted at unlinked tokens. If fewer than ``budget * F`` tokens of the
   segment would stay roots (ADTS picks counted), the threshold becomes the segment's
   ``(F * P - budget * F)``-th largest similarity (at least ``-1 + 1e-6``). A root carries its tree's
   features; then, per frame, the roots are clustered by DPC-kNN (``k = min(clusters, 7)``;
   :mod:`~prune_bench.strategies.common.dpc_knn`) into ``ceil(n_f * ratio)`` clusters,
   ``ratio = budget_TSTM * F / roots of the segment`` (all roots kept when ``ratio >= 1``), and a
   cluster becomes the plain mean of its roots, at its centre's place.
5. Tokens stay in their original order (the code sorts by global index); LLaVA splices the shorter
   video into the prompt (contiguous positions, ``"reindex"``), Qwen2.5-VL slices the original
   M-RoPE ids (``"keep"``): ``position_policy="auto"`` picks by family.
6. **In-LLM pruning** (FastV-style, a ``post`` stage at layer ``pruning_layer - 1``): the last prompt
   token's attention at that layer, mean over heads, keeps ``ceil(n * llm_retention_ratio)`` of the
   visual tokens; positions are kept. ``pruning_layer=20`` is for 28-layer models; ``None`` scales it
   as PyramidDrop's module does, ``round(20 * L / 28)`` within ``1 .. L - 1`` (6 on the 8-layer tiny
   models; Qwen3-VL: ``round(28 * L / 36)``). ``llm_retention_ratio=1`` mounts no in-LLM stage.

Budgets (``for_budget``): FlashVID acts before the LLM and inside it, and honours every unit
(``"input"``, ``"layer-average"``, ``"flops"``):

* ``"input"``: ``keep`` is the share of visual tokens entering the LLM: the per-frame budget is
  ``round(keep * P)``, and ``retention_ratio`` is set a hair below ``budget / (P * expansion)`` so that
  the code's ``ceil`` gives exactly it; the in-LLM stage still runs.
* ``"layer-average"`` (and ``"flops"``): ``keep = x * (K - 1/2 + (L - K + 1/2) * q) / L`` solved for
  the input share ``x`` (``K`` the pruning layer, ``q = llm_retention_ratio``, ``K - 1/2`` layers at the
  input count: our ledger's half layer for a ``post`` stage), then as for ``"input"``. The authors'
  ``retention_ratio`` *is* this average by their count (``1.25 * (20 + 8 * 0.3) / 28 = 1``, counting
  layer 19 whole); with the half layer, ``retention_ratio = keep / 0.984`` at 28 layers. Above
  ``x = 1`` we warn and keep every token before the LLM.
* The clusters' per-frame ``ceil`` keeps up to one token a frame more than the budget (on average
  half); the achieved retention is recorded. Pass ``retention_ratio`` directly for the authors' exact
  per-frame count (``ceil(P * r * 1.25)``, e.g. 62 of 196 at r = 0.25).

Where we differ, and why:

* TSTM's tree average as coded (``tree_normalise="children"``) divides the tree's sum by one plus the
  number of the root's DIRECT children (``token_counts[f - 1] += assigned_one_hot.sum(0)`` counts
  children, not subtree sizes), so a chain ``z <- y <- x`` becomes ``(z + y + x) / 2``. We follow it;
  ``"size"`` divides by the tree's size (the true mean).
* A single-frame segment: the code clusters ALL ``P`` tokens of the frame, ADTS picks included, so a
  pick can come back a second time as a cluster centre (two tokens at one place). We cluster the tokens
  ADTS left, as the multi-frame path does; the count (``budget_TSTM`` clusters) is the code's.
* ``attn_div_v2`` does not exclude tokens already picked (``attn_div`` and ``div`` do); when every
  remaining score is below a pick's ~0 self-distance (negative event relevance) the code picks a token
  twice. We never pick twice. The ``* 1e6`` attention scale is dropped (a positive constant).
* TSTM's similarities and tree sums and DySeg's frame means are float32 (the code: the model dtype,
  bf16; its ADTS is float32 too); the in-LLM attention rows are float32 (the code casts the softmax
  to bf16 before the head mean).
* The DPC-kNN density tie-break noise (``rand * 1e-6``) is left out for determinism. It matters where
  a frame gets one cluster: ``k = min(1, 7)`` makes every density ``exp(0)``, so the code places the
  cluster (the mean of all the frame's roots) at a random root; we place it at the frame's first root.
* DySeg never cuts one transition twice (the code can when fewer frames than ``min_segment_num``,
  giving an empty segment); ``temporal_threshold >= 1`` means no temporal links (the code divides by
  zero there); a per-frame budget of ``P`` or more keeps every token (the code's lower bound then asks
  ``topk`` for ``k <= 0``).
* Qwen3-VL: the code also removes every ``<|vision_start|>`` / ``<|vision_end|>`` marker of the video
  (it keeps the selected video tokens and the tokens that are neither video nor markers); they are
  text here and stay.
* The LLaVA-OneVision newline token is not visual: never merged, never pruned in the LLM (the code's
  in-LLM span excludes it too on ``one_token`` layouts). The vision attention comes from the tower's
  captured q/k (no patched eager SigLIP). ``div`` needs no vision attention, so only it runs where an
  adapter cannot capture it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import full_layers, predict_layer_average
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.errors import UserError
from prune_bench.strategies.common.dpc_knn import dpc_knn_cluster
from prune_bench.strategies.common.select import last_token_visual_attention, topk_visual
from prune_bench.strategies.common.temporal import frame_grid_index

#: DPC-kNN neighbours of the spatial merge, capped at the cluster count as coded.
DPC_KNN_NEIGHBOURS = 7

Selection = Literal["attn_div_v2", "attn_div", "attn", "div"]


class FlashVIDConfig(StrategyConfig):
    retention_ratio: float = Field(
        0.25,
        gt=0,
        le=1,
        description="r: each frame keeps ceil(P * r * expansion) before the LLM (retention_ratio)",
    )
    expansion: float = Field(
        1.25, gt=0, description="before-LLM budget over r, paid back in the LLM (expansion)"
    )
    alpha: float = Field(0.7, ge=0, le=1, description="share of the per-frame budget picked by ADTS (alpha)")
    selection: Selection | None = Field(
        None,
        description="ADTS scoring (token_selection_method); None: attn_div_v2 on LLaVA, attn_div on Qwen",
    )
    temporal_threshold: float = Field(
        0.8, description="TSTM links a token to the previous frame above this cosine (temporal_threshold)"
    )
    do_segment: bool = Field(True, description="DySeg on; False: the whole video is one segment (do_segment)")
    segment_threshold: float = Field(
        0.9, description="DySeg cuts where consecutive frames' cosine is below this (segment_threshold)"
    )
    min_segments: int | None = Field(
        None, ge=1, description="DySeg's minimum segment count (min_segment_num); None: 8 on LLaVA, 4 on Qwen"
    )
    complementary_segment: bool = Field(
        True, description="cut the least similar transitions up to min_segments (complementary_segment)"
    )
    pruning_layer: int | None = Field(
        None,
        ge=1,
        description="in-LLM pruning before this layer; None: 20 of 28 (Qwen3-VL 28 of 36) scaled to depth",
    )
    llm_retention_ratio: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of visual tokens the in-LLM stage keeps; 1: no in-LLM stage; None: 0.3 (Qwen3-VL 0.1)",
    )
    tree_normalise: Literal["children", "size"] = Field(
        "children",
        description="tree sum over 1 + the root's direct children as coded, or over the tree's size",
    )
    position_policy: PositionPolicy | Literal["auto"] = Field(
        "auto", description="'auto': 'reindex' on LLaVA (spliced), 'keep' on M-RoPE models (sliced ids)"
    )


@dataclass(frozen=True)
class Settings:
    """The config resolved for one model: the authors' per-family choices and the scaled layer."""

    selection: Selection
    min_segments: int
    position_policy: PositionPolicy
    pruning_layer: int | None
    llm_retention_ratio: float


#: the authors' per-family settings (scripts/llava_ov.sh, qwen2_5_vl.sh, qwen3_vl.sh), applied unless set;
#: ``pruning_layer`` is (layer, depth it was chosen for): 20 of Qwen2-7B's 28, 28 of Qwen3-VL-8B's 36
LLAVA_SETTINGS: dict[str, Any] = {
    "selection": "attn_div_v2",
    "min_segments": 8,
    "position_policy": "reindex",
    "pruning_layer": (20, 28),
    "llm_retention_ratio": 0.3,
}
QWEN_SETTINGS: dict[str, Any] = {
    **LLAVA_SETTINGS,
    "selection": "attn_div",
    "min_segments": 4,
    "position_policy": "keep",
}
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "qwen2_vl": QWEN_SETTINGS,
    "qwen3_vl": {**QWEN_SETTINGS, "pruning_layer": (28, 36), "llm_retention_ratio": 0.1},
}


# ------------------------------------------------------------------------------------ DySeg
def segment_frames(
    frame_features: torch.Tensor, threshold: float, min_segments: int, complementary: bool
) -> torch.Tensor:
    """DySeg: the segment id of every frame from its mean token ``[T, D]``."""
    t = frame_features.shape[0]
    device = frame_features.device
    if t < 2:
        return torch.zeros(t, dtype=torch.long, device=device)
    f = F.normalize(frame_features.float(), dim=-1)
    sim = (f[:-1] * f[1:]).sum(dim=-1)  # [T - 1]
    cut = sim < threshold
    if complementary:
        missing = min_segments - 1 - cut.sum()
        # least similar uncut transitions first; the cut ones rank last, so they are never counted twice
        order = sim.masked_fill(cut, torch.inf).argsort(stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(t - 1, device=device)
        cut |= rank < missing
    starts = torch.zeros(t, dtype=torch.long, device=device)
    starts[1:] = cut.long()
    return torch.cumsum(starts, dim=0)


# ------------------------------------------------------------------------------------- ADTS
def event_relevance(features: torch.Tensor, frame_segment: torch.Tensor) -> torch.Tensor:
    """``[T, P]`` dot product of each token with the mean token of its segment (``attn_div_v2``'s
    "local cls attention": the mean over the segment's frames of the token's dot product with each
    frame's mean token)."""
    t = features.shape[0]
    frame_means = features.float().mean(dim=1)  # [T, D]
    sums = torch.zeros_like(frame_means).index_add_(0, frame_segment, frame_means)
    counts = torch.bincount(frame_segment, minlength=t).clamp_min(1)
    segment_mean = sums / counts[:, None]
    return torch.einsum("tpd,td->tp", features.float(), segment_mean[frame_segment])


def calibrated_max_min_diversity(features: torch.Tensor, weight: torch.Tensor | None, k: int) -> torch.Tensor:
    """ADTS's greedy picks in every frame at once: ``[T, k]`` token indices, in pick order.

    Distances are ``(1 - cos(i, j)) * weight[j]`` (``weight`` None: unweighted). The first pick has the
    largest second-smallest entry in its column, every next one the largest minimum over the picked
    rows (a running minimum, one row per pick); a picked token is never picked again.
    """
    t, p, _ = features.shape
    device = features.device
    k = max(0, min(int(k), p))
    if k == 0 or p == 1:
        return torch.zeros(t, k, dtype=torch.long, device=device)
    x = F.normalize(features.float(), dim=-1)
    dist = torch.nan_to_num(1.0 - torch.bmm(x, x.transpose(1, 2)), nan=0.0, posinf=0.0, neginf=0.0)
    if weight is not None:
        dist = dist * weight.float()[:, None, :]
    rows = torch.arange(t, device=device)
    first = torch.topk(dist, 2, dim=1, largest=False).values[:, 1, :].argmax(dim=1)  # [T]
    from prune_bench.kernels.graph_steps import padded_steps, run_steps  # only when a selection runs

    picks = torch.zeros(t, 1 + padded_steps(k - 1, device), dtype=torch.long, device=device)
    picks[:, 0] = first
    closest = dist[rows, first].clone()  # [T, P]
    closest[rows, first] = -torch.inf
    step = torch.ones(1, dtype=torch.long, device=device)

    def pick() -> None:  # fixed shapes, step on the device: replayable as a CUDA graph
        j = closest.argmax(dim=1)
        picks.index_copy_(1, step, j[:, None])
        torch.minimum(closest, dist[rows, j], out=closest)
        closest.scatter_(1, j[:, None], -torch.inf)
        step.add_(1)

    run_steps(pick, k - 1, device)
    return picks[:, :k]


def adts_select(
    features: torch.Tensor,
    received: torch.Tensor | None,
    frame_segment: torch.Tensor,
    selection: Selection,
    k: int,
) -> torch.Tensor:
    """``[T, P]`` mask of the tokens ADTS keeps, ``k`` a frame."""
    t, p, _ = features.shape
    chosen = torch.zeros(t, p, dtype=torch.bool, device=features.device)
    if k <= 0:
        return chosen
    if selection == "attn":
        assert received is not None
        return chosen.scatter_(1, received.float().topk(min(k, p), dim=1).indices, True)
    weight = None
    if selection != "div":
        assert received is not None
        weight = received.float()
        if selection == "attn_div_v2":
            weight = weight * event_relevance(features, frame_segment)
    return chosen.scatter_(1, calibrated_max_min_diversity(features, weight, k), True)


# ------------------------------------------------------------------------------------- TSTM
def temporal_links(
    features: torch.Tensor, free: torch.Tensor, frame_segment: torch.Tensor, threshold: float, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's parent in the previous frame of its segment.

    :param free: ``[T, P]`` tokens ADTS left (only they link, and only to free tokens).
    :returns: ``(parent [T * P], linked [T, P])``: flat index of the parent (itself when unlinked) and
        which tokens link, with the code's lower bound: if fewer than ``budget * F`` tokens of a segment
        stay unlinked, only similarities above its ``(F * P - budget * F)``-th largest link.
    """
    t, p, _ = features.shape
    device = features.device
    x = F.normalize(features.float(), dim=-1)
    sim = torch.bmm(x[1:], x[:-1].transpose(1, 2))  # [T-1, P, P]: token n of frame t vs m of t-1
    sim = sim.masked_fill(~free[:-1, None, :], -1.0).masked_fill(~free[1:, :, None], -1.0)
    best, best_index = sim.max(dim=2)
    score = torch.full((t, p), -1.0, device=device)
    score[1:] = best
    opens = torch.ones(t, dtype=torch.bool, device=device)
    opens[1:] = frame_segment[1:] != frame_segment[:-1]
    score[opens] = -1.0
    # at or above 1 no link (a float cosine of identical tokens can exceed 1 by an ulp)
    linked = score > threshold if threshold < 1 else torch.zeros_like(score, dtype=torch.bool)

    frames_in = torch.bincount(frame_segment, minlength=t)
    unlinked = torch.zeros(t, device=device).index_add_(0, frame_segment, (~linked).sum(dim=1).float())
    lower = budget * frames_in
    short = (unlinked < lower) & (frames_in > 1)
    # every segment's scores in decreasing order, segment after segment
    flat, owner = score.flatten(), frame_segment.repeat_interleave(p)
    order = flat.argsort(descending=True, stable=True)
    order = order[owner[order].argsort(stable=True)]
    start = torch.cumsum(frames_in * p, 0) - frames_in * p
    nth = (start + frames_in * p - lower - 1).clamp(0, t * p - 1)
    soft = flat[order][nth].clamp_min(-1.0 + 1e-6)  # [segments]
    linked = torch.where(short[frame_segment, None], score > soft[frame_segment, None], linked)

    own = torch.arange(t * p, device=device).view(t, p)
    parent = torch.where(linked, own - p - own % p + F.pad(best_index, (0, 0, 1, 0)), own)
    return parent.flatten(), linked


def tree_roots(parent: torch.Tensor, depth: int) -> torch.Tensor:
    """The root of every token's tree, by pointer doubling (``depth`` = longest possible chain)."""
    root = parent
    for _ in range(max(1, depth.bit_length())):
        root = root[root]
    return root


def tree_features(
    features: torch.Tensor, parent: torch.Tensor, root: torch.Tensor, linked: torch.Tensor, normalise: str
) -> torch.Tensor:
    """``[N, D]``: at every root, its tree's sum over 1 + its direct children (``"children"``, as coded)
    or over the tree's size (``"size"``)."""
    n = features.shape[0]
    sums = torch.zeros_like(features).index_add_(0, root, features)
    if normalise == "children":
        denom = 1 + torch.bincount(parent[linked], minlength=n)
    else:
        denom = torch.bincount(root, minlength=n).clamp_min(1)
    return sums / denom[:, None].float()


def spatial_clusters(
    values: torch.Tensor, is_root: torch.Tensor, frame_segment: torch.Tensor, per_frame_budget: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TSTM's per-frame DPC-kNN merge of the roots, every frame at once.

    :returns: ``(centre_of [T, P], centres [T, C], merged [T, C, D])``: the frame slot of the centre each
        root joins, and the real centres' slots (``-1`` padding) with their clusters' plain means.
    """
    t, p, d = values.shape
    roots = is_root.sum(dim=1)  # [T]
    frames_in = torch.bincount(frame_segment, minlength=t)
    segment_roots = torch.zeros(t, dtype=torch.long, device=values.device).index_add_(0, frame_segment, roots)
    # the code's Python floats: ratio = budget * F / roots, ceil(n_f * ratio), in float64
    ratio = (per_frame_budget * frames_in[frame_segment]).double() / segment_roots[frame_segment].clamp_min(1)
    counts = torch.where(ratio < 1, torch.ceil(roots.double() * ratio).long(), roots)
    knn = counts.clamp(1, DPC_KNN_NEIGHBOURS)
    centres, assignment = dpc_knn_cluster(values, counts, knn, is_root)
    c = centres.shape[1]
    if c:
        # one cluster means k = 1: every density is exp(0) and the code's centre is its random
        # tie-break noise; we take the frame's first root
        first_root = is_root.int().argmax(dim=1)
        centres[:, 0] = torch.where(counts == 1, first_root, centres[:, 0])
    member = is_root.float()
    sums = torch.zeros(t, c, d, device=values.device).scatter_add_(
        1, assignment[..., None].expand(-1, -1, d), values * member[..., None]
    )
    size = torch.zeros(t, c, device=values.device).scatter_add_(1, assignment, member)
    real = torch.arange(c, device=values.device)[None, :] < counts[:, None]
    centre_of = centres.gather(1, assignment.clamp(0, max(c - 1, 0))) if c else assignment
    return centre_of, torch.where(real, centres, -1), sums / size.clamp_min(1)[..., None]


# --------------------------------------------------------------------------------- strategy
def scaled_pruning_layer(layer: int, depth: int, num_layers: int) -> int:
    """The authors' ``layer`` of a ``depth``-layer model on ``num_layers`` (PyramidDrop's rule)."""
    return max(1, min(num_layers - 1, round(layer * num_layers / depth)))


class FlashVID(Strategy):
    name = "flashvid"
    summary = "DySeg + attention/diversity selection + tree spatio-temporal merging, then in-LLM pruning (arXiv 2602.08024)"
    Config = FlashVIDConfig
    config: FlashVIDConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "w/o TSTM (ADTS only)": {"alpha": 1.0},
        "w/o ADTS (TSTM only)": {"alpha": 0.0},
        "w/o temporal trees (per-frame clustering)": {"temporal_threshold": 1.0},
        "w/o DySeg": {"do_segment": False},
        "w/o in-LLM pruning": {"llm_retention_ratio": 1.0},
        "ADTS by attention only": {"selection": "attn"},
        "ADTS by diversity only": {"selection": "div"},
        "tree mean over its size (not as coded)": {"tree_normalise": "size"},
    }

    def settings(self, model: ModelInfo) -> Settings:
        cfg = self.config
        family = FAMILY_DEFAULTS.get(model.family, LLAVA_SETTINGS)
        layer = cfg.pruning_layer or scaled_pruning_layer(*family["pruning_layer"], model.num_layers)
        if layer >= model.num_layers:
            raise UserError(
                f"flashvid: pruning_layer={layer} must be below the model's {model.num_layers} layers "
                "(leave it unset to scale the authors' layer to this depth)"
            )
        ratio = cfg.llm_retention_ratio or family["llm_retention_ratio"]
        policy = family["position_policy"] if cfg.position_policy == "auto" else cfg.position_policy
        return Settings(
            selection=cfg.selection or family["selection"],
            min_segments=cfg.min_segments or family["min_segments"],
            position_policy=policy,
            pruning_layer=layer if ratio < 1 else None,
            llm_retention_ratio=ratio,
        )

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(FlashVIDConfig, cls.make_config(**options))
        share = keep
        settings = cls(config=probe).settings(model)
        layer = settings.pruning_layer
        if unit != "input" and layer is not None:
            schedule = [(full_layers(layer - 1, "post"), settings.llm_retention_ratio)]
            share = keep / predict_layer_average(model.num_layers, schedule)
        per_frame = model.tokens_per_frame
        if share > 1:
            warn_budget(cls.name, keep, keep / share, "the in-LLM stage alone removes more than that")
            share = 1.0
        budget = round(share * per_frame)
        if budget < 1:
            warn_budget(cls.name, keep, keep / share / per_frame, "FlashVID keeps at least one token a frame")
            budget = 1
        # a hair below budget / (P * expansion), so that the code's ceil(P * r * expansion) is the budget
        ratio = (budget - 1e-6) / (per_frame * probe.expansion)
        return cls(config=probe.model_copy(update={"retention_ratio": min(1.0, ratio)}))

    # --------------------------------------------------------------------------- before the LLM
    def compress(self, state: TokenState, ctx: StageContext, settings: Settings) -> TokenState:
        cfg = self.config
        if state.num_visual == 0:
            return state
        grid = frame_grid_index(state)  # [T, P]
        frames, per_frame = grid.shape
        budget = math.ceil(per_frame * cfg.retention_ratio * cfg.expansion)
        if budget >= per_frame:
            return state
        n_adts = math.ceil(budget * cfg.alpha)
        n_tstm = budget - n_adts
        device = state.device
        feats = state.hidden[grid].float()  # [T, P, D]
        if cfg.do_segment:
            frame_segment = segment_frames(
                feats.mean(dim=1), cfg.segment_threshold, settings.min_segments, cfg.complementary_segment
            )
        else:
            frame_segment = torch.zeros(frames, dtype=torch.long, device=device)
        received = None
        if n_adts > 0 and settings.selection != "div":
            received = ctx.vision_attention().received.to(device).float()
        picked = adts_select(feats, received, frame_segment, settings.selection, n_adts)

        flat = feats.reshape(frames * per_frame, -1)
        own = torch.arange(frames * per_frame, device=device)
        # every grid slot's representative (a grid slot), -1 for a dropped token
        target = torch.where(picked.flatten(), own, -1)
        hidden = state.hidden.clone()
        if n_tstm > 0:
            free = ~picked
            parent, linked = temporal_links(feats, free, frame_segment, cfg.temporal_threshold, budget)
            root = tree_roots(parent, frames - 1)
            values = tree_features(flat, parent, root, linked.flatten(), cfg.tree_normalise)
            is_root = free & ~linked
            centre_of, centres, merged = spatial_clusters(
                values.view(frames, per_frame, -1), is_root, frame_segment, n_tstm
            )
            centre_slot = (own.view(frames, per_frame) - own.view(frames, per_frame) % per_frame) + centre_of
            target = torch.where(free.flatten(), centre_slot.flatten()[root], target)
            real = centres >= 0
            rows = torch.arange(frames, device=device)[:, None].expand_as(centres)[real]
            hidden[grid[rows, centres[real]]] = merged[real].to(hidden.dtype)
        weight = state.weight.clone()
        kept = target >= 0
        slot_weight = torch.zeros(frames * per_frame, device=device).index_add_(
            0, target[kept], state.weight[grid.flatten()][kept]
        )
        weight[grid.flatten()] = slot_weight
        is_rep = torch.ones(len(state), dtype=torch.bool, device=device)
        is_rep[grid.flatten()] = target == own
        segment = state.segment.clone()
        segment[grid.flatten()] = frame_segment.repeat_interleave(per_frame)
        return replace(state, hidden=hidden, weight=weight, segment=segment).keep_mask(is_rep)

    # ------------------------------------------------------------------------------- in the LLM
    @staticmethod
    def llm_prune(state: TokenState, ctx: StageContext, ratio: float) -> TokenState:
        n = state.num_visual
        if n == 0:
            return state
        scores = last_token_visual_attention(state, ctx)
        return topk_visual(state, scores, math.ceil(n * ratio))

    def stages(self, model: ModelInfo) -> list[Stage]:
        settings = self.settings(model)
        uses_attention = self.config.alpha > 0 and settings.selection != "div"

        def compress(state: TokenState, ctx: StageContext) -> TokenState:
            return self.compress(state, ctx, settings)

        def llm_prune(state: TokenState, ctx: StageContext) -> TokenState:
            return self.llm_prune(state, ctx, settings.llm_retention_ratio)

        out = [
            Stage(
                "flashvid.adts_tstm",
                "segment",
                compress,
                position_policy=settings.position_policy,
                needs=frozenset({"vision_attention"}) if uses_attention else frozenset(),
            )
        ]
        if settings.pruning_layer is not None:
            out.append(
                Stage(
                    "flashvid.llm_prune",
                    "layer",
                    llm_prune,
                    layer=settings.pruning_layer - 1,
                    site="post",
                )
            )
        return out


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(FlashVID)
