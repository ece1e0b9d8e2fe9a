"""Qwen2.5-VL's vision attention: captured in the original patch order (the tower's window permutation
undone), pooled to the merged 2x2 tokens, equal to an eager reference from the tower's own attention
weights; and the VisionZip-style strategies that need it run on the tiny Qwen2.5-VL."""

from __future__ import annotations

import pytest
import torch
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

from prune_bench.adapters.qwen2_vl import Qwen2VLAdapter, tiny_qwen2_5_vl_config
from prune_bench.contract import build_session

# patch 4, merge 2: 3 x 5 merged tokens a frame pair, windows of 2 x 2 merged tokens (partial at the edges)
FRAMES, HEIGHT, WIDTH = 4, 24, 40


@pytest.fixture(scope="module")
def adapter() -> Qwen2VLAdapter:
    return Qwen2VLAdapter.from_config(
        tiny_qwen2_5_vl_config(num_layers=2), seed=0, frame_size=(HEIGHT, WIDTH)
    )


@pytest.fixture(scope="module")
def pixels(adapter: Qwen2VLAdapter) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (FRAMES, HEIGHT, WIDTH, 3), generator=g, dtype=torch.uint8)
    return adapter.pixels(frames)


def eager_reference(
    adapter: Qwen2VLAdapter, pixels: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(received ``[pairs, merged]``, keys ``[pairs, merged, hd]``, the tower's patch permutation) from
    the tower run with eager attention: the block's own softmax weights and ``qkv`` keys, put back in
    the original order by matching the first block's input rows to the patch embeddings."""
    visual, block = adapter.visual, adapter.visual.blocks[adapter.vision_attention_block]
    weights: list[torch.Tensor] = []
    original = modeling_qwen2_5_vl.eager_attention_forward

    def recording(module, *args, **kwargs):  # type: ignore[no-untyped-def]
        out, w = original(module, *args, **kwargs)
        if module is block.attn:
            weights.append(w.detach())
        return out, w

    seen: dict[str, torch.Tensor] = {}
    hooks = [
        visual.patch_embed.register_forward_hook(lambda m, i, o: seen.__setitem__("embedded", o.detach())),
        visual.blocks[0].register_forward_pre_hook(
            lambda m, args, kwargs: seen.__setitem__(
                "tower_order", (args[0] if args else kwargs["hidden_states"]).detach()
            ),
            with_kwargs=True,
        ),
        block.attn.qkv.register_forward_hook(lambda m, i, o: seen.__setitem__("qkv", o.detach())),
    ]
    monkeypatch.setattr(modeling_qwen2_5_vl, "eager_attention_forward", recording)
    monkeypatch.setattr(visual.config, "_attn_implementation", "eager")
    flat, grid = adapter.patchify(pixels)
    try:
        with torch.no_grad():
            visual(flat, grid_thw=grid)
    finally:
        for h in hooks:
            h.remove()
    distance = torch.cdist(seen["tower_order"], seen["embedded"])
    perm = distance.argmin(dim=1)  # tower position i holds original patch perm[i]
    assert float(distance.min(dim=1).values.max()) < 1e-2 < float(distance.kthvalue(2, dim=1).values.min())
    assert torch.equal(perm.sort().values, torch.arange(len(perm)))

    received_tower = torch.cat([w[0].float().mean(dim=(0, 1)) for w in weights])
    heads = int(block.attn.num_heads)
    keys_tower = seen["qkv"].float().view(len(perm), 3, heads, -1)[:, 1].mean(dim=1)
    received, keys = torch.empty_like(received_tower), torch.empty_like(keys_tower)
    received[perm], keys[perm] = received_tower, keys_tower
    pairs, unit = int(grid[0, 0]), adapter.merge**2  # a merge unit is 4 consecutive original patches
    return (
        received.view(pairs, -1, unit).mean(-1),
        keys.view(pairs, -1, unit, keys.shape[-1]).mean(2),
        perm,
    )


def test_the_captured_block_is_the_last_and_a_full_attention_block(adapter: Qwen2VLAdapter) -> None:
    depth = len(adapter.visual.blocks)
    assert adapter.vision_attention_block == depth - 1
    assert adapter.vision_attention_block in adapter.config.vision_config.fullatt_block_indexes


def test_captured_attention_equals_the_eager_reference_in_the_original_patch_order(
    adapter: Qwen2VLAdapter, pixels: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected_received, expected_keys, perm = eager_reference(adapter, pixels, monkeypatch)
    assert not torch.equal(perm, torch.arange(len(perm)))  # the tower did permute the patches
    video = adapter.encode_video(pixels, capture_vision=True)
    assert video.vision is not None
    va = video.vision()
    rows, cols = video.grid
    assert va.received.shape == (FRAMES // 2, rows * cols) and va.keys.shape[:2] == (FRAMES // 2, rows * cols)
    torch.testing.assert_close(va.received, expected_received, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(va.keys, expected_keys, atol=1e-5, rtol=1e-5)


def test_the_window_order_matches_the_merged_features(adapter: Qwen2VLAdapter, pixels: torch.Tensor) -> None:
    # the merger's output, before HF reorders it, is in the order the window index names
    flat, grid = adapter.patchify(pixels)
    merged: list[torch.Tensor] = []
    handle = adapter.visual.merger.register_forward_hook(lambda m, i, o: merged.append(o.detach()))
    try:
        with torch.no_grad():
            out = adapter.visual(flat, grid_thw=grid)
    finally:
        handle.remove()
    order = adapter.window_index(grid)
    assert order is not None
    torch.testing.assert_close(merged[0], getattr(out, "pooler_output", out)[order])


@pytest.mark.parametrize("name", ["visionzip", "vispruner", "fastvid", "holitom"])
def test_vision_attention_strategies_run_on_tiny_qwen2_5_vl(name: str) -> None:
    tiny = Qwen2VLAdapter.tiny("tiny-qwen2.5-vl", num_layers=4)
    assert "vision_attention" in tiny.model_info(16).capabilities
    sample = tiny.encode_synthetic(16, 12, capture_vision=True)
    session, _ = build_session(tiny, name, 0.3)
    result = session.answer(sample)
    assert result.input_retention < 1.0 or result.layer_average_retention < 1.0
