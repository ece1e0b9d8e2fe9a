from __future__ import annotations

import itertools

import pytest
import torch

from prune_bench.core.context import StageContext
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.strategies.common.dpp import greedy_dpp_map
from prune_bench.strategies.common.temporal import (
    previous_frame_similarity,
    run_start_targets,
    segment_by_merge_ratio,
)
from prune_bench.strategies.hieravid import (
    PRESETS,
    HieraVid,
    cumulative_keep,
    layer_average,
    relevance_spread,
    scaled_stage_layers,
    segment_marginal_value,
)


def test_segments_open_where_few_tokens_resemble_the_previous_frame():
    sim = torch.tensor(
        [
            [-torch.inf] * 5,
            [0.9, 0.9, 0.9, 0.1, 0.1],  # 3/5 = 0.6 similar -> same segment
            [0.9, 0.1, 0.1, 0.1, 0.1],  # 1/5 = 0.2 < 0.4 -> new segment
            [0.7, 0.7, 0.1, 0.1, 0.1],  # 2/5 = 0.4, not < 0.4 -> same segment
            [0.5, 0.5, 0.5, 0.5, 0.5],  # 0.5 is not > 0.6 -> 0 similar -> new segment
        ]
    )
    assert segment_by_merge_ratio(sim, threshold=0.6, beta=0.4).tolist() == [0, 0, 1, 1, 2]


def test_previous_frame_similarity_compares_the_same_position():
    feats = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    sim = previous_frame_similarity(feats)
    assert torch.isinf(sim[0]).all()
    assert sim[1].tolist() == pytest.approx([1.0, 0.0])


def test_marginal_value_matches_hand_computation():
    # three one-frame segments with features e1, e1, e2 (one token each)
    feats = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    mv = segment_marginal_value(feats, torch.tensor([0, 1, 2]), k=0.5)
    # seg0: a1=0, a2=cos(e1, mean(e1,e2))=0.7071 -> 0.5*(1-0.7071)=0.1464
    # seg1: a1=cos(e1,e1)=1, a2=cos(e1,e2)=0 -> 0.5+0.5=1.0
    # seg2: a1=cos(e2, e1)=0, a2=0 -> 0.5
    raw = torch.tensor([0.5 * (1 - 2**-0.5), 1.0, 0.5])
    expected = (raw - raw.mean()) / (raw.std(unbiased=False) + 1e-8)  # population std, as the authors
    torch.testing.assert_close(mv, expected)


def test_runs_of_merged_tokens_collapse_into_their_first_frame():
    merged = torch.tensor([[False, False], [True, False], [True, True], [False, True]])
    assert run_start_targets(merged).tolist() == [[0, 0], [0, 1], [0, 1], [3, 1]]


def _state_from_frames(feats: torch.Tensor, text_before: int = 2, text_after: int = 3) -> TokenState:
    t, p, d = feats.shape
    side = int(p**0.5)
    n = text_before + t * p + text_after
    hidden = torch.randn(n, d, generator=torch.Generator().manual_seed(0))
    hidden[text_before : text_before + t * p] = feats.reshape(t * p, d)
    kind = torch.zeros(n, dtype=torch.int8)
    kind[text_before : text_before + t * p] = int(TokenKind.VISUAL)
    frame = torch.full((n,), -1)
    row, col = frame.clone(), frame.clone()
    idx = torch.arange(t * p)
    frame[text_before : text_before + t * p] = idx // p
    row[text_before : text_before + t * p] = (idx % p) // side
    col[text_before : text_before + t * p] = idx % side
    return TokenState.from_layout(hidden, kind, frame, row, col)


def _ctx() -> StageContext:
    return StageContext(hook="segment", num_layers=8, generator=torch.Generator(), memory={})


