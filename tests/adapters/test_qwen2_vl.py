"""What is Qwen2-VL's / Qwen2.5-VL's own, against the unmodified Hugging Face models (tiny random
configs, CPU, non-square frames): M-RoPE positions from HF's get_rope_index, the merged-grid layout,
the captured vision attention, the shapes and the loading errors. The HF logits, drop == mask, kept
positions, caches and attention rows are the adapter contract's (tests/adapters/test_adapter_contract.py).
"""

from __future__ import annotations

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
from prune_bench.core.state import TokenKind
from prune_bench.errors import UserError

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


def test_positions_are_hf_rope_index_and_the_contracts_reference_is_what_the_processor_gives(qwen):
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
    # the adapter contract's HF reference is fed what the processor would hand the model
    ours = adapter.reference_inputs(ids, pixels)
    assert set(ours) == set(hf)
    for key, value in hf.items():
        assert torch.equal(ours[key], value), key


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


def test_vision_attention_reproduces_the_towers_last_attention(qwen):
    adapter, _, pixels, sample = qwen
    ctx = StageContext(
        hook="input", num_layers=4, generator=torch.Generator(), memory={}, _vision=sample.vision
    )
    va = ctx.vision_attention()
    rows, cols = sample.state.frame_grid
    assert va.received.shape == (3, rows * cols) and va.keys.shape[:2] == (3, rows * cols)
    # each frame pair's patches share one softmax: their mean received attention sums to 1 per pair
    unit = adapter.merge**2
    torch.testing.assert_close(va.received.sum(-1) * unit, torch.ones(3), atol=1e-5, rtol=0)
    # the captured q/k/v rebuild the block's actual attention output (rope, scaling, segments are right)
    flat, grid = adapter.patchify(pixels)
    outputs: list[torch.Tensor] = []
    attn = adapter.visual.blocks[adapter.vision_attention_block].attn
    with adapter._capture(True, grid) as cap:
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


def test_registered_and_architectures_have_the_7b_shapes():
    assert registry().adapters["qwen2_vl"] is Qwen2VLAdapter
    assert set(Qwen2VLAdapter.architectures) == {"qwen2-vl-7b", "qwen2.5-vl-7b", "qwen2.5-vl-72b", "tiny-qwen2-vl"}
    assert set(Qwen2VLAdapter.tiny_architectures) == {"tiny-qwen2-vl", "tiny-qwen2.5-vl"}
    tiny = Qwen2VLAdapter.tiny("tiny-qwen2.5-vl", num_layers=2)
    assert (tiny.config.text_config.num_hidden_layers, tiny.frame_size) == (2, (32, 32))
    assert tiny.model_info(16).capabilities == frozenset({"vision_attention"})
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


def test_loading_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Qwen2VLAdapter.from_pretrained(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="multiples of"):
        Qwen2VLAdapter.from_config(tiny_qwen2_vl_config(), frame_size=(30, 32))
