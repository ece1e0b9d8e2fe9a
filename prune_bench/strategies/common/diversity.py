"""Greedy max-min diversity selection (the Max-Min Diversity Problem as DivPrune solves it).

Distances are cosine distances ``1 - cos(x_i, x_j)``. The first pick is the token whose nearest
neighbour is farthest away; every next pick is the token whose distance to the closest already
picked token is largest. Each step updates a running minimum with one row of the distance matrix,
so the loop runs over picks (inherently sequential), never over tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distance_matrix(features: torch.Tensor) -> torch.Tensor:
    """``1 - cos`` between every pair of rows of ``features`` ``[N, D]``, float32 ``[N, N]``."""
    x = F.normalize(features.float(), dim=-1)
    # a non-finite feature would make its distances NaN, which wins every argmax (the same token picked
    # again and again): count it as identical to every token instead
    return torch.nan_to_num(1.0 - x @ x.T, nan=0.0, posinf=0.0, neginf=0.0)


def greedy_max_min_diversity(features: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of ``k`` rows picked greedily for max-min cosine distance, in pick order."""
    n = features.shape[0]
    k = max(0, min(int(k), n))
    picks = torch.empty(k, dtype=torch.long, device=features.device)
    if k == 0:
        return picks
    dist = cosine_distance_matrix(features)
    if n == 1:
        picks[0] = 0
        return picks
    # nearest-neighbour distance: the second smallest of each column (the smallest is the token itself)
    nearest = torch.topk(dist, 2, dim=0, largest=False).values[1]
    first = torch.argmax(nearest)
    picks[0] = first
    closest = dist[first].clone()
    closest[first] = -torch.inf
    for i in range(1, k):
        j = torch.argmax(closest)
        picks[i] = j
        closest = torch.minimum(closest, dist[j])
        closest[j] = -torch.inf
    return picks