def test_segment_merge_averages_runs_and_keeps_the_first_position():
    # 3 frames x 4 positions, 2-D features; position 0 is static across frames, others change
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    feats = torch.stack(
        [
            torch.stack([a, a, b, a]),
            torch.stack([a * 2, b, a, b]),  # position 0 is similar to frame 0 (cos 1)
            torch.stack([a * 3, a, b, a]),
        ]
    )
    state = _state_from_frames(feats)
    strategy = HieraVid(prune_ratios=(2 / 12, 0.3, 0.3, 0.57), segment_level=False)
    out = strategy.segment_and_merge(state, _ctx())
    assert out.num_visual == 10
    # position 0 of frames 1 and 2 merged into frame 0's token: mean of a, 2a, 3a = 2a, at frame 0's position
    rep = torch.nonzero(
        (out.kind == TokenKind.VISUAL) & (out.frame == 0) & (out.row == 0) & (out.col == 0)
    ).item()
    torch.testing.assert_close(out.hidden[rep], 2 * a)
    assert out.position[rep].item() == 2  # first visual token's original position
    assert out.weight[rep].item() == 3
    assert torch.equal(out.position, state.position[out.source])


def _naive_greedy(kernel: torch.Tensor, k: int) -> set[int]:
    chosen: list[int] = []
    for _ in range(k):
        best, best_det = None, -float("inf")
        for j in range(kernel.shape[0]):
            if j in chosen:
                continue
            idx = chosen + [j]
            det = torch.linalg.det(kernel[idx][:, idx].double()).item()
            if det > best_det:
                best, best_det = j, det
        chosen.append(best)  # type: ignore[arg-type]
    return set(chosen)


def test_batched_greedy_dpp_matches_naive_greedy_and_brute_force_map():
    g = torch.Generator().manual_seed(3)
    kernels, sizes, budgets = [], [6, 5, 4], [3, 2, 4]
    padded = torch.zeros(3, 6, 6)
    for i, (n, _k) in enumerate(zip(sizes, budgets, strict=True)):
        x = torch.randn(n, 4, generator=g)
        kern = x @ x.T + 0.1 * torch.eye(n)
        kernels.append(kern)
        padded[i, :n, :n] = kern
    picked = greedy_dpp_map(padded, torch.tensor(sizes), torch.tensor(budgets))
    for i, (kern, n, k) in enumerate(zip(kernels, sizes, budgets, strict=True)):
        got = set(torch.nonzero(picked[i, :n]).flatten().tolist())
        assert got == _naive_greedy(kern, k)
        assert not picked[i, n:].any()
        # greedy is within the known bound of the exact MAP; on these kernels it reaches it
        best = max(
            torch.linalg.det(kern[list(s)][:, list(s)].double()).item()
            for s in itertools.combinations(range(n), k)
        )
        assert torch.linalg.det(kern[sorted(got)][:, sorted(got)].double()).item() >= 0.5 * best


