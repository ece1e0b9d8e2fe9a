from __future__ import annotations

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.fastv import FastV
from prune_bench.testing import assert_drop_equals_mask


def _state(n_text_before: int = 2, n_visual: int = 6, n_text_after: int = 2) -> TokenState:
    n = n_text_before + n_visual + n_text_after
    kind = torch.zeros(n, dtype=torch.int8)
    kind[n_text_before : n_text_before + n_visual] = int(TokenKind.VISUAL)
    frame = torch.full((n,), -1)
    frame[n_text_before : n_text_before + n_visual] = torch.arange(n_visual) // 3
    row = torch.where(frame >= 0, torch.zeros(n, dtype=torch.long), frame)
    col = torch.where(frame >= 0, torch.arange(n) % 3, frame)
    return TokenState.from_layout(torch.randn(n, 4), kind, frame, row, col)


def _ctx_with_rows(rows: torch.Tensor) -> StageContext:
    return StageContext(
        hook="layer",
        num_layers=4,
        generator=torch.Generator(),
        memory={},
        layer=1,
        _attention=lambda st, q: rows,
    )


def test_top_k_uses_the_head_mean_of_the_last_token_row_globally_over_frames():
    state = _state()
    # two heads; visual tokens are indices 2..7 (frame 0: 2,3,4; frame 1: 5,6,7); text gets high mass
    head0 = torch.tensor([0.3, 0.0, 0.10, 0.00, 0.20, 0.05, 0.00, 0.15, 0.1, 0.1])
    head1 = torch.tensor([0.3, 0.0, 0.00, 0.30, 0.00, 0.05, 0.40, 0.05, 0.0, 0.1])
    rows = torch.stack([head0, head1])[:, None, :]  # [H=2, q=1, N=10]
    # head means of the visual tokens 2..7: 0.05, 0.15, 0.10, 0.05, 0.20, 0.10
    # keep=0.5 -> 3 tokens: 6 (0.20), 3 (0.15) and one of the tied 4 / 7 (0.10)
    rows[0, 0, 7] = 0.14  # break the tie: token 7 -> 0.095
    out = FastV(keep=0.5).attention_prune(state, _ctx_with_rows(rows))
    assert out.source[out.kind == TokenKind.VISUAL].tolist() == [3, 4, 6]  # frame 0 gets two, frame 1 one
    assert torch.equal(out.position, state.position[out.source])  # original positions
    assert out.source[out.kind != TokenKind.VISUAL].tolist() == [0, 1, 8, 9]


def test_keep_count_is_rounded_like_fastv():
    state = _state(n_visual=6)
    rows = torch.linspace(0.1, 1.0, len(state))[None, None, :]
    out = FastV(keep=0.25).attention_prune(state, _ctx_with_rows(rows))  # round(1.5) = 2
    assert out.num_visual == 2
    assert out.source[out.kind == TokenKind.VISUAL].tolist() == [6, 7]  # the two highest scores


@pytest.mark.parametrize("k", [1, 2, 3])
def test_drop_mode_equals_mask_mode_through_decoding(tiny_adapter, tiny_sample, k):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(FastV(k=k, keep=0.4).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


def test_prunes_after_the_attention_of_layer_k_minus_1_keeping_text_and_positions(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(FastV(k=2, keep=0.5).stages(info), info.num_layers)
    pre = tiny_adapter.runner.prefill(sample.state, plan)
    n_vis = sample.state.num_visual
    assert [c.attn_visual for c in pre.counts] == [n_vis, n_vis, n_vis // 2, n_vis // 2]
    assert pre.counts[1].mlp_visual == n_vis // 2
    final = pre.state
    full = sample.state
    text = full.source[full.kind != TokenKind.VISUAL]
    assert torch.equal(final.source[final.kind != TokenKind.VISUAL], text)
    assert torch.equal(final.position, full.position[final.source])
    again = tiny_adapter.runner.prefill(sample.state, plan)
    assert torch.equal(again.state.source, final.source)  # deterministic


@pytest.mark.parametrize("keep", [0.5, 0.6, 0.8])
def test_layer_average_budget_is_met_up_to_one_token_of_rounding(tiny_adapter, tiny_sample, keep):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = FastV.for_budget(keep, "layer-average", info)
    result = tiny_adapter.run(sample, PruningPlan.of(strategy.stages(info), info.num_layers))
    n, layers = sample.state.num_visual, info.num_layers
    tolerance = 0.5 * (layers - 1.5) / (layers * n) + 1e-9  # half a token after the post stage of layer 1
    assert result.layer_average_retention == pytest.approx(keep, abs=tolerance)


def test_for_budget_mapping_and_unreachable_budget_warns():
    info = ModelInfo(num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision")
    s = FastV.for_budget(0.5, "layer-average", info)
    assert s.config.keep == pytest.approx((0.5 * 28 - 1.5) / 26.5)
    assert FastV.for_budget(0.3, "input", info).config.keep == 0.3
    flops = FastV.for_budget(0.3, "flops", info).config
    assert flops.keep == FastV.for_budget(0.3, "layer-average", info).config.keep
    with pytest.warns(BudgetWarning):
        low = FastV.for_budget(0.04, "layer-average", info)
    assert low.config.keep == 0.0
