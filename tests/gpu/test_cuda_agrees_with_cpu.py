"""CPU and CUDA paths agree: the same strategy keeps the same tokens and answers the same (float32)."""

from __future__ import annotations

import warnings

import pytest
import torch

from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter, tiny_llava_onevision_config
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore::prune_bench.core.strategy.BudgetWarning"),
]
FRAMES = 16


@pytest.fixture(autouse=True)
def _exact_float32(monkeypatch):
    # cuDNN convolutions (the patch embedding) default to TF32, which is not float32
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def _run(device: str, name: str):
    # Built on the CPU and moved, so both devices run the same weights (the CUDA RNG differs).
    cpu = LlavaOnevisionAdapter.from_config(
        tiny_llava_onevision_config(num_layers=8, image_size=64), dtype=torch.float32, seed=0
    )
    adapter = LlavaOnevisionAdapter(cpu.model.to(device)) if device != "cpu" else cpu
    g = torch.Generator().manual_seed(0)
    size = adapter.config.vision_config.image_size
    scenes = torch.randint(0, 256, (2, size, size, 3), generator=g, dtype=torch.uint8)
    video = torch.cat([scenes[0].expand(FRAMES // 2, -1, -1, -1), scenes[1].expand(FRAMES // 2, -1, -1, -1)])
    video = (video.int() + torch.randint(-20, 21, video.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ids = [3, 4, 5] + [adapter.config.video_token_id] * adapter.video_token_count(FRAMES) + [6, 7, 8, 9]
    sample = adapter.encode_ids(ids, adapter.pixels(video), [10, 11, 12, 13], capture_vision=True)
    info = adapter.model_info(FRAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = registry().strategy(name).for_budget(0.3, "layer-average", info)
    plan = PruningPlan.of(strategy.stages(info), info.num_layers)
    # the kept tokens, from a second prefill given what ``run`` gives it (vision attention included)
    pre = adapter.runner.prefill(sample.state, plan, vision=sample.vision)
    return adapter.run(sample, plan, max_new_tokens=4), pre.state.source.cpu()


@pytest.mark.parametrize("name", sorted(n for n in registry().strategies if n != "random"))
def test_cuda_matches_cpu(name):
    cpu, cpu_kept = _run("cpu", name)
    gpu, gpu_kept = _run("cuda", name)
    assert [c.mlp_visual for c in cpu.counts] == [c.mlp_visual for c in gpu.counts]
    overlap = len(set(cpu_kept.tolist()) & set(gpu_kept.tolist())) / max(1, cpu_kept.numel())
    assert overlap > 0.97, f"{name}: only {overlap:.1%} of the kept tokens agree"
    torch.testing.assert_close(
        torch.tensor(cpu.option_logits), torch.tensor(gpu.option_logits), atol=5e-3, rtol=1e-3
    )
