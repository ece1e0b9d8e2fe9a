from __future__ import annotations

import warnings

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.session import Session
from prune_bench.strategies.evs import EVS, evs_retention_mask, retained_tokens_count
from prune_bench.testing import assert_drop_equals_mask

T, ROWS, COLS, D = 4, 2, 3, 8
P = ROWS * COLS
#: (frame, slot) of the tokens that change from the previous frame; every other one repeats it exactly
CHANGED = [(1, 0), (1, 4), (2, 2), (3, 1), (3, 4), (3, 5)]


def _video() -> torch.Tensor:
    """``[T, P, D]`` one-hot tokens: a repeat is the same vector (cosine exactly 1), a change the next
    one-hot (cosine exactly 0), so every score is exactly 0 or 1 and ties are real."""
    idx = torch.zeros(T, P, dtype=torch.long)
    idx[0] = torch.arange(P) % D
    for t in range(1, T):
        idx[t] = idx[t - 1]
        for f, s in CHANGED:
            if f == t:
                idx[t, s] = (idx[t - 1, s] + 1) % D
    return torch.eye(D)[idx]


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


def _q_for(count: int) -> float:
    """A pruning rate at which vLLM's formula keeps exactly ``count`` (away from truncation edges)."""
    q = 1 - (count + 0.5) / (T * P)
    assert retained_tokens_count(P, T, q) == count
    return q


def _flat(frame: int, slot: int) -> int:
    return frame * P + slot


def test_retained_count_is_vllms_formula():
    # max(P, int(T * P * (1 - q))): truncated, floored at one whole frame
    assert retained_tokens_count(16, 16, 0.8) == int(256 * (1 - 0.8)) == 51
    assert retained_tokens_count(48, 4, 0.999) == 48
    assert retained_tokens_count(48, 4, 0.0) == 192
    assert retained_tokens_count(10, 10, 0.9) == 10  # int(100 * (1 - 0.9)) = 9 < one frame
    assert retained_tokens_count(7, 10, 0.5) == 35


def test_keeps_the_first_frame_and_every_token_that_does_not_repeat_its_predecessor():
    video = _video()
    k = P + len(CHANGED)
    mask = evs_retention_mask(video, _q_for(k))
    assert int(mask.sum()) == k == retained_tokens_count(P, T, _q_for(k))
    assert bool(mask[0].all())
    expected = torch.zeros(T, P, dtype=torch.bool)
    expected[0] = True
    for f, s in CHANGED:
        expected[f, s] = True
    assert torch.equal(mask, expected)


def test_ties_go_to_the_earlier_frame_then_the_earlier_position_as_the_stable_sort_does():
    video = _video()
    changed = sorted(_flat(f, s) for f, s in CHANGED)
    repeats = [i for i in range(P, T * P) if i not in changed]
    # two more than the changed tokens: the first two repeats in (frame, raster) order
    more = evs_retention_mask(video, _q_for(P + len(CHANGED) + 2)).flatten()
    assert sorted(torch.nonzero(more).flatten().tolist()) == sorted([*range(P), *changed, *repeats[:2]])
    # one fewer: the last changed token (all score 1) loses the tie
    fewer = evs_retention_mask(video, _q_for(P + len(CHANGED) - 1)).flatten()
    assert sorted(torch.nonzero(fewer).flatten().tolist()) == sorted([*range(P), *changed[:-1]])


def test_the_floor_keeps_the_whole_first_frame_even_when_later_frames_change_more():
    video = torch.randn(T, P, D, generator=torch.Generator().manual_seed(3))
    mask = evs_retention_mask(video, 0.99)
    assert torch.equal(mask, torch.arange(T)[:, None].expand(T, P) == 0)


