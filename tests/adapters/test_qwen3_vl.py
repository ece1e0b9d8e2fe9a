"""What is Qwen3-VL's own, against the unmodified Hugging Face models (tiny random configs, dense and
MoE, CPU, non-square frames): text timestamps between frame pairs, the layout, M-RoPE positions from
HF's get_rope_index, DeepStack through pruning (kept tokens get their own feature, pruned ones none,
merged ones their target's), the registration, the 8B shapes and loading. The HF logits at keep 1.0,
drop == mask, kept positions, caches and attention rows are the adapter contract's
(tests/adapters/test_adapter_contract.py)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import torch

from prune_bench.adapters.loading import DEFAULT_MODEL_DIR, load_adapter
from prune_bench.adapters.qwen3_vl import (
    QWEN3_CHAT_TEMPLATE,
    DeepStack,
    DeepStackSample,
    Qwen3VLAdapter,
    qwen3_vl_8b_config,
    qwen3_vl_30b_a3b_config,
    tiny_qwen3_vl_config,
    tiny_qwen3_vl_moe_config,
)
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan, Stage
from prune_bench.core.state import TokenKind, TokenState
from prune_bench.strategies.common.select import keep_visual_subset
from prune_bench.testing import assert_drop_equals_mask

FRAMES, HEIGHT, WIDTH = 6, 32, 48  # patch 4, merge 2: 3 frame pairs of 4 x 6 tokens
ROWS, COLS = 4, 6
PREFIX = [5, 6, 7]


@pytest.fixture(scope="module", params=["dense", "moe"])
def qwen3(request: pytest.FixtureRequest) -> tuple[Qwen3VLAdapter, list[int], torch.Tensor, DeepStackSample]:
    """(adapter, ids, pixels [T, 3, H, W], encoded sample) for a tiny dense and a tiny MoE Qwen3-VL."""
    make = tiny_qwen3_vl_config if request.param == "dense" else tiny_qwen3_vl_moe_config
    adapter = Qwen3VLAdapter.from_config(make(num_layers=4), seed=0, frame_size=(HEIGHT, WIDTH))
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (FRAMES, HEIGHT, WIDTH, 3), generator=g, dtype=torch.uint8)
    ids = [*PREFIX, *adapter.video_span(adapter.video_token_count(FRAMES)), 9, 10, 11, 12]
    pixels = adapter.pixels(frames)
    sample = adapter.encode_ids(ids, pixels, [20, 21, 22, 23], capture_vision=True)
    return adapter, ids, pixels, sample


def test_video_span_is_the_processors_timestamped_frame_pairs():
    from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

    adapter = Qwen3VLAdapter.from_config(tiny_qwen3_vl_config(num_layers=2), frame_size=(HEIGHT, WIDTH))
    cfg = adapter.config
    # HF's own timestamps for frames sampled at 2 fps (indices 0..5 of a 2 fps video), one per pair
    hf_times = Qwen3VLProcessor._calculate_timestamps(None, list(range(FRAMES)), adapter.fps, 2)
    assert adapter.frame_pair_times(3) == pytest.approx(hf_times) == [0.25, 1.25, 2.25]
    span = adapter.video_span(adapter.video_token_count(FRAMES))
    stamp = [adapter.timestamp_ids(t) for t in hf_times]
    pair = [cfg.vision_start_token_id, *[cfg.video_token_id] * (ROWS * COLS), cfg.vision_end_token_id]
    assert span == stamp[0] + pair + stamp[1] + pair + stamp[2] + pair
    # stand-in ids (no tokenizer) as many as Qwen's tokenizer gives: '<', digits, '.', ' seconds', '>'
    assert len(adapter.timestamp_ids(0.25)) == 6 and len(adapter.timestamp_ids(12.5)) == 7
    assert all(0 <= i < adapter.plain_text_vocab for i in adapter.timestamp_ids(12.5))


def test_layout_marks_timestamps_text_and_numbers_frames_by_the_merged_grid(qwen3):
    adapter, ids, _, sample = qwen3
    st = sample.state
    assert (st.num_frames, st.frame_grid, st.num_visual) == (3, (ROWS, COLS), 3 * ROWS * COLS)
    video = torch.tensor(ids) == adapter.config.video_token_id
    assert torch.equal(st.kind == TokenKind.VISUAL, video)  # timestamps and markers are text
    assert int((st.kind == TokenKind.TEXT).sum()) == len(ids) - 3 * ROWS * COLS
    vis = st.visual_index
    assert st.frame[vis].tolist() == [t for t in range(3) for _ in range(ROWS * COLS)]
    assert st.row[vis[: ROWS * COLS]].tolist() == [r for r in range(ROWS) for _ in range(COLS)]
    assert st.col[vis[:COLS]].tolist() == list(range(COLS))
    info = adapter.model_info(FRAMES)
    assert (info.num_frames, info.tokens_per_frame, info.family) == (3, ROWS * COLS, "qwen3_vl")
    assert "vision_attention" in info.capabilities


def test_positions_are_hf_rope_index_with_a_block_per_frame_pair(qwen3):
    adapter, ids, pixels, sample = qwen3
    hf = adapter.reference_inputs(ids, pixels)
    expected, deltas = adapter.model.model.get_rope_index(
        hf["input_ids"], mm_token_type_ids=hf["mm_token_type_ids"], video_grid_thw=hf["video_grid_thw"]
    )
    st = sample.state
    assert torch.equal(st.position, expected[:, 0])
    assert st.next_position == len(ids) + int(deltas) == int(expected.max()) + 1
    # each pair's tokens share a temporal id; rows and cols offset the pair's start
    vis = st.visual_index
    for pair in range(3):
        tokens = vis[st.frame[vis] == pair]
        start = int(st.position[0, tokens[0]])
        assert torch.equal(st.position[0, tokens], torch.full_like(tokens, start))
        assert torch.equal(st.position[1, tokens] - start, st.row[tokens])
        assert torch.equal(st.position[2, tokens] - start, st.col[tokens])


def test_deepstack_features_are_the_towers_and_change_the_logits(qwen3):
    adapter, ids, pixels, sample = qwen3
    flat, grid = adapter.patchify(pixels)
    out = adapter.visual(flat, grid_thw=grid)
    assert sample.deepstack is not None
    k = len(adapter.config.vision_config.deepstack_visual_indexes)
    assert sample.deepstack.features.shape == (k, 3 * ROWS * COLS, adapter.config.text_config.hidden_size)
    torch.testing.assert_close(sample.deepstack.features, torch.stack(list(out.deepstack_features)))
    plan = PruningPlan.of([], adapter.runner.num_layers)
    with torch.no_grad():
        hf = adapter.model(**adapter.reference_inputs(ids, pixels)).logits[0, -1]
    ours = adapter.prefill(sample, plan).logits
    without = adapter.runner.prefill(sample.state, plan).logits  # the loop without the residual
    torch.testing.assert_close(ours, hf, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(without, hf, atol=1e-3, rtol=1e-3)


def test_deepstack_residual_adds_each_visual_source_its_own_feature_and_text_nothing():
    features = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    ordinal = torch.tensor([-1, 0, 1, -1, 2, -1])  # sources 1, 2, 4 are visual tokens 0, 1, 2
    residual = DeepStack(features, ordinal)
    add = residual(1, torch.tensor([0, 2, 4, 5]))
    assert add is not None
    assert torch.equal(add, torch.stack([torch.zeros(2), features[1, 1], features[1, 2], torch.zeros(2)]))
    assert residual(2, torch.tensor([1])) is None  # past the last DeepStack layer


def _hf_llm_logits(adapter: Qwen3VLAdapter, sample: DeepStackSample, kept: TokenState) -> torch.Tensor:
    """HF's own Qwen3-VL language model on the tokens of ``kept`` (their hidden states, original
    positions) with the DeepStack features of their own sources: the oracle of input pruning."""
    assert sample.deepstack is not None
    visual = kept.kind == TokenKind.VISUAL
    ordinal = sample.deepstack.ordinal[kept.source[visual]]
    with torch.no_grad():
        out = adapter.lm(
            inputs_embeds=kept.hidden[None],
            position_ids=kept.position[:, None],
            visual_pos_masks=visual[None],
            deepstack_visual_embeds=[f[ordinal] for f in sample.deepstack.features],
        )
    return adapter.model.lm_head(out.last_hidden_state[0, -1])  # type: ignore[no-any-return]


def _input_stage(fn: Any) -> PruningPlan:
    return PruningPlan.of([Stage("t.input", "input", fn)], 4)


def test_tokens_pruned_at_the_input_get_no_deepstack_and_kept_ones_their_own(qwen3):
    adapter, _, _, sample = qwen3
    kept_visual = torch.tensor([0, 3, 4, 10, 25, 26, 40, 71])  # across all three frame pairs

    def prune(state: TokenState, ctx: Any) -> TokenState:
        return keep_visual_subset(state, kept_visual.to(state.device))

    plan = _input_stage(prune)
    pre_drop, _ = assert_drop_equals_mask(adapter, sample, plan, steps=3)
    assert pre_drop.state.num_visual == kept_visual.numel()
    kept = prune(sample.state, None)
    torch.testing.assert_close(pre_drop.logits, _hf_llm_logits(adapter, sample, kept), atol=1e-5, rtol=1e-5)


def test_merged_tokens_get_the_deepstack_feature_of_their_target(qwen3):
    adapter, _, _, sample = qwen3

    def merge_pairs(state: TokenState, ctx: Any) -> TokenState:
        # every visual token merged into the visual token before it within its pair of neighbours
        target = torch.arange(len(state), device=state.device)
        vis = state.visual_index
        target[vis[1::2]] = vis[0::2]
        return state.merge(target)

    plan = _input_stage(merge_pairs)
    pre_drop, _ = assert_drop_equals_mask(adapter, sample, plan, steps=3)
    merged = merge_pairs(sample.state, None)
    assert bool((merged.weight[merged.kind == TokenKind.VISUAL] == 2).all())
    torch.testing.assert_close(pre_drop.logits, _hf_llm_logits(adapter, sample, merged), atol=1e-5, rtol=1e-5)


def test_pruning_between_the_deepstack_layers_drop_equals_mask(qwen3):
    adapter, _, _, sample = qwen3

    def half(state: TokenState, ctx: Any) -> TokenState:
        return keep_visual_subset(state, torch.arange(0, state.num_visual, 2, device=state.device))

    # after layer 0's attention (before its MLP and DeepStack add) and before layer 1
    for stage in (
        Stage("t.post0", "layer", half, layer=0, site="post"),
        Stage("t.pre1", "layer", half, layer=1),
    ):
        pre, _ = assert_drop_equals_mask(adapter, sample, PruningPlan.of([stage], 4), steps=3)
        assert pre.state.num_visual == sample.state.num_visual // 2


def test_vision_attention_is_the_towers_last_block_per_frame_pair(qwen3):
    adapter, _, _, sample = qwen3
    assert sample.vision is not None
    va = sample.vision()
    assert va.received.shape == (3, ROWS * COLS) and va.keys.shape[:2] == (3, ROWS * COLS)
    unit = adapter.merge**2  # each pair's patches share one softmax
    torch.testing.assert_close(va.received.sum(-1) * unit, torch.ones(3), atol=1e-5, rtol=0)


def test_registered_with_the_8b_and_30b_a3b_shapes():
    assert registry().adapters["qwen3_vl"] is Qwen3VLAdapter
    assert set(Qwen3VLAdapter.architectures) == {"qwen3-vl-8b", "qwen3-vl-30b-a3b", "tiny-qwen3-vl"}
    assert set(Qwen3VLAdapter.tiny_architectures) == {"tiny-qwen3-vl", "tiny-qwen3-vl-moe"}
    dense, moe = qwen3_vl_8b_config(), qwen3_vl_30b_a3b_config()
    assert Qwen3VLAdapter.handles(dense) and Qwen3VLAdapter.handles(moe)
    t = dense.text_config
    assert (t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads) == (
        4096,
        12288,
        36,
        32,
    )
    m = moe.text_config
    assert (
        m.hidden_size,
        m.num_hidden_layers,
        m.num_experts,
        m.num_experts_per_tok,
        m.moe_intermediate_size,
    ) == (
        2048,
        48,
        128,
        8,
        768,
    )
    for cfg in (dense, moe):
        assert cfg.text_config.rope_parameters["mrope_section"] == [24, 20, 20]
        assert cfg.vision_config.deepstack_visual_indexes == [8, 16, 24]
        assert cfg.vision_config.patch_size == 16 and cfg.video_token_id == 151656
    assert dense.vision_config.out_hidden_size == 4096 and moe.vision_config.out_hidden_size == 2048


def test_a_checkpoint_directory_loads_with_this_adapter_and_its_chat_format(tmp_path):
    for make in (tiny_qwen3_vl_config, tiny_qwen3_vl_moe_config):
        where = tmp_path / make.__name__
        Qwen3VLAdapter.from_config(make(num_layers=2)).model.save_pretrained(where)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(DEFAULT_MODEL_DIR / name, where / name)
        adapter, _ = load_adapter(str(where), "cpu")
        assert type(adapter) is Qwen3VLAdapter
        assert type(adapter.model).__name__ == Qwen3VLAdapter._model_class(make()).__name__
        assert adapter.prompt_format.template == QWEN3_CHAT_TEMPLATE
        assert adapter.prompt_format.pixel_mean == (0.5, 0.5, 0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch", ["tiny-qwen3-vl", "tiny-qwen3-vl-moe"])
def test_on_cuda_keep_all_is_hf_and_pruning_is_the_cpus(arch, monkeypatch):
    """float32 on CUDA (the decode loop's CUDA path included): keep 1.0 reproduces HF's generate there,
    and drop-mode pruning (uniform at the input, FastV after layer 1, VisionZip) answers as on the CPU."""
    from prune_bench.adapter_contract import hf_greedy_logits
    from prune_bench.contract import build_session
    from prune_bench.pytest_plugin import build_contract_inputs
    from prune_bench.testing import prefill_and_decode

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = Qwen3VLAdapter.tiny(arch)
    gpu = Qwen3VLAdapter(Qwen3VLAdapter.tiny(arch).model.to("cuda"), frame_size=(32, 32))
    ids, pixels = build_contract_inputs(cpu)
    samples = {
        a: a.encode_ids(ids, pixels.to(a.device), [10, 11, 12, 13], capture_vision=True) for a in (cpu, gpu)
    }
    reference = hf_greedy_logits(gpu, ids, pixels.to("cuda"), 4)
    plan = PruningPlan.of([], gpu.runner.num_layers)
    _, ours = prefill_and_decode(gpu, samples[gpu], plan, "drop", 4)
    for o, r in zip(ours, reference, strict=True):
        torch.testing.assert_close(o, r, atol=1e-4, rtol=1e-4)
    # deterministic strategies only: random's draws come from each device's own generator
    for name, options in (("uniform", {}), ("fastv", {"k": 1}), ("visionzip", {})):
        runs = []
        for adapter in (cpu, gpu):
            session, _ = build_session(adapter, name, 0.5, **options)
            runs.append(
                adapter.run(samples[adapter], session.plan(samples[adapter].frames), max_new_tokens=3)
            )
        assert [c.mlp_visual for c in runs[0].counts] == [c.mlp_visual for c in runs[1].counts], name
        torch.testing.assert_close(
            torch.tensor(runs[0].option_logits), torch.tensor(runs[1].option_logits), atol=1e-3, rtol=1e-3
        )
        assert runs[0].generated == runs[1].generated
