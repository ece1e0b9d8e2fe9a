"""HoliTom: "Holistic Token Merging for Fast Video Large Language Models" (Shao et al., NeurIPS 2025,
arXiv 2505.21334).

Followed: the authors' code, github.com/cokeshao/HoliTom at commit e9b2972:
``prepare_inputs_labels_for_multimodal``, ``select_static_windows``, ``get_static_dynamic_features``,
``holitom``, ``merge_tokens_by_attention_density``, ``merge_tokens_by_density`` and
``merge_tokens_by_clustering`` in ``holitom/llava_arch.py`` (outer-LLM merging) and the
``HOLITOM_k`` block of ``Qwen2Model_holitom.forward`` in ``holitom/modeling_qwen2.py`` (inner-LLM
merging), with ``scripts/eval_ov-7b_holitom.sh`` (``RETAIN_RATIO=0.10 T=0.65`` and
``RETAIN_RATIO=0.15|0.20|0.25 T=0.80``, ``HOLITOM_k=18 HOLITOM_r=0.5``; code defaults ``K=7``,
``BETA=0.6``, ``D=0``, ``MAX_WINDOW_SIZE=1024``, ``NO_BETA`` unset, i.e. the beta merge).

**Outer-LLM merging** (hook ``segment``, text-agnostic, on the projected, pooled tokens):

1. Same-position cosine similarity of consecutive frames, ``[T-1, P]``.
2. **Global temporal segmentation** by dynamic programming: a window ``[s, e]`` is worth
   ``(#positions similar above tau at every transition inside it) * (e - s)``, the tokens its
   temporal averaging saves; the partition into windows (length 1, or 2..``MAX_WINDOW_SIZE``)
   with the largest total wins, ties going to the shorter window as the code's strict ``>`` does.
3. ``rho' = min(rho / (1 - saved / (T * P)), 1)``: the retention of what is left is raised so the
   overall retention stays ``rho``.
4. In a window of 2+ frames, **static** positions (similar at every transition) are averaged over
   time, then reduced to ``round(n * rho')`` DPC-kNN centres (k = ``min(K, centres)``, as coded;
   :mod:`~prune_bench.strategies.common.dpc_knn`); every other static token joins its nearest
   centre, which becomes ``beta * centre + (1 - beta) * mean(members)`` (``beta_merge=False``: the
   plain mean with the centre, the code's ``NO_BETA``).
5. **Dynamic** tokens, per frame: ``keep = ceil(n * rho')``, of which ``round(keep * (1 - D))`` are
   dominant by vision attention (the attention each patch receives in SigLIP's last used layer,
   pooled like the features: ``ctx.vision_attention().received``) and the rest are DPC-kNN
   centres of the remaining tokens with the same beta merge. The default ``D = 0`` keeps only
   dominant tokens.
6. The merged video is spliced into the prompt, so positions are contiguous
   (``position_policy="reindex"``).

**Inner-LLM merging** (a ``post`` stage at layer ``inner_layer - 1``): the last prompt token's
attention at that layer, mean over heads, keeps ``round(n * (1 - r))`` visual tokens; every other
visual token is averaged into its most cosine-similar kept token one at a time, in index order,
``x <- (x + d) / 2`` (so the last one weighs half); original positions are kept. We compute the
sequential result in closed form: with members ``d_1 .. d_m``,
``x_m = x / 2^m + sum_i d_i / 2^(m - i + 1)``. ``inner_layer=None`` is the paper's "w/o M".

Budgets: ``"input"`` sets ``rho = keep`` (HoliTom's ``RETAIN_RATIO`` is the share of visual tokens
entering the LLM). ``"layer-average"`` / ``"flops"`` also count the inner merge:
``keep = rho * (k - 1/2 + (L - k + 1/2) * (1 - r)) / L`` solved for ``rho`` (``k - 1/2`` layers at
the input count, our ledger's half layer for a post stage); above ``rho = 1`` we warn. ``tau``
follows the scripts: 0.65 at ``rho <= 0.10``, else 0.80, unless given. The budget is an upper
bound: ``rho'`` is capped at 1, so a clip whose static windows alone save more than ``1 - rho`` of
its tokens (a near-static video) ends below it; since only the video tells, ``for_budget`` always
raises a ``BudgetWarning``.

Where we differ, and why:

* Merged tokens sit at a representative's place (a static centre at its window's first frame,
  a contextual centre at itself) instead of the code's order [window's static tokens, then each
  frame's dynamic tokens]; with re-indexed positions this changes which RoPE position a token gets
  inside its window; we keep spatial order, which the framework's layout relies on.
* Inner merge site. The code merges at layer ``k``'s input, i.e. after layer ``k - 1``'s MLP
  (``hidden_states`` between two decoder layers); ours runs between layer ``k - 1``'s attention and
  its MLP (the framework's ``post`` site). The selection (layer ``k - 1``'s last-token attention,
  the same rows in both) and the set of tokens layers ``>= k`` see are the code's; what changes is
  the merged values and possibly the assignment: the most-similar kept token is found, and the
  average taken, on the states before that MLP, and the MLP then runs once on the average, where
  the code averages the MLP's outputs. A kept token that absorbs nothing enters layer ``k``
  exactly as in the code; one that absorbs others does not (the MLP is not linear). In exchange
  the merged-away tokens skip layer ``k - 1``'s MLP (the ledger counts that layer as half).
* Inner span. The code's span is the whole image feature (``image_tokens = image_feature.shape[0]``),
  which on LLaVA-OneVision ends with the newline token: it is ranked with the visual tokens, takes
  one of the ``round((n + 1) * (1 - r))`` kept places when its attention is high enough and is
  otherwise averaged into its most similar kept token and removed. Ours ranks and merges the ``n``
  visual tokens only (``round(n * (1 - r))`` kept) and always keeps the newline token, so the inner
  budget can differ by one visual token (and the newline survives layer ``k``). On ``grid``
  layouts the framework keeps every row's newline token, where the code drops the newline of a
  row left empty.
* ``D > 0``. The code fails whenever ``D`` leaves a frame at least one contextual token:
  ``merge_tokens_by_attention_density`` takes ``pos.masked_select(mask.unsqueeze(-1))`` of a
  ``[W, n]`` position tensor with a ``[W, n, 1]`` mask, which broadcasts to ``[W, n, n]`` (or
  does not broadcast at all) and cannot be viewed as ``[W, n - dominant]``, so only ``D = 0`` (the
  scripts' value) ever ran. Ours runs it as step 5 describes (contextual centres by DPC-kNN over the
  non-dominant tokens, beta-merged), with the positions of those centres.
* ``inner_layer = 18`` is for the 28-layer Qwen2-7B; on a model too shallow for it we scale it by
  ``num_layers / 28``. Attention comes from the tower's captured q/k (no patched SigLIP, no eager
  layer). Density tie-break noise is left out (deterministic).
* Engineering, not selection: every window's static clustering is one padded DPC-kNN batch and every
  frame's dynamic one another (the code loops over windows and frames); centres are written by
  index, padding writing back what it holds, and the inner merge splits kept / merged tokens from
  their known counts and takes its visual count from the outer merge, so it reads nothing back
  mid-prefill; the outer merge reads the layout's grid, the DP's gain table (the DP itself is the
  code's, on ``T x T`` numbers), two "any group to cluster?" checks, the cluster counts and the kept
  count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import full_layers, predict_layer_average
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.strategies.common.dpc_knn import dpc_knn_cluster
from prune_bench.strategies.common.select import (
    keep_visual_subset,
    last_token_visual_attention,
    visual_index_after,
)
from prune_bench.strategies.common.temporal import frame_grid_index
from prune_bench.strategies.common.transfer import host_to_device

#: Depth of Qwen2-7B, for which ``HOLITOM_k = 18`` was chosen.
REFERENCE_DEPTH = 28
#: (tokens, visual tokens) the outer merge left, so that the inner merge need not read its count back.
LEFT_KEY = "holitom.left"


class HoliTomConfig(StrategyConfig):
    retain_ratio: float = Field(
        0.10, gt=0, le=1, description="rho: share of visual tokens entering the LLM (RETAIN_RATIO)"
    )
    tau: float = Field(
        0.65, description="same-position similarity threshold (T; scripts: 0.65 at 10%, else 0.80)"
    )
    dominant_share: float = Field(
        0.0, ge=0, le=1, description="D: share of dynamic tokens merged as context (D=0)"
    )
    beta: float = Field(0.6, ge=0, le=1, description="weight of a cluster centre in its merge (BETA)")
    beta_merge: bool = Field(
        True, description="False: centre and members averaged plainly (the code's NO_BETA)"
    )
    knn: int = Field(7, ge=1, description="K: DPC-kNN neighbours, capped at the cluster count as coded")
    max_window: int = Field(1024, ge=2, description="longest static window of the DP (MAX_WINDOW_SIZE)")
    inner_layer: int | None = Field(
        18, ge=1, description="k: inner merge before this decoder layer (HOLITOM_k); None = w/o M"
    )
    inner_ratio: float = Field(
        0.5, ge=0, le=1, description="r: share of visual tokens merged away at k (HOLITOM_r)"
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="positions after the outer merge: 'reindex' like the splice, or 'keep'"
    )


# --------------------------------------------------------------------------- temporal windows
def similar_run_lengths(similar: torch.Tensor) -> torch.Tensor:
    """``[T-1, P]`` number of consecutive similar transitions ending at each transition."""
    idx = torch.arange(similar.shape[0], device=similar.device)[:, None]
    return idx - torch.cummax(torch.where(similar, -1, idx), dim=0).values


def window_gain(similar: torch.Tensor) -> torch.Tensor:
    """``[T, T]`` tokens saved by averaging window ``[s, e]``: positions similar at every transition
    ``s .. e-1`` (``similar`` is ``[T-1, P]``) times ``e - s``; 0 for ``e <= s``."""
    t = similar.shape[0] + 1
    device = similar.device
    run = similar_run_lengths(similar)
    frames = torch.arange(t, device=device)
    width = (frames[None, :] - frames[:, None]).clamp_min(0)  # [s, e] -> e - s
    ends = torch.cat([torch.zeros_like(run[:1]), run])  # run ending at transition e-1, by e
    count = (ends[None, :, :] >= width[:, :, None]).sum(dim=-1)  # [s, e]
    return (count * width).float()


def static_windows(gain: list[list[float]], max_window: int) -> tuple[list[tuple[int, int]], float]:
    """HoliTom's DP over a handful of frames: the windows maximising the total gain, and the total."""
    t = len(gain)
    best = [0.0] * t
    start = [0] * t
    for i in range(t):
        value, first = (best[i - 1] if i else 0.0), i
        for w in range(2, min(i + 1, max_window) + 1):
            j = i - w
            candidate = (best[j] if j >= 0 else 0.0) + gain[j + 1][i]
            if candidate > value:
                value, first = candidate, j + 1
        best[i], start[i] = value, first
    windows, i = [], t - 1
    while i >= 0:
        windows.append((start[i], i))
        i = start[i] - 1
    return windows[::-1], best[-1] if t else 0.0


