from __future__ import annotations

import math

import pytest
import torch

from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.common.dpc_knn import dpc_knn_cluster, dpc_knn_score
from prune_bench.strategies.common.temporal import frame_grid_index
from prune_bench.strategies.fastvid import (
    FastVID,
    anchor_token_counts,
    density_merge,
    dynamic_segments,
    per_frame_budget,
)
from prune_bench.testing import assert_drop_equals_mask


def dense_density_merge(tokens, score, anchors, pool, beta):
    """The DTM as first written: every anchor of every frame against every token of the video."""
    t, m, d = tokens.shape
    a = int(anchors.max().item())
    index = score.topk(a, dim=1).indices
    valid = torch.arange(a)[None, :] < anchors[:, None]
    x = tokens.float()
    anchor_x = x.gather(1, index[..., None].expand(-1, -1, d))
    flat = x.reshape(t * m, d)
    sim = torch.einsum(
        "tad,nd->tan",
        torch.nn.functional.normalize(anchor_x, dim=-1),
        torch.nn.functional.normalize(flat, dim=-1),
    )
    best = sim.masked_fill(~valid[..., None], -torch.inf).argmax(dim=1)
    joins = pool.repeat_interleave(m, dim=1) & valid.any(dim=1, keepdim=True)
    onehot = torch.nn.functional.one_hot(best, a).float() * joins[..., None].float()
    count = onehot.sum(dim=1)
    mean = torch.bmm(onehot.transpose(1, 2), flat[None].expand(t, -1, -1)) / count.clamp_min(1)[..., None]
    w = (1.0 / (count + 1)).clamp_min(beta)[..., None]
    return index, valid, w * anchor_x + (1 - w) * mean


def test_dpc_knn_score_is_density_times_distance_to_a_denser_token():
    x = torch.tensor([[0.0], [1.0], [1.4], [4.0]])[None]
    score, _ = dpc_knn_score(x, k=3)
    # mean squared distance to the 3 nearest (self included): t0 (0,1,1.4), t1 (0,.4,1), t2 (0,.4,1.4), t3 (0,2.6,3)
    rho = torch.exp(-torch.tensor([(1 + 1.96) / 3, (0.16 + 1) / 3, (0.16 + 1.96) / 3, (6.76 + 9) / 3]))
    # densest t1 gets the largest distance (4); t2 -> t1 (.4); t0 -> t1 (1); t3 -> t2 (2.6)
    delta = torch.tensor([1.0, 4.0, 0.4, 2.6])
    torch.testing.assert_close(score[0], rho * delta)
    centres, assignment = dpc_knn_cluster(x, 2, k=3)
    assert centres[0].tolist() == [1, 0]
    assert assignment[0].tolist() == [1, 0, 0, 0]


def test_dpc_knn_padding_does_not_change_real_tokens():
    x = torch.tensor([[0.0], [1.0], [1.4], [4.0], [100.0]])[None]
    valid = torch.tensor([[True, True, True, True, False]])
    padded, _ = dpc_knn_score(x, 3, valid)
    plain, _ = dpc_knn_score(x[:, :4], 3)
    assert padded[0, 4] == -torch.inf
    torch.testing.assert_close(padded[0, :3], plain[0, :3])


def test_per_frame_budget_truncates_like_the_code():
    assert per_frame_budget(196, 0.10, 0.4) == (12, 7)  # retain 19
    assert per_frame_budget(16, 0.2, 0.4) == (2, 1)
    assert per_frame_budget(16, 0.5, 0.4) == (5, 3)


def test_dyseg_cuts_at_the_least_similar_transitions_and_below_tau():
    s = 1 / math.sqrt(2)
    f = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1], [s, s], [s, s]])  # sims 1, 0, 1, .71, 1
    assert dynamic_segments(f, segments=2, tau=0.9).tolist() == [0, 0, 1, 1, 2, 2]
    assert dynamic_segments(f, segments=2, tau=0.5).tolist() == [0, 0, 1, 1, 1, 1]
    assert dynamic_segments(f, segments=3, tau=0.0).tolist() == [0, 0, 1, 1, 2, 2]
    assert dynamic_segments(f, segments=50, tau=0.0).tolist() == [0, 1, 2, 3, 4, 5]  # clamped


def test_anchor_frames_are_every_pth_from_the_segment_end():
    seg = torch.tensor([0, 0, 0, 0, 0, 1])
    # segment 0: L=5, ceil(5/4)=2 anchor frames (4 and 0) with (2*5)//2 = 5; segment 1 single: 2
    assert anchor_token_counts(seg, context=2, stride=4).tolist() == [5, 0, 0, 0, 5, 2]
    assert anchor_token_counts(seg, context=2, stride=2).tolist() == [3, 0, 3, 0, 3, 2]


