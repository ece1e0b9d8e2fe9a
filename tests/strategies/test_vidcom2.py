from __future__ import annotations

import math
import warnings

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.session import Session
from prune_bench.strategies.vidcom2 import (
    VidCom2,
    frame_scales,
    frame_token_counts,
    low_variance_channels,
    multi_scale_gaussian,
)
from prune_bench.testing import assert_drop_equals_mask

ROWS, COLS = 2, 3
P = ROWS * COLS


def reference_keep(video: torch.Tensor, base: float, temperature: float = 0.01) -> list[list[int]]:
    """The official algorithm re-derived one frame and one token at a time (Python loops and
    ``math``), float64: the kept slots of every frame, sorted."""
    t, p, d = video.shape
    flat = video.reshape(t * p, d).double()
    variance = [float(((flat[:, c] - flat[:, c].mean()) ** 2).mean()) for c in range(d)]
    channels = sorted(range(d), key=lambda c: variance[c])[: int(d * 0.5)]
    x = flat[:, channels]
    x = x / x.norm(dim=-1, keepdim=True)
    x = x.view(t, p, -1)
    video_center = x.reshape(t * p, -1).mean(dim=0)

    def gauss(a: torch.Tensor, c: torch.Tensor) -> float:
        dist = float(((a - c) ** 2).sum())
        return sum(math.exp(-dist / (2 * 2.0**k)) for k in range(-3, 2))

    s_v = [[gauss(x[f, i], video_center) for i in range(p)] for f in range(t)]
    s_f = [[gauss(x[f, i], x[f].mean(dim=0)) for i in range(p)] for f in range(t)]
    u = [-sum(row) / p for row in s_v]
    exps = [math.exp((ui - max(u)) / temperature) for ui in u]
    probs = [e / sum(exps) for e in exps]
    kept = []
    for f in range(t):
        scale = min(1.0, base * (1 + probs[f] - sum(probs) / t))
        k = max(1, round(scale * p))
        score = [s_v[f][i] + s_f[f][i] for i in range(p)]
        kept.append(sorted(sorted(range(p), key=lambda i: score[i])[:k]))
    return kept


def _state(video: torch.Tensor) -> TokenState:
    """Two text tokens, the video, a newline token and two text tokens."""
    t, p, d = video.shape
    n = 2 + t * p + 3
    hidden = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    hidden[2 : 2 + t * p] = video.reshape(t * p, d)
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2 : 2 + t * p] = int(TokenKind.VISUAL)
    kind[2 + t * p] = int(TokenKind.NEWLINE)
    frame, row, col = (torch.full((n,), -1) for _ in range(3))
    slot = torch.arange(t * p)
    frame[2 : 2 + t * p], row[2 : 2 + t * p], col[2 : 2 + t * p] = slot // p, slot % p // COLS, slot % COLS
    return TokenState.from_layout(hidden, kind, frame, row, col)


def _ctx() -> StageContext:
    return StageContext(hook="input", num_layers=4, generator=torch.Generator(), memory={})


