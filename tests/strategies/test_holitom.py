from __future__ import annotations

import pytest
import torch

from prune_bench.core.context import StageContext, VisionAttention
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.holitom import (
    HoliTom,
    beta_cluster_merge,
    place_centres,
    sequential_pair_average,
    static_windows,
    window_gain,
)
from prune_bench.testing import assert_drop_equals_mask


def test_window_gain_counts_positions_similar_at_every_transition_times_the_saving():
    similar = torch.tensor([[True, True], [True, False]])  # transitions 0->1 and 1->2
    gain = window_gain(similar)
    assert gain.tolist() == [[0, 2, 2], [0, 0, 1], [0, 0, 0]]  # [0,2]: only position 0, saves 2 frames


def test_dp_picks_the_best_partition_and_prefers_shorter_windows_on_ties():
    gain = window_gain(torch.tensor([[True, True], [True, False]])).tolist()
    # [0,1]+[2] saves 2; [0,2] also saves 2 but is not strictly better
    assert static_windows(gain, max_window=1024) == ([(0, 1), (2, 2)], 2.0)
    assert static_windows(gain, max_window=1) == ([(0, 0), (1, 1), (2, 2)], 0.0)


def test_beta_merge_mixes_each_centre_with_the_mean_of_its_members():
    x = torch.tensor([[0.0], [1.0], [1.4], [4.0]])[None]
    valid = torch.ones(1, 4, dtype=torch.bool)
    # k = min(7, 2) = 2: densities exp(-.5), exp(-.08), exp(-.08), exp(-3.38); centres 1 and 2;
    # 0 joins 1, 3 joins 2 (2.6 < 3)
    centres, real, merged = beta_cluster_merge(x, valid, torch.tensor([2]), knn=7, beta=0.6)
    got = dict(zip(centres[0].tolist(), merged[0, :, 0].tolist(), strict=True))
    assert real.all() and got == pytest.approx({1: 0.6 * 1 + 0.4 * 0, 2: 0.6 * 1.4 + 0.4 * 4})
    centres, _, plain = beta_cluster_merge(x, valid, torch.tensor([2]), knn=7, beta=None)
    got = dict(zip(centres[0].tolist(), plain[0, :, 0].tolist(), strict=True))
    assert got == pytest.approx({1: 0.5, 2: 2.7})


def test_sequential_pair_average_matches_the_code_loop():
    hidden = torch.tensor([[8.0], [4.0], [2.0], [5.0]])
    kept, dropped = torch.tensor([0, 3]), torch.tensor([1, 2])
    out = sequential_pair_average(hidden, kept, dropped, torch.tensor([0, 0]))
    x = 8.0
    for d in (4.0, 2.0):
        x = (x + d) / 2
    assert out[:, 0].tolist() == [x, 5.0]


def _video_state() -> tuple[TokenState, VisionAttention]:
    f = torch.tensor(
        [
            [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]],
            [[1, 0.1, 0], [0, 1, 0.1], [1, 0, 0], [0, 0, 1]],  # positions 0, 1 static with frame 0
            [[0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]],
        ]
    )
    n = 1 + 12 + 1 + 1
    kind = torch.zeros(n, dtype=torch.int8)
    kind[1:13] = int(TokenKind.VISUAL)
    kind[13] = int(TokenKind.NEWLINE)
    frame, row, col = (torch.full((n,), -1) for _ in range(3))
    frame[1:13] = torch.arange(12) // 4
    row[1:13] = (torch.arange(12) % 4) // 2
    col[1:13] = torch.arange(12) % 2
    hidden = torch.ones(n, 3)
    hidden[1:13] = f.reshape(12, 3)
    received = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.5, 0.1, 0.3, 0.2]])
    vision = VisionAttention(received=received, keys=torch.zeros(3, 4, 2))
    return TokenState.from_layout(hidden, kind, frame, row, col), vision


def test_outer_merge_averages_static_positions_and_keeps_dynamic_tokens_by_attention():
    state, vision = _video_state()
    ctx = StageContext(
        hook="segment", num_layers=4, generator=torch.Generator(), memory={}, _vision=lambda: vision
    )
    # rho = 0.9 -> rho' = min(.9 / (10 / 12), 1) = 1: every cluster keeps its tokens
    out = HoliTom(retain_ratio=0.9, tau=0.8).outer_merge(state, ctx)
    assert out.source.tolist() == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14]
    torch.testing.assert_close(out.hidden[1], (state.hidden[1] + state.hidden[5]) / 2)
    torch.testing.assert_close(out.hidden[2], (state.hidden[2] + state.hidden[6]) / 2)
    assert out.segment[out.is_visual].tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    # rho = 0.5 -> rho' = .6: one static centre (beta merge), dynamic 2 of 2 in frames 0-1 and
    # ceil(4 * .6) = 3 of 4 in frame 2, the least attended (position 1) dropped
    out = HoliTom(retain_ratio=0.5, tau=0.8).outer_merge(state, ctx)
    assert out.source.tolist()[-6:] == [8, 9, 11, 12, 13, 14]
    static = out.source[(out.source == 1) | (out.source == 2)]  # frame 0's static positions
    assert static.numel() == 1 and out.source[2:].tolist() == [3, 4, 7, 8, 9, 11, 12, 13, 14]
    a, b = (state.hidden[1] + state.hidden[5]) / 2, (state.hidden[2] + state.hidden[6]) / 2
    centre = out.hidden[out.source == static][0]
    expected = 0.6 * a + 0.4 * b if static.item() == 1 else 0.6 * b + 0.4 * a
    torch.testing.assert_close(centre, expected)


