"""The shared keep helpers: indices and boolean masks over the visual tokens keep the same tokens."""

from __future__ import annotations

import torch

from prune_bench.core.state import TokenKind, TokenState
from prune_bench.strategies.common.select import keep_visual_subset


def _state() -> TokenState:
    # text, 6 visual tokens in two frames, text
    kind = torch.tensor([0, 1, 1, 1, 1, 1, 1, 0], dtype=torch.int8) * int(TokenKind.VISUAL)
    frame = torch.tensor([-1, 0, 0, 0, 1, 1, 1, -1])
    col = torch.where(frame >= 0, torch.tensor([0, 0, 1, 2, 0, 1, 2, 0]), frame)
    row = torch.where(frame >= 0, torch.zeros(8, dtype=torch.long), frame)
    return TokenState.from_layout(torch.randn(8, 4), kind, frame, row, col)


def test_a_visual_mask_keeps_what_the_same_indices_keep_and_every_text_token() -> None:
    state = _state()
    by_index = keep_visual_subset(state, torch.tensor([4, 0, 2]))  # any order
    by_mask = keep_visual_subset(state, torch.tensor([True, False, True, False, True, False]))
    assert by_index.source.tolist() == by_mask.source.tolist() == [0, 1, 3, 5, 7]
    assert torch.equal(by_index.hidden, by_mask.hidden)
    assert torch.equal(by_mask.hidden, state.hidden[[0, 1, 3, 5, 7]])
    assert by_mask.position.tolist() == state.position[..., [0, 1, 3, 5, 7]].tolist()


def test_keep_mask_keeps_tokens_in_their_order() -> None:
    state = _state()
    kept = state.keep_mask(torch.tensor([1, 0, 0, 1, 1, 0, 0, 1], dtype=torch.bool))
    assert kept.source.tolist() == [0, 3, 4, 7]
    assert torch.equal(kept.hidden, state.hidden[[0, 3, 4, 7]])
