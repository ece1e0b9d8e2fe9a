"""Greedy DPP MAP as one persistent Triton kernel: every pick of a stage in a single launch.

The per-pick kernel of ``dpp_triton.py`` pays a kernel launch (a CUDA-graph node) per pick, and every
program rescans its kernel's scores to find the pick. Here the programs stay resident for the whole
stage: each owns one block of items of one kernel and keeps their scores in registers; per pick it

1. publishes its block's best score and item (double-buffered by pick parity),
2. meets every other program at a grid-wide barrier (an atomic counter in global memory),
3. reads its kernel's block maxima to learn the pick ``j`` (first maximum, as ``torch.argmax``),
4. extends its items' Cholesky rows by ``e = (L_j - c_j^T C) / sqrt(d_j^2)`` and updates its scores,
   with the rank floor and exhausted-kernel rule of ``dpp._advance``.

A spin barrier needs every program resident at once, so the grid is sized to the GPU's
multiprocessor count (:func:`layout`). Each program then reads its items' Cholesky rows alone, so
the kernel pays off while items per program times picks stays small (:func:`fits`, from
measurements); otherwise ``dpp.py`` uses the per-pick kernel. Data other programs wrote is read with ``.cg`` loads (L2, not
a possibly stale L1 line). It cannot run under Triton's CPU interpreter, which runs programs one
after another; ``tests/gpu`` checks its picks against the eager loop on CUDA.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _greedy_all(
    kernel_ptr,  # [G, n, n] float32
    score_ptr,  # [G, n] starting d^2 + tie (-inf: padding)
    tie_ptr,  # [G, n]
    floor_ptr,  # [G]
    chol_ptr,  # [G, n, rows] Cholesky rows, item-major
    order_ptr,  # [G, rows] int64 picks
    part_val_ptr,  # [2, G, nblocks] float32 block maxima
    part_idx_ptr,  # [2, G, nblocks] int32 where they are
    counter_ptr,  # [1] int32 barrier arrivals, zero at launch
    n,
    rows,
    steps,
    nblocks,
    nprog,
    G,
    BLOCK_N: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    g = (pid // nblocks).to(tl.int64)
    b = pid % nblocks
    items = b * BLOCK_N + tl.arange(0, BLOCK_N)
    inside = items < n
    s = tl.load(score_ptr + g * n + items, mask=inside, other=float("-inf"))
    tie = tl.load(tie_ptr + g * n + items, mask=inside, other=0.0)
    floor = tl.load(floor_ptr + g)
    part = tl.arange(0, BLOCK_P)
    in_parts = part < nblocks
    block = chol_ptr + (g * n + items[:, None]) * rows
    for i in range(0, steps):
        # 1. this block's best score and its first item
        block_best = tl.max(s, axis=0)
        where = tl.min(tl.where(s == block_best, items, n), axis=0)
        slot = (i % 2) * G * nblocks + g * nblocks
        tl.store(part_val_ptr + slot + b, block_best)
        tl.store(part_idx_ptr + slot + b, where)
        # 2. grid barrier: arrive, then wait until every program has arrived for this pick
        tl.debug_barrier()
        tl.atomic_add(counter_ptr, 1, sem="release")
        target = (i + 1) * nprog
        arrived = tl.atomic_add(counter_ptr, 0, sem="acquire")
        while arrived < target:
            arrived = tl.atomic_add(counter_ptr, 0, sem="acquire")
        tl.debug_barrier()
        # 3. the pick
        pv = tl.load(part_val_ptr + slot + part, mask=in_parts, other=float("-inf"), cache_modifier=".cg")
        pj = tl.load(part_idx_ptr + slot + part, mask=in_parts, other=n, cache_modifier=".cg")
        best = tl.max(pv, axis=0)
        j = tl.minimum(tl.min(tl.where(pv == best, pj, n), axis=0), n - 1).to(tl.int64)
        raw = best - tl.load(tie_ptr + g * n + j)
        exhausted = raw <= floor
        # 4. extend the Cholesky rows of this block's items, update their scores
        kj = tl.load(kernel_ptr + (g * n + j) * n + items, mask=inside, other=0.0)
        proj = tl.zeros([BLOCK_N], dtype=tl.float32)
        col_j = chol_ptr + (g * n + j) * rows
        for t0 in range(0, tl.where(exhausted, 0, i), BLOCK_T):
            t = t0 + tl.arange(0, BLOCK_T)
            written = t < i
            cj = tl.load(col_j + t, mask=written, other=0.0, cache_modifier=".cg")
            c = tl.load(block + t[None, :], mask=inside[:, None] & written[None, :], other=0.0)
            proj += tl.sum(c * cj[None, :], axis=1)
        e = (kj - proj) * tl.rsqrt(tl.maximum(raw, floor))
        e = tl.where(exhausted, 0.0, e)
        tl.store(chol_ptr + (g * n + items) * rows + i, e, mask=inside)
        s = s - e * e
        s = tl.where(s > float("-inf"), tl.where(exhausted, tie, s), s)
        s = tl.where(items == j, float("-inf"), s)
        if b == 0:
            tl.store(order_ptr + g * rows + i, j)


#: Largest block of items one program holds (its registers bound it).
MAX_BLOCK_N = 256
#: Cholesky-row tile per inner-loop iteration, in elements (BLOCK_N x BLOCK_T).
TILE = 4096


def layout(g: int, n: int, device: torch.device) -> tuple[int, int] | None:
    """(items per program, programs) that keep every program resident (one per multiprocessor), or
    ``None`` when ``g`` kernels of ``n`` items cannot be laid out that way."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    block_n = 16
    while g * triton.cdiv(n, block_n) > sms:
        block_n *= 2
        if block_n > MAX_BLOCK_N:
            return None
    return block_n, g * triton.cdiv(n, block_n)


