"""A model split across two GPUs (``--device-map``, adapters/placement.py) answers as on one: a tiny
LLaVA-OneVision with its vision tower and first layers on cuda:0 and its last layers, final norm and LM
head on cuda:1 gives one GPU's logits for an input stage (VisionZip), a layer stage (FastV) and a
decode stage (DyCoke), in drop and mask mode; the shipped model loaded through a device-map file (
transformers' placement, accelerate's hooks) does too; a random-weight model is made on the mapped GPUs.
Decoding runs the eager loop there (CUDA graphs need one device)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from prune_bench.adapters.graph_decode import GraphPool
from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter, tiny_llava_onevision_config
from prune_bench.adapters.loading import load_adapter
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan
from prune_bench.testing import prefill_and_decode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices"),
]
pytest.importorskip("accelerate")
FRAMES = 8
STEPS = 5
GPU0, GPU1 = torch.device("cuda", 0), torch.device("cuda", 1)


def _plan(adapter, name: str) -> PruningPlan:
    info = adapter.model_info(FRAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = registry().strategy(name).for_budget(0.3, "layer-average", info)
    return PruningPlan.of(strategy.stages(info), info.num_layers)


@pytest.fixture(scope="module")
def pair():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    config = tiny_llava_onevision_config(num_layers=8, image_size=64)
    one = LlavaOnevisionAdapter.from_config(config, dtype=torch.float32, seed=0)
    split = LlavaOnevisionAdapter.from_config(config, dtype=torch.float32, seed=0)
    one.model.to(GPU0)
    split.model.to(GPU0)
    for layer in split.runner.layers[5:]:
        layer.to(GPU1)
    split.runner.norm.to(GPU1)
    split.runner.lm_head.to(GPU1)
    return one, split


@pytest.mark.parametrize("mode", ["drop", "mask"])
@pytest.mark.parametrize("name", ["visionzip", "fastv", "dycoke", "none"])
def test_split_across_two_gpus_answers_as_one_gpu(pair, name, mode):
    one, split = pair
    assert split.runner.placement().boundaries() == [5]
    plan = _plan(one, name)
    sample = one.encode_synthetic(FRAMES, 24, capture_vision=True)
    pre_one, expected = prefill_and_decode(one, sample, plan, mode, STEPS)
    pre_split, got = prefill_and_decode(split, split.encode_synthetic(FRAMES, 24, capture_vision=True), plan, mode, STEPS)
    assert pre_split.caches[0].key.device == GPU0 and pre_split.caches[-1].key.device == GPU1
    assert all(x.device == GPU0 for x in got)  # logits come back where the prompt started
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert torch.equal(pre_one.state.source.cpu(), pre_split.state.source.cpu())
    assert GraphPool().step_for(split.runner, pre_split, plan) is None


def test_shipped_model_through_a_device_map_file_answers_as_one_gpu(tmp_path):
    layers = 8
    mapping = {
        "model.vision_tower": 0,
        "model.multi_modal_projector": 0,
        "model.image_newline": 1,  # the newline token joins the video from another GPU
        "model.language_model.embed_tokens": 1,
        **{f"model.language_model.layers.{i}": 1 if i < 4 else 0 for i in range(layers)},
        "model.language_model.norm": 0,
        "model.language_model.rotary_emb": 1,
        "lm_head": 1,
    }
    path = tmp_path / "map.json"
    path.write_text(json.dumps(mapping))
    one, _ = load_adapter(None, "cuda:0")
    split, _ = load_adapter(None, "cuda:0", str(path))
    where = split.runner.placement()
    assert not where.single and where.boundaries() == [4]
    plan = _plan(one, "fastv")
    _, expected = prefill_and_decode(one, one.encode_synthetic(FRAMES, 24, capture_vision=True), plan, "drop", STEPS)
    _, got = prefill_and_decode(split, split.encode_synthetic(FRAMES, 24, capture_vision=True), plan, "drop", STEPS)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a.float(), b.float().to(a.device), atol=2e-2, rtol=2e-2)


def test_random_weights_are_made_on_both_gpus():
    from transformers import LlavaOnevisionForConditionalGeneration

    from prune_bench.adapters.placement import random_model_on_device_map

    config = tiny_llava_onevision_config(num_layers=8, image_size=64)
    mapping = {
        "model.vision_tower": 0,
        "model.multi_modal_projector": 0,
        "model.image_newline": 0,
        "model.language_model.embed_tokens": 0,
        **{f"model.language_model.layers.{i}": i // 4 for i in range(8)},
        "model.language_model.norm": 1,
        "model.language_model.rotary_emb": 0,
        "lm_head": 1,
    }
    model = random_model_on_device_map(
        LlavaOnevisionForConditionalGeneration, config, mapping, torch.float32, 0, "sdpa"
    )
    adapter = LlavaOnevisionAdapter(model)
    assert {p.device for p in model.parameters()} == {GPU0, GPU1}
    _, logits = prefill_and_decode(
        adapter, adapter.encode_synthetic(FRAMES, 24, capture_vision=True), _plan(adapter, "dycoke"), "drop", 3
    )
    assert all(torch.isfinite(x).all() for x in logits)
