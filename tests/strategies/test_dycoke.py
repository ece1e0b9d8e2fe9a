from __future__ import annotations

import pytest
import torch

from prune_bench.core.context import DecodeContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.dycoke import (
    PRUNED_SET_KEY,
    DyCoke,
    ttm_keep_mask,
    ttm_reference_frames,
    ttm_retention,
)
from prune_bench.testing import prefill_and_decode

A, B = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
C = torch.tensor([1.0, 1.0])  # cos(C, A) = cos(C, B) = 0.707


def test_code_windows_prune_odd_frames_against_their_pair_and_frame_i_plus_2_in_all_but_the_last_window():
    assert ttm_reference_frames(8, "code").tolist() == [-1, 0, 0, 2, -1, 4, -1, 6]  # frame 6 stays whole
    assert ttm_reference_frames(8, "paper").tolist() == [-1, 0, 0, 2, -1, 4, 4, 6]
    assert ttm_reference_frames(5, "code").tolist() == [-1, 0, 0, 2, -2]  # odd last frame is dropped
    assert ttm_reference_frames(5, "paper").tolist() == [-1, 0, 0, 2, -1]
    # T=32, k=0.7: 9 whole frames + 23 x 58 tokens
    assert ttm_retention(32, 196, 0.7, "code") == pytest.approx(3098 / 6272)


def test_ttm_keeps_the_least_similar_tokens_at_the_same_position():
    # 4 frames x 4 positions; k=0.5 keeps int(0.5 * 4) = 2 tokens of each pruned frame
    f0 = torch.stack([A, A, B, B])
    f1 = torch.stack([A, B, C, B])  # vs f0: 1, 0, .707, 1 -> keep positions 1, 2
    f2 = torch.stack([B, A, B, C])  # vs f0: 0, 1, 1, .707 -> keep positions 0, 3
    f3 = torch.stack([B, B, A, C])  # vs f2: 1, 0, 0, 1 -> keep positions 1, 2
    keep = ttm_keep_mask(torch.stack([f0, f1, f2, f3]), k=0.5, windows="paper")
    assert keep.tolist() == [
        [True, True, True, True],
        [False, True, True, False],
        [True, False, False, True],
        [False, True, True, False],
    ]
    # frame 3 is compared with the ORIGINAL frame 2, not with what TTM kept of it; with the code's
    # windows frame 2 (= T - 2) stays whole at T = 4
    code = ttm_keep_mask(torch.stack([f0, f1, f2, f3]), k=0.5, windows="code")
    assert code[2].all() and code[3].tolist() == [False, True, True, False]


def _decode_ctx(attention: torch.Tensor, memory: dict, step: int) -> DecodeContext:
    n = 2 + attention.numel() + 1
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2 : n - 1] = int(TokenKind.VISUAL)
    frame = torch.where(kind == int(TokenKind.VISUAL), torch.zeros(n, dtype=torch.long), -1)
    layout = TokenState.from_layout(torch.zeros(n, 0), kind, frame, frame.clone(), frame.clone())
    full = torch.zeros(n)
    full[2 : n - 1] = attention
    return DecodeContext(step=step, layer=3, cache_layout=layout, memory=memory, _attention=lambda: full)


@pytest.mark.parametrize("stable_step", ["full_cache", "reuse_pruned"])
def test_decode_pruning_reprunes_on_change_and_on_stable_steps_follows_the_chosen_policy(stable_step):
    strategy = DyCoke(p=0.5, stable_step=stable_step)
    memory: dict = {}
    first = torch.tensor([0.1, 0.5, 0.2, 0.4, 0.3, 0.0])  # the last visual token is outside the span
    chosen = strategy.decode_prune(_decode_ctx(first, memory, 0))
    # ranked: 5 tokens (sources 2..6), keep int(5 * 0.5) = 2 -> sources 3 (0.5), 5 (0.4); plus source 7
    assert sorted(chosen.tolist()) == [3, 5, 7]
    stable = strategy.decode_prune(_decode_ctx(first * 1.01, memory, 1))
    if stable_step == "full_cache":
        assert stable is None  # the official code attends to the whole cache on a stable step
    else:
        assert sorted(stable.tolist()) == [3, 5, 7]
    changed = torch.tensor([0.5, 0.0, 0.0, 0.0, 0.4, 0.1])
    assert sorted(strategy.decode_prune(_decode_ctx(changed, memory, 2)).tolist()) == [2, 6, 7]
    paper_span = DyCoke(p=0.5, exclude_last_visual=False).decode_prune(_decode_ctx(first, {}, 0))
    assert sorted(paper_span.tolist()) == [3, 5, 6]  # int(6 * 0.5) = 3 of all six


def test_for_budget_solves_k_for_the_exact_ttm_retention_and_warns_below_it():
    info = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    s = DyCoke.for_budget(3098 / 6272, "layer-average", info)
    assert ttm_retention(32, 196, s.config.k, "code") == pytest.approx(3098 / 6272)
    s = DyCoke.for_budget(0.35, "input", info)
    assert ttm_retention(32, 196, s.config.k, "code") == pytest.approx(0.35, abs=0.5 / 32)
    with pytest.warns(BudgetWarning):
        low = DyCoke.for_budget(0.2, "input", info)
    assert low.config.k == 1.0
    assert ttm_retention(32, 196, 1.0, "code") == pytest.approx(9 / 32)