def beta_cluster_merge(
    features: torch.Tensor,
    valid: torch.Tensor,
    counts: torch.Tensor,
    knn: int,
    beta: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HoliTom's ``merge_tokens_by_clustering`` after DPC-kNN, for a padded batch of groups.

    :returns: ``(centres [G, C], real [G, C], merged [G, C, D])``: centre slots, which are real
        (``C`` is the largest count), and each centre merged with the tokens that joined it:
        ``beta * centre + (1 - beta) * mean(members)`` (unchanged without members), or the plain
        mean of centre and members when ``beta`` is None.
    """
    g, p, d = features.shape
    x = features.float()
    k = counts.clamp_max(knn).clamp_min(1)
    centres, assignment = dpc_knn_cluster(x, counts, k, valid)
    c = centres.shape[1]
    real = torch.arange(c, device=x.device)[None, :] < counts[:, None]
    is_centre = torch.zeros(g, p, dtype=torch.bool, device=x.device).scatter(1, centres, real)
    member = (valid & ~is_centre).float()
    sums = torch.zeros(g, c, d, device=x.device).scatter_add_(
        1, assignment[..., None].expand(-1, -1, d), x * member[..., None]
    )
    count = torch.zeros(g, c, device=x.device).scatter_add_(1, assignment, member)[..., None]
    centre_x = x.gather(1, centres[..., None].expand(-1, -1, d))
    if beta is None:
        merged = (centre_x + sums) / (count + 1)
    else:
        merged = torch.where(count > 0, beta * centre_x + (1 - beta) * sums / count.clamp_min(1), centre_x)
    return centres, real, merged


def place_centres(
    keep: torch.Tensor,
    hidden: torch.Tensor,
    grid: torch.Tensor,
    frame: torch.Tensor,
    centres: torch.Tensor,
    real: torch.Tensor,
    merged: torch.Tensor,
) -> None:
    """Keep group ``g``'s real centres in frame ``frame[g]`` (distinct frames) and give them their
    merged states, in place. A group's centre slots are distinct, so the padding ones write back what
    they hold: no boolean-mask index (each would read a count back from the device)."""
    rows = frame[:, None].expand_as(centres)
    keep[rows, centres] = keep[rows, centres] | real
    where = grid[rows, centres]
    hidden[where] = torch.where(real[..., None], merged.to(hidden.dtype), hidden[where])


def sequential_pair_average(
    hidden: torch.Tensor, kept: torch.Tensor, dropped: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Kept tokens' states after ``x <- (x + d) / 2`` for each dropped ``d`` (in ``dropped`` order)
    into ``target`` (an index into ``kept``), in closed form. :returns: ``[len(kept), D]``."""
    n_kept = kept.numel()
    device = hidden.device
    m = torch.zeros(n_kept, dtype=torch.long, device=device).index_add_(0, target, torch.ones_like(target))
    order = target.argsort(stable=True)  # members grouped by target, in dropped order
    offset = torch.cumsum(m, 0) - m
    rank = torch.empty_like(target)
    rank[order] = torch.arange(target.numel(), device=device) - offset[target[order]] + 1  # 1..m
    w_member = torch.exp2(-(m[target] - rank + 1).double()).float()
    out = hidden[kept].float() * torch.exp2(-m.double()).float()[:, None]
    return out.index_add_(0, target, hidden[dropped].float() * w_member[:, None])


class HoliTom(Strategy):
    name = "holitom"
    summary = "DP temporal windows, static averaging + DPC-kNN merging before the LLM, inner merge at layer 18 (arXiv 2505.21334)"
    Config = HoliTomConfig
    config: HoliTomConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "w/o inner-LLM merge (w/o M)": {"inner_layer": None},
        "plain cluster means (no beta)": {"beta_merge": False},
        "original positions (no reindex)": {"position_policy": "keep"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(HoliTomConfig, cls.make_config(**options))
        rho = keep
        inner = cls(config=probe).inner_layer(model.num_layers)
        if unit != "input" and inner is not None:
            # the inner merge runs after layer inner-1's attention and leaves 1 - r of what it meets
            full = full_layers(inner - 1, "post")
            rho = keep / predict_layer_average(model.num_layers, [(full, 1 - probe.inner_ratio)])
        if rho > 1:
            warn_budget(cls.name, keep, keep / rho, "the inner merge alone removes more than that")
            rho = 1.0
        else:
            # rho' = rho / (1 - saved / total) is capped at 1: a clip whose static windows alone save
            # more than 1 - rho of its tokens ends below rho, and only the video can tell
            warn_budget(
                cls.name,
                keep,
                keep,
                "on near-static clips the temporal averaging alone keeps less",
            )
        update: dict[str, Any] = {"retain_ratio": max(rho, 1e-6)}
        if "tau" not in options:
            update["tau"] = 0.65 if rho <= 0.10 + 1e-9 else 0.80
        return cls(config=probe.model_copy(update=update))

    def inner_layer(self, num_layers: int) -> int | None:
        k = self.config.inner_layer
        if k is None:
            return None
        if k >= num_layers:
            k = round(k * num_layers / REFERENCE_DEPTH)
        return max(1, min(k, num_layers - 1))

    # ------------------------------------------------------------------------------ outer
    def outer_merge(self, state: TokenState, ctx: StageContext) -> TokenState:
        cfg = self.config
        grid = frame_grid_index(state)  # [T, P]
        frames, per_frame = grid.shape
        device = state.device
        feats = state.hidden[grid].float()
        similar = F.cosine_similarity(feats[:-1], feats[1:], dim=-1) > cfg.tau  # [T-1, P]
        windows, saved = static_windows(window_gain(similar).tolist(), cfg.max_window)
        total = frames * per_frame
        rho = min(cfg.retain_ratio / ((total - saved) / total), 1.0)

        first = host_to_device([s for s, _ in windows], device)
        last = host_to_device([e for _, e in windows], device)
        window = host_to_device([w for w, (s, e) in enumerate(windows) for _ in range(e - s + 1)], device)
        width = last - first
        run = torch.cat([torch.zeros_like(similar[:1], dtype=torch.long), similar_run_lengths(similar)])
        static = (width > 0)[:, None] & (run[last] >= width[:, None])  # [W, P]
        time_mean = torch.zeros(len(windows), per_frame, feats.shape[-1], device=device)
        time_mean = time_mean.index_add_(0, window, feats) / (width + 1).float()[:, None, None]

        beta = cfg.beta if cfg.beta_merge else None
        hidden = state.hidden.clone()
        keep = torch.zeros(frames, per_frame, dtype=torch.bool, device=device)
        # static tokens: one DPC-kNN clustering per window, batched
        n_static = static.sum(dim=1)
        s_counts = torch.round(n_static.double() * rho).long()
        if bool((s_counts > 0).any()):
            centres, real, merged = beta_cluster_merge(time_mean, static, s_counts, cfg.knn, beta)
            place_centres(keep, hidden, grid, first, centres, real, merged)
        # dynamic tokens: dominant by vision attention, the rest as contextual clusters, per frame
        dynamic = ~static[window]  # [T, P]
        n_dynamic = dynamic.sum(dim=1).double()
        quota = torch.ceil(n_dynamic * rho - 1e-9).long()
        dominant = torch.round(quota.double() * (1 - cfg.dominant_share)).long()
        received = ctx.vision_attention().received.to(device).float().masked_fill(~dynamic, -torch.inf)
        order = received.argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(per_frame, device=device).expand_as(order)
        )
        is_dominant = dynamic & (rank < dominant[:, None])
        keep |= is_dominant
        contextual = quota - dominant
        if bool((contextual > 0).any()):
            rest = dynamic & ~is_dominant
            centres, real, merged = beta_cluster_merge(feats, rest, contextual, cfg.knn, beta)
            place_centres(keep, hidden, grid, torch.arange(frames, device=device), centres, real, merged)
        full = torch.ones(len(state), dtype=torch.bool, device=device)
        full[grid] = keep
        segment = torch.full((len(state),), -1, dtype=torch.long, device=device)
        segment[grid] = window[:, None].expand_as(grid)
        out = state.with_hidden(hidden).with_segments(segment).keep_mask(full)
        ctx.memory[LEFT_KEY] = (len(out), len(out) - (len(state) - grid.numel()))  # the inner merge's count
        return out

    # ------------------------------------------------------------------------------ inner
    def inner_merge(self, state: TokenState, ctx: StageContext) -> TokenState:
        vis = visual_index_after(state, ctx.memory.get(LEFT_KEY))
        n = vis.numel()
        n_keep = round(n * (1 - self.config.inner_ratio))
        if n == 0 or n_keep >= n:
            return state
        scores = last_token_visual_attention(state, ctx, visual_index=vis)
        chosen = torch.zeros(n, dtype=torch.bool, device=state.device)
        chosen[scores.float().topk(n_keep).indices] = True
        # the chosen ones in order, then the others in order: the two counts are known, no read back
        by_choice = vis[torch.argsort(chosen.to(torch.uint8), descending=True, stable=True)]
        kept, dropped = by_choice[:n_keep], by_choice[n_keep:]
        if n_keep > 0:
            h = F.normalize(state.hidden.float(), dim=-1)
            target = (h[dropped] @ h[kept].T).argmax(dim=1)
            hidden = state.hidden.clone()
            hidden[kept] = sequential_pair_average(state.hidden, kept, dropped, target).to(hidden.dtype)
            state = state.with_hidden(hidden)
        return keep_visual_subset(state, chosen, visual_index=vis, kept=n_keep)

    def stages(self, model: ModelInfo) -> list[Stage]:
        out = [
            Stage(
                "holitom.outer_merge",
                "segment",
                self.outer_merge,
                position_policy=self.config.position_policy,
                needs=frozenset({"vision_attention"}),
            )
        ]
        k = self.inner_layer(model.num_layers)
        if k is not None and self.config.inner_ratio > 0:
            out.append(Stage("holitom.inner_merge", "layer", self.inner_merge, layer=k - 1, site="post"))
        return out


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(HoliTom)
