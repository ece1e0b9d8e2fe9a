from __future__ import annotations

import pytest
import torch

from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.strategies.framefusion import (
    IGNORE,
    FrameFusion,
    merge_into_predecessors,
    same_patch_similarity,
)
from prune_bench.testing import assert_drop_equals_mask


def _video_state(frames: torch.Tensor) -> TokenState:
    """``frames`` [T, P, D] with P = 2 positions in one row, one text token before and after."""
    t, p, d = frames.shape
    n = 1 + t * p + 1
    hidden = torch.zeros(n, d)
    hidden[1:-1] = frames.reshape(t * p, d)
    kind = torch.zeros(n, dtype=torch.int8)
    kind[1:-1] = int(TokenKind.VISUAL)
    frame, row, col = (torch.full((n,), -1) for _ in range(3))
    idx = torch.arange(t * p)
    frame[1:-1], row[1:-1], col[1:-1] = idx // p, torch.zeros_like(idx), idx % p
    return TokenState.from_layout(hidden, kind, frame, row, col)


A, B = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def test_similarity_is_to_the_same_position_one_frame_earlier_and_runs_merge_into_their_predecessor():
    # position 0: A, 2A, 3A (static); position 1: B, A, A (changes once)
    state = _video_state(torch.stack([torch.stack([A, B]), torch.stack([2 * A, A]), torch.stack([3 * A, A])]))
    order, sim = same_patch_similarity(state)
    assert order.tolist() == [1, 3, 5, 2, 4, 6]  # position 0 over frames, then position 1
    assert sim.tolist() == pytest.approx([IGNORE, 1.0, 1.0, IGNORE, 0.0, 1.0])
    out = merge_into_predecessors(state, order, sim >= 0.6)
    assert out.source.tolist() == [0, 1, 2, 4, 7]
    torch.testing.assert_close(out.hidden[1], 2 * A)  # mean of A, 2A, 3A at frame 0's place
    torch.testing.assert_close(out.hidden[3], A)  # frame 1's A absorbs frame 2's A
    assert out.weight.tolist() == [1, 3, 1, 2, 1]
    assert torch.equal(out.position, state.position[out.source])


def _ctx(memory: dict) -> object:
    from prune_bench.core.context import StageContext

    return StageContext(hook="layer", num_layers=4, generator=torch.Generator(), memory=memory, layer=0)


def test_a_round_above_the_budget_merges_only_the_most_similar_and_stops_both_steps():
    # 6 visual tokens, 3 of them similar to their predecessor (ratio 0.5)
    frames = torch.stack([torch.stack([A, B]), torch.stack([2 * A, A + 0.3 * B]), torch.stack([3 * A, A])])
    state = _video_state(frames)
    memory: dict = {}
    out = FrameFusion(cost=0.8).merge_before_layer0(state, _ctx(memory))
    # upper = 1 - 0.8 = 0.2 -> int(0.2 * 6) = 1 token merged: the most similar one (sim 1.0, first in order)
    assert out.num_visual == 5
    assert memory["framefusion"]["finish_merging"] and memory["framefusion"]["finish_pruning"]
    below = FrameFusion(cost=0.3).merge_before_layer0(state, _ctx(memory))
    # 3 of 6 similar (ratio 0.5 < upper 0.7): all merged, recorded, merging continues (0.5 >= 0.1)
    assert below.num_visual == 3
    assert memory["framefusion"]["sparsity"] == [0.5]
    assert not memory["framefusion"]["finish_merging"]


@pytest.mark.parametrize("threshold", [0.6, -1.0])
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, threshold):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(FrameFusion(cost=0.5, similarity_threshold=threshold).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


@pytest.mark.parametrize("keep", [0.3, 0.5])
@pytest.mark.parametrize("threshold", [0.6, 0.0])
def test_layer_average_meets_the_cost_text_and_positions_are_kept(tiny_adapter, tiny_sample, keep, threshold):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = FrameFusion.for_budget(keep, "layer-average", info, similarity_threshold=threshold)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    result = tiny_adapter.run(sample, plan)
    n = sample.state.num_visual
    # rounding of the pruned count (half a token), or int() of the merge bound (one token), for
    # every remaining half layer
    assert result.layer_average_retention == pytest.approx(keep, abs=1 / n + 1e-9)
    pre = tiny_adapter.runner.prefill(sample.state, plan)
    full = sample.state
    text = full.source[full.kind != TokenKind.VISUAL]
    assert torch.equal(pre.state.source[pre.state.kind != TokenKind.VISUAL], text)
    assert torch.equal(pre.state.position, full.position[pre.state.source])
    assert torch.equal(tiny_adapter.runner.prefill(sample.state, plan).state.source, pre.state.source)


def test_a_spent_budget_goes_on_merging_by_threshold_and_then_prunes_every_visual_token():
    # the official _compute_pruning_ratio raises "The cost is too small" once the rounds so far have
    # used the budget; ours goes on: the merge bound no longer binds, and the prune keeps nothing
    from prune_bench.core.context import StageContext

    frames = torch.stack([torch.stack([A, B]), torch.stack([2 * A, A + 0.3 * B]), torch.stack([3 * A, A])])
    state = _video_state(frames)
    spent = {"n_input": 6, "num_layers": 4, "halves": 0.3 * 6 * 2 * 4 + 1.0, "sparsity": [0.1]}
    strategy = FrameFusion(cost=0.3, ratio_lower_bound=0.0)
    memory = {"framefusion": {**spent, "finish_merging": False, "finish_pruning": False}}
    merged = strategy._merge_round(state, memory["framefusion"], remaining_halves=3)
    assert merged.num_visual == 3  # all 3 similar tokens (threshold), not a bounded top-k
    assert memory["framefusion"]["sparsity"] == [0.1, 0.5]
    assert not memory["framefusion"]["finish_merging"] and not memory["framefusion"]["finish_pruning"]
    memory["framefusion"]["finish_merging"] = True
    ctx = StageContext(
        hook="layer",
        num_layers=4,
        generator=torch.Generator(),
        memory=memory,
        layer=2,
        _attention=lambda s, q: torch.rand(1, q, len(s)),
    )
    pruned = strategy.after_attention(merged, ctx)
    assert pruned.num_visual == 0 and len(pruned) == 2  # the text stays
    assert memory["framefusion"]["finish_pruning"]
