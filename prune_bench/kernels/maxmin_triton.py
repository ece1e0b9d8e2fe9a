"""DivPrune's greedy max-min picks as one Triton program that runs the whole loop.

The PyTorch step (``strategies/common/diversity.py``) is five small kernels per pick (argmax, its
write, the picked row, the running minimum, the pick counter); replayed as CUDA graphs of 32 picks
it still costs about 16 us a pick on an H200, almost all of it kernel boundaries: at the
LLaVA-OneVision-7B shape (6,272 tokens, 1,882 picks) about 30 ms. Here one program (``grid=(1,)``)
does every pick of the selection:

* the running minimum ``closest`` of all ``n`` items stays in the program's registers for the whole
  loop (a block of ``next_power_of_2(n)`` lanes, ``n`` up to :data:`MAX_N`);
* a pick is the argmax of ``closest`` (first maximum: ``tl.argmax`` with ``tie_break_left``, which is
  what ``torch.argmax`` returns on the CPU and on CUDA; lanes past ``n`` hold -inf and lose every tie
  to a real item, so once every item is picked, and all of ``closest`` is -inf, the pick is item 0,
  as the PyTorch step's), then one read of the picked item's row of the distance matrix and
  ``closest = min(closest, row)``;
* with one program there is no other program to wait for, so a pick needs no grid barrier: its cost
  is one block-wide reduction and one dependent read of an ``n``-float row. On an H200 at 6,272 tokens
  the 1,881 picks take 2.3 ms (about 1.2 us a pick) against 23 ms for the CUDA-graph step.

The arithmetic is the PyTorch step's (an argmax and a minimum, both exact), so given the same
distance matrix the picks are the same, ties included. The caller prepares what the PyTorch step
starts from too: the first pick (the nearest-neighbour rule) and the diagonal set to -inf (a picked
item's own row makes its running minimum -inf, so it is never picked again). ``selector.py`` decides
when this path runs (CUDA with Triton and ``n <= MAX_N``); the module imports Triton and is imported
only when its kernel is about to run. Runs under ``TRITON_INTERPRET=1`` on the CPU for tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from prune_bench.kernels.selector import MAXMIN_MAX_N

#: Largest item count the kernel takes (``selector.MAXMIN_MAX_N``, which the selector reads without
#: importing Triton): ``closest`` and one row must fit one program's registers, 16,384 lanes over
#: :func:`warps` warps of 32 threads, 32 floats a thread for each.
MAX_N = MAXMIN_MAX_N


@triton.jit(do_not_specialize=["k"])  # the pick count changes nothing in the code
def _max_min_picks(
    dist_ptr,  # [n, n] float32 distances, the diagonal -inf
    picks_ptr,  # [k] int64: picks[0] set by the caller, the kernel writes picks[1:]
    n,
    k,
    BLOCK: tl.constexpr,
):
    items = tl.arange(0, BLOCK)
    live = items < n
    first = tl.load(picks_ptr)
    closest = tl.load(dist_ptr + first * n + items, mask=live, other=float("-inf"))
    for i in range(1, k):
        j = tl.argmax(closest, axis=0, tie_break_left=True)
        tl.store(picks_ptr + i, j.to(tl.int64))
        row = tl.load(dist_ptr + j.to(tl.int64) * n + items, mask=live, other=float("-inf"))
        closest = tl.minimum(closest, row)


def fits(n: int) -> bool:
    """Whether ``n`` items fit the kernel (:data:`MAX_N`)."""
    return 1 <= n <= MAX_N


def warps(n: int) -> int:
    """Warps of the one program for ``n`` items: fewer warps make the block-wide argmax cheaper (fewer
    partial results to combine through shared memory), more keep the floats a thread holds few. On an
    H200 at 6,272 tokens (8,192 lanes): 16 warps 2.3 ms, 32 warps 2.4, 4 warps 3.1, 8 warps 5.0 (sic);
    the smaller counts are not measured."""
    return 4 if n <= 1024 else 8 if n <= 4096 else 16


def max_min_picks(
    dist: torch.Tensor, picks: torch.Tensor, k: int, num_warps: int | None = None
) -> torch.Tensor:
    """Fill ``picks[1:k]`` greedily from the float32 distance matrix ``dist`` ``[n, n]`` (diagonal
    -inf) and the first pick ``picks[0]`` (int64, on ``dist``'s device); returns ``picks[:k]``.
    ``num_warps``: the program's warps (default :func:`warps`), for tuning."""
    n = dist.shape[0]
    if not fits(n):
        raise ValueError(f"the max-min Triton kernel takes up to {MAX_N} items, not {n}")
    if picks.dtype != torch.long or picks.numel() < k:
        raise ValueError("picks must be an int64 buffer of at least k entries")
    dist = dist.float().contiguous()
    if k > 1:
        _max_min_picks[(1,)](
            dist,
            picks,
            n,
            k,
            BLOCK=triton.next_power_of_2(n),
            num_warps=num_warps or warps(n),
            num_stages=1,
        )
    return picks[:k]
