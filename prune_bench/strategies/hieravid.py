"""HieraVid: hierarchical token pruning for fast video LLMs (Guo et al., arXiv 2604.01881).

Followed: the authors' code, github.com/Ethan16162/VidTokenPrune, branch ``segment_multi_stage``,
commit 2733a94 (the state when the paper's main results were produced; the fast "relevance spread"
variant from the branch head, 37503c3), compared line by line with ``framefusion/main.py`` and
``modeling_qwen2.py`` there; the paper's text is not public beyond its abstract.

The method prunes at three levels, in the order a video meets the LLM:

1. **Segment level** (LLM input). Each visual token is compared with the token at the same
   position of the previous frame (cosine). A frame whose fraction of similar tokens
   (``similarity > 0.6``) falls below ``beta = 0.4`` opens a new segment. Each segment gets a
   *marginal value* ``MV = k * cos(f, earlier) + (1 - k) * (1 - cos(f, later))`` (k = 0.5, from
   MMG-Vid Eq. 6), z-scored over segments. Then the globally most similar tokens (a fraction
   ``prune_ratios[0]`` of all visual tokens, frame 0 included in the count) are merged into their
   previous-frame counterpart: each run of merged tokens (consecutive frames at one position) folds
   into the unmerged token just before it, which becomes the plain mean of itself and the run
   (m + 1 tokens) and keeps its position.
2. **Frame level** (inside the LLM, at layers 7, 14 and 21 of 28, scaled to the model's depth).
   Relevance ``r`` = the last prompt token's attention (mean over heads) min-max normalised;
   similarity ``S`` = cosine of the current hidden states (after the layer's attention, before its
   MLP); kernel ``L = diag(r) S diag(r)`` sliced per segment; greedy MAP inference of the DPP picks
   ``k_g = int(n_g * clamp(keep_s + 0.1 * MV_g, 0.05, 0.95))`` tokens in segment g.
3. **Layer level**: the three stages form a schedule, so redundancy shrinks as depth grows.

Where the authors' code differs from what one would read into the abstract, we follow the code:
the relevance is NEGATED before normalisation (copied from CDPruner's recipe, it makes the
lowest-attention tokens the most "relevant"); ``relevance_sign="positive"`` is the alternative.
Pruned tokens keep their original RoPE positions; nothing happens during decoding. On Qwen2-VL the
authors average the attention of the last 4 prompt tokens (``query_tokens=4``, set by ``for_budget``
for that family; 1 elsewhere). The authors have no Qwen3-VL code; we give Qwen3-VL its predecessor's
4 (the same prompt template and processor lineage), a choice of ours, not theirs; InternVL3 and the
LLaVA family get the authors' LLaVA setting, 1. Other quirks of
the code, kept: ``cos(f, earlier)`` rewards segments that *resemble* earlier ones (the name
"marginal value" suggests the opposite); the z-score divides by the population std; relevance is
normalised once over all visual tokens, not per segment; the total budget is whatever the
per-segment ``int()`` truncations add up to (a global target is computed and never used).

Where we differ, and why:

* Budgets. ``for_budget(keep)`` rescales the authors' 30% schedule (cumulative retention 50%,
  35%, 24.5%, 10.5%) so that the achieved layer-average retention equals ``keep`` under this
  project's ledger (a layer pruned between its attention and its MLP counts half). The authors'
  own presets are in ``PRESETS`` and used verbatim with ``authors_preset=True``; by their own
  counting the 20% and 10% presets retain 21% and 11%.
* The video's last visual token. The authors' adapters (``modeling_llava_video.py``, and
  ``modeling_qwen2_vl.py`` alike) set the span end to ``start + length - 1``, an inclusive index,
  and ``get_segment_id_tensor`` uses it as an exclusive slice end, so the sequence's last visual
  token gets segment -1 like text: it is left out of the segment means behind the marginal values,
  out of the relevance min-max and the DPP kernel (both take the tokens with segment != -1), and
  the keep list of the first in-LLM stage (text before the span, the picks, text after it) leaves
  it out, so it is always dropped there unless the input merge already folded it (it is still a
  merge candidate: its patch type is set). A segment's budget can move by one token. By default we
  treat it as the visual token it is; ``last_token_as_text=True`` reproduces the authors' handling,
  and the ablation "authors' code" turns it on with ``authors_preset`` and ``match_stage_total=False``.
  With a stage-1 ratio of 0 the authors' stage still runs (and drops the token); ours is not mounted.
* Stage totals. The per-segment budgets keep the authors' proportions (dynamic ratio, clamp, int),
  but are rescaled (``match_total``) so a stage keeps ``int(keep_s * n)`` tokens: the z-scored
  marginal values are not weighted by segment size, so the authors' totals drift from the schedule
  (0.094 achieved for 0.1 on a six-scene test video; the first session's 64-frame GPU run kept 0.269
  for 0.3 before this). ``match_stage_total=False`` restores them.
* Speed. Greedy DPP runs batched over all segments of a stage on the GPU (one step per pick of the
  largest segment, no Python loop over tokens), where the authors loop over segments; on CUDA a stage
  runs as one persistent Triton kernel (the factor kept in panels) or as a Triton kernel per pick
  replayed as a CUDA graph (``kernels/dpp_persistent.py``, ``kernels/dpp_triton.py``; same picks).
  Measured on an H200 (reports/gpu), 32 frames, one segment: 27.0 ms of selection at keep 0.3 against
  50.5 ms of pruned LM prefill, 14.1 ms at keep 0.1 (245 and 102 ms with the PyTorch step as a CUDA
  graph); the authors' code spent 153 ms in DPP at 32 frames on an A800.
* Precision. The authors run relevance, cosines, merge averages and the kernel normalisation in the
  model dtype (fp16 in LLaVA-NeXT's loader). In fp16 the min-max normalised relevance of ~3k tokens
  takes a handful of distinct values (most tokens tie at the maximum), so their DPP is close to
  diversity-only; we compute all of it in float32, which resolves the relevance. On CUDA GPUs with
  TF32 the kernel's Gram product runs as three TF32 tensor-core products per tile
  (``kernels/gram.py``), whose error is float32's (below cuBLAS's float32 product's on the 7B shape).
* Numerical guards. The official greedy DPP has no floor: once a segment's kernel rank is exhausted
  ``sqrt`` of a non-positive residual gives NaN and ``argmax`` keeps returning index 0 (duplicate
  picks). Ours stops extending an exhausted kernel's factor and picks its remaining items by
  relevance (dividing the noise by the floor pick after pick overflowed on the 7B shape at 64 frames,
  with the same duplicate picks: 0.287 kept for 0.3), counts non-finite kernel entries as 0 so they
  cannot be picked twice either (``common/dpp.py``), and frame
  0's tokens are never merge candidates (the authors give them similarity -2, reachable only at a
  merge ratio above (T-1)/T).
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
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig
from prune_bench.kernels import gram_matrix
from prune_bench.strategies.common.dpp import greedy_dpp_map
from prune_bench.strategies.common.select import keep_visual_subset, last_token_visual_attention, topk_visual
from prune_bench.strategies.common.temporal import (
    frame_grid_index,
    previous_frame_similarity,
    run_start_targets,
    segment_by_merge_ratio,
)

#: The authors' prune ratios [merge at the input, prune at layer 7, 14, 21] per target retention.
PRESETS: dict[float, tuple[float, float, float, float]] = {
    0.3: (0.5, 0.3, 0.3, 0.57),
    0.2: (0.5, 0.5, 0.7, 0.8),
    0.1: (0.7, 0.6, 0.85, 0.9),
}
REFERENCE_DEPTH = 28
REFERENCE_STAGE_LAYERS = (7, 14, 21)
MV_KEY = "hieravid.marginal_value"


class HieraVidConfig(StrategyConfig):
    prune_ratios: tuple[float, float, float, float] = Field(
        PRESETS[0.3],
        description="fraction of the remaining visual tokens removed at [input merge, stage 1, 2, 3] (authors' 30% preset)",
    )
    stage_layers: tuple[int, int, int] | None = Field(
        None,
        description="decoder layers of the three in-LLM stages; None scales 7/14/21 of 28 to the model's depth",
    )
    similarity_threshold: float = Field(
        0.6, description="cosine above which a token counts as similar to its predecessor"
    )
    segment_beta: float = Field(
        0.4, description="a frame opens a new segment when its similar-token ratio is below this"
    )
    marginal_k: float = Field(
        0.5, description="weight of the similarity to earlier segments in the marginal value"
    )
    extra_ratio: float = Field(
        0.1, description="R_extra: how much a segment's z-scored marginal value moves its keep ratio"
    )
    ratio_bounds: tuple[float, float] = Field((0.05, 0.95), description="clamp of a segment's keep ratio")
    relevance_sign: Literal["negative", "positive"] = Field(
        "negative", description="the authors' code negates the attention relevance; 'positive' uses it as is"
    )
    query_tokens: int = Field(
        1, ge=1, description="last prompt tokens whose attention is averaged (authors: 1; 4 on Qwen2-VL)"
    )
    segment_level: bool = Field(True, description="ablation: False = one segment, no marginal values")
    frame_level: bool = Field(
        True, description="ablation: False = global top-k relevance instead of per-segment DPP"
    )
    layer_level: bool = Field(True, description="ablation: False = all pruning at the input merge")
    dynamic_budget: bool = Field(True, description="ablation: False = k_g = int(n_g * keep_s)")
    first_stage_selector: Literal["dpp", "relevance_spread"] = Field(
        "dpp", description="'relevance_spread' = the authors' fast variant at the first in-LLM stage"
    )
    authors_preset: bool = Field(
        False, description="for_budget uses the authors' preset verbatim when one exists"
    )
    match_stage_total: bool = Field(
        True,
        description="rescale the per-segment budgets so a stage keeps int(keep_s * n) tokens in all "
        "(False = the authors' sum of per-segment int() truncations)",
    )
    last_token_as_text: bool = Field(
        False,
        description="the authors' off-by-one: the video's last visual token gets no segment, stays out of "
        "the segment means, the relevance normalisation and the DPP kernel, and is dropped at the first "
        "in-LLM stage (False = it is a visual token like the others)",
    )


def match_total(budgets: torch.Tensor, counts: torch.Tensor, total: int) -> torch.Tensor:
    """Rescale per-segment ``budgets`` (each at most ``counts``) to add up to ``total``, keeping their
    proportions: floors of the scaled shares, then one more token to the largest remainders, and
    what a full segment cannot take goes to the others."""
    total = max(0, min(total, int(counts.sum())))
    weights = budgets.double() if int(budgets.sum()) > 0 else counts.double()
    out = torch.zeros_like(budgets)
    for _ in range(len(counts) + 1):  # each round fills at least one segment or finishes
        room = counts - out
        open_ = (room > 0) & (weights > 0)
        left = total - int(out.sum())
        if left <= 0 or not bool(open_.any()):
            break
        share = torch.where(open_, weights, 0.0)
        share = share * left / share.sum()
        add = torch.minimum(share.floor().long(), room)
        rest = left - int(add.sum())
        if rest > 0:  # one more token each to the largest remainders that still have room
            frac = torch.where(open_ & (add < room), share - share.floor(), -1.0)
            top = frac.topk(min(rest, int((frac >= 0).sum()))).indices
            add[top] += 1
        out += add
    return out


def scaled_stage_layers(num_layers: int) -> tuple[int, int, int]:
    layers = tuple(
        max(1, min(num_layers - 1, round(ref * num_layers / REFERENCE_DEPTH)))
        for ref in REFERENCE_STAGE_LAYERS
    )
    return layers  # type: ignore[return-value]


def cumulative_keep(prune_ratios: tuple[float, ...]) -> list[float]:
    out, kept = [], 1.0
    for r in prune_ratios:
        kept *= 1.0 - r
        out.append(kept)
    return out


def layer_average(cumulative: list[float], stage_layers: tuple[int, ...], num_layers: int) -> float:
    """Layer-averaged retention of a schedule under the ledger's convention (a post stage = half a layer)."""
    total, level = 0.0, 0
    for layer in range(num_layers):
        if level < len(stage_layers) and layer == stage_layers[level]:
            total += (cumulative[level] + cumulative[level + 1]) / 2
            level += 1
        else:
            total += cumulative[level]
    return total / num_layers


