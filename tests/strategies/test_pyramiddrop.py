from __future__ import annotations

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.common.select import topk_visual
from prune_bench.strategies.pyramiddrop import PyramidDrop, pdrop_layer_average, scaled_layers
from prune_bench.testing import assert_drop_equals_mask


def _state(n_visual: int = 8) -> TokenState:
    n = 2 + n_visual + 2
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2 : 2 + n_visual] = int(TokenKind.VISUAL)
    frame = torch.full((n,), -1)
    frame[2 : 2 + n_visual] = torch.arange(n_visual) // 4
    row = torch.where(frame >= 0, torch.zeros(n, dtype=torch.long), frame)
    col = torch.where(frame >= 0, torch.arange(n) % 4, frame)
    return TokenState.from_layout(torch.randn(n, 4), kind, frame, row, col)


def _ctx(memory: dict, scores_by_source: torch.Tensor) -> StageContext:
    def rows(st: TokenState, q: int) -> torch.Tensor:
        return scores_by_source[st.source][None, None, :].expand(2, 1, -1)

    return StageContext(
        hook="layer", num_layers=32, generator=torch.Generator(), memory=memory, _attention=rows
    )


def test_stages_keep_a_cumulative_share_of_the_input_count_by_last_token_attention():
    state = _state(8)
    scores = torch.tensor([0.2, 0.0, 0.01, 0.08, 0.02, 0.07, 0.03, 0.06, 0.04, 0.05, 0.1, 0.3])
    strategy, memory = PyramidDrop(), {}
    s1 = strategy.make_stage(1)(state, _ctx(memory, scores))
    # int(8 * 0.5) = 4 of visual sources 2..9: 0.08 (3), 0.07 (5), 0.06 (7), 0.05 (9)
    assert s1.source[s1.kind == TokenKind.VISUAL].tolist() == [3, 5, 7, 9]
    s2 = strategy.make_stage(2)(s1, _ctx(memory, scores))
    assert s2.source[s2.kind == TokenKind.VISUAL].tolist() == [3, 5]  # int(8 * 0.25)
    s3 = strategy.make_stage(3)(s2, _ctx(memory, scores))
    assert s3.source[s3.kind == TokenKind.VISUAL].tolist() == [3]  # int(8 * 0.125)
    assert s3.source[s3.kind != TokenKind.VISUAL].tolist() == [0, 1, 10, 11]


def test_layers_scale_to_depth_and_the_default_layer_average():
    assert scaled_layers(32) == (8, 16, 24)
    assert scaled_layers(28) == (7, 14, 21)
    assert scaled_layers(4) == (1, 2, 3)
    assert pdrop_layer_average(0.5, (8, 16, 24), 32) == pytest.approx(15 / 32)


@pytest.mark.parametrize("keep", [0.3, 0.4, 0.5])
def test_for_budget_solves_lambda_for_the_layer_average(keep):
    info = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    s = PyramidDrop.for_budget(keep, "layer-average", info)
    assert pdrop_layer_average(s.config.ratio, (7, 14, 21), 28) == pytest.approx(keep, abs=1e-9)
    assert PyramidDrop.for_budget(keep, "input", info).config.ratio == keep


def test_unreachable_budget_warns():
    info = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    with pytest.warns(BudgetWarning):
        s = PyramidDrop.for_budget(0.2, "layer-average", info, layers=(8, 16, 24))
    assert s.config.ratio == 0.0


