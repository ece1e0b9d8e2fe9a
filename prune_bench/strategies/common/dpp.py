"""Greedy MAP inference for determinantal point processes, batched over independent kernels.

Chen, Zhang and Zhou (NeurIPS 2018), "Fast Greedy MAP Inference for DPP": pick the item with the
largest residual diagonal d_j^2, extend each remaining item's Cholesky row by
e = (L[j, :] - c[:, j]^T C) / sqrt(d_j^2), and shrink d^2 by e^2. Here every kernel of a batch (one
per video segment) advances one pick per step, so a stage runs ``max(k_g)`` steps of batched tensor
work regardless of how many segments there are; nothing loops over tokens in Python.
"""

from __future__ import annotations

import torch

#: Residual, relative to the kernel's largest diagonal entry, below which its rank counts as exhausted
#: (float32 cancellation leaves residuals of about 1e-6 of the diagonal).
RANK_EPS = 1e-4


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
    diag = torch.where(valid, torch.diagonal(kernel, dim1=1, dim2=2), -torch.inf)
    floor = RANK_EPS * diag.amax(dim=1).clamp_min(1e-30)  # [G], relative to each kernel's scale
    for i in range(steps):
        active = budgets > i  # [G]
        free = valid & ~picked
        residual = torch.where(free, torch.nan_to_num(d2, nan=-1.0), -torch.inf)
        best = residual.amax(dim=1)
        # Once a kernel's rank is exhausted every residual is float noise: pick the remaining items by
        # their own quality (the kernel diagonal, r_i^2) instead, which drop and mask modes agree on,
        # and stop updating the factorisation, which would divide by ~0.
        exhausted = best <= floor
        j = torch.where(exhausted, torch.where(free, diag, -torch.inf).argmax(dim=1), residual.argmax(dim=1))
        dj2 = d2[rows, j]
        update = active & ~exhausted
        proj = torch.einsum("gt,gtn->gn", chol[rows, :i, j], chol[:, :i, :]) if i else 0.0
        e = (kernel[rows, j, :] - proj) / dj2.clamp_min(1e-30).sqrt()[:, None]
        e = torch.where(update[:, None], e, torch.zeros_like(e))
        chol[:, i, :] = e
        d2 = d2 - e * e
        picked[rows, j] |= active
    return picked
