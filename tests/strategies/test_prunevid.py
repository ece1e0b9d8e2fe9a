from __future__ import annotations

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.strategies.prunevid import (
    GROUP_KEY,
    KEPT_KEY,
    PruneVid,
    group_keep_counts,
    group_representatives,
    refine_clusters,
    static_positions,
    temporal_segment_ids,
    temporal_segments,
    topk_per_group,
)
from prune_bench.testing import assert_drop_equals_mask


def test_refine_keeps_each_clusters_longest_run_and_hands_the_rest_to_the_longer_neighbour():
    # 0 keeps (3..5); its short run and the lone 1 go right to the run of 0s (left has none)
    assert refine_clusters([0, 0, 1, 0, 0, 0, 2, 2]) == [0, 0, 0, 0, 0, 0, 2, 2]
    # a lone frame between equally long neighbours joins the left one
    assert refine_clusters([1, 1, 0, 2, 2]) == [1, 1, 1, 2, 2]
    # equally long runs of one cluster are all kept (and stay separate segments)
    assert refine_clusters([0, 0, 1, 1, 0, 0]) == [0, 0, 1, 1, 0, 0]
    assert refine_clusters([3]) == [0]  # a cluster of one lone frame: nothing to join, cluster 0


def test_temporal_segments_follow_scene_changes():
    e1, e2 = torch.eye(4)[:2]
    noise = torch.linspace(0, 0.05, 8)[:, None] * torch.eye(4)[2]
    frames = torch.stack([e1] * 4 + [e2] * 4) + noise
    assert temporal_segments(frames, ratio=0.25, k=7).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_static_positions_use_mean_pairwise_cosine_and_one_frame_segments_are_dynamic():
    e1, e2 = torch.eye(2)
    feats = torch.stack(
        [torch.stack([e1, e1]), torch.stack([e1, e2]), torch.stack([e1, e1]), torch.stack([e2, e2])]
    )  # [T=4, P=2, D=2]
    seg = torch.tensor([0, 0, 0, 1])
    # segment 0: position 0 always e1 (cos 1); position 1 is e1, e2, e1: mean over ordered pairs 1/3
    assert static_positions(feats, seg, tau=0.8).tolist() == [[True, False], [False, False]]
    assert static_positions(feats, seg, tau=0.3).tolist() == [[True, True], [False, False]]


def test_group_keep_counts_truncate_as_coded_or_hit_a_total_by_largest_remainder():
    sizes = torch.tensor([5, 3, 2])
    assert group_keep_counts(sizes, 0.4, None).tolist() == [2, 1, 0]
    assert group_keep_counts(sizes, 0.4, 5).tolist() == [3, 1, 1]  # quotas 2.5, 1.5, 1


def test_topk_per_group_keeps_the_best_of_every_group():
    score = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.8])
    group = torch.tensor([0, 0, 1, 1, 0])
    assert sorted(topk_per_group(score, group, torch.tensor([2, 1])).tolist()) == [1, 2, 4]
    assert topk_per_group(score, group, torch.tensor([0, 0])).numel() == 0


def test_groups_above_fourteen_tokens_are_clustered_to_half():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 16, 8, generator=g)
    valid = torch.ones(2, 16, dtype=torch.bool)
    valid[1, 14:] = False  # 14 tokens: left alone
    rep = group_representatives(features, valid, ratio=0.5, k=7)
    centres = rep[0].unique()
    assert centres.numel() == 8 and torch.equal(rep[0, centres], centres)  # centres are their own rep
    assert torch.equal(rep[1], torch.arange(16))


