"""Greedy max-min diversity selection (the Max-Min Diversity Problem as DivPrune solves it).

Distances are cosine distances ``1 - cos(x_i, x_j)``. The first pick is the token whose nearest
neighbour is farthest away; every next pick is the token whose distance to the closest already
picked token is largest. Each step updates a running minimum with one row of the distance matrix,
so the loop runs over picks (inherently sequential), never over tokens.

What runs where (``prune_bench/kernels/selector.py`` decides, falls back with one warning and records
the paths that ran):

* the cosine products: on the CPU ``x @ x^T`` in float32 (the reference); on CUDA
  ``selector.gram_matrix``, i.e. the Triton Gram kernel (``kernels/gram.py``, three TF32 products a
  tile, float32-level error, the upper tiles only) on GPUs with TF32, else ``torch.matmul`` in
  float32 (2.2 against 5.9 ms at 6,272 tokens of 3,584 on an H200). The two agree to a few 1e-6 (at
  most 3.9e-6 there), not bit for bit, so a pick decided by a gap of that size (a near-tie) can differ
  between them, and every pick after it (on random features at that shape, from pick 54 of 1,882 on;
  so does cuBLAS against the CPU's float32); exact ties (duplicate tokens) are decided by the tie rule
  below on either;
* the nearest-neighbour distances of the first pick: ``torch.topk`` on the CPU, two column minima
  on CUDA (:func:`second_smallest`, the same values, about 6 times faster there);
* the picks (kernel ``"maxmin"``): on CUDA the whole loop in one Triton program
  (``kernels/maxmin_triton.py``, up to 16,384 tokens), else the PyTorch step below replayed as CUDA
  graphs of 32 picks (``kernels/graph_steps.py``), else that step pick by pick (``eager``, the CPU's
  path). Every path takes the first maximum (``torch.argmax``'s rule) and the same minimum, so from
  one distance matrix they pick the same tokens, ties included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from prune_bench.kernels import selector


def cosine_distance_matrix(features: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between every pair of rows of ``features`` ``[N, D]``, float32 ``[N, N]``: the
    products by ``x @ x^T`` on the CPU, by ``selector.gram_matrix`` on CUDA (module docstring)."""
    x = F.normalize(features.float(), dim=-1)
    if x.is_cuda:
        gram = selector.gram_matrix(x[None])[0]
        # 1 - g in one pass over the N x N buffer (the same rounding as negating, then adding 1)
        dist = torch.sub(gram.new_ones(()), gram, out=gram)
    else:
        dist = (x @ x.T).neg_().add_(1.0)
    # a non-finite feature would make its distances NaN, which wins every argmax (the same token picked
    # again and again): count it as identical to every token instead. In place: one N x N buffer.
    return dist.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def greedy_max_min_diversity(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows picked greedily for max-min cosine distance, in pick order."""
    n = features.shape[0]
    k = max(0, min(int(k), n))
    device = features.device
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    dist = cosine_distance_matrix(features)
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    # nearest-neighbour distance: the second smallest of each column (the smallest is the token itself)
    nearest = second_smallest(dist) if dist.is_cuda else torch.topk(dist, 2, dim=0, largest=False).values[1]
    # a picked token's own row then sets its running minimum to -inf: it is never picked again, with
    # no extra write per pick
    dist.diagonal().fill_(-torch.inf)
    first = torch.argmax(nearest, dim=0, keepdim=True)  # [1], on the device: no host read
    return selector.run_maxmin(device, n, max_min_impls(dist, first, k))


def second_smallest(dist: torch.Tensor) -> torch.Tensor:
    """The second smallest entry of each column of ``dist`` ``[N, N]`` (``N >= 2``), as
    ``torch.topk(dist, 2, dim=0, largest=False).values[1]`` gives it, a minimum that occurs twice
    included: each column's minimum is set to +inf where ``min`` found it, the column minimum is taken
    again, and the entries are put back (``dist`` is as before). Two coalesced column reductions where
    ``topk`` selects over strided columns: on an H200 at 6,272 tokens 0.23 ms against 1.37 ms."""
    low, at = dist.min(dim=0)
    cols = torch.arange(dist.shape[1], device=dist.device)
    dist[at, cols] = torch.inf
    second = dist.amin(dim=0)
    dist[at, cols] = low
    return second


def max_min_impls(dist: torch.Tensor, first: torch.Tensor, k: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Each path's ``[k]`` picks for the selector to run (``kernels.selector.maxmin_paths``), from the
    distance matrix ``dist`` with its diagonal -inf and the first pick ``first`` (``[1]`` int64). No
    path writes ``dist``, so a path that fails leaves the next one its inputs."""

    def triton() -> torch.Tensor:
        from prune_bench.kernels import maxmin_triton  # imports Triton: only when this path runs

        picks = torch.empty(k, dtype=torch.long, device=dist.device)
        picks[:1].copy_(first)
        return maxmin_triton.max_min_picks(dist, picks, k)

    return {
        "triton": triton,
        "graph": lambda: _step_picks(dist, first, k, graphed=True),
        "eager": lambda: _step_picks(dist, first, k, graphed=False),
    }


def _step_picks(dist: torch.Tensor, first: torch.Tensor, k: int, *, graphed: bool) -> torch.Tensor:
    """The picks by the PyTorch step: five small kernels a pick (argmax, its write, the picked row, the
    running minimum, the pick counter, which stays on the device), on CUDA with ``graphed`` replayed
    as CUDA graphs of 32 picks (``graph_steps.run_steps``), else one pick at a time."""
    from prune_bench.kernels.graph_steps import padded_steps, run_steps  # only when a selection runs

    device = dist.device
    picks = torch.zeros(1 + padded_steps(k - 1, device) if graphed else k, dtype=torch.long, device=device)
    picks[:1].copy_(first)
    closest = dist.index_select(0, picks[:1])[0]  # a copy; indexing by a 0-d tensor reads it to the host
    step = torch.ones(1, dtype=torch.long, device=device)
    j = torch.zeros(1, dtype=torch.long, device=device)

    def pick() -> None:  # fixed shapes, step on the device: replayable as a CUDA graph
        torch.argmax(closest, dim=0, keepdim=True, out=j)
        picks.index_copy_(0, step, j)
        torch.minimum(closest, dist.index_select(0, j)[0], out=closest)
        step.add_(1)

    if graphed:
        # picks past k (filling the last graph replay) land in padding; once every token is picked,
        # argmax of an all -inf row repeats token 0 there, which is discarded
        run_steps(pick, k - 1, device)
    else:
        for _ in range(k - 1):
            pick()
    return picks[:k]
