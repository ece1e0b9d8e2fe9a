"""Greedy DPP MAP steps as one Triton kernel per pick, replayed as a CUDA graph.

The eager and graph paths of :mod:`prune_bench.strategies.common.dpp` run each pick as about a dozen
PyTorch kernels, and the projection on the Cholesky rows as a batched GEMV that reads every row,
written or not. Here one kernel does a whole pick for every kernel of the batch at once:

* the grid is (kernel, block of ``BLOCK_N`` items); every program finds its kernel's pick (the argmax
  of the residual scores) itself, from the scores of the previous step, so no program waits for
  another inside a step;
* it projects its items on the rows written so far (``i`` rows, not all of them), reading the
  Cholesky factor stored item-major (``[G, n, rows]``) so both the picked item's column and its own
  block are contiguous;
* scores ping-pong between two buffers (a step reads one and writes the other), which is what lets
  the programs of one step run in any order.

Same arithmetic as the eager loop (score ``d^2 + tie``, the rank floor and what an exhausted kernel
does, ``e = (L_j - c_j^T C) / sqrt(d_j^2)``), float32 throughout; only the summation order of the
projection differs, so picks agree with the eager loop's except where two residuals tie to float32
rounding. ``selector.py`` decides when this path runs (``PRUNE_BENCH_DPP`` can force it); it is also
what a persistent kernel whose grid barrier timed out falls back to. Runs under ``TRITON_INTERPRET=1``
on the CPU for tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from prune_bench.kernels.graph_steps import padded_steps, run_steps

#: Picks per captured CUDA graph (even: picks run in pairs). Capturing costs host time per launch, paid
#: once per stage; replaying a short graph more often costs nothing on the GPU while the host stays
#: ahead. On an H200, 4 to 32 were within about 10% of each other (reports/gpu/tune-dpp-triton.jsonl).
GRAPH_STEPS = 8


@triton.jit(do_not_specialize=["offset"])
def _greedy_step(
    kernel_ptr,  # [G, n, n] float32
    score_in_ptr,  # [G, n] d^2 + tie of the previous step (-inf: picked or padding)
    score_out_ptr,  # [G, n]
    tie_ptr,  # [G, n]
    floor_ptr,  # [G]
    chol_ptr,  # [G, n, rows] Cholesky rows, item-major
    order_ptr,  # [G, rows] int64 picks
    step_ptr,  # [1] int64: the step of offset 0
    offset,
    n,
    rows,
    BLOCK_N: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_ALL: tl.constexpr,
):
    g = tl.program_id(0).to(tl.int64)
    b = tl.program_id(1)
    i = tl.load(step_ptr) + offset

    # the pick: argmax of the previous step's scores over the whole kernel (every program alike)
    every = tl.arange(0, BLOCK_ALL)
    scores = tl.load(score_in_ptr + g * n + every, mask=every < n, other=float("-inf"))
    best = tl.max(scores, axis=0)
    j = tl.min(tl.where(scores == best, every, BLOCK_ALL), axis=0)  # first maximum, as torch.argmax
    j = tl.minimum(j, n - 1)  # a kernel with nothing left to pick (all -inf) picks item 0, discarded
    raw = best - tl.load(tie_ptr + g * n + j)
    floor = tl.load(floor_ptr + g)
    exhausted = raw <= floor  # as dpp._advance: no factor update, rank the rest by the tie-breaker

    items = b * BLOCK_N + tl.arange(0, BLOCK_N)
    live = items < n
    kj = tl.load(kernel_ptr + (g * n + j) * n + items, mask=live, other=0.0)
    proj = tl.zeros([BLOCK_N], dtype=tl.float32)
    col_j = chol_ptr + (g * n + j) * rows
    block = chol_ptr + (g * n + items[:, None]) * rows
    for t0 in range(0, tl.where(exhausted, 0, i), BLOCK_T):  # an exhausted kernel's e is 0 anyway
        t = t0 + tl.arange(0, BLOCK_T)
        written = t < i
        cj = tl.load(col_j + t, mask=written, other=0.0)
        c = tl.load(block + t[None, :], mask=live[:, None] & written[None, :], other=0.0)
        proj += tl.sum(c * cj[None, :], axis=1)
    e = (kj - proj) * tl.rsqrt(tl.maximum(raw, floor))
    e = tl.where(exhausted, 0.0, e)
    tl.store(chol_ptr + (g * n + items) * rows + i, e, mask=live)

    s = tl.load(score_in_ptr + g * n + items, mask=live, other=float("-inf"))
    s = s - e * e
    tie = tl.load(tie_ptr + g * n + items, mask=live, other=0.0)
    s = tl.where(s > float("-inf"), tl.where(exhausted, tie, s), s)
    s = tl.where(items == j, float("-inf"), s)
    tl.store(score_out_ptr + g * n + items, s, mask=live)
    if b == 0:
        tl.store(order_ptr + g * rows + i, j.to(tl.int64))


def blocks(n: int) -> tuple[int, int]:
    """(items per program, Cholesky rows per inner-loop iteration) for kernels of ``n`` items. Measured
    on an H200 with ``scripts/tune-dpp-triton.py``: one kernel of 1,568 or 3,136 items is fastest with
    (16, 256) (more programs for the one kernel; 7.2 against 10.0 ms for 941 picks of 3,136); four of 784
    or sixteen of 196 with (32, 128)."""
    return (16, 256) if n >= 1024 else (32, 128)


def greedy_order(
    kernel: torch.Tensor, score: torch.Tensor, tie: torch.Tensor, floor: torch.Tensor, steps: int
) -> torch.Tensor:
    """``[G, steps]`` pick order, as ``dpp._eager_order`` computes it (``kernel`` float32 ``[G, n, n]``,
    ``score`` ``[G, n]`` = diag + tie with -inf on padding, ``floor`` ``[G, 1]``). Picks run in pairs
    (one per score buffer, so every pair starts on the same one); on CUDA the first pair runs eagerly
    (it compiles the kernel) and the rest replay a captured graph of :data:`GRAPH_STEPS` picks
    (``graph_steps.run_steps``). A pick past ``steps`` fills a padding row and is discarded."""
    g, n, _ = kernel.shape
    device = kernel.device
    pairs, chunk = -(-steps // 2), max(1, GRAPH_STEPS // 2)
    rows = 2 * padded_steps(pairs, device, chunk)
    kernel = kernel.float().contiguous()
    buffers = [score.float().contiguous().clone(), torch.empty_like(score, dtype=torch.float32)]
    tie = tie.float().contiguous()
    floor = floor.float().reshape(g).contiguous()
    chol = torch.zeros(g, n, rows, dtype=torch.float32, device=device)
    order = torch.zeros(g, rows, dtype=torch.long, device=device)
    step = torch.zeros(1, dtype=torch.long, device=device)
    block_n, block_t = blocks(n)
    grid = (g, triton.cdiv(n, block_n))
    block_all = triton.next_power_of_2(n)

    def pair() -> None:
        for offset in (0, 1):
            _greedy_step[grid](
                kernel, buffers[offset], buffers[1 - offset], tie, floor, chol, order, step, offset, n,
                rows, BLOCK_N=block_n, BLOCK_T=block_t, BLOCK_ALL=block_all,
            )  # fmt: skip
        step.add_(2)

    run_steps(pair, pairs, device, chunk)
    return order[:, :steps]