@pytest.mark.parametrize("policy", ["reindex", "keep"])
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, policy):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(PyramidDrop(position_policy=policy).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


def test_counts_positions_text_and_determinism_on_the_tiny_model(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(PyramidDrop().stages(info), info.num_layers)
    pre = tiny_adapter.runner.prefill(sample.state, plan)
    n = sample.state.num_visual  # 24
    assert [c.attn_visual for c in pre.counts] == [n, n // 2, n // 4, n // 8]
    assert torch.equal(pre.state.position, torch.arange(len(pre.state)))  # re-indexed after every drop
    full = sample.state
    text = full.source[full.kind != TokenKind.VISUAL]
    assert torch.equal(pre.state.source[pre.state.kind != TokenKind.VISUAL], text)
    assert torch.equal(tiny_adapter.runner.prefill(sample.state, plan).state.source, pre.state.source)


@pytest.mark.parametrize("keep", [0.4, 0.6])
def test_achieved_layer_average_matches_up_to_truncation(tiny_adapter, tiny_sample, keep):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = PyramidDrop.for_budget(keep, "layer-average", info)
    result = tiny_adapter.run(sample, PruningPlan.of(strategy.stages(info), info.num_layers))
    n, layers = sample.state.num_visual, info.num_layers
    # int() truncation loses less than one token in each layer after the first stage
    assert keep - (layers - 1) / (layers * n) <= result.layer_average_retention <= keep + 1e-9


def test_known_counts_keep_the_same_tokens_as_reading_them_back():
    state = _state(24)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(len(state), generator=g) > 0.5
    by_count = state.keep_mask(mask, kept=int(mask.sum()))
    assert torch.equal(by_count.source, state.keep_mask(mask).source)
    assert torch.equal(by_count.hidden, state.keep_mask(mask).hidden)
    scores = torch.rand(24, generator=g)
    vis = state.visual_index
    kept = topk_visual(state, scores, 7, visual_index=vis)
    expected = state.source[vis[scores.topk(7).indices.sort().values]]
    assert torch.equal(kept.source[kept.is_visual], expected) and kept.num_visual == 7
    assert (kept.kind == int(TokenKind.TEXT)).sum() == 4
    assert kept.reindexed().next_position == len(kept) == int(kept.reindexed().position.max()) + 1


def test_each_stage_reads_the_device_once_for_its_visual_count(monkeypatch):
    state = _state(16)
    ctx = _ctx({}, torch.rand(len(state), generator=torch.Generator().manual_seed(1)))
    stage = PyramidDrop(ratio=0.5).make_stage(1)
    reads: list[str] = []

    def counted(owner, name):
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, **k: (reads.append(name), original(*a, **k))[1])

    for name in ("nonzero", "item", "tolist", "__bool__", "__int__"):
        counted(torch.Tensor, name)
    counted(torch, "nonzero")
    out = stage(state, ctx)
    monkeypatch.undo()
    assert reads == ["nonzero"]  # the visual index; the kept indices follow from its count
    assert out.num_visual == 8


def test_later_stages_know_their_visual_count_and_keep_the_tokens_a_read_would(monkeypatch):
    state = _state(32)
    attention = torch.rand(len(state), generator=torch.Generator().manual_seed(2))
    strategy = PyramidDrop(ratio=0.5)
    memory: dict = {}
    reads: list[str] = []
    original = torch.nonzero
    monkeypatch.setattr(torch, "nonzero", lambda *a, **k: (reads.append("nonzero"), original(*a, **k))[1])
    kept = [state]
    for s in (1, 2, 3):
        kept.append(strategy.make_stage(s)(kept[-1], _ctx(memory, attention)))
    monkeypatch.undo()
    assert reads == ["nonzero"] and [k.num_visual for k in kept] == [32, 16, 8, 4]
    for s in (2, 3):  # a fresh read of the visual count keeps the same tokens
        fresh = strategy.make_stage(s)(kept[s - 1], _ctx({"pdrop.input_visual": 32}, attention))
        assert torch.equal(fresh.source, kept[s].source)
    # a token removed by someone else between two stages: the count is read again
    other = kept[1].keep(torch.arange(1, len(kept[1])))
    memory_other = dict(memory, **{"pdrop.left": (len(kept[1]), 16)})
    out = strategy.make_stage(2)(other, _ctx(memory_other, attention))
    assert out.num_visual == 8 and torch.equal(out.source, kept[2].source[1:])  # its first token was text
