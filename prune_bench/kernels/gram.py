"""Batched Gram matrices ``x @ x^T`` in float32 precision, on GPUs with TF32 as one Triton kernel.

HieraVid's conditional DPP kernel is the Gram matrix of relevance-scaled unit vectors: at 32 frames
a ``3,064 x 3,064 x 3,584`` product per stage, which cuBLAS runs on the float32 FMA units (about 1.7
ms on an H200; TF32 tensor cores are off for float32 matmuls by default, and their 10-bit mantissa
would change the kernel at the 1e-3 level). Here each tile is three TF32 tensor-core products
(``tl.dot`` with ``input_precision="tf32x3"``, error at float32's level), and only the tiles on and
above the diagonal are computed; each is stored twice (the Gram matrix is symmetric). Off CUDA,
without Triton, on GPUs without TF32, or if the kernel cannot be built (one warning), it is
``torch.matmul`` in float32: ``selector.gram_matrix`` decides, and is what callers use; this module
imports Triton, and is imported only when its kernel is about to run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gram(x_ptr, out_ptr, n, d, BM: tl.constexpr, BK: tl.constexpr, PRECISION: tl.constexpr):
    g = tl.program_id(0).to(tl.int64)
    tm = tl.program_id(1)
    tn = tl.program_id(2)
    if tn >= tm:  # the tiles below the diagonal are the transposes of those above
        rows = tm * BM + tl.arange(0, BM)
        cols = tn * BM + tl.arange(0, BM)
        acc = tl.zeros([BM, BM], dtype=tl.float32)
        for k0 in range(0, d, BK):
            ks = k0 + tl.arange(0, BK)
            a = tl.load(
                x_ptr + (g * n + rows[:, None]) * d + ks[None, :],
                mask=(rows < n)[:, None] & (ks < d)[None, :],
                other=0.0,
            )
            b = tl.load(
                x_ptr + (g * n + cols[:, None]) * d + ks[None, :],
                mask=(cols < n)[:, None] & (ks < d)[None, :],
                other=0.0,
            )
            acc += tl.dot(a, tl.trans(b), input_precision=PRECISION)
        live = (rows < n)[:, None] & (cols < n)[None, :]
        tl.store(out_ptr + (g * n + rows[:, None]) * n + cols[None, :], acc, mask=live)
        if tn > tm:
            tl.store(out_ptr + (g * n + cols[None, :]) * n + rows[:, None], acc, mask=live)


#: Tile edge and reduction step of :func:`gram_triton`.
BM, BK = 128, 32


def gram_triton(x: torch.Tensor, precision: str = "tf32x3") -> torch.Tensor:
    """``x @ x^T`` for float32 ``x`` ``[G, n, d]`` with the Triton kernel (also under Triton's CPU
    interpreter, for tests)."""
    x = x.float().contiguous()
    g, n, d = x.shape
    out = torch.empty(g, n, n, dtype=torch.float32, device=x.device)
    tiles = triton.cdiv(n, BM)
    _gram[(g, tiles, tiles)](x, out, n, d, BM=BM, BK=BK, PRECISION=precision, num_warps=8, num_stages=3)
    return out
