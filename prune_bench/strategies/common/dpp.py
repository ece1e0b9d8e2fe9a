"""Greedy MAP inference for determinantal point processes, batched over independent kernels.

Chen, Zhang and Zhou (NeurIPS 2018), "Fast Greedy MAP Inference for DPP": pick the item with the
largest residual diagonal d_j^2, extend each remaining item's Cholesky row by
e = (L[j, :] - c[:, j]^T C) / sqrt(d_j^2), and shrink d^2 by e^2. Here every kernel of a batch (one
per video segment) advances one pick per step, so a stage runs ``max(k_g)`` steps of batched tensor
work regardless of how many segments there are; nothing loops over tokens in Python.
"""

from __future__ import annotations

import torch

#: Residual below which a kernel is treated as exhausted (float32 kernels with entries in [-1, 1]).
RANK_EPS = 1e-10


def greedy_dpp_map(kernel: torch.Tensor, sizes: torch.Tensor, budgets: torch.Tensor) -> torch.Tensor:
    """Greedy MAP picks for a batch of padded kernels.

    :param kernel: ``[G, n, n]`` PSD kernels; rows/cols at or beyond ``sizes[g]`` are padding.
    :param sizes: ``[G]`` real size of each kernel.
    :param budgets: ``[G]`` items to pick from each (clamped to its size).
    :returns: ``[G, n]`` boolean mask of picked items.
    """
    g, n, _ = kernel.shape
    device = kernel.device
    kernel = kernel.float()
    budgets = torch.minimum(budgets.to(device), sizes.to(device))
    steps = int(budgets.max().item()) if g else 0
    valid = torch.arange(n, device=device)[None, :] < sizes.to(device)[:, None]
    d2 = torch.where(valid, torch.diagonal(kernel, dim1=1, dim2=2).clone(), torch.full_like(kernel[:, 0], -torch.inf))
    chol = kernel.new_zeros(g, max(steps, 1), n)
    picked = torch.zeros(g, n, dtype=torch.bool, device=device)
    rows = torch.arange(g, device=device)
    for i in range(steps):
        active = budgets > i  # [G]
        # Once a kernel's rank is exhausted every residual is ~0: keep picking (in index order of the
        # largest residual), but stop updating the factorisation, which would divide by ~0.
        j = torch.argmax(torch.where(picked | ~valid, -torch.inf, torch.nan_to_num(d2, nan=-1.0)), dim=1)  # [G]
        dj2 = d2[rows, j]
        update = active & (dj2 > RANK_EPS)
        proj = torch.einsum("gt,gtn->gn", chol[rows, :i, j], chol[:, :i, :]) if i else 0.0
        e = (kernel[rows, j, :] - proj) / dj2.clamp_min(RANK_EPS).sqrt()[:, None]
        e = torch.where(update[:, None], e, torch.zeros_like(e))
        chol[:, i, :] = e
        d2 = d2 - e * e
        picked[rows, j] |= active
        d2[rows, j] = torch.where(active, torch.full_like(dj2, -torch.inf), d2[rows, j])
    return picked
