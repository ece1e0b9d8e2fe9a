"""Qwen2-VL / Qwen2.5-VL adapter against the unmodified Hugging Face models (tiny random configs, CPU)."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pytest
import torch

from prune_bench.adapters.base import EncodedSample
from prune_bench.adapters.qwen2_vl import (
    Qwen2VLAdapter,
    qwen2_5_vl_7b_config,
    qwen2_vl_7b_config,
    tiny_qwen2_5_vl_config,
    tiny_qwen2_vl_config,
)
from prune_bench.core.context import StageContext
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan, Stage
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.core.strategy import BudgetWarning
from prune_bench.core.timing import Clock
from prune_bench.errors import UserError
from prune_bench.strategies.simple import RandomPruning

FRAMES, HEIGHT, WIDTH = 6, 32, 48  # patch 4, merge 2: 3 frame pairs of 4 x 6 tokens
PREFIX = [5, 6, 7]


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def qwen(request: pytest.FixtureRequest) -> tuple[Qwen2VLAdapter, list[int], torch.Tensor, EncodedSample]:
    """(adapter, ids, pixels [T, 3, H, W], encoded sample) for one tiny model of each family."""
    make = tiny_qwen2_vl_config if request.param == "qwen2_vl" else tiny_qwen2_5_vl_config
    adapter = Qwen2VLAdapter.from_config(make(num_layers=4), seed=0, frame_size=(HEIGHT, WIDTH))
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (FRAMES, HEIGHT, WIDTH, 3), generator=g, dtype=torch.uint8)
    cfg = adapter.config
    video = [cfg.video_token_id] * adapter.video_token_count(FRAMES)
    ids = [*PREFIX, cfg.vision_start_token_id, *video, cfg.vision_end_token_id, 9, 10, 11, 12]
    pixels = adapter.pixels(frames)
    return adapter, ids, pixels, adapter.encode_ids(ids, pixels, [20, 21, 22, 23], capture_vision=True)


def _hf_inputs(adapter: Qwen2VLAdapter, ids: list[int], pixels: torch.Tensor) -> dict[str, Any]:
    """What the HF processor would hand the model for this prompt and video."""
    flat, grid = adapter.patchify(pixels)
    input_ids = torch.tensor([ids])
    types = (input_ids == adapter.config.video_token_id).int() * 2
    kwargs = dict(input_ids=input_ids, pixel_values_videos=flat, video_grid_thw=grid, mm_token_type_ids=types)
    if type(adapter.config).__name__ == "Qwen2_5_VLConfig":
        kwargs["second_per_grid_ts"] = torch.tensor([adapter.temporal_patch / adapter.fps])
    return kwargs


def _our_greedy_logits(
    adapter: Qwen2VLAdapter, sample: EncodedSample, plan: PruningPlan, mode: str, steps: int
):
    pre = adapter.runner.prefill(sample.state, plan, mode=mode, max_new_tokens=steps)
    out = [pre.logits]
    token, pos = int(pre.logits.argmax()), pre.state.next_position
    for step in range(steps - 1):
        logits = adapter.runner.decode_step(token, pos + step, step, pre, plan, Clock("cpu"))
        out.append(logits)
        token = int(logits.argmax())
    return out


def _random_plan(adapter: Qwen2VLAdapter, layer: int | None, keep: float = 0.4) -> PruningPlan:
    info = adapter.model_info(FRAMES)
    return PruningPlan.of(RandomPruning(keep=keep, layer=layer).stages(info), info.num_layers)


@pytest.mark.parametrize("plan_kind", ["none", "random-keep-1"])
def test_keep_all_reproduces_hf_prefill_and_five_greedy_decode_steps(qwen, plan_kind):
    adapter, ids, pixels, sample = qwen
    plan = PruningPlan() if plan_kind == "none" else _random_plan(adapter, None, keep=1.0)
    with torch.no_grad():
        forward = adapter.model(**_hf_inputs(adapter, ids, pixels)).logits[0, -1]
        gen = adapter.model.generate(
            **_hf_inputs(adapter, ids, pixels),
            max_new_tokens=6,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    ref = [step[0] for step in gen.logits]  # prefill, then 5 decode steps through HF's KV cache + rope_deltas
    ours = _our_greedy_logits(adapter, sample, plan, "drop", 6)
    torch.testing.assert_close(ours[0], forward, atol=1e-4, rtol=1e-4)
    for r, o in zip(ref, ours, strict=True):
        torch.testing.assert_close(o, r, atol=1e-4, rtol=1e-4)
    assert [int(o.argmax()) for o in ours] == gen.sequences[0, len(ids) :].tolist()


def test_drop_mode_matches_mask_mode_for_random_at_input_and_at_layer_1(qwen):
    adapter, _, _, sample = qwen
    for layer in (None, 1):
        plan = _random_plan(adapter, layer)
        drop = _our_greedy_logits(adapter, sample, plan, "drop", 4)
        mask = _our_greedy_logits(adapter, sample, plan, "mask", 4)
        for d, m in zip(drop, mask, strict=True):
            torch.testing.assert_close(d, m, atol=1e-4, rtol=1e-4)


def test_positions_are_hf_rope_index_and_kept_tokens_keep_their_3d_positions(qwen):
    adapter, ids, pixels, sample = qwen
    hf = _hf_inputs(adapter, ids, pixels)
    extra = {"second_per_grid_ts": hf["second_per_grid_ts"]} if "second_per_grid_ts" in hf else {}
    expected, deltas = adapter.model.model.get_rope_index(
        hf["input_ids"],
        mm_token_type_ids=hf["mm_token_type_ids"],
        video_grid_thw=hf["video_grid_thw"],
        **extra,
    )
    assert sample.state.position.shape == (3, len(ids))
    assert torch.equal(sample.state.position, expected[:, 0])
    # decoding continues where HF's rope_deltas puts it: sequence length + delta == max + 1
    assert sample.state.next_position == len(ids) + int(deltas) == int(expected.max()) + 1
    for layer in (None, 1):
        pre = adapter.runner.prefill(sample.state, _random_plan(adapter, layer), mode="drop")
        final = pre.state
        assert final.num_visual < sample.state.num_visual
        assert torch.equal(final.position, sample.state.position[:, final.source])
        assert final.next_position == sample.state.next_position


def test_each_layer_caches_exactly_the_tokens_its_attention_saw(qwen):
    adapter, _, _, sample = qwen
    pre = adapter.runner.prefill(sample.state, _random_plan(adapter, 1), mode="drop", max_new_tokens=3)
    for cache, count in zip(pre.caches, pre.counts, strict=True):
        assert cache.length == count.attn_tokens == cache.layout.source.numel()
    assert pre.counts[0].attn_tokens == pre.counts[1].attn_tokens == len(sample.state)
    assert pre.counts[1].mlp_tokens == len(pre.state) == pre.caches[2].length < len(sample.state)
    assert torch.equal(pre.caches[3].layout.source, pre.state.source)


def test_layout_is_read_from_config_pixels_and_ids(qwen):
    adapter, ids, _, sample = qwen
    st = sample.state
    rows, cols = HEIGHT // (adapter.patch_size * adapter.merge), WIDTH // (adapter.patch_size * adapter.merge)
    assert (rows, cols) == (4, 6)
    assert st.num_frames == FRAMES // adapter.temporal_patch == 3
    assert st.frame_grid == (rows, cols)
    assert st.num_visual == 3 * rows * cols == adapter.video_token_count(FRAMES)
    vis = st.visual_index
    assert int(vis[0]) == len(PREFIX) + 1  # after the text prefix and <|vision_start|>
    assert int(st.kind[len(PREFIX)]) == int(st.kind[int(vis[-1]) + 1]) == int(TokenKind.TEXT)
    assert not bool((st.kind == TokenKind.NEWLINE).any())
    # (frame, row, col) follow the merged grid row-major, and match the M-RoPE t/h/w offsets
    first = int(vis[0])
    assert st.frame[vis].tolist() == [t for t in range(3) for _ in range(rows * cols)]
    assert st.row[vis[: rows * cols]].tolist() == [r for r in range(rows) for _ in range(cols)]
    assert st.col[vis[:cols]].tolist() == list(range(cols))
    assert torch.equal(st.position[1, vis] - st.position[1, first], st.row[vis])
    assert torch.equal(st.position[2, vis] - st.position[2, first], st.col[vis])
    info = adapter.model_info(FRAMES)
    assert (info.num_frames, info.tokens_per_frame, info.family) == (3, rows * cols, "qwen2_vl")
    # an odd frame count repeats the last frame into a full pair, as the HF processor does
    assert adapter.video_token_count(5) == 3 * rows * cols


def test_attention_rows_equal_eager_attention_rows(qwen):
    adapter, _, _, sample = qwen
    captured: dict[int, torch.Tensor] = {}

    def spy(state: TokenState, ctx: StageContext) -> TokenState:
        captured[ctx.layer] = ctx.last_token_attention(state, num_queries=2)
        return state

    layers = range(adapter.runner.num_layers)
    plan = PruningPlan.of([Stage("spy", "layer", spy, layer=i) for i in layers], len(layers))
    adapter.runner.prefill(sample.state, plan)
    lm = adapter.lm
    previous = lm.config._attn_implementation
    lm.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            out = lm(
                inputs_embeds=sample.state.hidden[None],
                position_ids=sample.state.position[:, None],
                output_attentions=True,
            )
    finally:
        lm.config._attn_implementation = previous
    for i in layers:
        torch.testing.assert_close(captured[i], out.attentions[i][0, :, -2:, :].float(), atol=1e-5, rtol=1e-4)


def test_vision_attention_reproduces_the_towers_last_attention(qwen):
    adapter, _, pixels, sample = qwen
    ctx = StageContext(
        hook="input", num_layers=4, generator=torch.Generator(), memory={}, _vision=sample.vision
    )
    if not adapter.captures_vision_attention:  # Qwen2.5-VL: window-permuted patches
        with pytest.raises(UserError, match="not captured for Qwen2.5-VL"):
            ctx.vision_attention()
        return
    va = ctx.vision_attention()
    rows, cols = sample.state.frame_grid
    assert va.received.shape == (3, rows * cols) and va.keys.shape[:2] == (3, rows * cols)
    # each frame pair's patches share one softmax: their mean received attention sums to 1 per pair
    unit = adapter.merge**2
    torch.testing.assert_close(va.received.sum(-1) * unit, torch.ones(3), atol=1e-5, rtol=0)
    # the captured q/k/v rebuild the block's actual attention output (rope, scaling, segments are right)
    flat, grid = adapter.patchify(pixels)
    outputs: list[torch.Tensor] = []
    attn = adapter.visual.blocks[-1].attn
    with adapter._capture(True) as cap:
        handle = attn.register_forward_hook(lambda m, i, o: outputs.append(o))
        try:
            adapter.visual(flat, grid_thw=grid)
        finally:
            handle.remove()
    q, k, v, _ = cap.qkv()
    mixed = torch.cat(
        [torch.einsum("hqk,khd->qhd", cap.probs(q, k, s, e), v[s:e]) for s, e in cap.segments()]
    )
    torch.testing.assert_close(attn.proj(mixed.flatten(1)), outputs[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(registry().strategies))
def test_every_strategy_runs_on_qwen2_vl_and_drop_equals_mask(name):
    adapter = _contract_adapter()
    sample = _contract_sample(adapter)
    info = adapter.model_info(CONTRACT_FRAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetWarning)
        strategy = registry().strategy(name).for_budget(0.3, "layer-average", info)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    drop = adapter.run(sample, plan, mode="drop", max_new_tokens=3, seed=3)
    mask = adapter.run(sample, plan, mode="mask", max_new_tokens=3, seed=3)
    assert drop.generated == mask.generated
    assert [c.mlp_visual for c in drop.counts] == [c.mlp_visual for c in mask.counts]
    torch.testing.assert_close(
        torch.tensor(drop.option_logits), torch.tensor(mask.option_logits), atol=2e-4, rtol=1e-4
    )
    if name != "none":
        assert drop.layer_average_retention < 1.0


CONTRACT_FRAMES = 8


@functools.cache
def _contract_adapter() -> Qwen2VLAdapter:
    return Qwen2VLAdapter.from_config(tiny_qwen2_vl_config(num_layers=8), seed=0, frame_size=(32, 32))


@functools.cache
def _contract_sample(adapter: Qwen2VLAdapter) -> EncodedSample:
    """Two still scenes with noise, 4 frame pairs of 4 x 4 tokens."""
    g = torch.Generator().manual_seed(0)
    scenes = torch.randint(0, 256, (2, 32, 32, 3), generator=g, dtype=torch.uint8)
    half = CONTRACT_FRAMES // 2
    video = torch.cat([scenes[0].expand(half, -1, -1, -1), scenes[1].expand(half, -1, -1, -1)])
    video = (video.int() + torch.randint(-20, 21, video.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    cfg = adapter.config
    video_ids = [cfg.video_token_id] * adapter.video_token_count(CONTRACT_FRAMES)
    ids = [3, 4, cfg.vision_start_token_id, *video_ids, cfg.vision_end_token_id, 6, 7, 8, 9]
    return adapter.encode_ids(ids, adapter.pixels(video), [10, 11, 12, 13], capture_vision=True)


def test_registered_and_architectures_have_the_7b_shapes():
    assert registry().adapters["qwen2_vl"] is Qwen2VLAdapter
    assert set(Qwen2VLAdapter.architectures) == {"qwen2-vl-7b", "qwen2.5-vl-7b", "tiny-qwen2-vl"}
    for make in (qwen2_vl_7b_config, qwen2_5_vl_7b_config):
        cfg = make()
        assert Qwen2VLAdapter.handles(cfg)
        t, v = cfg.text_config, cfg.vision_config
        assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (
            3584,
            28,
            28,
            4,
        )
        assert (t.intermediate_size, t.vocab_size, t.rope_parameters["mrope_section"]) == (
            18944,
            152064,
            [16, 24, 24],
        )
        assert (v.depth, v.patch_size, v.temporal_patch_size, v.spatial_merge_size) == (32, 14, 2, 2)
        assert cfg.video_token_id == 151656 and cfg.vision_start_token_id == 151652
    assert qwen2_vl_7b_config().vision_config.embed_dim == 1280
    assert qwen2_5_vl_7b_config().vision_config.hidden_size == 1280


def test_synthetic_sample_from_the_tiny_architecture():
    adapter = Qwen2VLAdapter.from_config(Qwen2VLAdapter.architectures["tiny-qwen2-vl"](), frame_size=(32, 32))
    sample = adapter.encode_synthetic(5, 20, capture_vision=False)
    assert sample.frames == 5
    assert sample.state.num_visual == adapter.video_token_count(5) == 3 * 4 * 4
    assert sample.state.position.shape == (3, len(sample.state))
    result = adapter.run(sample, _random_plan(adapter, 1), max_new_tokens=3)
    assert len(result.generated) == 3 and 0 < result.input_retention <= 1


def test_loading_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Qwen2VLAdapter.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="multiples of"):
        Qwen2VLAdapter.from_config(tiny_qwen2_vl_config(), frame_size=(30, 32))
