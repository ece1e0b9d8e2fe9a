from __future__ import annotations

import math

import pytest
import torch

from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.vispruner import VisPruner, remove_duplicates, vispruner_keep_mask
from prune_bench.testing import assert_drop_equals_mask


def _features() -> torch.Tensor:
    e1, e2, e3 = torch.eye(3)
    # t0 duplicates t1; t3 is half-way between t1 and a new direction; t2 is unique
    return torch.stack([e1, e1, e2, (e1 + e3) / math.sqrt(2)])[None]


def test_matching_removes_the_most_duplicated_a_tokens_round_by_round():
    residual = torch.tensor([[0, 1, 2, 3]])
    # round 1: A = {0, 2}, B = {1, 3}; scores 0: 1.0, 2: 0 -> drop 0; order [2, 1, 3]
    # round 2: A = {2, 3}, B = {1}; scores 2: 0, 3: .71 -> drop 3; order [2, 1]
    assert remove_duplicates(_features(), residual, keep=2, step=1).tolist() == [[2, 1]]


def test_a_round_whose_quota_exceeds_a_drops_all_of_a_where_the_code_stops_with_an_error():
    residual = torch.tensor([[0, 1, 2, 3]])
    # r = min(8, 4 - 1) = 3 > R // 2 = 2 (the code's expand(-1, R // 2 - r) fails): all of A goes,
    # B = {1, 3} remains; next round: A = {1}, B = {3}, r = 1 -> drop 1
    assert remove_duplicates(_features(), residual, keep=1, step=8).tolist() == [[3]]
    assert remove_duplicates(_features(), residual, keep=2, step=8).tolist() == [[1, 3]]


@pytest.mark.parametrize(("candidates", "keep"), [(193, 1), (149, 16), (10, 1), (9, 2), (31, 3)])
def test_odd_residuals_and_oversized_quotas_end_with_exactly_the_diverse_count(candidates, keep):
    # odd R (the code's index shapes [B, R // 2 - r] and [B, ceil(R / 2) - r] do not broadcast) and
    # quotas above R // 2 (a negative expand) stop the official code; ours leaves `keep` per frame
    g = torch.Generator().manual_seed(candidates)
    features = torch.randn(2, 200, 5, generator=g)
    residual = torch.stack([torch.randperm(200, generator=g)[:candidates] for _ in range(2)])
    out = remove_duplicates(features, residual, keep=keep, step=8)
    assert out.shape == (2, keep)
    assert all(
        set(row.tolist()) <= set(res.tolist()) and len(set(row.tolist())) == keep
        for row, res in zip(out, residual, strict=True)
    )


def test_keep_mask_is_important_by_attention_plus_diverse_rest():
    attention = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.9]])  # token 4 is the important one
    features = torch.cat([_features(), torch.ones(1, 1, 3)], dim=1)
    # residual in decreasing attention: [3, 2, 1, 0]; A = {3, 1}, B = {2, 0}: 1 duplicates 0 -> drop 1
    keep = vispruner_keep_mask(attention, features, important=1, diverse=3, step=1)
    assert keep[0].tolist() == [True, False, True, True, True]
    only = vispruner_keep_mask(attention, features, important=2, diverse=0)
    assert only[0].tolist() == [False, False, False, True, True]


@pytest.mark.parametrize(
    "options", [{}, {"important_ratio": 0.0}, {"similarity": "keys"}, {"position_policy": "keep"}]
)
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(VisPruner.for_budget(0.5, "input", info, **options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


@pytest.mark.parametrize("unit", ["input", "layer-average", "flops"])
def test_retention_is_tokens_per_frame_and_text_is_untouched(tiny_adapter, tiny_sample, unit):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = VisPruner.for_budget(0.5, unit, info)
    assert strategy.config.visual_token_num == round(0.5 * info.tokens_per_frame)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    result = tiny_adapter.run(sample, plan)
    assert result.input_retention == pytest.approx(0.5)
    assert result.layer_average_retention == pytest.approx(0.5)
    pre = tiny_adapter.runner.prefill(sample.state, plan, vision=sample.vision)
    full = sample.state
    text = full.source[full.kind != TokenKind.VISUAL]
    assert torch.equal(pre.state.source[pre.state.kind != TokenKind.VISUAL], text)
    assert torch.equal(pre.state.position, torch.arange(len(pre.state)))  # re-indexed, like the splice


def test_budget_below_one_token_per_frame_warns():
    info = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    assert VisPruner.for_budget(0.1, "input", info).config.visual_token_num == 20
    with pytest.warns(BudgetWarning):
        assert VisPruner.for_budget(0.001, "input", info).config.visual_token_num == 1


@pytest.mark.parametrize(
    "important, diverse, step", [(10, 5, 8), (0, 20, 8), (15, 0, 8), (3, 17, 1), (1, 22, 3)]
)
def test_every_frame_keeps_exactly_important_plus_diverse(important, diverse, step):
    g = torch.Generator().manual_seed(important + diverse)
    attention, features = torch.rand(5, 25, generator=g), torch.randn(5, 25, 6, generator=g)
    features[:, 7] = features[:, 3]  # duplicates
    keep = vispruner_keep_mask(attention, features, important, diverse, step)
    assert keep.sum(dim=1).tolist() == [important + diverse] * 5
