"""The CUDA-graph path of the greedy DPP (the default on CUDA) picks what the eager loop picks."""

from __future__ import annotations

import pytest
import torch

from prune_bench.strategies.common.dpp import greedy_dpp_map

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _kernels(g: int, n: int, d: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(g, n, d, device="cuda", generator=gen), dim=-1)
    r = torch.rand(g, n, device="cuda", generator=gen)
    sizes = torch.tensor([n - 37 * i for i in range(g)], device="cuda")
    return r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :], sizes


@pytest.mark.parametrize("budget", [1, 33, 300])
def test_graph_path_equals_eager(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    kernel, sizes = _kernels(4, 784)
    budgets = torch.full((4,), budget, device="cuda")
    monkeypatch.setenv("PRUNE_BENCH_DPP", "eager")
    eager = greedy_dpp_map(kernel, sizes, budgets)
    monkeypatch.setenv("PRUNE_BENCH_DPP", "graph")
    graph = greedy_dpp_map(kernel, sizes, budgets)
    assert torch.equal(eager, graph) and eager.sum(1).tolist() == [budget] * 4
