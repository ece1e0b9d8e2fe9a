"""PruneVid: "Visual Token Pruning for Efficient Video Large Language Models" (Huang et al., ACL 2025,
arXiv 2412.16117).

Followed: the authors' code, github.com/Visual-AI/PruneVid at commit b12600c (the PLLaVA fork; the
LLaVA-OneVision code was never released): ``merge_frames_dynamic``, ``cluster_dpc_knn`` and
``refine_clusters`` in ``models/pllava/modeling_pllava.py`` (stage 1) and
``VTPWindowCache.process_attention`` / ``prompt_prefill`` in ``models/pllava/elastic_cache.py``
(stage 2), with the defaults of ``scripts/eval.sh`` (``tau=0.8``, ``temporal_segment_ratio=0.25``,
``cluster_ratio=0.5``, ``selected_layer=10``, ``alpha=0.4``).

**Stage 1, before the LLM** (hook ``segment``, text-agnostic), on the projected, pooled tokens:

1. *Temporal segments*: DPC-kNN (k = 7, :mod:`~prune_bench.strategies.common.dpc_knn`) clusters
   the frames' mean tokens into ``int(T * 0.25)`` clusters; ``refine_clusters`` keeps each
   cluster's longest run(s) of consecutive frames (none if its longest run is one frame) and hands
   every other run to the neighbouring run that is longer (the left one on a tie); segments are
   then the runs of equal labels, so their number can differ from the cluster count (issue #4).
2. *Static / dynamic*: per segment and spatial position, the mean cosine similarity over all
   ordered pairs of distinct frames; above ``tau`` the position is static and its tokens are
   averaged over time into one token; a one-frame segment divides 0 by 0 and is all dynamic.
3. *Spatial merge*: the segment's static tokens, and each frame's dynamic tokens, are clustered by
   DPC-kNN (k = 7) into ``int(n * 0.5)`` cluster means, only when ``n > 14``.

**Stage 2, inside the LLM** (a ``post`` stage at ``selected_layer``, text-aware): attention of
every text token after the video to the video tokens, **max over heads, then max over queries**;
within every static group and every frame's dynamic group the top ``int(n * alpha)`` are kept.
The code then also slices the KV cache of layers ``0 .. selected_layer`` and keeps the (spliced)
position ids of the survivors.

How it maps onto this framework, and where we differ:

* Merged tokens. The code emits each segment as [static cluster means, then each frame's dynamic
  cluster means], clusters in DPC-score order (groups of at most 14 tokens in position order),
  and splices them contiguously. By default (``merged_order="spatial"``) a cluster mean sits at
  its centre token's place (static clusters at the segment's first frame) so the layout stays
  spatial; positions are then re-indexed contiguously like the splice
  (``position_policy="reindex"``); stage 2 keeps them, as the code does. The tokens and their
  values are the code's, but their order, and so their RoPE positions and causal order, are not,
  and that changes the layer-``selected_layer`` attention and so WHICH tokens stage 2 keeps: issue
  24 measured 35-45 % of them different on a RoPE test decoder; on three two-scene 16-frame clips
  of the 8-layer tiny LLaVA-OneVision 3 %, 13 % and 83 % of the kept tokens differ.
  ``merged_order="official"`` reproduces the code's order: each frame's merged tokens (the
  segment's static ones sit in its first frame) are put in the code's order into the frame's
  occupied slots, so the sequence (and, re-indexed, the numbering) is the code's; a slot then
  carries its content's hidden state, weight, row and column, but keeps its source and frame.
* Early KV caches. A layer-``post`` drop leaves the dropped tokens in the caches of layers
  ``<= selected_layer``. To match the code's cache slicing while decoding, a ``decode`` stage at
  layer 1 hides them from layers ``>= 1``; only layer 0 (which no decode stage can reach) still
  sees them (``slice_early_caches=False`` turns this off).
* Queries are the tokens after the video's last visual or newline token (PLLaVA has no newline).
* Depth. ``selected_layer = 10`` is for PLLaVA's 32-layer LLM; on a model too shallow for it we
  scale it by ``num_layers / 32``.
* The density tie-break noise is left out (deterministic selections); one-frame clips get one
  segment instead of the code's ``int(T * 0.25) = 0`` clusters crash.
* Engineering, not selection: the static groups of every segment and the dynamic group of every
  frame are one padded DPC-kNN batch (the code loops over segments and frames). The frame labels are
  read back once for ``refine_clusters`` (plain Python over ``T`` labels, as coded), and the segment
  ids and widths then stay on the host; stage 2 reads back the visual count, the last video token,
  the groups (``unique``) and its kept count, and spreads the budget's largest remainders on the
  device.

Budgets. PruneVid has no budget knob: its retention emerges from ``tau``, the cluster ratio and
``alpha`` (16-17 % reported). ``for_budget`` keeps the authors' stage 1 and solves stage 2 per
sample: ``alpha`` becomes whatever share of the stage-1 survivors makes the layer average (the
stage-1 retention for layers ``<= selected_layer`` with the post-attention half, then the stage-2
retention) equal ``keep``, spread over the groups by largest remainders. Since stage 1 alone may
already keep less than ``keep`` (or, at layer ``selected_layer``, more), the budget cannot be
promised before the video is seen and ``for_budget`` always raises a ``BudgetWarning``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import DecodeContext, StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import full_layers, kept_for_layer_average
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenKind, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.strategies.common.dpc_knn import dpc_knn_cluster
from prune_bench.strategies.common.select import keep_visual_subset
from prune_bench.strategies.common.temporal import frame_grid_index
from prune_bench.strategies.common.transfer import host_to_device

#: Groups of at most this many tokens are not clustered (hard-coded ``> 14`` in the code).
MIN_CLUSTER_TOKENS = 14
#: Depth of PLLaVA-7B's LLM, for which ``selected_layer = 10`` was chosen.
REFERENCE_DEPTH = 32
GROUP_KEY = "prunevid.group_of_source"
INPUT_VISUAL_KEY = "prunevid.input_visual"
KEPT_KEY = "prunevid.kept_sources"


class PruneVidConfig(StrategyConfig):
    tau: float = Field(
        0.8, description="a position is static when its mean pairwise frame cosine is above tau"
    )
    temporal_segment_ratio: float = Field(
        0.25, gt=0, le=1, description="frames are clustered into int(T * ratio) temporal clusters"
    )
    cluster_ratio: float = Field(
        0.5, gt=0, le=1, description="static / per-frame dynamic tokens kept as int(n * ratio) cluster means"
    )
    knn: int = Field(7, ge=1, description="DPC-kNN neighbours (hard-coded 7)")
    selected_layer: int = Field(10, ge=0, description="stage 2 runs on this layer's attention (PLLaVA: 10)")
    alpha: float = Field(0.4, ge=0, le=1, description="share of each group kept by stage 2")
    target_keep: float | None = Field(
        None, ge=0, le=1, description="budget mode: solve alpha per sample for this layer-average retention"
    )
    slice_early_caches: bool = Field(
        True, description="hide stage-2-pruned tokens from earlier layers' caches while decoding, as coded"
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="positions after stage 1: 'reindex' like the splice, or 'keep'"
    )
    merged_order: Literal["spatial", "official"] = Field(
        "spatial",
        description="order of the merged tokens: at their centres' places ('spatial'), or the code's "
        "[static clusters, then each frame's dynamic clusters], clusters by DPC score ('official')",
    )


def refine_clusters(labels: list[int]) -> list[int]:
    """PruneVid's ``refine_clusters`` on one video's frame labels (a handful of frames, so plain Python)."""
    n = len(labels)
    runs: dict[int, list[tuple[int, int]]] = {}
    start = 0
    for i in range(1, n + 1):
        if i == n or labels[i] != labels[start]:
            runs.setdefault(labels[start], []).append((start, i - 1))
            start = i
    out = list(labels)
    for spans in runs.values():
        longest = max(e - s + 1 for s, e in spans)
        for s, e in spans:
            if longest == 1 or e - s + 1 < longest:
                out[s : e + 1] = [-1] * (e - s + 1)
    i = 0
    while i < n:
        if out[i] != -1:
            i += 1
            continue
        s = i
        while i < n and out[i] == -1:
            i += 1
        e = i - 1
        left = right = None
        left_len = right_len = 0
        if s > 0:
            left, j = out[s - 1], s - 1
            while j >= 0 and out[j] == left:
                j -= 1
            left_len = s - 1 - j
        if e < n - 1:
            right, j = out[e + 1], e + 1
            while j < n and out[j] == right:
                j += 1
            right_len = j - e - 1
        if left_len > right_len:
            new = left
        elif right_len > left_len:
            new = right
        else:
            new = left if left is not None else right
        out[s : e + 1] = [0 if new is None else new] * (e - s + 1)
    return out


def temporal_segment_ids(frame_features: torch.Tensor, ratio: float, k: int) -> list[int]:
    """Segment id of every frame, on the host: DPC-kNN clusters of the frame means (read back once,
    for ``refine_clusters``), refined into runs."""
    frames = frame_features.shape[0]
    clusters = max(1, int(frames * ratio))
    _, labels = dpc_knn_cluster(frame_features[None].float(), clusters, k)
    refined = refine_clusters(labels[0].tolist())
    ids = [0] * frames
    for t in range(1, frames):  # a handful of frames, already on the host
        ids[t] = ids[t - 1] + (refined[t] != refined[t - 1])
    return ids


def temporal_segments(frame_features: torch.Tensor, ratio: float, k: int) -> torch.Tensor:
    """Segment id of every frame (:func:`temporal_segment_ids`) as a tensor on the features' device."""
    ids = temporal_segment_ids(frame_features, ratio, k)
    return host_to_device(ids, frame_features.device)


