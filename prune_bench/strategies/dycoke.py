"""DyCoke: "Dynamic Compression of Tokens for Fast Video Large Language Models" (Tao et al., CVPR 2025,
arXiv 2411.15024).

Followed: the authors' code, github.com/KD-TAO/DyCoke at commit dd74634: ``dycole_ttm`` in
``llava/model/llava_arch.py`` (stage 1), ``PrunableDynamicCache`` and the layer loop of
``Qwen2Model.forward`` in ``llava/model/language_model/modeling_qwen2.py`` (stage 2), with the
README's evaluation command ``dycoke_l=3,dycoke_p=0.7,dycoke_k=0.7``.

**Stage 1, token temporal merging (TTM)**, before the LLM on the pooled per-frame tokens (hook
``frame``). Tokens are compared only with the token at the same spatial position of a reference
frame (cosine). In every pair (2i, 2i+1) frame 2i+1 keeps its ``int((1 - k) * P)`` tokens LEAST
similar to frame 2i; then in every 4-frame window (i, i+2) frame i+2 keeps its ``int((1 - k) * P)``
tokens least similar to frame i (the original features of both). Nothing is averaged: despite the
name, TTM drops tokens (DyCoke issue #1). Positions are contiguous after it (the code splices the
shortened video into the prompt): ``position_policy="reindex"``.

**Stage 2, dynamic KV-cache pruning** (a ``decode`` stage at layer ``L``): at each generated token,
the token's attention at layer ``L - 1`` (mean over heads) over the visual span is compared (cosine)
with the previous step's; on the first step or when the similarity is below 0.9, layers ``>= L``
attend to all non-visual entries plus the top ``int(n * (1 - p))`` visual ones.

What the official code actually does (``windows="code"``, ``stable_step="full_cache"``, defaults):

* TTM edges: the second pass runs over ``range(0, T - 4, 4)``, so frame ``T - 2`` (for T a multiple
  of 4) keeps all its tokens, and an odd last frame belongs to no pair and is DROPPED. At T = 32 and
  k = 0.7: 9 whole frames + 23 x 58 tokens = 3098 / 6272 = 49.4 % kept, not the paper's ~47.5 %.
  With T <= 4 the code crashes (``torch.stack`` of an empty list); we run the pairs that exist
  (and keep a one-frame clip whole).
* Stage 2 switches itself off when the attention is stable: the gather index is reset to ``None`` at
  every layer below L on every step, and only recomputed when the similarity is below 0.9, so a
  stable step attends to the FULL cache, the opposite of the paper's "reuse the pruned cache".
  The cache itself is never shrunk (no memory saving).
* The decode-time visual span is ``image_token_length = len(TTM output) - 1``: the last entry of
  TTM's output in the code's cache order is outside the ranked span and therefore always kept
  (``exclude_last_visual=True``). That order puts a pruned frame's kept tokens in the order
  ``topk(largest=False)`` returns them (ascending similarity), and with the code's windows the last
  frame emitted is always a pruned odd frame (the last pair's; for odd T the dropped frame's
  predecessor), so the spared entry is the last emitted frame's kept token MOST similar to its
  reference, not the positionally last visual token. ``last_visual="ttm_output"`` (default) spares
  that token, ``last_visual="position"`` the positionally last (with ``ttm=False`` both spare the
  positionally last, as the code's span would).
* ``dycoke_p`` is ``0.8`` in the lmms-eval wrapper and ``0.7`` in the README command; ``dycoke_k`` is
  ``0.3`` in ``builder.py`` and ``0.7`` in the wrapper and README. We use the README's 0.7 / 0.7.

The paper's description is available as options: ``windows="paper"`` prunes every complete or
partial window the same way and keeps an odd last frame; ``stable_step="reuse_pruned"`` keeps using
the last pruned set while the attention is stable.

Budgets (``for_budget``): only TTM changes what prefill sees, so ``"input"``, ``"layer-average"``
and ``"flops"`` all set ``k`` so that the exact TTM retention for the model's ``T`` frames and ``P``
tokens per frame is the target (``int((1 - k) P)`` tokens in every pruned frame). The reachable
minimum is the share of frames TTM keeps whole (about 25 %, 9/32 = 28 % with the code's windows at
T = 32); below it ``k = 1`` and a warning. ``p`` and ``L`` keep their defaults: the decode-visible
ratio is then about ``(1 - p)`` of the prefill retention.

Where we differ, and why:

* Token order after TTM. The code concatenates each pruned frame's kept tokens in ascending-
  similarity order (``frame2_tokens[topk(..., largest=False).indices]``); ours keeps them in spatial
  order. The kept set is the same, but with the code's contiguous positions
  (``position_policy="reindex"``) a pruned frame's kept tokens get its positions in a different
  assignment (and a different causal order among themselves), so RoPE positions, and hence the
  prefill outputs, differ from the code's; only whole frames (spatial in both) match position for
  position.
* Kept count per pruned frame. The code floors ``int((1 - k) * P)`` in floating point; ours adds
  1e-6 before the floor (``ttm_keep_count``), so where ``(1 - k) * P`` lands a rounding error below
  an integer ours keeps one more token per pruned frame: ``for_budget`` sets ``k = 1 - m / P``,
  and at P = 196 the code would keep ``m - 1`` for 38 of the 197 counts m (m = 1, 3, 5, 7, 10, ...);
  the README's k = 0.7 (58 tokens) is not among them. We keep the tolerance so that ``for_budget``'s
  count is the count kept.
* Nothing is hard-coded: the visual span, frames and tokens per frame come from the token layout,
  not from ``image_token_start_index = 14`` and 196 tokens per frame.
* The previous step's attention lives in per-sample memory; the official code keeps it on the
  model config across samples (a stale comparison on a new sample's first decode step).
* Attention rows are computed from q/k (no eager attention in every layer, no broken FA2 path,
  DyCoke issue #11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field

from prune_bench.core.context import DecodeContext, StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenKind, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig, warn_budget
from prune_bench.strategies.common.temporal import frame_grid_index

KEEP_WHOLE, DROP_WHOLE = -1, -2
VISUAL_SOURCES_KEY = "dycoke.visual_sources"
PREVIOUS_ATTENTION_KEY = "dycoke.previous_attention"
PRUNED_SET_KEY = "dycoke.pruned_set"
LAST_EMITTED_KEY = "dycoke.last_emitted_source"


class DyCokeConfig(StrategyConfig):
    k: float = Field(
        0.7, ge=0, le=1, description="TTM merging ratio: share of a pruned frame's tokens removed (dycoke_k)"
    )
    ttm: bool = Field(True, description="stage 1: token temporal merging before the LLM")
    windows: Literal["code", "paper"] = Field(
        "code", description="'code': the official windows (odd last frame dropped); 'paper': all windows"
    )
    decode_pruning: bool = Field(True, description="stage 2: dynamic KV-cache pruning while decoding")
    layer: int = Field(
        3, ge=1, description="L: layers >= L attend to the pruned cache, ranked at layer L-1 (dycoke_l)"
    )
    p: float = Field(0.7, ge=0, le=1, description="share of visual cache entries pruned at decode (dycoke_p)")
    similarity_threshold: float = Field(
        0.9, description="re-prune when the attention's cosine to the previous step is below this"
    )
    stable_step: Literal["full_cache", "reuse_pruned"] = Field(
        "full_cache", description="stable attention: the full cache (code) or the last pruned set (paper)"
    )
    exclude_last_visual: bool = Field(
        True, description="the code's span is one short: the last visual token is never pruned at decode"
    )
    last_visual: Literal["ttm_output", "position"] = Field(
        "ttm_output",
        description="which token exclude_last_visual spares: the last of TTM's output in the code's order "
        "(a pruned frame's kept tokens by ascending similarity) or the positionally last",
    )
    position_policy: PositionPolicy = Field(
        "reindex", description="positions after TTM (the code: contiguous)"
    )


def ttm_reference_frames(num_frames: int, windows: Literal["code", "paper"]) -> torch.Tensor:
    """Per frame: the frame it is compared with, or ``KEEP_WHOLE`` / ``DROP_WHOLE``."""
    t = torch.arange(num_frames)
    ref = torch.full((num_frames,), KEEP_WHOLE, dtype=torch.long)
    if num_frames <= 1:
        return ref
    odd = t % 2 == 1
    ref[odd] = t[odd] - 1
    second = t % 4 == 2
    if windows == "code":
        second &= t < num_frames - 2  # range(0, T - 4, 4) leaves the last window's frame i+2 whole
        if num_frames % 2 == 1:
            ref[num_frames - 1] = DROP_WHOLE  # belongs to no pair (range(0, T - 1, 2))
    ref[second] = t[second] - 2
    return ref


def ttm_keep_count(tokens_per_frame: int, k: float) -> int:
    """``int((1 - k) * P)`` with a 1e-6 tolerance the code does not have: where ``(1 - k) * P`` is a
    rounding error below an integer this keeps that integer, the code one token fewer."""
    return int((1.0 - k) * tokens_per_frame + 1e-6)


def ttm_keep_mask(feats: torch.Tensor, k: float, windows: Literal["code", "paper"]) -> torch.Tensor:
    """``[T, P]`` mask of the tokens TTM keeps, from the frames' features ``[T, P, D]``."""
    frames, per_frame, _ = feats.shape
    ref = ttm_reference_frames(frames, windows).to(feats.device)
    keep = (ref == KEEP_WHOLE)[:, None].expand(frames, per_frame).clone()
    pruned = torch.nonzero(ref >= 0).flatten()
    m = ttm_keep_count(per_frame, k)
    if pruned.numel() and m > 0:
        sim = F.cosine_similarity(feats[pruned].float(), feats[ref[pruned]].float(), dim=-1)  # [Q, P]
        least_similar = sim.topk(m, dim=1, largest=False).indices
        keep[pruned] = keep[pruned].scatter(1, least_similar, True)
    return keep


