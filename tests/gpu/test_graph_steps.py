"""Greedy selections replayed as CUDA graphs pick what their eager loops pick."""

from __future__ import annotations

import pytest
import torch

from prune_bench.kernels import graph_steps
from prune_bench.strategies.common.diversity import greedy_max_min_diversity

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize(("n", "k"), [(50, 1), (50, 2), (50, 3), (300, 34), (300, 200), (64, 64)])
def test_divprune_graph_equals_eager(monkeypatch: pytest.MonkeyPatch, n: int, k: int) -> None:
    monkeypatch.setenv("PRUNE_BENCH_MAXMIN", "graph")  # on CUDA the default is the Triton loop
    x = torch.randn(n, 96, device="cuda", generator=torch.Generator(device="cuda").manual_seed(n + k))
    graph = greedy_max_min_diversity(x, k)

    def eager(step, count, device, chunk=0):  # type: ignore[no-untyped-def]
        for _ in range(count):
            step()

    monkeypatch.setattr(graph_steps, "run_steps", eager)
    eager = greedy_max_min_diversity(x, k)
    assert graph.tolist() == eager.tolist() and len(set(graph.tolist())) == k
