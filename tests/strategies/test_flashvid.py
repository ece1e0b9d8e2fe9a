from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from prune_bench.core.context import StageContext, VisionAttention
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning, ModelInfo
from prune_bench.errors import UserError
from prune_bench.pytest_plugin import build_contract_adapter, build_contract_inputs
from prune_bench.strategies.flashvid import FlashVID, segment_frames
from prune_bench.testing import assert_drop_equals_mask


# ------------------------------------------------------------------ an independent re-derivation
# A plain, loop-by-loop port of the official algorithm (Fanziyang-v/FlashVID @ 1d37422, flashvid/utils.py
# and token_selection.py) as read, token by token, with the two documented differences: a single-frame
# segment clusters only the tokens ADTS left, and a picked token is never picked again.
def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0))


def _reference_segments(frames: torch.Tensor, threshold: float, min_segments: int) -> list[tuple[int, int]]:
    t = frames.shape[0]
    means = frames.mean(dim=1)
    sims = [_cos(means[i], means[i + 1]) for i in range(t - 1)]
    cuts = [i for i, s in enumerate(sims) if s < threshold]
    if len(cuts) + 1 < min_segments:
        rest = sorted((s, i) for i, s in enumerate(sims) if i not in cuts)
        cuts += [i for _, i in rest[: min_segments - len(cuts) - 1]]
    bounds = [0, *sorted(c + 1 for c in cuts), t]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _reference_adts(x: torch.Tensor, weight: torch.Tensor | None, k: int) -> list[int]:
    p = x.shape[0]
    dist = torch.tensor([[1 - _cos(x[i], x[j]) for j in range(p)] for i in range(p)])
    if weight is not None:
        dist = dist * weight[None, :]
    first = max(range(p), key=lambda j: (sorted(dist[:, j].tolist())[1], -j))
    picked = [first]
    while len(picked) < k:
        scores = [min(float(dist[i, j]) for i in picked) if j not in picked else -math.inf for j in range(p)]
        picked.append(max(range(p), key=lambda j: (scores[j], -j)))
    return picked


def _reference_dpc_knn(x: torch.Tensor, clusters: int, k: int) -> tuple[list[int], list[int]]:
    n, d = x.shape
    dist = torch.cdist(x, x) / math.sqrt(d)
    density = [math.exp(-sum(v**2 for v in sorted(dist[i].tolist())[:k]) / k) for i in range(n)]
    top = float(dist.max())
    delta = [min([float(dist[i, j]) for j in range(n) if density[j] > density[i]] or [top]) for i in range(n)]
    score = [delta[i] * density[i] for i in range(n)]
    centres = sorted(range(n), key=lambda i: (-score[i], i))[:clusters]
    assign = [min(range(clusters), key=lambda c: (float(dist[i, centres[c]]), c)) for i in range(n)]
    for c, i in enumerate(centres):
        assign[i] = c
    return centres, assign


def reference_flashvid(
    frames: torch.Tensor,
    received: torch.Tensor,
    *,
    retention_ratio: float,
    alpha: float = 0.7,
    selection: str = "attn_div_v2",
    temporal_threshold: float = 0.8,
    segment_threshold: float = 0.9,
    min_segments: int = 8,
    expansion: float = 1.25,
) -> dict[int, torch.Tensor]:
    """Grid slot (frame * P + token) -> the feature the LLM gets there."""
    t, p, _ = frames.shape
    budget = math.ceil(p * retention_ratio * expansion)
    n_adts = math.ceil(budget * alpha)
    n_tstm = budget - n_adts
    out: dict[int, torch.Tensor] = {}
    for start, end in _reference_segments(frames, segment_threshold, min_segments):
        seg = frames[start:end].clone()
        length = end - start
        mean = seg.reshape(-1, seg.shape[-1]).mean(dim=0)
        free = [[True] * p for _ in range(length)]
        for f in range(length):
            x, attention = seg[f], received[start + f]
            if n_adts == 0:
                picked: list[int] = []
            elif selection == "attn":
                picked = attention.topk(n_adts).indices.tolist()
            else:
                weight = None if selection == "div" else attention.clone()
                if selection == "attn_div_v2":
                    weight = weight * (x @ mean)
                picked = _reference_adts(x, weight, n_adts)
            for j in picked:
                free[f][j] = False
                out[(start + f) * p + j] = x[j]
        if n_tstm == 0:
            continue
        if length > 1:
            best = torch.full((length, p), -1.0)
            parent = torch.zeros(length, p, dtype=torch.long)
            for f in range(1, length):
                for n in range(p):
                    options = [(_cos(seg[f, n], seg[f - 1, m]), m) for m in range(p) if free[f - 1][m]]
                    if free[f][n] and options:
                        s, m = max(options, key=lambda o: (o[0], -o[1]))
                        best[f, n], parent[f, n] = s, m
            linked = best > temporal_threshold
            if int((~linked).sum()) < budget * length:
                nth = sorted(best.flatten().tolist(), reverse=True)[length * p - budget * length - 1]
                linked = best > max(nth, -1 + 1e-6)
            counts = torch.ones(length, p)
            for f in reversed(range(length)):  # the code's backward pass, counts and all
                for n in range(p):
                    if not linked[f, n]:
                        seg[f, n] = seg[f, n] / counts[f, n]
                for n in range(p):
                    if linked[f, n]:
                        seg[f - 1, parent[f, n]] += seg[f, n]
                        counts[f - 1, parent[f, n]] += 1
            roots = [[n for n in range(p) if free[f][n] and not linked[f, n]] for f in range(length)]
        else:
            roots = [[n for n in range(p) if free[0][n]]]
        ratio = n_tstm * length / sum(len(r) for r in roots)
        for f, rs in enumerate(roots):
            clusters = math.ceil(len(rs) * ratio)
            if clusters > 0 and ratio < 1:
                x = seg[f, rs]
                # one cluster: k = 1 makes every density 1, the code's centre is random; we take the first
                centres, assign = (
                    _reference_dpc_knn(x, clusters, min(clusters, 7))
                    if clusters > 1
                    else ([0], [0] * len(rs))
                )
                for c, i in enumerate(centres):
                    members = [x[m] for m in range(len(rs)) if assign[m] == c]
                    out[(start + f) * p + rs[i]] = torch.stack(members).mean(dim=0)
            else:
                for n in rs:
                    out[(start + f) * p + n] = seg[f, n]
    return out