def ttm_last_emitted(feats: torch.Tensor, keep: torch.Tensor, windows: Literal["code", "paper"]) -> int:
    """Flat index (into ``[T * P]``) of the last token of TTM's output in the official code's order:
    frame after frame, a whole frame in spatial order, a pruned frame's kept tokens as
    ``topk(largest=False)`` returns them (ascending similarity to its reference frame), so the last
    one is its kept token MOST similar to the reference."""
    frames, per_frame, _ = feats.shape
    ref = ttm_reference_frames(frames, windows)
    last = int(torch.nonzero(keep.any(dim=1)).max())
    kept = torch.nonzero(keep[last]).flatten()
    if int(ref[last]) < 0:
        return last * per_frame + int(kept[-1])
    sim = F.cosine_similarity(feats[last].float(), feats[int(ref[last])].float(), dim=-1)
    return last * per_frame + int(kept[sim[kept].argmax()])


def ttm_frame_counts(num_frames: int, windows: Literal["code", "paper"]) -> tuple[int, int]:
    """(frames TTM keeps whole, frames it prunes against a reference frame); the rest are dropped."""
    ref = ttm_reference_frames(num_frames, windows)
    return int((ref == KEEP_WHOLE).sum()), int((ref >= 0).sum())


def ttm_retention(
    num_frames: int, tokens_per_frame: int, k: float, windows: Literal["code", "paper"]
) -> float:
    """The share of visual tokens TTM keeps at pruning ratio ``k``."""
    whole, pruned = ttm_frame_counts(num_frames, windows)
    m = ttm_keep_count(tokens_per_frame, k)
    return (whole * tokens_per_frame + pruned * m) / (num_frames * tokens_per_frame)


