from __future__ import annotations

import pytest
import torch

from prune_bench.core.context import StageContext, VisionAttention
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.visionzip import VisionZip, contextual_positions, split_budget, visionzip_assign
from prune_bench.testing import assert_drop_equals_mask


def _keys() -> torch.Tensor:
    # slot 3 points like slot 4, slot 5 like slot 1 (the contextual targets below)
    e1, e2, e3 = torch.eye(3)
    return torch.stack([e3, e1, e3, e2 + 0.1 * e1, e2, e1 + 0.2 * e2])


def test_assign_picks_dominant_by_attention_and_merges_the_rest_into_strided_targets():
    received = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.3, 0.05], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    second = _keys()
    second[2] = torch.tensor([1.0, 0.0, 0.0])
    keys = torch.stack([_keys(), second])
    assign = visionzip_assign(received, keys, dominant=2, contextual=2)
    # frame 0: dominant 0, 2; remaining 1,3,4,5; step 4//2=2 -> targets 1, 4; 3 -> 4, 5 -> 1
    assert assign[0].tolist() == [0, 1, 2, 4, 4, 1]
    # frame 1 (its own ranking): dominant 4, 5; remaining 0,1,2,3 -> targets 0 (e3), 2 (e1);
    # 1 (e1) and 3 (e2 + .1 e1) are closer to target 2
    assert assign[1].tolist() == [0, 2, 2, 2, 4, 5]
    no_context = visionzip_assign(received, keys, dominant=2, contextual=0)
    assert no_context[0].tolist() == [0, -1, 2, -1, -1, -1]


def test_split_is_the_authors_54_to_10():
    assert split_budget(64, 54 / 64) == (54, 10)
    assert split_budget(20, 54 / 64) == (16, 4)  # the HoliTom port's 10% setting on 196 tokens
    assert split_budget(50, 54 / 64) == (42, 8)


def _one_frame_state() -> TokenState:
    n = 2 + 6 + 1
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2:8] = int(TokenKind.VISUAL)
    kind[8] = int(TokenKind.NEWLINE)
    frame = torch.full((n,), -1)
    frame[2:8] = 0
    row, col = frame.clone(), frame.clone()
    row[2:8] = torch.arange(6) // 3
    col[2:8] = torch.arange(6) % 3
    hidden = torch.arange(n * 2, dtype=torch.float32).view(n, 2)
    return TokenState.from_layout(hidden, kind, frame, row, col)


def test_contextual_token_is_target_plus_mean_of_its_members_at_the_target_place():
    state = _one_frame_state()
    received = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.3, 0.05]])
    vision = VisionAttention(received=received, keys=_keys()[None])
    ctx = StageContext(
        hook="input", num_layers=4, generator=torch.Generator(), memory={}, _vision=lambda: vision
    )
    out = VisionZip(spatial_tokens=4, dominant_ratio=0.5).select(state, ctx)  # 2 dominant + 2 contextual
    assert out.source.tolist() == [0, 1, 2, 3, 4, 6, 8]  # slots 0,1,2,4 = state 2,3,4,6
    h = state.hidden
    by_source = dict(zip(out.source.tolist(), out.hidden, strict=True))
    torch.testing.assert_close(by_source[3], h[3] + h[7])  # slot 1 absorbs slot 5
    torch.testing.assert_close(by_source[6], h[6] + h[5])  # slot 4 absorbs slot 3
    torch.testing.assert_close(by_source[2], h[2])  # dominant tokens are untouched
    assert out.weight.tolist() == [1, 1, 1, 2, 1, 2, 1]
    mean = VisionZip(spatial_tokens=4, dominant_ratio=0.5, contextual_combine="mean").select(state, ctx)
    torch.testing.assert_close(mean.hidden[mean.source == 3][0], (h[3] + h[7]) / 2)


@pytest.mark.parametrize("options", [{}, {"contextual_combine": "mean"}, {"position_policy": "keep"}])
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(VisionZip.for_budget(0.5, "input", info, **options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


@pytest.mark.parametrize("unit", ["input", "layer-average", "flops"])
def test_retention_is_spatial_tokens_per_frame_and_text_is_untouched(tiny_adapter, tiny_sample, unit):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = VisionZip.for_budget(0.5, unit, info)
    assert strategy.config.spatial_tokens == round(0.5 * info.tokens_per_frame)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    result = tiny_adapter.run(sample, plan)
    assert result.input_retention == pytest.approx(0.5)
    assert result.layer_average_retention == pytest.approx(0.5)
    pre = tiny_adapter.runner.prefill(sample.state, plan, vision=sample.vision)
    full = sample.state
    text = full.source[full.kind != TokenKind.VISUAL]
    assert torch.equal(pre.state.source[pre.state.kind != TokenKind.VISUAL], text)
    assert torch.equal(pre.state.position, torch.arange(len(pre.state)))  # re-indexed, like the splice
    again = tiny_adapter.runner.prefill(sample.state, plan, vision=sample.vision)
    assert torch.equal(again.state.hidden, pre.state.hidden)


def test_budget_below_one_token_per_frame_warns():
    info = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    assert VisionZip.for_budget(0.1, "input", info).config.spatial_tokens == 20
    with pytest.warns(BudgetWarning):
        assert VisionZip.for_budget(0.001, "input", info).config.spatial_tokens == 1


@pytest.mark.parametrize("rest, contextual", [(146, 8), (10, 3), (5, 7), (9, 1), (1, 1)])
def test_contextual_positions_are_every_step_th_remaining_slot_and_the_rest(rest, contextual):
    targets, members = contextual_positions(rest, contextual)
    step = max(1, rest // contextual)
    assert targets == torch.arange(0, rest, step)[:contextual].tolist()
    assert sorted(targets + members) == list(range(rest)) and not set(targets) & set(members)
