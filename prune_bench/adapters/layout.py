"""The LLM input of one prompt: video tokens spliced into the prompt's embeddings, and each token's
layout (kind, frame, row, col, position) read from the input ids and the grid the vision side gave.

Every adapter's ``encode_video`` returns :class:`VideoTokens`; ``Adapter.encode_ids`` splices them into
the prompt with :func:`splice_video` and builds the :class:`TokenState` with :func:`video_layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from prune_bench.core.context import VisionAttention
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.errors import UserError


@dataclass
class VideoTokens:
    """What the vision side made of one video, ready to be spliced into a prompt.

    :param embeds: ``[n, D]`` the LLM tokens of the video in prompt order: ``frames x rows x cols``
        visual tokens row-major, then, with ``newline``, one newline token closing the video.
    :param grid: ``(rows, cols)`` of one layout frame (for Qwen2-VL, a merged frame pair).
    :param frames: the input frames the video had.
    :param newline: whether the last token of ``embeds`` is a newline token (LLaVA-OneVision).
    :param vision: the lazily computed vision-tower attention, when it was captured.
    :param thw: ``[1, 3]`` the (temporal, height, width) patch grid, for positions that depend on it
        (Qwen's M-RoPE); None elsewhere.
    """

    embeds: torch.Tensor
    grid: tuple[int, int]
    frames: int
    newline: bool = False
    vision: Callable[[], VisionAttention] | None = None
    thw: torch.Tensor | None = None


def splice_video(
    embed_tokens: nn.Module, input_ids: torch.Tensor, video_token_id: int, video: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt embeddings with ``video`` in place of the ``video_token_id`` placeholders, the
    placeholders' indices); a placeholder count that differs from the video's tokens is a UserError."""
    embeds = embed_tokens(input_ids)
    slots = torch.nonzero(input_ids == video_token_id).flatten()
    if slots.numel() != video.shape[0]:
        raise UserError(
            f"prompt has {slots.numel()} video placeholders but the video gives {video.shape[0]} tokens"
        )
    return embeds.index_copy(0, slots, video.to(embeds.dtype)), slots


def video_layout(
    hidden: torch.Tensor,
    slots: torch.Tensor,
    grid: tuple[int, int],
    *,
    newline: bool = False,
    position: torch.Tensor | None = None,
) -> TokenState:
    """The unpruned state of a prompt whose video tokens sit at ``slots``: visual tokens numbered
    (frame, row, col) over frames of ``rows x cols`` in order, the last slot a newline token when
    ``newline``, every other token text; ``position`` defaults to ``0..N-1``."""
    n, device = hidden.shape[0], hidden.device
    kind = torch.full((n,), int(TokenKind.TEXT), dtype=torch.int8, device=device)
    frame = torch.full((n,), -1, dtype=torch.long, device=device)
    row, col = frame.clone(), frame.clone()
    visual = slots[:-1] if newline else slots
    kind[visual] = int(TokenKind.VISUAL)
    if newline:
        kind[slots[-1]] = int(TokenKind.NEWLINE)
    rows, cols = grid
    local = torch.arange(visual.numel(), device=device)
    frame[visual] = local // (rows * cols)
    row[visual] = (local % (rows * cols)) // cols
    col[visual] = local % cols
    return TokenState.from_layout(hidden, kind, frame, row, col, position=position)