#: Most ``items per program x picks`` for which one persistent launch beats a launch per pick. On an
#: H200 (reports/gpu/tune-dpp-triton.jsonl and HieraVid's stage times) it is 2-3x faster on four
#: segments of 784 (32 x 235 picks), sixteen of 196 and one of 1,568 (16 x 470), even at one of 3,136
#: (32 x 941), and slower once each program holds many items for many picks (32 x 1,500: 17.3 against
#: 14-16 ms; 128 x 3,817 at 64 frames: 229 against 84-94 ms): each pick reads ``items x picks so far``
#: Cholesky entries through one multiprocessor.
WORK_LIMIT = 32 * 1024


def fits(g: int, n: int, steps: int, device: torch.device) -> bool:
    """Whether ``g`` kernels of ``n`` items for ``steps`` picks should take the persistent kernel."""
    if device.type != "cuda":
        return False
    laid = layout(g, n, device)
    return laid is not None and laid[0] * steps <= WORK_LIMIT


def greedy_order(
    kernel: torch.Tensor, score: torch.Tensor, tie: torch.Tensor, floor: torch.Tensor, steps: int
) -> torch.Tensor:
    """``[G, steps]`` pick order, as ``dpp._eager_order`` computes it, in one launch (CUDA only)."""
    g, n, _ = kernel.shape
    device = kernel.device
    laid = layout(g, n, device)
    if laid is None:
        raise ValueError(f"{g} kernels of {n} items do not fit one resident program per multiprocessor")
    block_n, nprog = laid
    nblocks = triton.cdiv(n, block_n)
    rows = max(steps, 1)
    chol = torch.zeros(g, n, rows, dtype=torch.float32, device=device)
    order = torch.zeros(g, rows, dtype=torch.long, device=device)
    part_val = torch.empty(2, g, nblocks, dtype=torch.float32, device=device)
    part_idx = torch.empty(2, g, nblocks, dtype=torch.int32, device=device)
    counter = torch.zeros(1, dtype=torch.int32, device=device)
    _greedy_all[(nprog,)](
        kernel.float().contiguous(), score.float().contiguous(), tie.float().contiguous(),
        floor.float().reshape(g).contiguous(), chol, order, part_val, part_idx, counter,
        n, rows, steps, nblocks, nprog, g,
        BLOCK_N=block_n, BLOCK_T=max(16, TILE // block_n), BLOCK_P=triton.next_power_of_2(nblocks),
        num_warps=4,
    )  # fmt: skip
    return order[:, :steps]