@pytest.mark.parametrize(
    "options",
    [{}, {"stable_step": "reuse_pruned", "windows": "paper"}, {"ttm": False}, {"last_visual": "position"}],
)
def test_drop_mode_equals_mask_mode_with_ttm_and_decode_pruning(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(DyCoke(p=0.5, **options).stages(info), info.num_layers)
    pre_d, drop = prefill_and_decode(tiny_adapter, sample, plan, "drop", 4)
    pre_m, mask = prefill_and_decode(tiny_adapter, sample, plan, "mask", 4)
    for d, m in zip(drop, mask, strict=True):
        torch.testing.assert_close(d, m, atol=1e-4, rtol=1e-4)
    assert torch.equal(pre_d.memory[PRUNED_SET_KEY], pre_m.memory[PRUNED_SET_KEY])  # stage 2 ran in both


def test_ttm_retention_text_positions_and_determinism_on_the_tiny_model(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(DyCoke().stages(info), info.num_layers)
    result = tiny_adapter.run(sample, plan)
    assert result.input_retention == pytest.approx(ttm_retention(6, info.tokens_per_frame, 0.7, "code"))
    assert result.layer_average_retention == pytest.approx(result.input_retention)
    pre = tiny_adapter.runner.prefill(sample.state, plan)
    full = sample.state
    text = full.source[full.kind != TokenKind.VISUAL]
    assert torch.equal(pre.state.source[pre.state.kind != TokenKind.VISUAL], text)
    assert torch.equal(pre.state.position, torch.arange(len(pre.state)))
    assert torch.equal(tiny_adapter.runner.prefill(sample.state, plan).state.source, pre.state.source)


def _code_ttm_emission_order(feats: torch.Tensor, k: float) -> list[tuple[int, int]]:
    # dycole_ttm's output as (frame, position) pairs: pairs (i, i+1), then frame i+2 of the windows
    # range(0, T - 4, 4) replaced by its tokens least similar to frame i, each in topk(largest=False) order
    t, p, _ = feats.shape
    m = int((1 - k) * p)
    out: list[list[tuple[int, int]]] = []
    for i in range(0, t - 1, 2):
        sim = torch.nn.functional.cosine_similarity(feats[i + 1], feats[i], dim=-1)
        out.append([(i, j) for j in range(p)])
        out.append([(i + 1, int(j)) for j in sim.topk(m, largest=False).indices])
    for i in range(0, t - 4, 4):
        sim = torch.nn.functional.cosine_similarity(feats[i + 2], feats[i], dim=-1)
        out[i + 2] = [(i + 2, int(j)) for j in sim.topk(m, largest=False).indices]
    return [token for frame in out for token in frame]


def test_ttm_last_emitted_is_the_last_frames_most_similar_kept_token():
    from prune_bench.strategies.dycoke import ttm_last_emitted

    f0 = torch.stack([A, A, B, B])
    f1 = torch.stack([A, C, B * 0.5 + A * 0.2, A])  # vs f0: 1, .707, .93, 0 -> keep 3 (0) and 1 (.707)
    feats = torch.stack([f0, f1])
    keep = ttm_keep_mask(feats, k=0.5, windows="code")
    assert keep[1].tolist() == [False, True, False, True]
    assert ttm_last_emitted(feats, keep, "code") == 4 + 1  # .707 > 0: position 1, not the spatially last 3
    assert ttm_last_emitted(feats[:1], keep[:1], "code") == 3  # a whole frame: its spatially last token


def test_decode_pruning_spares_the_last_entry_of_ttm_output_in_the_codes_order(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = DyCoke(k=0.25, p=0.5)
    pre = tiny_adapter.runner.prefill(sample.state, PruningPlan.of(strategy.stages(info), info.num_layers))
    from prune_bench.strategies.common.temporal import frame_grid_index

    grid = frame_grid_index(sample.state)
    frame, pos = _code_ttm_emission_order(sample.state.hidden[grid], 0.25)[-1]
    spared = int(sample.state.source[grid[frame, pos]])
    assert int(pre.memory["dycoke.last_emitted_source"]) == spared
    assert frame == 5 and spared != int(pre.state.source[pre.state.is_visual][-1])
    # at decode: that entry is always kept, and not ranked (an attention of 0 would otherwise drop it)
    layout = pre.state
    attention = torch.where(layout.source == spared, 0.0, 1.0 + torch.arange(len(layout)).float())
    memory = dict(pre.memory)
    ctx = DecodeContext(step=0, layer=3, cache_layout=layout, memory=memory, _attention=lambda: attention)
    chosen = strategy.decode_prune(ctx).tolist()
    visual = layout.source[layout.is_visual].tolist()
    assert spared in chosen and len(chosen) == int((len(visual) - 1) * 0.5) + 1
    positional = DyCoke(p=0.5, last_visual="position").decode_prune(
        DecodeContext(step=0, layer=3, cache_layout=layout, memory={}, _attention=lambda: attention)
    )
    assert spared not in positional.tolist() and visual[-1] in positional.tolist()