def test_stage_drops_only_visual_tokens_and_keeps_text_newline_and_positions():
    state = _state(_video())
    k = P + len(CHANGED)
    out = EVS(pruning_rate=_q_for(k)).select(state, _ctx())
    assert out.num_visual == k
    vis_src = out.source[out.kind == int(TokenKind.VISUAL)] - 2
    expected = sorted([*range(P), *(_flat(f, s) for f, s in CHANGED)])
    assert vis_src.tolist() == expected
    others = state.kind != int(TokenKind.VISUAL)
    assert torch.equal(out.source[out.kind != int(TokenKind.VISUAL)], torch.nonzero(others).flatten())
    torch.testing.assert_close(out.hidden, state.hidden[out.source])
    assert torch.equal(out.position, state.position[out.source])  # the stage itself never renumbers


def _info(family: str, frames: int = 16, per_frame: int = 16) -> ModelInfo:
    return ModelInfo(
        num_layers=8, num_frames=frames, tokens_per_frame=per_frame, hidden_size=8, family=family
    )


def test_auto_positions_follow_vllm_keep_on_mrope_and_reindex_on_1d_rope():
    assert EVS().stages(_info("qwen2_vl"))[0].position_policy == "keep"
    assert EVS().stages(_info("llava_onevision"))[0].position_policy == "reindex"
    assert EVS(position_policy="keep").stages(_info("llava_onevision"))[0].position_policy == "keep"
    assert EVS(position_policy="reindex").stages(_info("qwen2_vl"))[0].position_policy == "reindex"
    assert EVS().stages(_info("llava_onevision"))[0].hook == "input"


def test_for_budget_sets_q_and_warns_only_below_one_frame():
    with warnings.catch_warnings():
        warnings.simplefilter("error", BudgetWarning)
        strategy = EVS.for_budget(0.3, "layer-average", _info("llava_onevision"))
    assert strategy.config.pruning_rate == pytest.approx(0.7)
    with pytest.warns(BudgetWarning, match="first frame"):
        EVS.for_budget(0.05, "input", _info("llava_onevision"))  # 1/16 of the tokens at least


def test_on_the_tiny_model_the_input_keeps_the_formulas_count_and_the_first_frame(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    keep = 0.5
    kept = Session(tiny_adapter, "evs", keep=keep, unit="input", num_frames=6).prefill(sample).state
    state = sample.state
    expected = retained_tokens_count(info.tokens_per_frame, info.num_frames, 1 - keep)
    assert kept.num_visual == expected
    first = state.source[(state.kind == int(TokenKind.VISUAL)) & (state.frame == 0)]
    assert bool(torch.isin(first, kept.source).all())
    text = state.source[state.kind != int(TokenKind.VISUAL)]
    assert bool(torch.isin(text, kept.source).all())


@pytest.mark.parametrize("options", [{}, {"position_policy": "keep"}])
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(EVS.for_budget(0.5, "input", info, **options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


def test_a_truncated_count_more_than_five_percent_off_is_reported_as_truncation():
    with pytest.warns(BudgetWarning, match="truncates"):
        EVS.for_budget(0.4, "input", _info("llava_onevision", frames=6, per_frame=4))  # int(9.6) = 9 of 24


def test_qwen3_vl_keeps_its_original_m_rope_positions_as_qwen2_vl_does() -> None:
    """vLLM runs EVS on Qwen3-VL with the original M-RoPE positions; VidCom2's Qwen path does the same."""
    from dataclasses import replace

    from prune_bench.adapters.qwen3_vl import Qwen3VLAdapter
    from prune_bench.core.plugins import registry

    info = Qwen3VLAdapter.tiny("tiny-qwen3-vl", num_layers=2).model_info(8)
    assert info.family == "qwen3_vl"
    for name in ("evs", "vidcom2"):
        strategy = registry().strategy(name).for_budget(0.5, "input", info)
        assert [s.position_policy for s in strategy.stages(info)] == ["keep"], name
        llava = replace(info, family="llava_onevision")
        assert [s.position_policy for s in strategy.stages(llava)] == ["reindex"], name
