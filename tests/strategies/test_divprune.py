from __future__ import annotations

import pytest
import torch

from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind
from prune_bench.strategies.common.diversity import cosine_distance_matrix, greedy_max_min_diversity
from prune_bench.strategies.divprune import DivPrune
from prune_bench.testing import prefill_and_decode


def _reference_greedy(x: torch.Tensor, k: int) -> list[int]:
    """The algorithm as written in the paper / official code: re-reduce over all picked rows."""
    d = cosine_distance_matrix(x)
    picks = [int(torch.argmax(torch.topk(d, 2, dim=0, largest=False).values[1]))]
    for _ in range(k - 1):
        picks.append(int(torch.argmax(d[picks].min(dim=0).values)))
    return picks


def test_hand_example_picks_the_isolated_token_then_the_farthest_ones():
    a, b, c = [1.0, 0.0], [0.99, 0.14], [0.0, 1.0]
    d, e = [-1.0, 0.0], [0.7, 0.7]
    x = torch.tensor([a, b, c, d, e])
    # nearest-neighbour distances: a,b ~0.01; c,e ~0.29; d 1.0 (to c) -> d first;
    # then a (distance 2 to d); then c (min(1, 1) = 1 beats e's min(1.71, 0.29) and b's 0.01)
    assert greedy_max_min_diversity(x, 3).tolist() == [3, 0, 2]


def test_matches_the_reference_greedy_on_random_tokens():
    x = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    assert greedy_max_min_diversity(x, 12).tolist() == _reference_greedy(x, 12)


def test_duplicate_tokens_match_the_reference_greedy_that_never_repicks():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 16, generator=g)
    x[10] = x[3]
    x[40] = x[3] * 2.0  # same direction: cosine distance 0 up to float error, possibly below 0
    d = cosine_distance_matrix(x)
    picks = [int(torch.argmax(torch.topk(d, 2, dim=0, largest=False).values[1]))]
    for _ in range(59):
        closest = d[picks].min(dim=0).values
        closest[picks] = -torch.inf
        picks.append(int(torch.argmax(closest)))
    assert greedy_max_min_diversity(x, 60).tolist() == picks


def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(DivPrune(ratio=0.3).stages(info), info.num_layers)
    pre_d, drop = prefill_and_decode(tiny_adapter, sample, plan, "drop", 3)
    pre_m, mask = prefill_and_decode(tiny_adapter, sample, plan, "mask", 3)
    for dl, ml in zip(drop, mask, strict=True):
        torch.testing.assert_close(dl, ml, atol=1e-4, rtol=1e-4)
    assert torch.equal(pre_d.state.source, pre_m.state.source)


@pytest.mark.parametrize("unit", ["input", "layer-average", "flops"])
def test_retention_text_positions_and_determinism(tiny_adapter, tiny_sample, unit):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(DivPrune.for_budget(0.25, unit, info).stages(info), info.num_layers)
    result = tiny_adapter.run(sample, plan)
    assert result.input_retention == pytest.approx(0.25)  # round(0.25 * 24) = 6
    assert result.layer_average_retention == pytest.approx(0.25)
    pre = tiny_adapter.runner.prefill(sample.state, plan)
    full = sample.state
    text = full.source[full.kind != TokenKind.VISUAL]
    assert torch.equal(pre.state.source[pre.state.kind != TokenKind.VISUAL], text)
    assert torch.equal(pre.state.position, torch.arange(len(pre.state)))
    assert torch.equal(tiny_adapter.runner.prefill(sample.state, plan).state.source, pre.state.source)


def test_a_non_finite_token_does_not_make_the_greedy_repeat_itself() -> None:
    features = torch.randn(10, 4, generator=torch.Generator().manual_seed(3))
    features[2] = float("nan")
    picks = greedy_max_min_diversity(features, 7)
    assert len(set(picks.tolist())) == 7