def test_greedy_dpp_picks_the_full_budget_beyond_the_kernel_rank():
    # 12 items in a 3-dimensional feature space: the kernel has rank 3, the budget is 8.
    x = torch.nn.functional.normalize(
        torch.randn(2, 12, 3, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    kernel = x @ x.transpose(1, 2)
    picked = greedy_dpp_map(kernel, torch.tensor([12, 10]), torch.tensor([8, 10]))
    assert picked.sum(dim=1).tolist() == [8, 10]
    assert not picked[1, 10:].any()


def test_greedy_dpp_keeps_its_budget_far_past_the_kernel_rank():
    # rank 128, 680 picks: dividing the residual noise by sqrt(floor) pick after pick once used to grow
    # until it overflowed, every score became -inf and item 0 was picked again and again (641-667 of
    # 680 here; HieraVid kept 0.287 for 0.3 at 64 frames on the 7B shape). Exhausted kernels now stop
    # extending their factor and rank the rest by relevance.
    for seed in (1, 2, 3):
        g = torch.Generator().manual_seed(seed)
        base = 4 * torch.randn(128, generator=g)  # LLM-like states: a large shared direction
        x = (base + torch.randn(1, 700, 128, generator=g)).bfloat16().float()
        x = torch.nn.functional.normalize(x, dim=-1)
        r = torch.rand(1, 700, generator=g)
        r = (r - r.min() + 1e-6) / (r.max() - r.min())
        kernel = r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :]
        picked = greedy_dpp_map(kernel, torch.tensor([700]), torch.tensor([680]))
        assert picked.sum().item() == 680
        # past the rank, the rest come by relevance: the 20 left out are the least relevant ones
        first = greedy_dpp_map(kernel, torch.tensor([700]), torch.tensor([128]))
        later = picked & ~first
        left = ~picked
        assert r[left].max() <= r[later].min()


def test_greedy_dpp_picks_the_full_budget_from_a_kernel_with_non_finite_entries():
    # NaN would win every argmax and be picked again and again: fewer distinct tokens than the budget
    x = torch.nn.functional.normalize(
        torch.randn(2, 12, 4, generator=torch.Generator().manual_seed(1)), dim=-1
    )
    kernel = x @ x.transpose(1, 2)
    kernel[0, 3, :] = float("nan")
    kernel[1, :, 5] = float("inf")
    picked = greedy_dpp_map(kernel, torch.tensor([12, 12]), torch.tensor([9, 7]))
    assert picked.sum(dim=1).tolist() == [9, 7]


def test_segment_budgets_follow_marginal_value_with_clamp_and_truncation():
    strategy = HieraVid(match_stage_total=False)
    budgets = strategy.segment_budgets(torch.tensor([10, 10, 100]), 0.7, torch.tensor([1.0, -9.0, 3.0]))
    # int(10*0.8)=8, int(10*clamp(-0.2))=int(0.5)=0, int(100*min(1.0,0.95))=95
    assert budgets.tolist() == [8, 0, 95]
    assert HieraVid(dynamic_budget=False).segment_budgets(
        torch.tensor([10]), 0.7, torch.tensor([1.0])
    ).tolist() == [7]


def test_stage_total_matches_the_schedule_in_the_authors_proportions():
    budgets = HieraVid().segment_budgets(torch.tensor([10, 10, 100]), 0.7, torch.tensor([1.0, -9.0, 3.0]))
    # authors: [8, 0, 95] = 103 > int(0.7 * 120) = 84; scaled 6.52, 0, 77.47 -> floors 6, 0, 77, +1 to 6.52
    assert budgets.tolist() == [7, 0, 77]


def test_match_total_respects_segment_sizes():
    from prune_bench.strategies.hieravid import match_total

    counts = torch.tensor([4, 50, 50])
    out = match_total(torch.tensor([4, 1, 1]), counts, 60)  # segment 0 is full: the rest share the excess
    assert out.tolist() == [4, 28, 28] and bool((out <= counts).all())
    assert match_total(torch.tensor([0, 0, 0]), counts, 10).sum() == 10
    assert match_total(torch.tensor([3, 3, 3]), counts, 500).tolist() == [4, 50, 50]


def test_relevance_spread_keeps_the_best_token_of_each_bucket():
    rel = torch.tensor([0.1, 0.9, 0.2, 0.3, 0.5, 0.4, 0.8, 0.7])
    seg = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    kept = relevance_spread(rel, seg, torch.tensor([4, 4]), torch.tensor([2, 1]))
    assert sorted(kept.tolist()) == [1, 3, 6]


def test_relevance_spread_buckets_follow_the_authors_partition():
    # bucket b of a segment of n tokens holds slots [b * n // k, (b + 1) * n // k)
    for n in range(1, 24):
        for k in range(1, n + 1):
            rel = torch.arange(n, dtype=torch.float32).flip(0)  # the first slot of a bucket wins
            kept = relevance_spread(
                rel, torch.zeros(n, dtype=torch.long), torch.tensor([n]), torch.tensor([k])
            )
            assert sorted(kept.tolist()) == [b * n // k for b in range(k)], (n, k)


def test_authors_presets_and_scaled_stage_layers():
    assert scaled_stage_layers(28) == (7, 14, 21)
    assert scaled_stage_layers(8) == (2, 4, 6)
    # by the authors' counting (stage s starts at its layer) the 30% preset averages 0.300
    cum = [1.0 - PRESETS[0.3][0], *cumulative_keep(PRESETS[0.3])[1:]]
    assert sum(c * 7 for c in cum) / 28 == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("keep", [0.1, 0.2, 0.3])
def test_for_budget_schedule_hits_the_layer_average(keep):
    from prune_bench.core.strategy import ModelInfo

    info = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    s = HieraVid.for_budget(keep, "layer-average", info)
    cum = cumulative_keep(s.config.prune_ratios)
    assert layer_average(cum, (7, 14, 21), 28) == pytest.approx(keep, abs=1e-6)


def _two_scene_frames(adapter, frames=16):
    g = torch.Generator().manual_seed(0)
    size = adapter.config.vision_config.image_size
    scenes = torch.randint(0, 256, (2, size, size, 3), generator=g, dtype=torch.uint8)
    video = torch.cat([scenes[0].expand(frames // 2, -1, -1, -1), scenes[1].expand(frames // 2, -1, -1, -1)])
    noise = torch.randint(-6, 7, video.shape, generator=g)
    return (video.int() + noise).clamp(0, 255).to(torch.uint8)


@pytest.fixture(scope="module")
def eight_layer_adapter():
    from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter, tiny_llava_onevision_config

    return LlavaOnevisionAdapter.from_config(tiny_llava_onevision_config(num_layers=8, image_size=64), seed=0)


@pytest.mark.parametrize("keep", [0.1, 0.2, 0.3])
def test_achieved_layer_average_retention_is_within_one_point(eight_layer_adapter, keep):
    a = eight_layer_adapter
    video = _two_scene_frames(a)
    ids = [3, 4] + [a.config.video_token_id] * a.video_token_count(16) + [5, 6, 7]
    sample = a.encode_ids(ids, a.pixels(video), None, capture_vision=False)
    info = a.model_info(16)
    plan = PruningPlan.of(HieraVid.for_budget(keep, "layer-average", info).stages(info), 8)
    result = a.run(sample, plan)
    assert result.layer_average_retention == pytest.approx(keep, abs=0.01)


def test_hieravid_drop_mode_matches_mask_mode_with_every_ablation(eight_layer_adapter):
    a = eight_layer_adapter
    video = _two_scene_frames(a)
    ids = [3, 4] + [a.config.video_token_id] * a.video_token_count(16) + [5, 6, 7]
    sample = a.encode_ids(ids, a.pixels(video), None, capture_vision=False)
    info = a.model_info(16)
    variants = [
        {},
        {"relevance_sign": "positive"},
        {"frame_level": False},
        {"first_stage_selector": "relevance_spread"},
        {"dynamic_budget": False},
        {"segment_level": False},
        {"last_token_as_text": True},
        {"last_token_as_text": True, "frame_level": False},
        {"last_token_as_text": True, "first_stage_selector": "relevance_spread"},
    ]
    for options in variants:
        plan = PruningPlan.of(HieraVid.for_budget(0.3, "layer-average", info, **options).stages(info), 8)
        drop = a.run(sample, plan, mode="drop", max_new_tokens=3)
        mask = a.run(sample, plan, mode="mask", max_new_tokens=3)
        assert drop.generated == mask.generated, options
        assert [c.mlp_visual for c in drop.counts] == [c.mlp_visual for c in mask.counts], options


def _uneven_scenes(adapter, lengths=(2, 3, 9, 2, 6, 10)):
    g = torch.Generator().manual_seed(1)
    size = adapter.config.vision_config.image_size
    scenes = torch.randint(0, 256, (len(lengths), size, size, 3), generator=g, dtype=torch.uint8)
    video = torch.cat([scenes[i].expand(n, -1, -1, -1) for i, n in enumerate(lengths)])
    return (video.int() + torch.randint(-6, 7, video.shape, generator=g)).clamp(0, 255).to(torch.uint8)


def test_stage_totals_hold_the_budget_on_uneven_segments(eight_layer_adapter):
    # six scenes of 2-10 frames: the size-blind marginal-value shifts move the authors' stage totals
    # (0.094 achieved for 0.1 on this video); matched totals stay on the schedule
    a = eight_layer_adapter
    video = _uneven_scenes(a)
    frames = video.shape[0]
    ids = [3, 4] + [a.config.video_token_id] * a.video_token_count(frames) + [5, 6, 7]
    sample = a.encode_ids(ids, a.pixels(video), None, capture_vision=False)
    info = a.model_info(frames)
    achieved = {}
    for match in (False, True):
        strategy = HieraVid.for_budget(0.1, "layer-average", info, match_stage_total=match)
        achieved[match] = a.run(sample, PruningPlan.of(strategy.stages(info), 8)).layer_average_retention
    assert achieved[True] == pytest.approx(0.1, abs=0.002)
    assert abs(achieved[False] - 0.1) > abs(achieved[True] - 0.1)


def test_fixed_shape_dpp_step_picks_what_the_eager_loop_picks():
    # the step the CUDA-graph path replays, run eagerly here: same pick order as the eager loop
    from prune_bench.strategies.common import dpp

    x = torch.nn.functional.normalize(
        torch.randn(3, 40, 6, generator=torch.Generator().manual_seed(2)), dim=-1
    )
    r = torch.rand(3, 40, generator=torch.Generator().manual_seed(3))
    kernel = r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :]  # rank 6 < steps: past-rank picks too
    diag = torch.diagonal(kernel, dim1=1, dim2=2)
    floor = (dpp.RANK_EPS * diag.amax(dim=1)).clamp_min(1e-30)[:, None]
    tie = dpp.TIE * diag
    steps = 20
    eager = dpp._eager_order(kernel, diag + tie, tie, floor, steps)
    chol = kernel.new_zeros(3, 25, 40)
    order = torch.zeros(3, 25, dtype=torch.long)
    step = torch.zeros(1, dtype=torch.long)
    score = diag + tie
    for _ in range(25):  # padding steps past `steps` must not disturb the first ones
        dpp.fixed_shape_step(kernel, score, tie, floor, chol, order, step)
    assert torch.equal(order[:, :steps], eager) and int(step) == 25


def test_qwen2_vl_uses_the_authors_four_query_tokens():
    from prune_bench.core.strategy import ModelInfo

    qwen = ModelInfo(num_layers=28, num_frames=32, tokens_per_frame=144, hidden_size=3584, family="qwen2_vl")
    llava = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=3584, family="llava_onevision"
    )
    assert HieraVid.for_budget(0.3, "layer-average", qwen).config.query_tokens == 4
    assert HieraVid.for_budget(0.3, "layer-average", llava).config.query_tokens == 1
    assert HieraVid.for_budget(0.3, "layer-average", qwen, query_tokens=2).config.query_tokens == 2
    qwen3 = ModelInfo(num_layers=36, num_frames=32, tokens_per_frame=144, hidden_size=4096, family="qwen3_vl")
    assert HieraVid.for_budget(0.3, "layer-average", qwen3).config.query_tokens == 4  # ours, documented


def test_segment_sizes_equal_bincount_with_and_without_the_number_of_ids() -> None:
    from prune_bench.strategies.hieravid import _segment_sizes

    seg = torch.tensor([0, 0, 2, 2, 2, 3])
    for num_ids in (None, 4, 6):  # trailing empty ids (4, 5) are not counted, as bincount's
        assert _segment_sizes(seg, num_ids).tolist() == [2, 0, 3, 1]
    assert _segment_sizes(torch.tensor([0, 0]), 3).tolist() == [2]


def _authors_segment_value(hidden: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
    # segment_dynamic_prune_ratio1 of the authors' main.py: token means of each segment id >= 0
    ids = sorted(set(segment[segment >= 0].tolist()))
    f = torch.stack([hidden[segment == i].double().mean(0) for i in ids])
    mv = []
    for i in range(len(ids)):
        a1 = torch.nn.functional.cosine_similarity(f[i], f[:i].mean(0), dim=0) if i > 0 else 0.0
        a2 = (
            torch.nn.functional.cosine_similarity(f[i], f[i + 1 :].mean(0), dim=0)
            if i < len(ids) - 1
            else 0.0
        )
        mv.append(0.5 * a1 + 0.5 * (1 - a2))
    out = torch.tensor([float(v) for v in mv])
    return (out - out.mean()) / (out.std(unbiased=False) + 1e-8)


def _three_segment_state() -> TokenState:
    # three scenes of two frames each (every position similar within a scene): segments [0, 0, 1, 1, 2, 2]
    g = torch.Generator().manual_seed(5)
    scenes = torch.randn(3, 4, 6, generator=g)
    feats = scenes.repeat_interleave(2, dim=0)
    feats = feats + 0.05 * torch.randn(feats.shape, generator=g)
    return _state_from_frames(feats)


def test_last_token_as_text_gives_the_last_visual_token_no_segment_and_leaves_it_out_of_the_means():
    state = _three_segment_state()
    last = int(state.visual_index[-1])
    values = {}
    for as_text in (False, True):
        ctx = _ctx()
        out = HieraVid(prune_ratios=(0.0, 0.3, 0.3, 0.57), last_token_as_text=as_text).segment_and_merge(
            state, ctx
        )
        seg = out.segment[out.visual_index]
        assert seg[:-1].tolist() == [0] * 8 + [1] * 8 + [2] * 7
        assert int(out.segment[last]) == (-1 if as_text else 2)
        values[as_text] = ctx.memory["hieravid.marginal_value"]
        torch.testing.assert_close(values[as_text], _authors_segment_value(out.hidden, out.segment).float())
    assert not torch.allclose(values[False], values[True])


def test_last_token_as_text_leaves_it_out_of_the_relevance_and_kernel_and_drops_it_at_stage_one():
    state = _three_segment_state()
    strategy = HieraVid(prune_ratios=(0.0, 0.4, 0.3, 0.57), last_token_as_text=True, match_stage_total=False)
    seg_ctx = _ctx()
    state = strategy.segment_and_merge(state, seg_ctx)
    attention = torch.rand(1, 1, len(state), generator=torch.Generator().manual_seed(6))
    ctx = StageContext(
        hook="layer",
        num_layers=8,
        generator=torch.Generator(),
        memory=seg_ctx.memory,
        layer=2,
        _attention=lambda s, q: attention[:, :, s.source],
    )
    out = strategy.make_layer_stage(1)(state, ctx)
    kept = set(out.source[out.visual_index].tolist())
    # the authors' stage: relevance and kernel over the tokens with a segment, greedy MAP per segment
    vis = state.visual_index
    inside = vis[state.segment[vis] >= 0]
    r = -attention[0, 0, inside]
    r = (r - r.min() + 1e-6) / (r.max() - r.min())
    x = torch.nn.functional.normalize(state.hidden[inside], dim=-1)
    kernel = r[:, None] * (x @ x.T) * r[None, :]
    mv = seg_ctx.memory["hieravid.marginal_value"]
    expected: set[int] = set()
    for g in range(3):
        members = torch.nonzero(state.segment[inside] == g).squeeze(1)
        ratio = min(max(0.6 + 0.1 * float(mv[g]), 0.05), 0.95)
        picks = _naive_greedy(kernel[members][:, members], int(members.numel() * ratio))
        expected |= {int(inside[members[p]]) for p in picks}
    assert kept == expected
    assert int(vis[-1]) not in kept
    assert {int(s) for s in out.source} >= set(state.source[state.kind != TokenKind.VISUAL].tolist())