def _video_state() -> TokenState:
    # 2 text, 2 frames x 4 tokens (2x2), newline, 2 text
    n = 2 + 8 + 1 + 2
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2:10] = int(TokenKind.VISUAL)
    kind[10] = int(TokenKind.NEWLINE)
    frame = torch.full((n,), -1)
    frame[2:10] = torch.arange(8) // 4
    row, col = torch.full((n,), -1), torch.full((n,), -1)
    row[2:10] = (torch.arange(8) % 4) // 2
    col[2:10] = torch.arange(8) % 2
    hidden = torch.zeros(n, 3)
    hidden[:2] = torch.tensor([0.0, 0.0, 1.0])
    hidden[10:] = torch.tensor([0.0, 0.0, 1.0])
    hidden[2:6] = torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    hidden[6:10] = torch.tensor([[1.0, -0.1, 0.0], [0.0, 1.0, 0.05], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    return TokenState.from_layout(hidden, kind, frame, row, col)


def test_stage_one_averages_static_positions_over_time_at_the_first_frame():
    state = _video_state()
    ctx = StageContext(hook="segment", num_layers=4, generator=torch.Generator(), memory={})
    out = PruneVid().merge_frames(state, ctx)
    # positions 0 and 1 are static (cos .98 and ~1): one token each at frame 0; 2 and 3 are dynamic
    assert out.source.tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12]
    torch.testing.assert_close(out.hidden[2], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out.hidden[3], (state.hidden[3] + state.hidden[7]) / 2)
    torch.testing.assert_close(out.hidden[4], state.hidden[4])
    groups = ctx.memory[GROUP_KEY][out.source[out.is_visual]]
    assert groups.tolist() == [0, 0, 1, 1, 2, 2]  # static of segment 0, dynamic of frames 0 and 1


def test_stage_two_ranks_by_max_over_heads_then_queries_of_the_text_after_the_video():
    state = _video_state().keep(torch.tensor([0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12]))
    asked = []

    def rows(s: TokenState, q: int) -> torch.Tensor:
        asked.append(q)
        attn = torch.zeros(2, q, len(s))
        attn[0, 0, 2:8] = torch.tensor([0.1, 0.5, 0.2, 0.1, 0.0, 0.3])
        attn[1, 1, 2:8] = torch.tensor([0.6, 0.0, 0.1, 0.3, 0.2, 0.1])
        return attn

    memory = {GROUP_KEY: torch.tensor([-1, -1, 0, 0, 1, 1, -1, -1, 2, 2, -1, -1, -1])}
    ctx = StageContext(
        hook="layer", layer=1, num_layers=4, generator=torch.Generator(), memory=memory, _attention=rows
    )
    out = PruneVid(alpha=0.5).attention_prune(state, ctx)
    assert asked == [2]  # the two text tokens after the newline
    # maxima: [.6, .5 | .2, .3 | .2, .3] -> one per group: sources 2, 5, 9
    assert out.source[out.is_visual].tolist() == [2, 5, 9]
    assert memory[KEPT_KEY].tolist() == [2, 5, 9]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"slice_early_caches": False},
        {"tau": 0.0},
        {"position_policy": "keep"},
        {"merged_order": "official"},
    ],
)
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(PruneVid(**options).stages(info), info.num_layers)
    assert_drop_equals_mask(tiny_adapter, sample, plan, 3)


def test_budget_mode_solves_alpha_for_the_layer_average_and_warns(tiny_adapter, tiny_sample):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    with pytest.warns(BudgetWarning, match="emerges"):
        strategy = PruneVid.for_budget(0.5, "layer-average", info)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    result = tiny_adapter.run(sample, plan, max_new_tokens=2)
    assert result.input_retention > 0.5  # stage 1 alone keeps more on this clip
    assert result.layer_average_retention == pytest.approx(0.5, abs=1 / 24)
    pre = tiny_adapter.runner.prefill(sample.state, plan, vision=sample.vision)
    assert result.decode_visible_visual == pre.state.num_visual  # early caches hide the pruned tokens


def test_selected_layer_is_ten_unless_the_model_is_too_shallow():
    deep = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    assert PruneVid().selected_layer(deep.num_layers) == 10
    assert PruneVid().selected_layer(8) == 2  # 10 * 8 / 32, rounded


def _frames_state(feats: torch.Tensor, side: int) -> TokenState:
    """2 text, ``feats`` [T, P, D] as T frames of side x side tokens, 2 text."""
    t, p, d = feats.shape
    n = 2 + t * p + 2
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2 : 2 + t * p] = int(TokenKind.VISUAL)
    frame, row, col = (torch.full((n,), -1) for _ in range(3))
    idx = torch.arange(t * p)
    frame[2 : 2 + t * p], row[2 : 2 + t * p], col[2 : 2 + t * p] = idx // p, (idx % p) // side, idx % side
    hidden = torch.zeros(n, d)
    hidden[2 : 2 + t * p] = feats.reshape(t * p, d)
    return TokenState.from_layout(hidden, kind, frame, row, col)


def _segment_ctx() -> StageContext:
    return StageContext(hook="segment", num_layers=4, generator=torch.Generator(), memory={})