def ratios_for_average(
    keep: float, stage_layers: tuple[int, ...], num_layers: int
) -> tuple[float, float, float, float]:
    """Scale the authors' 30% schedule so its layer average is ``keep``."""
    shape = cumulative_keep(PRESETS[0.3])

    def schedule(a: float) -> list[float]:
        out, prev = [], 1.0
        for c in shape:
            prev = min(prev, min(1.0, a * c))
            out.append(prev)
        return out

    lo, hi = 0.0, 1.0 / shape[-1]
    for _ in range(60):
        mid = (lo + hi) / 2
        if layer_average(schedule(mid), stage_layers, num_layers) < keep:
            lo = mid
        else:
            hi = mid
    cum = schedule((lo + hi) / 2)
    prev, ratios = 1.0, []
    for c in cum:
        ratios.append(1.0 - c / prev if prev > 0 else 0.0)
        prev = c
    return tuple(ratios)  # type: ignore[return-value]


class HieraVid(Strategy):
    name = "hieravid"
    summary = "hierarchical segment / frame / layer pruning with per-segment DPP (arXiv 2604.01881)"
    Config = HieraVidConfig
    config: HieraVidConfig
    PRESETS: ClassVar[dict[float, tuple[float, float, float, float]]] = PRESETS
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "w/o segment level": {"segment_level": False},
        "w/o frame level (top-k relevance)": {"frame_level": False},
        "w/o layer level (all at input)": {"layer_level": False},
        "positive relevance": {"relevance_sign": "positive"},
        "relevance-spread first stage": {"first_stage_selector": "relevance_spread"},
        "w/o dynamic segment budget": {"dynamic_budget": False},
        "authors' preset ratios": {"authors_preset": True},
        "authors' code (preset, their totals, last token as text)": {
            "authors_preset": True,
            "match_stage_total": False,
            "last_token_as_text": True,
        },
    }

    #: the authors' per-family settings, applied unless the user sets the option
    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "qwen2_vl": {"query_tokens": 4},
        "qwen3_vl": {"query_tokens": 4},  # ours: the authors have no Qwen3-VL code (see the docstring)
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        options = {**cls.FAMILY_DEFAULTS.get(model.family, {}), **options}
        probe = cls.make_config(**options)
        if "prune_ratios" in options:
            return cls(config=probe)
        layers = probe.stage_layers or scaled_stage_layers(model.num_layers)
        if not probe.layer_level or unit == "input":
            # Everything happens at the input merge, or the budget is defined there.
            ratios = (
                (1.0 - keep, *probe.prune_ratios[1:]) if probe.layer_level else (1.0 - keep, 0.0, 0.0, 0.0)
            )
            return cls(config=probe.model_copy(update={"prune_ratios": ratios}))
        preset = next((p for k, p in PRESETS.items() if abs(k - keep) < 1e-9), None)
        ratios = (
            preset if probe.authors_preset and preset else ratios_for_average(keep, layers, model.num_layers)
        )
        return cls(config=probe.model_copy(update={"prune_ratios": ratios}))

    # ---------------------------------------------------------------------------- segment level
    def segment_and_merge(self, state: TokenState, ctx: StageContext) -> TokenState:
        cfg = self.config
        grid = frame_grid_index(state)  # [T, P]
        feats = state.hidden[grid]  # [T, P, D]
        sim = previous_frame_similarity(feats)
        frames = grid.shape[0]
        if cfg.segment_level:
            frame_segment = segment_by_merge_ratio(sim, cfg.similarity_threshold, cfg.segment_beta)
        else:
            frame_segment = torch.zeros(frames, dtype=torch.long, device=state.device)
        in_segment = None
        if cfg.last_token_as_text:
            # the authors' span end is inclusive (start + length - 1) and then used as an exclusive
            # slice end: the sequence's last visual token gets segment -1, like text
            in_segment = grid != state.visual_index[-1]
        # a handful of numbers, kept on the host with the budget arithmetic that reads them
        ctx.memory[MV_KEY] = segment_marginal_value(feats, frame_segment, cfg.marginal_k, in_segment).cpu()
        segment = torch.full((len(state),), -1, dtype=torch.long, device=state.device)
        frame_ids = frame_segment[:, None].expand_as(grid)
        segment[grid] = frame_ids if in_segment is None else torch.where(in_segment, frame_ids, -1)
        state = state.with_segments(segment)
        k = int(cfg.prune_ratios[0] * grid.numel())
        if k <= 0:
            return state
        # One-shot global top-k of the most similar tokens (frame 0 has -inf and is never merged).
        flat = sim.flatten()
        merged = torch.zeros_like(flat, dtype=torch.bool)
        merged[torch.topk(flat, min(k, int(torch.isfinite(flat).sum())), sorted=False).indices] = True
        merged = merged.view_as(sim)
        target_frame = run_start_targets(merged)
        target = torch.arange(len(state), device=state.device)
        target[grid] = grid.gather(0, target_frame)
        return state.merge(target, weighting="uniform")

    # ------------------------------------------------------------------------ frame + layer level
    def relevance(
        self, state: TokenState, ctx: StageContext, among: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Min-max normalised relevance of the visual tokens (of those at ``among``, indices into
        ``state.visual_index``, when given: the normalisation sees only them)."""
        a = last_token_visual_attention(state, ctx, self.config.query_tokens)
        if among is not None:
            a = a[among]
        r = -a if self.config.relevance_sign == "negative" else a
        return (r - r.min() + 1e-6) / (r.max() - r.min()).clamp_min(1e-12)

    def segment_budgets(self, counts: torch.Tensor, keep: float, mv: torch.Tensor | None) -> torch.Tensor:
        lo, hi = self.config.ratio_bounds
        if self.config.dynamic_budget and mv is not None:
            ratio = (keep + self.config.extra_ratio * mv).clamp(lo, hi)
        else:
            ratio = torch.full_like(counts, keep, dtype=torch.float32)
        budgets = (counts.float() * ratio).long()  # int() truncation, as coded
        if self.config.match_stage_total:
            budgets = match_total(budgets, counts, int(keep * float(counts.sum())))
        return budgets

    def make_layer_stage(self, stage: int) -> Callable[[TokenState, StageContext], TokenState]:
        keep = 1.0 - self.config.prune_ratios[stage]
        fast = stage == 1 and self.config.first_stage_selector == "relevance_spread"

        def prune(state: TokenState, ctx: StageContext) -> TokenState:
            vis = state.visual_index
            if vis.numel() == 0:
                return state
            # visual tokens without a segment (``last_token_as_text``) are dropped here, as the
            # authors' keep list (text before, picks, text after the span) leaves them out
            among = (
                torch.nonzero(state.segment[vis] >= 0).squeeze(1) if self.config.last_token_as_text else None
            )
            r = self.relevance(state, ctx, among)
            if not self.config.frame_level:
                if among is None:
                    return topk_visual(state, r, int(vis.numel() * keep))
                top = torch.topk(r.float(), int(among.numel() * keep), sorted=False).indices
                return keep_visual_subset(state, among[top])
            seg = state.segment[vis] if among is None else state.segment[vis[among]]
            # segment sizes and budgets are a handful of numbers: computed on the host, once the
            # sizes are read back (one sync), instead of as dozens of tiny device kernels with a sync each
            mv = ctx.memory.get(MV_KEY)  # on the host, one value per segment id
            counts = _segment_sizes(seg, None if mv is None else mv.numel())
            n_seg = counts.numel()
            budgets = self.segment_budgets(
                # looked up by segment id, as the authors do, even when trailing segments are empty
                counts,
                keep,
                mv[:n_seg] if mv is not None and mv.numel() >= n_seg else None,
            )
            if fast:
                chosen = relevance_spread(r, seg, counts.to(seg.device), budgets.to(seg.device))
            else:
                hidden = state.hidden[vis] if among is None else state.hidden[vis[among]]
                chosen = segment_dpp(hidden, r, seg, counts, budgets)
            if among is not None:
                chosen = among[chosen]
            return keep_visual_subset(state, chosen)

        return prune

    def stages(self, model: ModelInfo) -> list[Stage]:
        cfg = self.config
        out = [Stage("hieravid.segment_merge", "segment", self.segment_and_merge)]
        if not cfg.layer_level:
            return out
        layers = cfg.stage_layers or scaled_stage_layers(model.num_layers)
        for i, layer in enumerate(layers, start=1):
            if cfg.prune_ratios[i] > 0:
                out.append(
                    Stage(
                        f"hieravid.dpp_stage{i}", "layer", self.make_layer_stage(i), layer=layer, site="post"
                    )
                )
        return out


def segment_marginal_value(
    feats: torch.Tensor, frame_segment: torch.Tensor, k: float, in_segment: torch.Tensor | None = None
) -> torch.Tensor:
    """z-scored marginal value of each segment (MMG-Vid Eq. 6 as HieraVid's code uses it), ``[G]``.
    A segment's feature is the mean of its tokens (of those ``in_segment`` marks, ``[T, P]``, when given)."""
    n_seg = int(frame_segment.max()) + 1
    x = feats.float()
    if in_segment is None:  # every frame has its P tokens: the mean of the frames' means, as before
        per_frame = x.mean(dim=1)  # [T, D]
        sizes = torch.ones(x.shape[0], device=x.device)
    else:
        per_frame = (x * in_segment[..., None]).sum(dim=1)  # [T, D]
        sizes = in_segment.sum(dim=1).to(x.dtype)  # [T]
    sums = torch.zeros(n_seg, per_frame.shape[1], device=feats.device).index_add_(0, frame_segment, per_frame)
    f = sums / torch.zeros(n_seg, device=feats.device).index_add_(0, frame_segment, sizes)[:, None]
    if n_seg == 1:
        return torch.zeros(1, device=feats.device)
    idx = torch.arange(n_seg, device=feats.device)
    csum = torch.cumsum(f, dim=0)
    earlier = torch.cat([torch.zeros_like(f[:1]), csum[:-1]]) / idx.clamp_min(1)[:, None]
    later = (csum[-1:] - csum) / (n_seg - 1 - idx).clamp_min(1)[:, None]
    a1 = torch.where(idx > 0, F.cosine_similarity(f, earlier, dim=-1), torch.zeros(n_seg, device=f.device))
    a2 = torch.where(
        idx < n_seg - 1, F.cosine_similarity(f, later, dim=-1), torch.zeros(n_seg, device=f.device)
    )
    mv = k * a1 + (1 - k) * (1 - a2)
    return (mv - mv.mean()) / (mv.std(unbiased=False) + 1e-8)  # population std, as the authors


def _segment_sizes(seg: torch.Tensor, num_ids: int | None) -> torch.Tensor:
    """Tokens per segment id, up to the last non-empty segment (as ``bincount``), on the host. With
    ``num_ids`` known, counted without ``bincount``'s read-back of the largest id: one sync, not two."""
    if num_ids is None:
        return torch.bincount(seg).cpu()
    counts = torch.zeros(num_ids, dtype=torch.long, device=seg.device).index_add_(
        0, seg, torch.ones_like(seg)
    )
    counts = counts.cpu()
    return counts[: int(counts.nonzero().max()) + 1] if bool(counts.any()) else counts[:1]


def _segment_slots(seg: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Rank of each token inside its (contiguous) segment."""
    offsets = torch.cumsum(counts, 0) - counts
    return torch.arange(seg.numel(), device=seg.device) - offsets[seg]


def segment_dpp(
    hidden: torch.Tensor,
    relevance: torch.Tensor,
    seg: torch.Tensor,
    counts: torch.Tensor,
    budgets: torch.Tensor,
) -> torch.Tensor:
    """Per-segment conditional DPP (kernel diag(r) S diag(r)), all segments in one batch: the boolean
    mask of the kept tokens. ``counts`` and ``budgets`` may live on the host (no device sync to read
    them)."""
    n_seg, n_max = counts.numel(), int(counts.max())
    slot = _segment_slots(seg, counts.to(seg.device))
    x = F.normalize(hidden.float(), dim=-1)
    padded = x.new_zeros(n_seg, n_max, x.shape[1])
    padded[seg, slot] = x * relevance[:, None]
    kernel = gram_matrix(padded)  # r_i * cos(x_i, x_j) * r_j
    return greedy_dpp_map(kernel, counts, budgets)[seg, slot]


def relevance_spread(
    relevance: torch.Tensor, seg: torch.Tensor, counts: torch.Tensor, budgets: torch.Tensor
) -> torch.Tensor:
    """The authors' fast variant: cut each segment into k_g contiguous buckets, keep each bucket's
    most relevant token."""
    slot = _segment_slots(seg, counts)
    k = budgets[seg].clamp_min(1)
    # bucket b holds slots [b * n // k, (b + 1) * n // k), the authors' partition
    bucket = ((slot + 1) * k - 1) // counts[seg]
    key = (torch.cumsum(budgets.clamp_min(1), 0) - budgets.clamp_min(1))[seg] + bucket
    best = torch.full((int(key.max()) + 1,), -torch.inf, device=relevance.device)
    best = best.scatter_reduce(0, key, relevance.float(), reduce="amax")
    is_best = (relevance.float() == best[key]) & (budgets[seg] > 0)
    # ties: keep the first token of a bucket that reaches the maximum
    first = torch.full_like(best, relevance.numel(), dtype=torch.long)
    pos = torch.arange(relevance.numel(), device=relevance.device)
    first = first.scatter_reduce(0, key[is_best], pos[is_best], reduce="amin")
    return first[first < relevance.numel()]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(HieraVid)
