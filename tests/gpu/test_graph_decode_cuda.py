"""On CUDA the decode step runs as CUDA graphs over static buffers (adapters/graph_decode.py): greedy
outputs identical to the eager loop's, logits equal to float32 precision, for strategies with and
without a decode stage, and again when a second sample of the same shape replays the captured graphs."""

from __future__ import annotations

import warnings

import pytest
import torch

from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter, tiny_llava_onevision_config
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan
from prune_bench.testing import prefill_and_decode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
FRAMES = 16
STEPS = 8


@pytest.fixture(scope="module")
def adapter():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu = LlavaOnevisionAdapter.from_config(
        tiny_llava_onevision_config(num_layers=8, image_size=64), dtype=torch.float32, seed=0
    )
    return LlavaOnevisionAdapter(cpu.model.to("cuda"))


def _plan(adapter, name: str) -> PruningPlan:
    info = adapter.model_info(FRAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = registry().strategy(name).for_budget(0.3, "layer-average", info)
    return PruningPlan.of(strategy.stages(info), info.num_layers)


@pytest.mark.parametrize("name", ["none", "fastv", "dycoke", "visionzip", "hieravid"])
@pytest.mark.parametrize("mode", ["drop", "mask"])
def test_graph_decode_matches_the_eager_loop(adapter, name, mode, monkeypatch):
    plan = _plan(adapter, name)
    for seed in (0, 1):  # the second sample replays the graphs captured for the first
        sample = adapter.encode_synthetic(FRAMES, 24, capture_vision=True, seed=seed)
        monkeypatch.setenv("PRUNE_BENCH_DECODE", "eager")
        _, eager = prefill_and_decode(adapter, sample, plan, mode, STEPS)
        monkeypatch.setenv("PRUNE_BENCH_DECODE", "graph")
        _, graph = prefill_and_decode(adapter, sample, plan, mode, STEPS)
        assert [int(x.argmax()) for x in graph] == [int(x.argmax()) for x in eager]
        for g, e in zip(graph, eager, strict=True):
            torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
    assert adapter.__dict__.get("_graph_pool") is not None
