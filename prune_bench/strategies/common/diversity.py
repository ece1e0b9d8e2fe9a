"""Greedy max-min diversity selection (the Max-Min Diversity Problem as DivPrune solves it).

Distances are cosine distances ``1 - cos(x_i, x_j)``. The first pick is the token whose nearest
neighbour is farthest away; every next pick is the token whose distance to the closest already
picked token is largest. Each step updates a running minimum with one row of the distance matrix,
so the loop runs over picks (inherently sequential), never over tokens; on CUDA the picks replay as a
CUDA graph (``prune_bench/kernels/graph_steps.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance_matrix(features: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between every pair of rows of ``features`` ``[N, D]``, float32 ``[N, N]``."""
    x = F.normalize(features.float(), dim=-1)
    # a non-finite feature would make its distances NaN, which wins every argmax (the same token picked
    # again and again): count it as identical to every token instead. In place: one N x N buffer.
    return (x @ x.T).neg_().add_(1.0).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def greedy_max_min_diversity(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows picked greedily for max-min cosine distance, in pick order."""
    from prune_bench.kernels.graph_steps import padded_steps, run_steps  # only when a selection runs

    n = features.shape[0]
    k = max(0, min(int(k), n))
    device = features.device
    if k == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    dist = cosine_distance_matrix(features)
    if n == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    # nearest-neighbour distance: the second smallest of each column (the smallest is the token itself)
    nearest = torch.topk(dist, 2, dim=0, largest=False).values[1]
    # a picked token's own row then sets its running minimum to -inf: it is never picked again, with
    # no extra write per pick
    dist.diagonal().fill_(-torch.inf)
    picks = torch.zeros(1 + padded_steps(k - 1, device), dtype=torch.long, device=device)
    torch.argmax(nearest, dim=0, keepdim=True, out=picks[:1])
    closest = dist.index_select(0, picks[:1])[0]  # a copy; indexing by a 0-d tensor reads it to the host
    step = torch.ones(1, dtype=torch.long, device=device)
    j = torch.zeros(1, dtype=torch.long, device=device)

    def pick() -> None:  # fixed shapes, step on the device: replayable as a CUDA graph
        torch.argmax(closest, dim=0, keepdim=True, out=j)
        picks.index_copy_(0, step, j)
        torch.minimum(closest, dist.index_select(0, j)[0], out=closest)
        step.add_(1)

    # picks past k (filling the last graph replay) land in padding; once every token is picked,
    # argmax of an all -inf row repeats token 0 there, which is discarded
    run_steps(pick, k - 1, device)
    return picks[:k]
