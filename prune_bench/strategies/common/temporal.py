"""Temporal structure of a video's tokens: same-position similarity and segments.

Both FrameFusion-style merging and HieraVid's segmentation compare each visual token with the
token at the same row and column of the previous frame; this is the one place that does it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prune_bench.core.state import TokenState


def frame_grid_index(state: TokenState) -> torch.Tensor:
    """``[T, P]`` index (into ``state``) of each visual token, from its frame/row/column layout.

    Requires a complete grid (every position of every frame present), as at the LLM input.
    """
    vis = state.visual_index
    frames = rows = cols = 0
    if vis.numel():  # what state.num_frames and state.frame_grid say, in one host read instead of seven
        last = torch.stack([state.frame[vis].max(), state.row[vis].max(), state.col[vis].max()]).tolist()
        frames, rows, cols = (int(v) + 1 for v in last)
    per_frame = rows * cols
    if vis.numel() != frames * per_frame:
        raise ValueError("previous-frame similarity needs every visual token of every frame (run it first)")
    slot = state.frame[vis] * per_frame + state.row[vis] * cols + state.col[vis]
    grid = torch.empty(frames * per_frame, dtype=torch.long, device=state.device)
    grid[slot] = vis
    return grid.view(frames, per_frame)


def previous_frame_similarity(hidden: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each token with the same position one frame earlier.

    :param hidden: ``[T, P, D]``. :returns: ``[T, P]`` float32; frame 0 has no predecessor: ``-inf``.
    """
    sim = F.cosine_similarity(hidden[1:].float(), hidden[:-1].float(), dim=-1)
    first = (
        torch.full_like(sim[:1], -torch.inf)
        if sim.numel()
        else hidden.new_full((1, hidden.shape[1]), -torch.inf).float()
    )
    out = torch.cat([first, sim])
    return out.masked_fill(torch.isnan(out), -torch.inf)


def segment_by_merge_ratio(similarity: torch.Tensor, threshold: float, beta: float) -> torch.Tensor:
    """Segment id per frame: a new segment starts where few tokens resemble the previous frame.

    ``m_t`` = fraction of frame t's tokens with similarity above ``threshold``; frame 0 opens
    segment 0 and frame t opens a new one when ``m_t < beta`` (HieraVid, following its code).
    """
    ratio = (similarity > threshold).float().mean(dim=1)
    starts = ratio < beta
    starts[0] = False
    return torch.cumsum(starts.long(), dim=0)


def run_start_targets(merged: torch.Tensor) -> torch.Tensor:
    """For a ``[T, P]`` mask of tokens merged into their previous-frame counterpart, the frame of
    the run each token collapses into: the latest frame ``<= t`` at that position not merged."""
    frames = torch.arange(merged.shape[0], device=merged.device)[:, None].expand_as(merged)
    start = torch.where(merged, torch.zeros_like(frames), frames)
    return torch.cummax(start, dim=0).values
