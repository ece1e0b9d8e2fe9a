from __future__ import annotations

import warnings

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.pooling import SpatialPooling, pool_grid, pool_targets, square_layout
from prune_bench.testing import assert_drop_equals_mask


def _state(frames: int, rows: int, cols: int, d: int = 3) -> TokenState:
    """Two text tokens, ``frames`` frames of ``rows x cols`` visual tokens, a newline, two text tokens."""
    v = frames * rows * cols
    n = 2 + v + 3
    hidden = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2 : 2 + v] = int(TokenKind.VISUAL)
    kind[2 + v] = int(TokenKind.NEWLINE)
    frame, row, col = (torch.full((n,), -1) for _ in range(3))
    slot = torch.arange(v)
    p = rows * cols
    frame[2 : 2 + v], row[2 : 2 + v], col[2 : 2 + v] = slot // p, slot % p // cols, slot % cols
    return TokenState.from_layout(hidden, kind, frame, row, col)


def _ctx() -> StageContext:
    return StageContext(hook="input", num_layers=4, generator=torch.Generator(), memory={})


def test_grid_is_the_closest_count_then_the_most_isotropic():
    assert pool_grid(14, 14, 0.25) == (7, 7)  # VTC-Bench's r = 2
    assert pool_grid(14, 14, 1 / 9) == (11, 2)  # 21.8 tokens: 22 = 11x2 beats 21 = 7x3 (closest first)
    assert pool_grid(4, 4, 0.5) == (4, 2)  # 8 = 4x2 or 2x4, equally anisotropic: more rows
    assert pool_grid(4, 4, 1.0) == (4, 4)
    assert pool_grid(4, 4, 0.01) == (1, 1)
    assert pool_grid(14, 14, 0.3, isotropic=True) == (8, 8)
    assert pool_grid(4, 6, 0.25, isotropic=True) == (2, 3)


@pytest.mark.parametrize("rows,cols", [(14, 14), (4, 4), (6, 10)])
def test_kept_count_is_round_keep_n_whenever_a_grid_has_that_many_cells(rows, cols):
    p = rows * cols
    for keep in torch.linspace(0.02, 1.0, 50).tolist():
        gr, gc = pool_grid(rows, cols, keep)
        want = round(keep * p)
        fits = any(want % a == 0 and want // a <= cols for a in range(1, rows + 1))
        if want >= 1 and fits:
            assert gr * gc == want, (keep, gr, gc)
        assert (
            abs(gr * gc - keep * p)
            <= min(abs(a * b - keep * p) for a in range(1, rows + 1) for b in range(1, cols + 1)) + 1e-9
        )


def test_merged_tokens_are_window_means_at_the_top_left_place_and_text_is_untouched():
    state = _state(frames=2, rows=4, cols=4)
    out = SpatialPooling(keep=0.25).pool(state, _ctx())  # 2x2 windows of 2x2 tokens
    assert out.num_visual == 2 * 4 == round(0.25 * state.num_visual)
    vis = out.kind == int(TokenKind.VISUAL)
    # frame f, window (i, j): top-left is slot (2i) * 4 + 2j
    tops = [2 + f * 16 + (2 * i) * 4 + 2 * j for f in range(2) for i in range(2) for j in range(2)]
    assert out.source[vis].tolist() == tops
    for src, h in zip(out.source[vis].tolist(), out.hidden[vis], strict=True):
        members = [src, src + 1, src + 4, src + 5]
        torch.testing.assert_close(h, state.hidden[members].mean(dim=0))
    assert out.weight[vis].tolist() == [4.0] * 8
    assert torch.equal(out.position[vis], state.position[out.source[vis]])  # the top-left's original id
    assert out.row[vis].tolist() == [0, 0, 2, 2] * 2 and out.col[vis].tolist() == [0, 2, 0, 2] * 2
    text = state.kind != int(TokenKind.VISUAL)
    assert torch.equal(out.source[~vis], torch.nonzero(text).flatten())
    torch.testing.assert_close(out.hidden[~vis], state.hidden[text])
    assert torch.equal(out.position[~vis], state.position[text])


def test_uneven_grids_are_split_into_contiguous_near_equal_bins():
    state = _state(frames=1, rows=4, cols=4)
    target = pool_targets(state, (3, 1))  # rows 0-1 | 2 | 3, all columns
    vis = state.visual_index
    groups = target[vis].view(4, 4)
    assert groups[0].tolist() == groups[1].tolist() == [2] * 4
    assert groups[2].tolist() == [2 + 8] * 4 and groups[3].tolist() == [2 + 12] * 4
    out = state.merge(target, weighting="uniform")
    assert out.weight[out.kind == int(TokenKind.VISUAL)].tolist() == [8.0, 4.0, 4.0]


def test_full_keep_changes_nothing():
    state = _state(frames=2, rows=2, cols=3)
    assert SpatialPooling(keep=1.0).pool(state, _ctx()) is state


def _info(per_frame: int) -> ModelInfo:
    return ModelInfo(
        num_layers=8, num_frames=8, tokens_per_frame=per_frame, hidden_size=8, family="llava_onevision"
    )


def test_for_budget_warns_when_no_grid_is_within_five_percent():
    assert square_layout(196) == (14, 14) and square_layout(24) == (4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        assert SpatialPooling.for_budget(0.25, "layer-average", _info(196)).config.keep == 0.25
        SpatialPooling.for_budget(0.3, "input", _info(196))  # 60 of 196 = 0.306
    with pytest.warns(BudgetWarning, match="4x4 is 3x1"):
        SpatialPooling.for_budget(0.2, "input", _info(16))  # 3/16 = 0.1875
    with pytest.warns(BudgetWarning, match="8x8"):
        SpatialPooling.for_budget(0.3, "input", _info(196), isotropic=True)  # 64/196 = 0.327


def test_on_the_tiny_model_each_frame_pools_to_the_chosen_grid(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    state = sample.state
    rows, cols = state.frame_grid
    out = SpatialPooling(keep=0.5).pool(state, _ctx())
    gr, gc = pool_grid(rows, cols, 0.5)
    assert out.num_visual == state.num_frames * gr * gc
    assert bool((out.kind != int(TokenKind.VISUAL)).sum() == (state.kind != int(TokenKind.VISUAL)).sum())


@pytest.mark.parametrize("options", [{}, {"position_policy": "reindex"}, {"isotropic": True}])
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        strategy = SpatialPooling.for_budget(0.5, "input", info, **options)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)
