"""The Triton greedy-DPP kernel (the default on CUDA) picks what the eager PyTorch loop picks.

Runs on a CUDA device (with the replayed CUDA graph), or on the CPU under Triton's interpreter:
``TRITON_INTERPRET=1 python -m pytest tests/gpu/test_dpp_triton.py`` (needs ``pip install triton``).
"""

from __future__ import annotations

import pytest
import torch
from triton_marks import DEVICE, TRITON_OR_INTERPRETER

from prune_bench import kernels
from prune_bench.strategies.common import dpp

pytestmark = TRITON_OR_INTERPRETER


def _kernels(g: int, n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(g, n, d, device=DEVICE, generator=gen), dim=-1)
    r = torch.rand(g, n, device=DEVICE, generator=gen)
    sizes = torch.tensor([n - (n // 7) * i for i in range(g)], device=DEVICE)
    kernel = r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :]
    pad = torch.arange(n, device=DEVICE)[None] >= sizes[:, None]
    kernel = kernel.masked_fill(pad[:, :, None] | pad[:, None, :], 0.0)
    return kernel, sizes


def _order(kernel: torch.Tensor, sizes: torch.Tensor, steps: int, path: str) -> torch.Tensor:
    """Pick order from ``path`` with the inputs greedy_dpp_map prepares."""
    from prune_bench.kernels import dpp_persistent, dpp_triton

    score, tie, floor = dpp.greedy_inputs(kernel, sizes)
    if path == "eager":
        return dpp._eager_order(kernel, score.clone(), tie, floor, steps)
    if path == "persistent" and DEVICE == "cpu":  # the interpreter runs one kernel per launch
        one = [t.split(1) for t in (kernel, score, tie, floor)]
        return torch.cat(
            [dpp_persistent.greedy_order(*args, steps, panel=(16, "ieee")) for args in zip(*one, strict=True)]
        )
    if path == "persistent":
        return dpp_persistent.greedy_order(kernel, score, tie, floor, steps)
    return dpp_triton.greedy_order(kernel, score, tie, floor, steps)


PATHS = ["triton", "persistent"]


@pytest.mark.parametrize(
    ("g", "n", "d", "steps"),
    [
        (3, 40, 24, 25),
        (4, 150, 64, 1),
        (4, 150, 64, 2),
        (2, 300, 256, 131) if DEVICE == "cuda" else (2, 70, 64, 40),  # several graph replays on CUDA
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_triton_order_equals_eager_order(g: int, n: int, d: int, steps: int, path: str) -> None:
    kernel, sizes = _kernels(g, n, d)
    eager = _order(kernel, sizes, steps, "eager")
    fused = _order(kernel, sizes, steps, path)
    budgets = torch.minimum(torch.full_like(sizes, steps), sizes)
    for i in range(g):  # the picks each kernel keeps (its budget); later ones are discarded anyway
        k = int(budgets[i])
        assert fused[i, :k].tolist() == eager[i, :k].tolist()


@pytest.mark.parametrize("path", PATHS)
def test_triton_picks_past_the_kernel_rank(path: str) -> None:
    # rank 6, 25 picks: after the rank is spent, residuals are float32 noise whose rounding depends on
    # the summation order (and with it the pick at which a kernel counts as exhausted), so only the
    # picks up to the rank are compared; the rest must still be the budget's worth of distinct items
    kernel, sizes = _kernels(3, 40, 6)
    eager = _order(kernel, sizes, 25, "eager")
    fused = _order(kernel, sizes, 25, path)
    assert torch.equal(fused[:, :6], eager[:, :6])
    assert all(len(set(row.tolist())) == 25 for row in fused)


@pytest.mark.skipif(DEVICE == "cpu", reason="680 picks are too slow for the interpreter")
@pytest.mark.parametrize("path", PATHS)
def test_triton_keeps_its_budget_far_past_the_kernel_rank(path: str) -> None:
    # the case tests/strategies/test_hieravid.py checks on the eager path: rank 128, 680 picks
    g = torch.Generator(device=DEVICE).manual_seed(2)
    base = 4 * torch.randn(128, device=DEVICE, generator=g)
    x = (base + torch.randn(1, 700, 128, device=DEVICE, generator=g)).bfloat16().float()
    x = torch.nn.functional.normalize(x, dim=-1)
    r = torch.rand(1, 700, device=DEVICE, generator=g)
    r = (r - r.min() + 1e-6) / (r.max() - r.min())
    kernel = r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :]
    fused = _order(kernel, torch.tensor([700], device=DEVICE), 680, path)
    assert len(set(fused[0].tolist())) == 680


def test_greedy_dpp_map_on_the_triton_path(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, sizes = _kernels(3, 64, 64, seed=4)
    budgets = torch.tensor([10, 30, 64], device=DEVICE)
    monkeypatch.setenv("PRUNE_BENCH_DPP", "eager")
    eager = dpp.greedy_dpp_map(kernel, sizes, budgets)
    monkeypatch.setenv("PRUNE_BENCH_DPP", "triton")
    assert kernels.dpp_path(torch.device(DEVICE), *kernel.shape[:2]) == "triton"
    with kernels.record_paths() as paths:
        fused = dpp.greedy_dpp_map(kernel, sizes, budgets)
    assert paths == {"dpp": "triton"}
    assert torch.equal(eager, fused)
    assert fused.sum(1).tolist() == torch.minimum(budgets, sizes).tolist()


@pytest.mark.skipif(DEVICE == "cpu", reason="the persistent kernel needs every program resident at once")
def test_persistent_kernel_on_a_7b_sized_stage() -> None:
    # one segment of 3,064 tokens, 2,144 picks (HieraVid's first in-LLM stage at 32 frames, keep 0.3)
    kernel, sizes = _kernels(1, 3064, 3584, seed=7)
    fused = _order(kernel, sizes, 2144, "persistent")
    reference = _order(kernel, sizes, 2144, "triton")
    assert torch.equal(fused, reference)


@pytest.mark.skipif(DEVICE == "cpu", reason="the persistent kernel needs every program resident at once")
@pytest.mark.parametrize("panel", [None, (16, "ieee")])
def test_persistent_kernel_repeats_its_picks(panel: tuple[int, str] | None) -> None:
    # a race in the grid barrier or the panel buffers would show as picks that change from run to run;
    # (16, "ieee") is the panel of GPUs without TF32
    from prune_bench.kernels import dpp_persistent

    kernel, sizes = _kernels(4, 784, 512, seed=5)
    reference = _order(kernel, sizes, 235, "triton")
    score, tie, floor = dpp.greedy_inputs(kernel, sizes)
    for _ in range(20):
        fused = dpp_persistent.greedy_order(kernel, score, tie, floor, 235, panel=panel)
        assert torch.equal(fused, reference)


def _barrier_cannot_open() -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(kernel, sizes, items per program, polls) for a persistent launch whose programs are not all
    resident at once. Under the interpreter, which runs programs one after another: three programs for
    one kernel (the first waits for one that has not started). On CUDA: one kernel with more programs
    than can be resident (16 of 128 threads per multiprocessor at most; each kernel's programs wait only
    for each other, so it takes one kernel that large, 4.6 GB at 132 multiprocessors)."""
    if DEVICE == "cpu":
        kernel, sizes = _kernels(1, 40, 24)
        return kernel, sizes, 16, 200
    n = 16 * (16 * torch.cuda.get_device_properties(DEVICE).multi_processor_count + 1)
    if torch.cuda.mem_get_info()[0] < 3 * 4 * n * n:
        pytest.skip(f"a kernel of {n} items needs {3 * 4 * n * n / 1e9:.0f} GB of free GPU memory")
    x = torch.nn.functional.normalize(torch.randn(1, n, 16, device=DEVICE), dim=-1)
    return x @ x.transpose(1, 2), torch.tensor([n], device=DEVICE), 16, 1 << 14


def test_a_barrier_that_stays_closed_times_out_instead_of_hanging() -> None:
    from prune_bench.kernels import dpp_persistent

    kernel, sizes, block_n, polls = _barrier_cannot_open()
    score, tie, floor = dpp.greedy_inputs(kernel, sizes)
    with pytest.raises(dpp_persistent.BarrierTimeout, match=f"stayed closed for {polls} polls"):
        dpp_persistent.greedy_order(kernel, score, tie, floor, 10, block_n=block_n, max_polls=polls)


@pytest.mark.skipif(DEVICE == "cuda", reason="on CUDA the per-pick kernel of so large a kernel is too slow")
def test_a_timed_out_stage_reruns_on_the_per_pick_kernel() -> None:
    from prune_bench.kernels import dpp_persistent, selector

    kernels.clear_failures()
    kernel, sizes, block_n, polls = _barrier_cannot_open()
    score, tie, floor = dpp.greedy_inputs(kernel, sizes)
    impls = dpp.dpp_impls(kernel, score, tie, floor, 12)
    impls["persistent"] = lambda: dpp_persistent.greedy_order(
        kernel, score, tie, floor, 12, block_n=block_n, max_polls=polls
    )
    try:
        with kernels.record_paths() as ran, pytest.warns(RuntimeWarning, match="BarrierTimeout"):
            order = selector.run("dpp", kernel.device, ("persistent", "triton"), impls)
        assert ran == {"dpp": "persistent->triton"}
        assert "BarrierTimeout" in " ".join(kernels.fallback_reasons().values())
    finally:
        kernels.clear_failures()
    assert torch.equal(order, _order(kernel, sizes, 12, "eager"))