def _kept_slots(out: TokenState, t: int, p: int) -> list[list[int]]:
    src = (out.source[out.kind == int(TokenKind.VISUAL)] - 2).tolist()
    return [sorted(s % p for s in src if s // p == f) for f in range(t)]


def _info(family: str = "llava_onevision", frames: int = 16, per_frame: int = 16) -> ModelInfo:
    return ModelInfo(
        num_layers=8, num_frames=frames, tokens_per_frame=per_frame, hidden_size=8, family=family
    )


def test_scales_follow_the_frame_softmax_and_are_capped_at_a_whole_frame():
    # frame 0 is far more unique (u = -mean s_v: 0 vs -1, /0.01): p = [1, 0] up to e^-100
    s_v = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(frame_scales(s_v, 0.25, 0.01), torch.tensor([0.375, 0.125]))
    torch.testing.assert_close(frame_scales(s_v, 0.8, 0.01), torch.tensor([1.0, 0.4]))  # 1.2 capped
    # equal uniqueness: p uniform, every frame at R
    torch.testing.assert_close(frame_scales(torch.ones(4, 3), 0.3, 0.01), torch.full((4,), 0.3))
    # rounding halves to even and at least one token: 0.375*8 = 3, 0.125*8 = 1, 0.0625*8 = 0.5 -> 1 (floor)
    counts = frame_token_counts(torch.tensor([0.375, 0.125, 0.0625, 0.3125, 0.01]), 8)
    assert counts.tolist() == [3, 1, 1, 2, 1]


def test_scores_use_only_the_lowest_variance_half_of_the_channels():
    x = torch.tensor([[0.0, 1.0, 5.0, 0.1], [0.0, -1.0, -5.0, 0.2], [0.0, 0.0, 0.0, 0.3]])
    # variances: 0, 2/3, 50/3, 0.00667 -> channels 0 and 3
    torch.testing.assert_close(low_variance_channels(x, 0.5), x[:, [0, 3]])


def test_gaussian_similarity_is_the_sum_over_five_bandwidths():
    x, c = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])  # squared distance 1
    expected = sum(math.exp(-1 / (2 * a)) for a in (0.125, 0.25, 0.5, 1.0, 2.0))
    assert float(multi_scale_gaussian(x, c)[0]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("base", [0.25, 0.5, 0.9])
def test_selection_matches_the_official_algorithm_rederived_in_loops(seed, base):
    t, d = 5, 12
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(t, P, d, generator=g) + torch.randn(t, 1, d, generator=g)  # frames differ
    out = VidCom2(base_scale=base).select(_state(video), _ctx())
    assert _kept_slots(out, t, P) == reference_keep(video, base)


def test_the_outlier_of_each_frame_is_kept_and_the_most_unique_frame_keeps_more():
    t, d = 4, 16
    video = torch.zeros(t, P, d)
    video[..., 0] = 1.0
    odd = [5, 1, 3, 0]
    for f, s in enumerate(odd):
        video[f, s, 6:] = 1.0  # one token per frame unlike all others (variance 5/36 a channel)
    video[2, :, 1:6] += 0.5  # frame 2 is unlike the video (variance 3/64 a channel): the most unique
    # the 8 lowest-variance channels are 0..5 and two of 6..15: both signals survive the channel cut
    counts = VidCom2(base_scale=0.25).token_scores_and_counts(video)[1]
    assert counts.tolist() == [1, 1, 3, 1]  # round(6 * 0.25 * (1 + p - 1/4)) with p = 1 for frame 2
    kept = _kept_slots(VidCom2(base_scale=0.25).select(_state(video), _ctx()), t, P)
    assert all(odd[f] in kept[f] for f in range(t))
    # a high-variance channel is what the code discards: the same frame signal at 2.0 on one channel
    # (variance 0.75) no longer makes frame 2 the most unique
    video[2, :, 1:6] -= 0.5
    video[2, :, 1] += 2.0
    assert VidCom2(base_scale=0.25).token_scores_and_counts(video)[1][2] < 3


def test_stage_drops_only_visual_tokens_and_keeps_text_newline_and_positions():
    video = torch.randn(3, P, 8, generator=torch.Generator().manual_seed(5))
    state = _state(video)
    out = VidCom2(base_scale=0.5).select(state, _ctx())
    assert 3 <= out.num_visual < state.num_visual
    others = state.kind != int(TokenKind.VISUAL)
    assert torch.equal(out.source[out.kind != int(TokenKind.VISUAL)], torch.nonzero(others).flatten())
    torch.testing.assert_close(out.hidden, state.hidden[out.source])
    assert torch.equal(out.position, state.position[out.source])  # the stage itself never renumbers


def test_ablations_change_the_budgets_or_the_ranking():
    video = torch.zeros(4, P, 8)
    video[..., 0] = 1.0
    video[2, :, 3] += 2.0
    assert (
        VidCom2(base_scale=0.5, frame_budgets="uniform").token_scores_and_counts(video)[1].tolist() == [3] * 4
    )
    g = torch.Generator().manual_seed(2)
    video = torch.randn(4, P, 8, generator=g)
    both, _ = VidCom2().token_scores_and_counts(video)
    s_v, _ = VidCom2(token_score="video").token_scores_and_counts(video)
    s_f, _ = VidCom2(token_score="frame").token_scores_and_counts(video)
    torch.testing.assert_close(both, s_v + s_f)


def test_auto_positions_keep_on_qwen_and_reindex_on_llava():
    assert VidCom2().stages(_info("qwen2_vl"))[0].position_policy == "keep"
    assert VidCom2().stages(_info("llava_onevision"))[0].position_policy == "reindex"
    assert VidCom2(position_policy="keep").stages(_info())[0].position_policy == "keep"
    assert VidCom2().stages(_info())[0].hook == "input"


def test_for_budget_sets_r_ratio_and_warns_only_where_the_cap_or_the_floor_binds():
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        for keep in (0.2, 0.25, 0.5):
            assert VidCom2.for_budget(keep, "layer-average", _info()).config.base_scale == keep
    with pytest.warns(BudgetWarning, match="capped"):
        VidCom2.for_budget(0.9, "input", _info())
    with pytest.warns(BudgetWarning, match="at least one token"):
        VidCom2.for_budget(0.02, "input", _info())


@pytest.mark.parametrize("keep", [0.25, 0.5])
def test_on_the_tiny_model_the_input_keeps_the_per_frame_counts_near_the_budget(
    tiny_adapter, tiny_sample, keep
):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    session = Session(tiny_adapter, "vidcom2", keep=keep, unit="input", num_frames=6)
    kept = session.prefill(sample).state
    state = sample.state
    video = state.hidden[state.kind == int(TokenKind.VISUAL)].view(info.num_frames, info.tokens_per_frame, -1)
    expected = sum(len(f) for f in reference_keep(video, keep))
    assert kept.num_visual == expected
    # per-frame rounding: within half a token of every frame
    assert abs(expected / state.num_visual - keep) <= 0.5 / info.tokens_per_frame + 1e-9
    assert bool(torch.isin(state.source[state.kind != int(TokenKind.VISUAL)], kept.source).all())


@pytest.mark.parametrize("options", [{}, {"position_policy": "keep"}])
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(VidCom2.for_budget(0.3, "input", info, **options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)