def static_positions(
    feats: torch.Tensor, frame_segment: torch.Tensor, tau: float, widths: list[int] | None = None
) -> torch.Tensor:
    """``[S, P]``: positions whose mean cosine over ordered pairs of distinct frames exceeds ``tau``;
    ``widths``: the frames of each segment when the caller has them on the host (saves two reads)."""
    if widths is None:
        widths = torch.bincount(frame_segment).tolist()
    segments = len(widths)
    x = F.normalize(feats.float(), dim=-1)
    sums = torch.zeros(segments, *x.shape[1:], device=x.device).index_add_(0, frame_segment, x)
    w = host_to_device(widths, x.device, torch.float32)[:, None]
    sim = ((sums**2).sum(dim=-1) - w) / (w * (w - 1))  # 0 / 0 = nan for one frame: dynamic
    return sim > tau


def group_clusters(
    features: torch.Tensor, valid: torch.Tensor, ratio: float, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """PruneVid's spatial merge of ``[G, P]`` slot groups: ``(rep, rank)``, both ``[G, P]``.

    A group of ``n > 14`` valid slots is clustered by DPC-kNN into ``int(n * ratio)`` clusters:
    ``rep`` points each slot at its cluster's centre and ``rank`` is that cluster's place in the
    code's output (by decreasing centre score, the order ``topk`` hands ``compute_cluster_vectors``).
    Smaller groups keep every slot: it is its own ``rep``, ranked by position (``masked_select``).
    """
    g, p, _ = features.shape
    n = valid.sum(dim=1)
    clustered = n > MIN_CLUSTER_TOKENS
    counts = torch.where(clustered, (n.float() * ratio).long().clamp_min(1), n)
    slots = torch.arange(p, device=features.device)[None, :].expand(g, p)
    if not bool(clustered.any()):
        return slots, slots
    centres, assignment = dpc_knn_cluster(features.float(), counts, k, valid)
    rep = centres.gather(1, assignment)
    return torch.where(clustered[:, None], rep, slots), torch.where(clustered[:, None], assignment, slots)


def group_representatives(features: torch.Tensor, valid: torch.Tensor, ratio: float, k: int) -> torch.Tensor:
    """``[G, P]`` slot whose token represents each slot after PruneVid's spatial merge
    (:func:`group_clusters`)."""
    return group_clusters(features, valid, ratio, k)[0]


def official_visual_order(state: TokenState, emit_key: torch.Tensor) -> torch.Tensor:
    """Indices of ``state``'s visual tokens in the code's output order: frame by frame, and inside
    a frame by ``emit_key`` (one key per token of ``state``), stable."""
    vis = state.visual_index
    by_key = vis[torch.argsort(emit_key[vis], stable=True)]
    return by_key[torch.argsort(state.frame[by_key], stable=True)]


def in_official_order(state: TokenState, order: torch.Tensor) -> TokenState:
    """Move the visual tokens' contents (hidden state, weight, row, col) so that the ``i``-th visual
    slot in sequence order holds token ``order[i]``'s; the slots keep their source, kind, frame and
    position, so a re-index numbers the contents in ``order``."""
    vis = state.visual_index
    moved = {}
    for name in ("weight", "row", "col"):
        values = getattr(state, name).clone()
        values[vis] = getattr(state, name)[order]
        moved[name] = values
    hidden = state.hidden.clone()
    hidden[vis] = state.hidden[order]
    return replace(state.with_hidden(hidden), **moved)


def group_keep_counts(
    sizes: torch.Tensor, alpha: float, total: int | None, size_total: int | None = None
) -> torch.Tensor:
    """Tokens kept per group: ``int(n * alpha)`` as coded, or ``total`` spread by largest remainders;
    ``size_total``: ``sizes.sum()`` when the caller knows it (saves a read back)."""
    if total is None:
        return (sizes.float() * alpha).long()
    size_total = int(sizes.sum().item()) if size_total is None else size_total
    total = max(0, min(int(total), size_total))
    quota = sizes.float() * total / sizes.sum().clamp_min(1)
    base = quota.floor().long()
    # the ``total - sum(base)`` largest remainders get one more, ranked on the device
    order = (quota - base).argsort(descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
    base = base + (rank < total - base.sum()).long()
    return torch.minimum(base, sizes)


def topk_per_group(
    score: torch.Tensor, group: torch.Tensor, keep: torch.Tensor, sizes: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices of the ``keep[g]`` highest scores of every group ``g`` (no loop over groups);
    ``sizes``: the groups' sizes when the caller has them."""
    by_score = score.float().argsort(descending=True, stable=True)
    order = by_score[group[by_score].argsort(stable=True)]  # grouped, best first inside a group
    if sizes is None:
        sizes = torch.bincount(group, minlength=keep.numel())
    offset = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(score.numel(), device=score.device) - offset[group[order]]
    return order[rank < keep[group[order]]]


class PruneVid(Strategy):
    name = "prunevid"
    summary = "static/dynamic segment merging before the LLM + text-attention pruning at layer 10 (arXiv 2412.16117)"
    Config = PruneVidConfig
    config: PruneVidConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "early caches not sliced": {"slice_early_caches": False},
        "original positions (no reindex)": {"position_policy": "keep"},
        "the code's merged-token order": {"merged_order": "official"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(PruneVidConfig, cls.make_config(**options))
        warn_budget(
            cls.name,
            keep,
            keep,
            "PruneVid's retention emerges from the video (stage 1 has no budget knob); alpha is solved "
            "per sample to approach it",
        )
        return cls(config=probe.model_copy(update={"target_keep": keep}))

    def selected_layer(self, num_layers: int) -> int:
        layer = self.config.selected_layer
        if layer >= num_layers - 1:
            layer = round(layer * num_layers / REFERENCE_DEPTH)
        return max(0, min(layer, num_layers - 1))

    # ------------------------------------------------------------------------------- stage 1
    def merge_frames(self, state: TokenState, ctx: StageContext) -> TokenState:
        cfg = self.config
        grid = frame_grid_index(state)  # [T, P]
        frames, per_frame = grid.shape
        device = state.device
        feats = state.hidden[grid].float()  # [T, P, D]
        ctx.memory[INPUT_VISUAL_KEY] = grid.numel()
        ids = temporal_segment_ids(feats.mean(dim=1), cfg.temporal_segment_ratio, cfg.knn)
        segments = ids[-1] + 1
        widths = [ids.count(s) for s in range(segments)]
        frame_segment = host_to_device(ids, device)
        static = static_positions(feats, frame_segment, cfg.tau, widths)  # [S, P]
        width = host_to_device(widths, device, torch.float32)
        time_mean = torch.zeros(segments, per_frame, feats.shape[-1], device=device)
        time_mean = time_mean.index_add_(0, frame_segment, feats) / width[:, None, None]
        # one batch of groups: every segment's static tokens, then every frame's dynamic tokens
        features = torch.cat([time_mean, feats])
        valid = torch.cat([static, ~static[frame_segment]])
        rep, rank = group_clusters(features, valid, cfg.cluster_ratio, cfg.knn)  # [S + T, P]

        frame = torch.arange(frames, device=device)
        first_frame = torch.full((segments,), frames, dtype=torch.long, device=device)
        first_frame = first_frame.scatter_reduce(0, frame_segment, frame, reduce="amin")
        is_static = static[frame_segment]  # [T, P]
        static_target = grid[first_frame[frame_segment][:, None], rep[frame_segment]]
        dynamic_target = grid.gather(1, rep[segments:])
        target = torch.arange(len(state), device=device)
        target[grid] = torch.where(is_static, static_target, dynamic_target)
        group = torch.where(is_static, frame_segment[:, None], segments + frame[:, None]).expand_as(grid)
        table = torch.full((int(state.source.max().item()) + 1,), -1, dtype=torch.long, device=device)
        segment = torch.full((len(state),), -1, dtype=torch.long, device=device)
        segment[grid] = frame_segment[:, None].expand_as(grid)
        merged = state.with_segments(segment).merge(target, weighting="uniform")
        if cfg.merged_order == "official":
            # per frame (a segment's static clusters sit in its first frame): static clusters, then
            # the frame's dynamic ones, each in the code's cluster order; the slots stay in place
            emit = torch.zeros(len(state), dtype=torch.long, device=device)
            emit[grid] = torch.where(is_static, rank[frame_segment], per_frame + rank[segments:])
            group_of = torch.zeros(len(state), dtype=torch.long, device=device)
            group_of[grid] = group
            kept = torch.nonzero(target == torch.arange(len(state), device=device)).flatten()
            order = official_visual_order(merged, emit[kept])
            table[merged.source[merged.visual_index]] = group_of[kept][order]  # the moved contents' groups
            merged = in_official_order(merged, order)
        else:
            table[state.source[grid]] = group
        ctx.memory[GROUP_KEY] = table
        return merged

    # ------------------------------------------------------------------------------- stage 2
    def attention_prune(self, state: TokenState, ctx: StageContext) -> TokenState:
        vis = state.visual_index
        if vis.numel() == 0:
            return state
        position = torch.arange(len(state), device=state.device)
        last_video = torch.where(state.kind != TokenKind.TEXT, position, -1).max()
        queries = max(1, len(state) - int(last_video.item()) - 1)
        attn = ctx.last_token_attention(state, queries)  # [H, q, N]
        score = attn.amax(dim=0).amax(dim=0)[vis]
        table = ctx.memory.get(GROUP_KEY)
        group = table[state.source[vis]] if table is not None else torch.zeros_like(vis)
        _, group, sizes = torch.unique(group, return_inverse=True, return_counts=True)
        total = self.budget_total(vis.numel(), ctx)
        keep = group_keep_counts(sizes, self.config.alpha, total, size_total=vis.numel())
        chosen = topk_per_group(score, group, keep, sizes)
        ctx.memory[KEPT_KEY] = state.source[vis[chosen]]
        return keep_visual_subset(state, chosen, visual_index=vis, kept=chosen.numel())

    def budget_total(self, stage1_visual: int, ctx: StageContext) -> int | None:
        """Visual tokens stage 2 keeps so that the layer average is ``target_keep``."""
        target = self.config.target_keep
        if target is None:
            return None
        n0 = ctx.memory.get(INPUT_VISUAL_KEY, stage1_visual)
        num_layers = ctx.num_layers
        full = full_layers(self.selected_layer(num_layers), "post")
        wanted = kept_for_layer_average(target, num_layers, full, before=stage1_visual, total=n0)
        return max(0, min(stage1_visual, round(wanted)))

    def hide_pruned(self, ctx: DecodeContext) -> torch.Tensor | None:
        kept: torch.Tensor | None = ctx.memory.get(KEPT_KEY)
        return kept

    def stages(self, model: ModelInfo) -> list[Stage]:
        layer = self.selected_layer(model.num_layers)
        out = [
            Stage(
                "prunevid.merge_frames",
                "segment",
                self.merge_frames,
                position_policy=self.config.position_policy,
            ),
            Stage("prunevid.attention_prune", "layer", self.attention_prune, layer=layer, site="post"),
        ]
        if self.config.slice_early_caches and layer >= 1:
            out.append(Stage("prunevid.slice_early_caches", "decode", self.hide_pruned, layer=1))
        return out


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(PruneVid)