def test_density_merge_weights_anchor_by_max_inverse_count_and_beta():
    tokens = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]])
    score = torch.tensor([[0.5, 0.1, 0.9]])
    pool = torch.tensor([[True]])
    index, valid, merged = density_merge(tokens, score, torch.tensor([2]), pool, beta=0.6)
    assert index[0].tolist() == [2, 0] and valid.all()
    # anchor 2 absorbs itself (w = max(1/2, .6)); anchor 0 absorbs tokens 0 and 1 (w = max(1/3, .6))
    torch.testing.assert_close(merged[0], torch.tensor([[0.0, 1.0], [0.98, 0.02]]))
    _, _, free = density_merge(tokens, score, torch.tensor([2]), pool, beta=0.0)
    torch.testing.assert_close(free[0, 1], torch.tensor([1 / 3 + 2 / 3 * 0.95, 2 / 3 * 0.05]))


def test_density_merge_of_a_multi_frame_segment_pools_every_frame_into_the_anchor_frame():
    tokens = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.1], [0.0, 2.0]]])
    score = torch.tensor([[0.0, 0.0], [0.9, 0.1]])
    pool = torch.ones(2, 2, dtype=torch.bool)
    index, valid, merged = density_merge(tokens, score, torch.tensor([0, 1]), pool, beta=0.0)
    assert valid.tolist() == [[False], [True]] and index[1].tolist() == [0]
    # frame 1's single anchor (1, .1) absorbs all 4 tokens: w = 1/5
    mean = tokens.reshape(4, 2).mean(dim=0)
    torch.testing.assert_close(merged[1, 0], 0.2 * tokens[1, 0] + 0.8 * mean)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_density_merge_over_anchor_frames_only_equals_the_dense_merge(stride):
    g = torch.Generator().manual_seed(stride)
    frames, m, d, context = 12, 9, 16, 2
    tokens = torch.randn(frames, m, d, generator=g)
    score = torch.rand(frames, m, generator=g)
    segment = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 3, 3])
    anchors = anchor_token_counts(segment, context, stride).clamp_max(m)
    frame = torch.arange(frames)
    single = anchors == context
    pool = torch.where(
        single[:, None], frame[:, None] == frame[None, :], segment[:, None] == segment[None, :]
    )
    index, valid, merged = density_merge(tokens, score, anchors, pool, beta=0.3)
    ref_index, ref_valid, ref_merged = dense_density_merge(tokens, score, anchors, pool, beta=0.3)
    assert torch.equal(index, ref_index) and torch.equal(valid, ref_valid)
    torch.testing.assert_close(merged, ref_merged, rtol=1e-5, atol=1e-6)
    assert torch.equal(
        merged[anchors == 0], tokens.gather(1, index[..., None].expand(-1, -1, d))[anchors == 0]
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"position_policy": "reindex"},
        {"context_share": 0.5},  # 1 salient + 1 context of 4: exercises the anchor merge
        {"context_share": 0.5, "anchor_stride": 1, "segments": 2},
    ],
)
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(FastVID.for_budget(0.5, "input", info, **options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


def test_salient_tokens_are_kept_positions_are_original_and_text_untouched(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = FastVID.for_budget(0.5, "layer-average", info)
    assert per_frame_budget(info.tokens_per_frame, strategy.config.retention_ratio, 0.4) == (2, 0)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    pre = tiny_adapter.runner.prefill(sample.state, plan, vision=sample.vision)
    full, out = sample.state, pre.state
    assert torch.equal(out.source[out.kind != TokenKind.VISUAL], full.source[full.kind != TokenKind.VISUAL])
    assert torch.equal(out.position, full.position[out.source])  # original positions
    salient, context = per_frame_budget(info.tokens_per_frame, 0.5, 0.4)
    grid = frame_grid_index(full)
    top = sample.vision().received.topk(salient, dim=1).indices
    assert torch.isin(grid.gather(1, top).flatten(), out.source).all()
    kept = out.num_visual / full.num_visual
    assert salient / info.tokens_per_frame <= kept <= (salient + context) / info.tokens_per_frame
    result = tiny_adapter.run(sample, plan)
    assert result.layer_average_retention == pytest.approx(result.input_retention)


def test_budget_maps_to_rho_and_warns_below_one_token_per_frame():
    info = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    rho = FastVID.for_budget(0.1, "input", info).config.retention_ratio
    assert int(196 * rho) == 20  # round(19.6); the authors' rho = 0.10 itself gives 19
    small = ModelInfo(
        num_layers=8, num_frames=16, tokens_per_frame=16, hidden_size=64, family="llava_onevision"
    )
    assert int(16 * FastVID.for_budget(0.3, "input", small).config.retention_ratio) == 5  # round(4.8)
    assert FastVID().config.retention_ratio == 0.1  # the authors' default
    with pytest.warns(BudgetWarning):
        strategy = FastVID.for_budget(0.001, "flops", info)
    assert per_frame_budget(196, strategy.config.retention_ratio, 0.4) == (1, 0)
