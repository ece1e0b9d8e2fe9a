"""The decode step over static buffers (adapters/graph_decode.py) computes what the eager loop computes:
the same logits at every step, with a decode stage (DyCoke) and in mask mode, and again after the
buffers are reloaded with another prefill of the same shape. On CUDA the same arithmetic is captured as
CUDA graphs (tests/gpu/test_graph_decode_cuda.py)."""

from __future__ import annotations

import warnings

import pytest
import torch

from prune_bench.adapters.graph_decode import GraphStep, decode_path
from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.adapters.qwen2_vl import Qwen2VLAdapter
from prune_bench.core.plugins import registry
from prune_bench.core.stages import PruningPlan
from prune_bench.core.timing import Clock
from prune_bench.errors import UserError

FRAMES = 8
STEPS = 5


def _sample(adapter, seed: int):
    return adapter.encode_synthetic(FRAMES, 24, capture_vision=True, seed=seed)


def _plan(adapter, spec: str):
    info = adapter.model_info(FRAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy = registry().strategy(spec).for_budget(0.3, "layer-average", info)
    return PruningPlan.of(strategy.stages(info), info.num_layers)


def _eager(adapter, sample, plan, mode):
    pre = adapter.runner.prefill(sample.state, plan, mode=mode, max_new_tokens=STEPS)
    clock = Clock(pre.logits.device)
    logits, tokens = [pre.logits], []
    for step in range(STEPS - 1):
        tokens.append(int(logits[-1].argmax()))
        logits.append(adapter.runner.decode_step(tokens[-1], pre.state.next_position + step, step, pre, plan, clock))
    return tokens, logits


def _static(adapter, sample, plan, mode, graph: GraphStep | None = None):
    pre = adapter.runner.prefill(sample.state, plan, mode=mode, max_new_tokens=STEPS)
    graph = graph or GraphStep(adapter.runner, pre, plan, capture=False)
    graph.load(pre, plan)
    clock = Clock(pre.logits.device)
    logits, tokens = [pre.logits], []
    for step in range(STEPS - 1):
        tokens.append(int(logits[-1].argmax()))
        logits.append(graph(tokens[-1], pre.state.next_position + step, step, pre, clock))
    return tokens, logits, graph


@pytest.fixture(scope="module", params=["llava", "qwen2-vl", "qwen3-vl-moe"])
def adapter(request):
    if request.param == "llava":
        return LlavaOnevisionAdapter.tiny("tiny-llava-onevision", num_layers=4)
    if request.param == "qwen3-vl-moe":  # a sparse MoE block's MLP reads (batch, seq, D)
        from prune_bench.adapters.qwen3_vl import Qwen3VLAdapter

        return Qwen3VLAdapter.tiny("tiny-qwen3-vl-moe", num_layers=4)
    return Qwen2VLAdapter.tiny("tiny-qwen2-vl", num_layers=4)


@pytest.mark.parametrize("spec", ["none", "fastv", "dycoke", "random", "hieravid"])
@pytest.mark.parametrize("mode", ["drop", "mask"])
def test_static_buffers_decode_as_the_eager_loop(adapter, spec, mode):
    plan = _plan(adapter, spec)
    want_tokens, want = _eager(adapter, _sample(adapter, 0), plan, mode)
    got_tokens, got, graph = _static(adapter, _sample(adapter, 0), plan, mode)
    assert got_tokens == want_tokens
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    if spec == "dycoke":
        assert len(graph.segments) == 2  # the layers before its decode stage, and after
    # the same buffers, reloaded with another prefill of the same shape
    if GraphStep.key_of(*_prefill_key(adapter, _sample(adapter, 1), plan, mode)) == GraphStep.key_of(
        *_prefill_key(adapter, _sample(adapter, 0), plan, mode)
    ):
        want_tokens, want = _eager(adapter, _sample(adapter, 1), plan, mode)
        got_tokens, got, _ = _static(adapter, _sample(adapter, 1), plan, mode, graph)
        assert got_tokens == want_tokens
        torch.testing.assert_close(got[-1], want[-1], atol=2e-5, rtol=1e-4)


def _prefill_key(adapter, sample, plan, mode):
    return adapter.runner.prefill(sample.state, plan, mode=mode, max_new_tokens=STEPS), plan


def test_the_decode_path_is_eager_on_the_cpu_and_checked(monkeypatch):
    assert decode_path(torch.device("cpu")) == "eager"
    monkeypatch.setenv("PRUNE_BENCH_DECODE", "graph")
    assert decode_path(torch.device("cpu")) == "eager"  # no graphs without CUDA
    assert decode_path(torch.device("cuda")) == "graph"
    monkeypatch.setenv("PRUNE_BENCH_DECODE", "eager")
    assert decode_path(torch.device("cuda")) == "eager"
    monkeypatch.setenv("PRUNE_BENCH_DECODE", "fast")
    with pytest.raises(UserError, match="PRUNE_BENCH_DECODE must be one of graph, eager"):
        decode_path(torch.device("cpu"))
