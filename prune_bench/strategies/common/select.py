"""Selection primitives shared by strategies: keep every non-visual token, choose among visual ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from prune_bench.core.state import TokenState

if TYPE_CHECKING:
    from prune_bench.core.context import StageContext


def known_visual_index(state: TokenState, count: int) -> torch.Tensor:
    """``state.visual_index`` when the caller knows there are ``count`` visual tokens: the same indices
    (the visual tokens first, in order), without the host sync of ``nonzero``."""
    return torch.argsort((~state.is_visual).to(torch.uint8), stable=True)[:count]


def visual_index_after(state: TokenState, left: tuple[int, int] | None) -> torch.Tensor:
    """``state.visual_index``, read back only when needed: ``left`` is ``(tokens, visual tokens)`` as an
    earlier stage of the strategy left them (e.g. kept in ``ctx.memory``); while the state still has
    that many tokens, nothing was removed in between and the visual count is known."""
    if left is not None and left[0] == len(state):
        return known_visual_index(state, left[1])
    return state.visual_index


def keep_visual_subset(
    state: TokenState,
    visual_keep: torch.Tensor,
    *,
    visual_index: torch.Tensor | None = None,
    kept: int | None = None,
) -> TokenState:
    """Keep the visual tokens at ``visual_keep`` (indices into ``state.visual_index``, or a boolean mask
    over them, which saves turning a mask into indices and back) and all others.

    ``visual_index``: ``state.visual_index`` when the caller has it (each computation is a host sync);
    ``kept``: how many visual tokens ``visual_keep`` keeps (its true entries, or its indices when they
    are distinct), when the caller knows, which saves the sync for the count."""
    vis = state.visual_index if visual_index is None else visual_index
    keep = torch.ones(len(state), dtype=torch.bool, device=state.device)
    if visual_keep.dtype == torch.bool:
        keep[vis] = visual_keep.to(state.device)
    else:
        keep[vis] = False
        keep[vis[visual_keep.to(state.device)]] = True
    return state.keep_mask(keep, None if kept is None else len(state) - vis.numel() + kept)


def topk_visual(
    state: TokenState, scores: torch.Tensor, k: int, *, visual_index: torch.Tensor | None = None
) -> TokenState:
    """Keep the ``k`` visual tokens with the highest ``scores`` (one score per visual token);
    ``visual_index`` as in :func:`keep_visual_subset`."""
    k = max(0, min(int(k), scores.numel()))
    top = torch.topk(scores.float(), k, sorted=False).indices
    return keep_visual_subset(state, top, visual_index=visual_index, kept=k)


def budget_count(n: int, keep: float) -> int:
    """Tokens kept out of ``n`` at ratio ``keep``: rounded, at least one when ``n > 0``."""
    return max(1, round(n * keep)) if n else 0


def last_token_visual_attention(
    state: TokenState,
    ctx: StageContext,
    num_queries: int = 1,
    *,
    visual_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of the last prompt token(s) to each visual token at the stage's layer, ``[n_visual]``.

    Mean over heads (and over the ``num_queries`` last tokens), taken from the softmax over the
    whole sequence as the layer computes it (FastV, PyramidDrop, FrameFusion rank by this);
    ``visual_index`` as in :func:`keep_visual_subset`.
    """
    rows = ctx.last_token_attention(state, num_queries)  # [H, q, N]
    return rows.mean(dim=(0, 1))[state.visual_index if visual_index is None else visual_index]


def topk_per_frame(state: TokenState, scores: torch.Tensor, k: int | torch.Tensor) -> TokenState:
    """Keep the ``k`` visual tokens with the highest ``scores`` in every frame (one score per visual
    token; ``k`` one count for all frames or a ``[num_frames]`` tensor of counts), vectorised: no loop
    over frames. A frame with fewer than ``k`` visual tokens keeps them all."""
    vis = state.visual_index
    if vis.numel() == 0:
        return state
    frame = state.frame[vis].long()
    # descending score, then (stably) by frame: each frame's tokens in score order, frame after frame
    by_score = torch.argsort(scores.float(), descending=True, stable=True)
    order = by_score[torch.argsort(frame[by_score], stable=True)]
    frames_sorted = frame[order]
    first = torch.searchsorted(frames_sorted, frames_sorted, right=False)
    rank = torch.arange(order.numel(), device=order.device) - first
    limit = k[frames_sorted].to(rank.device) if isinstance(k, torch.Tensor) else k
    chosen = torch.zeros(vis.numel(), dtype=torch.bool, device=order.device)
    chosen[order[rank < limit]] = True
    return keep_visual_subset(state, chosen)