def test_inner_merge_keeps_the_most_attended_and_folds_the_rest_into_their_nearest():
    n = 1 + 4 + 1
    kind = torch.zeros(n, dtype=torch.int8)
    kind[1:5] = int(TokenKind.VISUAL)
    frame = torch.full((n,), -1)
    frame[1:5] = 0
    hidden = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.1], [0.1, 4.0], [1.0, 1.0]])
    state = TokenState.from_layout(hidden, kind, frame, frame.clone(), frame.clone())

    def rows(s: TokenState, q: int) -> torch.Tensor:
        attn = torch.zeros(2, q, len(s))
        attn[:, :, 1:5] = torch.tensor([0.4, 0.3, 0.1, 0.2])
        return attn

    ctx = StageContext(
        hook="layer", layer=1, num_layers=4, generator=torch.Generator(), memory={}, _attention=rows
    )
    out = HoliTom(inner_ratio=0.5).inner_merge(state, ctx)
    assert out.source.tolist() == [0, 1, 2, 5]
    # 3 (3, .1) joins 1 (1, 0); 4 (.1, 4) joins 2 (0, 2)
    torch.testing.assert_close(out.hidden[1], (hidden[1] + hidden[3]) / 2)
    torch.testing.assert_close(out.hidden[2], (hidden[2] + hidden[4]) / 2)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"dominant_share": 0.5, "retain_ratio": 0.75},
        {"inner_layer": None},
        {"beta_merge": False, "tau": 0.0},
    ],
)
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(HoliTom(**options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


def test_budget_maps_rho_to_input_or_layer_average_and_warns_it_is_an_upper_bound(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    with pytest.warns(BudgetWarning, match="near-static"):
        by_input = HoliTom.for_budget(0.5, "input", info)
    assert by_input.config.retain_ratio == 0.5 and by_input.config.tau == 0.8
    result = tiny_adapter.run(sample, PruningPlan.of(by_input.stages(info), info.num_layers))
    assert result.input_retention == pytest.approx(0.5)
    with pytest.warns(BudgetWarning):
        by_average = HoliTom.for_budget(0.4, "layer-average", info)
    # inner merge before layer round(18 * 4 / 28) = 3 halves: .4 = rho * (2.5 + 1.5 * .5) / 4
    assert by_average.config.retain_ratio == pytest.approx(0.4 * 4 / 3.25)
    deep = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    with pytest.warns(BudgetWarning):
        assert HoliTom.for_budget(0.10, "input", deep).config.tau == 0.65  # the scripts' 10% setting
    with pytest.warns(BudgetWarning, match="inner merge"):
        HoliTom.for_budget(0.9, "layer-average", deep)


def test_budget_warning_says_whether_the_budget_is_missed_or_only_may_be() -> None:
    from prune_bench.core.strategy import warn_budget

    with pytest.warns(BudgetWarning, match=r"holitom aims at keep=0\.100 but may miss it: why; the achieved"):
        warn_budget("holitom", 0.1, 0.1, "why")
    with pytest.warns(BudgetWarning, match=r"fastv cannot reach keep=0\.100: why; running at keep=0\.190"):
        warn_budget("fastv", 0.1, 0.19, "why")


def test_place_centres_writes_only_real_centres_like_boolean_mask_indexing():
    g = torch.Generator().manual_seed(0)
    frames, per_frame, d = 4, 6, 3
    grid = torch.arange(2, 2 + frames * per_frame).view(frames, per_frame)
    hidden = torch.randn(2 + frames * per_frame + 1, d, generator=g)
    keep = torch.rand(frames, per_frame, generator=g) > 0.6  # dominant tokens already kept
    centres = torch.stack([torch.randperm(per_frame, generator=g)[:3] for _ in range(frames)])
    real = torch.tensor(
        [[True, True, False], [True, False, False], [False, False, False], [True, True, True]]
    )
    merged = torch.randn(frames, 3, d, generator=g)
    frame = torch.arange(frames)
    expected_keep, expected_hidden = keep.clone(), hidden.clone()
    rows = frame[:, None].expand_as(centres)[real]
    expected_keep[rows, centres[real]] = True
    expected_hidden[grid[rows, centres[real]]] = merged[real]
    place_centres(keep, hidden, grid, frame, centres, real, merged)
    assert torch.equal(keep, expected_keep) and torch.equal(hidden, expected_hidden)


def test_inner_merge_takes_the_outer_merges_visual_count_without_reading_it(monkeypatch):
    state, vision = _video_state()
    memory: dict = {}
    outer_ctx = StageContext(
        hook="segment", num_layers=4, generator=torch.Generator(), memory=memory, _vision=lambda: vision
    )
    strategy = HoliTom(retain_ratio=0.9, tau=0.8, inner_ratio=0.5)
    outer = strategy.outer_merge(state, outer_ctx)
    assert memory["holitom.left"] == (len(outer), outer.num_visual)

    def rows(s: TokenState, q: int) -> torch.Tensor:
        return torch.linspace(0.1, 1.0, len(s)).flip(0).expand(2, q, -1)

    def inner_ctx(mem: dict) -> StageContext:
        return StageContext(
            hook="layer", layer=1, num_layers=4, generator=torch.Generator(), memory=mem, _attention=rows
        )

    reads: list[str] = []
    for name in ("nonzero", "bincount"):
        original = getattr(torch, name)
        monkeypatch.setattr(
            torch, name, lambda *a, _o=original, _n=name, **k: (reads.append(_n), _o(*a, **k))[1]
        )
    inner = strategy.inner_merge(outer, inner_ctx(memory))
    monkeypatch.undo()
    assert reads == []
    fresh = strategy.inner_merge(outer, inner_ctx({}))
    assert torch.equal(inner.source, fresh.source) and torch.equal(inner.hidden, fresh.hidden)
    assert inner.num_visual == round(outer.num_visual * 0.5)