def test_official_order_puts_a_segments_static_tokens_before_the_first_frames_dynamic_ones():
    # 2 frames of 2x2: position 0 changes, positions 1-3 are static
    e = torch.eye(4)
    feats = torch.stack([torch.stack([e[0], e[1], e[2], e[3]]), torch.stack([-e[0], e[1], e[2], 0.9 * e[3]])])
    state = _frames_state(feats, side=2)
    ctx = _segment_ctx()
    out = PruneVid(merged_order="official").merge_frames(state, ctx)
    vis = out.visual_index
    expected = torch.stack([e[1], e[2], 0.95 * e[3], e[0], -e[0]])  # statics (time means), dynamic f0, f1
    torch.testing.assert_close(out.hidden[vis], expected)
    assert out.weight[vis].tolist() == [2, 2, 2, 1, 1]
    assert ctx.memory[GROUP_KEY][out.source[vis]].tolist() == [0, 0, 0, 1, 2]
    assert out.frame[vis].tolist() == [0, 0, 0, 0, 1]
    spatial = PruneVid().merge_frames(state, _segment_ctx())
    torch.testing.assert_close(spatial.hidden[spatial.visual_index], expected[[3, 0, 1, 2, 4]])


def _dpc_clusters_in_score_order(x: torch.Tensor, clusters: int, k: int) -> list[torch.Tensor]:
    # the code's cluster_dpc_knn without its tie-break noise: members of each cluster, best centre first
    dist = torch.cdist(x, x) / x.shape[-1] ** 0.5
    density = (-(dist.topk(k, dim=-1, largest=False).values ** 2).mean(dim=-1)).exp()
    higher = density[None, :] > density[:, None]
    delta = torch.where(higher, dist, dist.max()).min(dim=-1).values
    centres = (delta * density).topk(clusters).indices
    assign = dist[centres].argmin(dim=0)
    assign[centres] = torch.arange(clusters)
    return [torch.nonzero(assign == c).flatten() for c in range(clusters)]


def test_official_order_emits_each_frames_dynamic_cluster_means_in_density_peak_score_order():
    feats = torch.randn(2, 16, 6, generator=torch.Generator().manual_seed(3))  # dissimilar: all dynamic
    state = _frames_state(feats, side=4)
    out = PruneVid(merged_order="official", tau=2.0).merge_frames(state, _segment_ctx())
    expected = torch.cat(
        [
            torch.stack(
                [feats[f, members].mean(dim=0) for members in _dpc_clusters_in_score_order(feats[f], 8, 7)]
            )
            for f in range(2)
        ]
    )
    vis = out.visual_index
    torch.testing.assert_close(out.hidden[vis], expected)
    reindexed = out.reindexed()  # the stage's position policy: numbered contiguously in this order
    assert reindexed.position[vis].tolist() == list(range(2, 18))
    spatial = PruneVid(tau=2.0).merge_frames(state, _segment_ctx())
    assert not torch.allclose(spatial.hidden[spatial.visual_index], expected)
    # the same clusters, only placed differently
    torch.testing.assert_close(
        spatial.hidden[spatial.visual_index].sum(dim=0), expected.sum(dim=0), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("seed", range(5))
def test_largest_remainders_ranked_on_the_device_match_the_plain_loop(seed):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(0, 40, (17,), generator=g)
    for total in (0, 1, 37, int(sizes.sum()) - 3, int(sizes.sum()) + 5):
        quota = sizes.float() * min(total, int(sizes.sum())) / sizes.sum().clamp_min(1)
        expected = quota.floor().long()
        for i in (quota - expected).argsort(descending=True, stable=True)[
            : min(total, int(sizes.sum())) - int(expected.sum())
        ]:
            expected[i] += 1
        expected = torch.minimum(expected, sizes)
        assert torch.equal(group_keep_counts(sizes, 0.4, total), expected)
        assert torch.equal(group_keep_counts(sizes, 0.4, total, size_total=int(sizes.sum())), expected)


def test_segment_ids_on_the_host_match_the_tensor_and_widths():
    frames = torch.cat(
        [torch.randn(1, 8).expand(4, -1), torch.randn(1, 8).expand(5, -1)]
    ) + 0.01 * torch.randn(9, 8)
    ids = temporal_segment_ids(frames, ratio=0.25, k=7)
    assert temporal_segments(frames, ratio=0.25, k=7).tolist() == ids == [0] * 4 + [1] * 5
    seg = torch.tensor(ids)
    feats = torch.randn(9, 3, 4)
    assert torch.equal(static_positions(feats, seg, 0.1, [4, 5]), static_positions(feats, seg, 0.1))
