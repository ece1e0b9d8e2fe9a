"""Density-peaks clustering with k-nearest-neighbour density (DPC-kNN), batched.

The scorer PruneVid, FastVID and HoliTom share, in the form their code inherits from TCFormer /
Chat-UniVi (``cluster_dpc_knn``): distances ``cdist(x, x) / sqrt(D)``; local density
``rho_i = exp(-mean of the squared distances to the k nearest tokens, itself included)``; the
distance indicator ``delta_i`` = distance to the nearest token of higher density (the batch row's
largest distance for the densest token); score ``rho_i * delta_i``. The highest scores are the
cluster centres and every token joins its nearest centre.

The official code adds ``rand * 1e-6`` to the densities to break ties; we leave it out so that
selections are deterministic (ties are then broken by index, as ``topk`` does).
"""

from __future__ import annotations

import torch


def dpc_knn_score(
    x: torch.Tensor, k: int | torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPC-kNN centre score of every token of every batch row.

    :param x: ``[B, N, D]`` features.
    :param k: neighbours of the local density (the token itself counts as one of them); an int,
        or ``[B]`` per row (HoliTom uses ``min(K, clusters)``, which differs between rows).
    :param valid: ``[B, N]`` mask of real tokens in a padded batch; padding gets score ``-inf`` and
        lies beyond the row's largest real distance, so real tokens score as without it.
    :returns: ``(score [B, N], dist [B, N, N])`` in float32.
    """
    b, n, d = x.shape
    dist = torch.cdist(x.float(), x.float()) / d**0.5
    dist_max = dist.flatten(1).amax(dim=1)[:, None, None]
    if valid is not None:
        pairs = valid[:, :, None] & valid[:, None, :]
        dist_max = dist.masked_fill(~pairs, 0).flatten(1).amax(dim=1)[:, None, None]
        dist = torch.where(valid[:, None, :], dist, dist_max + 1)
    # an int is filled on the device (as_tensor would copy it there with a blocking, syncing copy)
    ks = torch.full((b,), k, device=x.device) if isinstance(k, int) else k.to(x.device)
    ks = ks.clamp(1, max(n, 1)).expand(b)
    # an int k needs no read back from the device
    k_max = (max(1, min(k, max(n, 1))) if isinstance(k, int) else int(ks.max().item())) if b else 0
    knn = dist.topk(k_max, dim=-1, largest=False).values  # [B, N, k_max]
    near = (torch.arange(knn.shape[-1], device=x.device)[None, :] < ks[:, None])[:, None, :]
    density = torch.exp(-(knn**2 * near).sum(dim=-1) / ks[:, None])
    if valid is not None:
        density = density * valid
    higher = density[:, None, :] > density[:, :, None]  # [b, i, j]: j is denser than i
    delta = torch.where(higher, dist, dist_max).amin(dim=-1)
    score = delta * density
    if valid is not None:
        score = score.masked_fill(~valid, -torch.inf)
    return score, dist


def dpc_knn_cluster(
    x: torch.Tensor,
    num_clusters: int | torch.Tensor,
    k: int | torch.Tensor,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster every batch row into ``num_clusters`` DPC-kNN clusters (an int, or ``[B]`` per row).

    :returns: ``(centres [B, C], assignment [B, N])``, ``C`` the largest cluster count: the
        centres' token indices (by decreasing score; a row's centres beyond its own count are
        padding) and each token's cluster in ``0..count-1``; a centre is always in its own cluster.
    """
    b, n, _ = x.shape
    counts = (
        torch.full((b,), num_clusters, device=x.device)
        if isinstance(num_clusters, int)
        else num_clusters.to(x.device).expand(b)
    )
    score, dist = dpc_knn_score(x, k, valid)
    c = (num_clusters if isinstance(num_clusters, int) else int(counts.max().item())) if b else 0
    centres = score.topk(c, dim=-1).indices
    if c == 0:
        return centres, torch.zeros(b, n, dtype=torch.long, device=x.device)
    real = torch.arange(c, device=x.device)[None, :] < counts[:, None]  # [B, C]
    to_centre = dist.gather(1, centres[:, :, None].expand(-1, -1, n))  # [B, C, N]
    assignment = to_centre.masked_fill(~real[..., None], torch.inf).argmin(dim=1)
    slots = torch.arange(c, device=x.device)[None, :].expand_as(centres)
    # a row's centres are distinct; its padding centres keep their assignment (no boolean-mask index,
    # which would read the count back from the device)
    assignment.scatter_(1, centres, torch.where(real, slots, assignment.gather(1, centres)))
    return centres, assignment