# ------------------------------------------------------------------------------- test inputs
def _video_state(frames: torch.Tensor, cols: int) -> TokenState:
    """Text, the video's ``[T, P, D]`` tokens (``cols`` a row), a newline, text."""
    t, p, d = frames.shape
    v = t * p
    n = 2 + v + 2
    kind = torch.zeros(n, dtype=torch.int8)
    kind[2 : 2 + v] = int(TokenKind.VISUAL)
    kind[2 + v] = int(TokenKind.NEWLINE)
    frame, row, col = (torch.full((n,), -1) for _ in range(3))
    slot = torch.arange(v)
    frame[2 : 2 + v] = slot // p
    row[2 : 2 + v] = (slot % p) // cols
    col[2 : 2 + v] = slot % cols
    hidden = torch.randn(n, d, generator=torch.Generator().manual_seed(5))
    hidden[2 : 2 + v] = frames.reshape(v, d)
    return TokenState.from_layout(hidden, kind, frame, row, col)


def _context(received: torch.Tensor) -> StageContext:
    vision = VisionAttention(received=received, keys=torch.zeros(*received.shape, 2))
    return StageContext(
        hook="segment", num_layers=4, generator=torch.Generator(), memory={}, _vision=lambda: vision
    )


def _moving_scenes(seed: int, t: int = 8, p: int = 16, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Two scenes whose tokens drift and swap places from frame to frame (so trees cross positions),
    offset so that every token has a positive dot product with any segment mean."""
    g = torch.Generator().manual_seed(seed)
    scenes = torch.randn(2, p, d, generator=g)
    frames = []
    for f in range(t):
        base = scenes[0] if f < t // 2 else scenes[1]
        shuffled = base[torch.randperm(p, generator=g)] if f % 2 else base
        frames.append(shuffled + 0.35 * torch.randn(p, d, generator=g))
    video = torch.stack(frames) + 1.0
    received = torch.rand(t, p, generator=g) + 0.05
    return video, received


def _run(state: TokenState, received: torch.Tensor, info: ModelInfo, **options: object) -> TokenState:
    strategy = FlashVID(**options)
    settings = strategy.settings(info)
    return strategy.compress(state, _context(received), settings)


LLAVA_8 = ModelInfo(num_layers=8, num_frames=6, tokens_per_frame=16, hidden_size=8, family="llava_onevision")


@pytest.mark.parametrize(
    "options",
    [
        {"retention_ratio": 0.4, "min_segments": 2},
        {"retention_ratio": 0.4, "min_segments": 3, "selection": "attn_div"},
        {"retention_ratio": 0.3, "min_segments": 2, "selection": "div"},
        {"retention_ratio": 0.3, "selection": "attn", "segment_threshold": 0.99},  # single-frame segments
        {"retention_ratio": 0.5, "min_segments": 3, "alpha": 0.0},
        {"retention_ratio": 0.4, "alpha": 1.0},
        {"retention_ratio": 0.6, "min_segments": 2, "temporal_threshold": 0.0},  # the lower bound binds
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_compression_matches_a_loop_by_loop_port_of_the_official_code(options, seed):
    video, received = _moving_scenes(seed)
    state = _video_state(video, cols=4)
    out = _run(state, received, LLAVA_8, **options)
    expected = reference_flashvid(video, received, **options)  # type: ignore[arg-type]
    vis = out.is_visual
    slots = (out.source[vis] - 2).tolist()
    assert slots == sorted(expected)
    torch.testing.assert_close(
        out.hidden[vis], torch.stack([expected[s] for s in slots]), atol=1e-5, rtol=1e-5
    )
    # text and the newline stay; every original token is accounted for once, except what ADTS-only drops
    assert out.source[~vis].tolist() == [0, 1, 2 + video.shape[0] * 16, 3 + video.shape[0] * 16]
    total = out.weight[vis].sum().item()
    assert total == (len(slots) if options.get("alpha") == 1.0 else video.shape[0] * 16)


def test_tree_average_divides_by_the_roots_direct_children_as_coded():
    # token 0 is one chain z <- y <- x through three frames; token 1 changes every frame
    z, y, x = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 0.1, 0.0]), torch.tensor([1.0, 0.0, 0.1])
    others = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    video = torch.stack(
        [torch.stack([z, others[0]]), torch.stack([y, others[1]]), torch.stack([x, others[2]])]
    )
    state = _video_state(video, cols=2)
    info = ModelInfo(num_layers=8, num_frames=3, tokens_per_frame=2, hidden_size=3, family="llava_onevision")
    # budget ceil(2 * 0.4 * 1.25) = 1, all of it TSTM: 4 roots, ratio 3/4, each frame keeps its roots
    options = {"retention_ratio": 0.4, "alpha": 0.0, "do_segment": False}
    coded = _run(state, torch.ones(3, 2), info, **options)
    assert (coded.source[coded.is_visual] - 2).tolist() == [0, 1, 3, 5]
    torch.testing.assert_close(coded.hidden[2], (z + y + x) / 2)
    assert coded.weight[2].item() == 3
    true_mean = _run(state, torch.ones(3, 2), info, tree_normalise="size", **options)
    torch.testing.assert_close(true_mean.hidden[2], (z + y + x) / 3)


def test_dyseg_cuts_below_the_threshold_then_at_the_least_similar_transitions():
    a, b, c = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.2])
    frames = torch.stack([a, a, c, c, b, b])  # transitions: 1, .98, 1, 0.196 (< .9), 1
    assert segment_frames(frames, 0.9, 1, True).tolist() == [0, 0, 0, 0, 1, 1]
    assert segment_frames(frames, 0.9, 3, True).tolist() == [0, 0, 1, 1, 2, 2]
    assert segment_frames(frames, 0.9, 3, False).tolist() == [0, 0, 0, 0, 1, 1]
    # more segments asked than frames: every frame its own segment, no transition cut twice
    assert segment_frames(frames, 0.9, 10, True).tolist() == [0, 1, 2, 3, 4, 5]


def test_in_llm_stage_keeps_the_ceil_share_most_attended_by_the_last_token():
    n = 1 + 5 + 1
    kind = torch.zeros(n, dtype=torch.int8)
    kind[1:6] = int(TokenKind.VISUAL)
    frame = torch.full((n,), -1)
    frame[1:6] = 0
    state = TokenState.from_layout(torch.randn(n, 4), kind, frame, frame.clone(), frame.clone())

    def rows(s: TokenState, q: int) -> torch.Tensor:
        attn = torch.zeros(2, q, len(s))
        attn[0, :, 1:6] = torch.tensor([0.1, 0.5, 0.05, 0.3, 0.05])
        attn[1, :, 1:6] = torch.tensor([0.3, 0.1, 0.05, 0.2, 0.35])
        return attn

    ctx = StageContext(
        hook="layer", layer=5, num_layers=8, generator=torch.Generator(), memory={}, _attention=rows
    )
    # ceil(5 * 0.3) = 2 of the head means .2, .3, .05, .25, .2
    assert FlashVID.llm_prune(state, ctx, 0.3).source.tolist() == [0, 2, 4, 6]


def test_pruning_layer_scales_with_depth_and_family_settings_follow_the_authors_scripts():
    def info(layers: int, family: str = "llava_onevision") -> ModelInfo:
        return ModelInfo(num_layers=layers, num_frames=8, tokens_per_frame=16, hidden_size=8, family=family)

    assert FlashVID().settings(info(28)).pruning_layer == 20
    assert FlashVID().settings(info(8)).pruning_layer == 6
    assert FlashVID().settings(info(4)).pruning_layer == 3
    llava = FlashVID().settings(info(28))
    assert (llava.selection, llava.min_segments, llava.position_policy) == ("attn_div_v2", 8, "reindex")
    qwen = FlashVID().settings(info(28, "qwen2_vl"))
    assert (qwen.selection, qwen.min_segments, qwen.position_policy) == ("attn_div", 4, "keep")
    qwen3 = FlashVID().settings(info(36, "qwen3_vl"))
    assert (qwen3.pruning_layer, qwen3.llm_retention_ratio) == (28, 0.1)
    assert FlashVID(llm_retention_ratio=1.0).settings(info(28)).pruning_layer is None
    assert [s.name for s in FlashVID(llm_retention_ratio=1.0).stages(info(28))] == ["flashvid.adts_tstm"]
    assert FlashVID(alpha=0.0).stages(info(28))[0].needs == frozenset()
    with pytest.raises(UserError, match="pruning_layer=30 must be below the model's 28 layers"):
        FlashVID(pruning_layer=30).stages(info(28))


def test_budget_maps_keep_onto_the_before_llm_share_for_each_unit():
    deep = ModelInfo(
        num_layers=28, num_frames=32, tokens_per_frame=196, hidden_size=8, family="llava_onevision"
    )

    def budget(s: FlashVID) -> int:
        return math.ceil(196 * s.config.retention_ratio * s.config.expansion)

    assert budget(FlashVID.for_budget(0.25, "input", deep)) == 49
    # layer average: x * (19.5 + 8.5 * 0.3) / 28 = 0.25 -> x = 0.3175, round(62.2) = 62 a frame
    by_average = FlashVID.for_budget(0.25, "layer-average", deep)
    assert budget(by_average) == 62 and by_average.config.retention_ratio == pytest.approx(
        0.25 / 0.984, abs=2e-3
    )
    assert budget(FlashVID.for_budget(0.25, "layer-average", deep, llm_retention_ratio=1.0)) == 49
    with pytest.warns(BudgetWarning, match="in-LLM stage alone"):
        assert budget(FlashVID.for_budget(0.9, "layer-average", deep)) == 196
    with pytest.warns(BudgetWarning, match="at least one token a frame"):
        assert budget(FlashVID.for_budget(0.001, "input", deep)) == 1


@pytest.fixture(scope="module")
def contract_llava():
    adapter = build_contract_adapter(("llava_onevision", "tiny-llava-onevision"))
    ids, pixels = build_contract_inputs(adapter)
    return adapter, adapter.encode_ids(ids, pixels, [10, 11, 12, 13], capture_vision=True)


@pytest.mark.parametrize("keep", [0.15, 0.3, 0.5])
def test_achieved_retention_is_the_budget_and_the_ledger_agrees_with_the_prediction(contract_llava, keep):
    adapter, sample = contract_llava
    info = adapter.model_info(16)
    strategy = FlashVID.for_budget(keep, "layer-average", info)
    result = adapter.run(sample, PruningPlan.of(strategy.stages(info), info.num_layers))
    per_frame = info.tokens_per_frame
    budget = math.ceil(per_frame * strategy.config.retention_ratio * 1.25)
    # the per-frame ceil of the clusters keeps at most one more token a frame
    assert budget / per_frame <= result.input_retention <= (budget + 1) / per_frame
    # layers 0..4 and layer 5's attention at the input count, then ceil(30 %) of it
    n_input = round(result.input_retention * info.num_frames * per_frame)
    kept = math.ceil(n_input * 0.3) / (info.num_frames * per_frame)
    predicted = (5.5 * result.input_retention + 2.5 * kept) / 8
    assert result.layer_average_retention == pytest.approx(predicted)
    assert result.layer_average_retention == pytest.approx(keep, abs=1 / per_frame)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"alpha": 1.0},
        {"alpha": 0.0, "tree_normalise": "size"},
        {"selection": "attn", "do_segment": False},
        {"temporal_threshold": 1.0, "position_policy": "keep"},
    ],
)
def test_drop_mode_equals_mask_mode(tiny_adapter, tiny_sample, options):
    _, _, sample = tiny_sample
    info = tiny_adapter.model_info(6)
    strategy = FlashVID.for_budget(0.5, "layer-average", info, **options)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    pre, _ = assert_drop_equals_mask(tiny_adapter, sample, plan, 3)
    assert 0 < int(pre.state.is_visual.sum()) < info.num_frames * info.tokens_per_frame


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_adts_picks_on_cuda_graph_replays_equal_the_cpu_picks():
    from prune_bench.strategies.flashvid import calibrated_max_min_diversity, event_relevance

    g = torch.Generator().manual_seed(3)
    feats = torch.randn(12, 196, 32, generator=g) + 0.5
    received = torch.rand(12, 196, generator=g)
    weight = received * event_relevance(feats, torch.arange(12) // 4)
    for k in (1, 2, 33, 70):  # one pick, one step, and more steps than one captured graph holds
        cpu = calibrated_max_min_diversity(feats, weight, k)
        gpu = calibrated_max_min_diversity(feats.cuda(), weight.cuda(), k).cpu()
        assert torch.equal(cpu, gpu), k
