"""The token sequence as the LLM sees it, with each token's layout and original position.

A :class:`TokenState` is what every pruning stage receives and returns. It holds the hidden states
of the tokens still alive and, per token, what the stage needs to reason about video structure:
its kind (text, visual, newline), frame, row, column and segment, its ORIGINAL position id and its
index in the unpruned sequence. Stages never renumber positions themselves: :meth:`TokenState.keep`
and :meth:`TokenState.merge` carry the original ids along, and only the ``reindex`` position policy
(asked for by a stage, applied by :meth:`TokenState.reindexed`) renumbers them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import IntEnum
from typing import Any, Literal

import torch

PositionPolicy = Literal["keep", "reindex"]


class TokenKind(IntEnum):
    """What a token is; stored per token as an int8 tensor."""

    TEXT = 0
    VISUAL = 1
    NEWLINE = 2


_PER_TOKEN = ("hidden", "kind", "frame", "row", "col", "segment", "position", "source", "weight")


@dataclass(frozen=True)
class TokenState:
    """The alive tokens of one sample (batch size 1), in their original order.

    ``position`` is ``[N]`` for 1-D RoPE or ``[3, N]`` for Qwen2-VL's M-RoPE; every other per-token
    tensor is ``[N]``. ``source`` is each token's index in the unpruned prompt, which is how mask
    mode maps a pruned state back onto the full sequence. ``weight`` counts how many original
    tokens a token stands for after merges. ``next_position`` is where decoding continues.
    """

    hidden: torch.Tensor
    kind: torch.Tensor
    frame: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    segment: torch.Tensor
    position: torch.Tensor
    source: torch.Tensor
    weight: torch.Tensor
    next_position: int

    @classmethod
    def from_layout(
        cls,
        hidden: torch.Tensor,
        kind: torch.Tensor,
        frame: torch.Tensor,
        row: torch.Tensor,
        col: torch.Tensor,
        position: torch.Tensor | None = None,
    ) -> TokenState:
        """Build the state of an unpruned prompt; positions default to ``0..N-1``."""
        n, device = hidden.shape[0], hidden.device
        source = torch.arange(n, device=device)
        if position is None:
            position = source.clone()
        return cls(
            hidden=hidden,
            kind=kind.to(device=device, dtype=torch.int8),
            frame=frame.to(device),
            row=row.to(device),
            col=col.to(device),
            segment=torch.full((n,), -1, dtype=torch.long, device=device),
            position=position.to(device),
            source=source,
            weight=torch.ones(n, dtype=torch.float32, device=device),
            next_position=int(position.max().item()) + 1 if n else 0,
        )

    # ----------------------------------------------------------------------------------- views
    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    @property
    def device(self) -> torch.device:
        return self.hidden.device

    @property
    def is_visual(self) -> torch.Tensor:
        """Boolean mask of the visual tokens (newline tokens are not visual)."""
        return self.kind == TokenKind.VISUAL

    @property
    def visual_index(self) -> torch.Tensor:
        """Indices (into this state) of the visual tokens, in order."""
        return torch.nonzero(self.is_visual, as_tuple=False).flatten()

    @property
    def num_visual(self) -> int:
        return int(self.is_visual.sum().item())

    @property
    def num_frames(self) -> int:
        frames = self.frame[self.is_visual]
        return int(frames.max().item()) + 1 if frames.numel() else 0

    @property
    def frame_grid(self) -> tuple[int, int]:
        """(rows, cols) of the per-frame token grid, read from the layout, not assumed."""
        vis = self.is_visual
        if not bool(vis.any()):
            return (0, 0)
        return (int(self.row[vis].max().item()) + 1, int(self.col[vis].max().item()) + 1)

    def with_hidden(self, hidden: torch.Tensor) -> TokenState:
        """The same tokens with new hidden states (e.g. after a decoder layer)."""
        if hidden.shape[0] != len(self):
            raise ValueError(f"hidden has {hidden.shape[0]} rows for {len(self)} tokens")
        return replace(self, hidden=hidden)

    def with_segments(self, segment: torch.Tensor) -> TokenState:
        return replace(self, segment=segment.to(self.device, torch.long))

    # ------------------------------------------------------------------------------ operations
    def keep(self, indices: torch.Tensor) -> TokenState:
        """Keep the tokens at ``indices`` (into this state); order is restored to the original one.

        Positions are carried unchanged: pruning never renumbers (see :meth:`reindexed`).
        """
        idx = torch.unique(indices.to(self.device, torch.long))  # sorted, deduplicated
        return self._gather(idx, self.hidden.index_select(0, idx))

    def keep_mask(self, mask: torch.Tensor, kept: int | None = None) -> TokenState:
        """Keep the tokens where ``mask`` is true: one host sync, for the count, unless the caller knows
        it (``kept``, how many are true), which saves it."""
        mask = mask.to(self.device)
        if kept is None:
            idx = torch.nonzero(mask, as_tuple=False).flatten()  # sorted and distinct already
        else:  # the true entries first, each group in index order: the same indices, no sync
            idx = torch.argsort(mask.to(torch.uint8), descending=True, stable=True)[:kept]
        return self._gather(idx, self.hidden.index_select(0, idx))

    def merge(
        self,
        target: torch.Tensor,
        weighting: Literal["count", "uniform"] = "count",
        kept: int | None = None,
    ) -> TokenState:
        """Merge each token into ``target[i]`` (an index into this state; ``target[i] == i`` keeps it).

        Every group's representative keeps its position and layout; its hidden state becomes the
        mean of the group, weighted by how many original tokens each member stands for
        (``"count"``) or unweighted (``"uniform"``). Targets must be representatives themselves.
        ``kept``: how many representatives there are, when the caller knows (saves a host sync).
        """
        target = target.to(self.device, torch.long)
        n = len(self)
        is_rep = target == torch.arange(n, device=self.device)
        if not bool(is_rep[target].all()):
            raise ValueError("merge targets must point at tokens that are their own target")
        w = self.weight if weighting == "count" else torch.ones_like(self.weight)
        acc = torch.zeros(self.hidden.shape, dtype=torch.float32, device=self.device)
        acc.index_add_(0, target, self.hidden.float() * w[:, None])
        total_w = torch.zeros(n, dtype=torch.float32, device=self.device).index_add_(0, target, w)
        count = torch.zeros(n, dtype=torch.float32, device=self.device).index_add_(0, target, self.weight)
        if kept is None:
            idx = torch.nonzero(is_rep, as_tuple=False).flatten()
        else:  # the representatives first, in index order: the same indices, no sync
            idx = torch.argsort(is_rep.to(torch.uint8), descending=True, stable=True)[:kept]
        hidden = (acc[idx] / total_w[idx, None]).to(self.hidden.dtype)
        merged = self._gather(idx, hidden)
        return replace(merged, weight=count[idx])

    def reindexed(self) -> TokenState:
        """Renumber positions contiguously (the ``reindex`` policy some pre-LLM methods use)."""
        n = len(self)
        pos = torch.arange(n, device=self.device)
        if self.position.dim() == 2:
            # M-RoPE: shift every axis by the same amount so relative layout inside a frame survives.
            shift = self.position[0] - pos
            pos = self.position - shift[None, :]
        # 1-D positions are 0..n-1: only M-RoPE's shifted axes need reading back
        after = n if pos.dim() == 1 else (int(pos.max().item()) + 1 if n else 0)
        return replace(self, position=pos, next_position=after)

    def _gather(self, idx: torch.Tensor, hidden: torch.Tensor) -> TokenState:
        values: dict[str, Any] = {}
        for f in fields(self):
            if f.name not in _PER_TOKEN or f.name == "hidden":
                continue
            t: torch.Tensor = getattr(self, f.name)
            values[f.name] = t.index_select(t.dim() - 1, idx)
        return replace(self, hidden=hidden, **values)
