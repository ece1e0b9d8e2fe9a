"""StageContext computes attention rows once per state, and again for a state with other hidden states."""

from __future__ import annotations

import torch

from prune_bench.core.context import StageContext
from prune_bench.core.state import TokenState


def test_attention_rows_are_cached_per_state_and_recomputed_for_new_hidden_states() -> None:
    calls: list[int] = []

    def rows(state: TokenState, q: int) -> torch.Tensor:
        calls.append(q)
        return state.hidden[-q:].sum(-1)

    ctx = StageContext("layer", 2, torch.Generator(), {}, layer=1, _attention=rows)
    n = 5
    kind = torch.zeros(n, dtype=torch.long)
    state = TokenState.from_layout(torch.randn(n, 3), kind, kind, kind, kind)
    first = ctx.last_token_attention(state)
    assert ctx.last_token_attention(state) is first and calls == [1]
    merged = state.with_hidden(state.hidden * 2)  # same tokens, same source, other hidden states
    assert torch.equal(ctx.last_token_attention(merged), first * 2) and calls == [1, 1]