class DyCoke(Strategy):
    name = "dycoke"
    summary = "temporal token merging in 4-frame windows + dynamic decode-time KV pruning (arXiv 2411.15024)"
    Config = DyCokeConfig
    config: DyCokeConfig
    # w/o TTM is the paper's ablation too, but it cannot meet a prefill budget, so it is not listed.
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "w/o decode KV pruning": {"decode_pruning": False},
        "paper's TTM windows": {"windows": "paper"},
        "stable step reuses pruned set": {"stable_step": "reuse_pruned"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        probe = cast(DyCokeConfig, cls.make_config(**options))
        frames, per_frame = model.num_frames, model.tokens_per_frame
        whole, pruned = ttm_frame_counts(frames, probe.windows)
        if pruned == 0:
            warn_budget(cls.name, keep, whole / frames, f"TTM prunes no frame of a {frames}-frame clip")
            return cls(config=probe)
        m = round((keep * frames * per_frame - whole * per_frame) / pruned)
        k = 1.0 - min(max(m, 0), per_frame) / per_frame
        if m < 0 or m > per_frame:
            reachable = ttm_retention(frames, per_frame, k, probe.windows)
            warn_budget(cls.name, keep, reachable, "TTM keeps its reference frames whole")
        return cls(config=probe.model_copy(update={"k": k}))

    # ------------------------------------------------------------------------------- stage 1
    def temporal_merge(self, state: TokenState, ctx: StageContext) -> TokenState:
        grid = frame_grid_index(state)  # [T, P]
        keep = torch.ones(len(state), dtype=torch.bool, device=state.device)
        feats = state.hidden[grid]
        frame_keep = ttm_keep_mask(feats, self.config.k, self.config.windows)
        keep[grid.flatten()] = frame_keep.flatten()
        out = state.keep_mask(keep)
        ctx.memory[VISUAL_SOURCES_KEY] = out.source[out.is_visual]
        if self.config.exclude_last_visual and self.config.last_visual == "ttm_output" and frame_keep.any():
            # one host read per sample, not per token: the cache entry the code's span leaves out
            last = ttm_last_emitted(feats, frame_keep, self.config.windows)
            ctx.memory[LAST_EMITTED_KEY] = state.source[grid.flatten()[last]]
        return out

    # ------------------------------------------------------------------------------- stage 2
    def decode_prune(self, ctx: DecodeContext) -> torch.Tensor | None:
        cfg = self.config
        layout = ctx.cache_layout
        visual = layout.kind == TokenKind.VISUAL
        alive = ctx.memory.get(VISUAL_SOURCES_KEY)
        if alive is not None:  # mask mode caches every token; rank only those TTM kept
            visual &= torch.isin(layout.source, alive)
        index = torch.nonzero(visual).flatten()
        spared = ctx.memory.get(LAST_EMITTED_KEY)
        if not cfg.exclude_last_visual:
            always, ranked = index[:0], index
        elif spared is not None:  # the last entry of TTM's output in the code's cache order
            is_spared = layout.source[index] == spared
            always, ranked = index[is_spared], index[~is_spared]
        else:  # positionally last (also what the code spares when TTM is off)
            always, ranked = index[-1:], index[:-1]
        attention = ctx.attention()[ranked].float()
        previous = ctx.memory.get(PREVIOUS_ATTENTION_KEY)
        ctx.memory[PREVIOUS_ATTENTION_KEY] = attention
        stable = (
            previous is not None
            and previous.shape == attention.shape
            and float(F.cosine_similarity(attention, previous, dim=0)) >= cfg.similarity_threshold
        )
        if stable:
            return ctx.memory.get(PRUNED_SET_KEY) if cfg.stable_step == "reuse_pruned" else None
        top = attention.topk(int(ranked.numel() * (1 - cfg.p)), sorted=False).indices
        chosen = torch.cat([layout.source[ranked[top]], layout.source[always]])
        ctx.memory[PRUNED_SET_KEY] = chosen
        return chosen

    def stages(self, model: ModelInfo) -> list[Stage]:
        cfg = self.config
        out = []
        if cfg.ttm:
            out.append(Stage("dycoke.ttm", "frame", self.temporal_merge, position_policy=cfg.position_policy))
        if cfg.decode_pruning:
            layer = min(cfg.layer, model.num_layers - 1)
            out.append(Stage("dycoke.kv_prune", "decode", self.decode_prune, layer=layer))
        return out


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(DyCoke)
