"""Greedy MAP inference for determinantal point processes, batched over independent kernels.

Chen, Zhang and Zhou (NeurIPS 2018), "Fast Greedy MAP Inference for DPP": pick the item with the
largest residual diagonal d_j^2, extend each remaining item's Cholesky row by
e = (L[j, :] - c[:, j]^T C) / sqrt(d_j^2), and shrink d^2 by e^2. Here every kernel of a batch (one
per video segment) advances one pick per step, so a stage runs ``max(k_g)`` steps of batched tensor
work regardless of how many segments there are; nothing loops over tokens in Python.

No step synchronises with the host: the per-kernel budgets are applied once at the end (every kernel
records its pick order; it keeps its first ``k_g`` picks), so no step branches on which kernels are
still active. Four implementations: about a dozen PyTorch operations a pick, launched one by one
(``eager``) or replayed as a CUDA graph (``graph``), both here; one fused Triton kernel a pick,
replayed as a CUDA graph (``triton``, ``prune_bench/kernels/dpp_triton.py``); and every pick of a stage
in one resident Triton kernel that keeps the factor in panels of 32 or 64 picks (``persistent``,
``prune_bench/kernels/dpp_persistent.py``), which the default on CUDA takes wherever a stage's kernels
fit one program per multiprocessor, and otherwise ``triton``. Which one runs, the fall-backs and the
record of the path that ran are ``prune_bench/kernels/selector.py``'s (``PRUNE_BENCH_DPP`` forces a
path).

Rank exhaustion. A kernel ``diag(r) S diag(r)`` built from D-dimensional features has rank at most
D; once the picks span it, every residual is float32 noise. The division uses
``max(d_j^2, RANK_EPS * max_j L_jj)``, and a kernel whose best residual is at or below that floor is
exhausted: it stops extending its factor and its remaining items are ranked by the tie-breaker alone
(``_advance``). The score is ``d_j^2 + TIE * L_jj``: the tie-breaker is far below any residual that
matters, so before exhaustion it only decides between numerically equal residuals, and after it the
picks follow relevance, deterministically (and identically in drop and mask modes, whose hidden
states differ by rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from prune_bench.kernels import selector

#: Residual, relative to the kernel's largest diagonal entry, below which its rank counts as exhausted
#: (float32 cancellation leaves residuals of about 1e-6 of the diagonal).
RANK_EPS = 1e-4
#: Weight of an item's own quality ``L_jj`` in its score, deciding between numerically equal residuals.
TIE = 1e-5


def greedy_dpp_map(kernel: torch.Tensor, sizes: torch.Tensor, budgets: torch.Tensor) -> torch.Tensor:
    """Greedy MAP picks for a batch of padded kernels.

    :param kernel: ``[G, n, n]`` PSD kernels; rows/cols at or beyond ``sizes[g]`` are padding.
    :param sizes: ``[G]`` real size of each kernel.
    :param budgets: ``[G]`` items to pick from each (clamped to its size); on the host, the step
        count is read without waiting for the device.
    :returns: ``[G, n]`` boolean mask of picked items.
    """
    g, n, _ = kernel.shape
    device = kernel.device
    # a non-finite entry (from a NaN relevance or hidden state) would win every argmax and be picked
    # again and again, so a stage would keep fewer distinct tokens than its budget: count it as 0
    kernel = torch.nan_to_num(kernel.float(), nan=0.0, posinf=0.0, neginf=0.0)
    budgets = torch.minimum(budgets, sizes.to(budgets.device))
    steps = int(budgets.max()) if g else 0  # no device sync when the caller passes them on the host
    sizes, budgets = _to_device(sizes, device), _to_device(budgets, device)
    if steps == 0:
        return torch.zeros(g, n, dtype=torch.bool, device=device)
    score, tie, floor = greedy_inputs(kernel, sizes)
    order = selector.run_dpp(device, g, n, dpp_impls(kernel, score, tie, floor, steps))
    # each kernel keeps its first k_g picks: scattered, not indexed by a boolean mask (which would wait
    # for the device to learn how many there are)
    keep = (torch.arange(steps, device=device)[None, :] < budgets[:, None]).int()
    return torch.zeros(g, n, dtype=torch.int32, device=device).scatter_reduce_(1, order, keep, "amax").bool()


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``. From the host to a GPU through pinned memory, without blocking: a copy from
    pageable memory waits for the work queued before it, and the GPU then idles while the host
    queues the next."""
    if t.device.type == "cpu" and device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def greedy_inputs(
    kernel: torch.Tensor, sizes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(score, tie, floor) that every path starts from, for float32 ``kernel`` ``[G, n, n]`` of ``sizes``:
    score ``d^2 + tie`` with -inf on padding ``[G, n]``, tie-breaker ``TIE * L_jj`` ``[G, n]``, rank floor
    ``[G, 1]``."""
    valid = torch.arange(kernel.shape[1], device=kernel.device)[None, :] < sizes[:, None]
    diag = torch.diagonal(kernel, dim1=1, dim2=2)
    floor = (RANK_EPS * diag.amax(dim=1)).clamp_min(1e-30)[:, None]
    tie = TIE * diag
    return torch.where(valid, diag + tie, -torch.inf), tie, floor


def dpp_impls(
    kernel: torch.Tensor, score: torch.Tensor, tie: torch.Tensor, floor: torch.Tensor, steps: int
) -> dict[str, Callable[[], torch.Tensor]]:
    """Each path's ``[G, steps]`` pick order for the selector to run (``kernels.selector.dpp_paths``);
    the kernel modules are imported when their path runs. The eager path, last in every chain, updates
    ``score`` in place; the others work on copies."""

    def persistent() -> torch.Tensor:
        from prune_bench.kernels import dpp_persistent

        return dpp_persistent.greedy_order(kernel, score, tie, floor, steps)

    def triton() -> torch.Tensor:
        from prune_bench.kernels import dpp_triton

        return dpp_triton.greedy_order(kernel, score, tie, floor, steps)

    return {
        "persistent": persistent,
        "triton": triton,
        "graph": lambda: _graph_order(kernel, score.clone(), tie, floor, steps),
        "eager": lambda: _eager_order(kernel, score, tie, floor, steps),
    }


def _eager_order(
    kernel: torch.Tensor, score: torch.Tensor, tie: torch.Tensor, floor: torch.Tensor, steps: int
) -> torch.Tensor:
    """``[G, steps]`` pick order, one batched step at a time (``score`` is updated in place)."""
    g, n, _ = kernel.shape
    chol = kernel.new_zeros(g, steps, n)
    order = torch.empty(g, steps, dtype=torch.long, device=kernel.device)
    for i in range(steps):
        j = score.argmax(dim=1, keepdim=True)  # [G, 1]
        kj = kernel.gather(1, j[:, :, None].expand(g, 1, n)).squeeze(1)  # [G, n]
        if i:
            cj = chol[:, :i].gather(2, j[:, None, :].expand(g, i, 1))  # [G, i, 1]
            kj = kj - torch.bmm(cj.transpose(1, 2), chol[:, :i]).squeeze(1)
        chol[:, i] = _advance(score, tie, floor, j, kj)
        order[:, i] = j[:, 0]
    return order


def _advance(
    score: torch.Tensor, tie: torch.Tensor, floor: torch.Tensor, j: torch.Tensor, residual_row: torch.Tensor
) -> torch.Tensor:
    """Update ``score`` in place for pick ``j`` (``[G, 1]``), given ``L[j, :] - c_j^T C``; returns the
    new Cholesky row ``e``.

    A kernel whose best residual ``d_j^2`` is at or below its rank floor is exhausted: its factor is not
    extended (``e = 0``; dividing float32 noise by ``sqrt(floor)`` step after step grows geometrically,
    and past a few hundred such steps on a 7B model's 3,584-dimensional states it overflowed, every
    score became -inf and the same item was picked again and again, keeping fewer tokens than the
    budget), and its remaining items are ranked by the tie-breaker alone, i.e. by relevance."""
    raw = score.gather(1, j) - tie.gather(1, j)
    exhausted = raw <= floor  # [G, 1]
    e = torch.where(exhausted, 0.0, residual_row * raw.clamp_min(floor).rsqrt())
    score.addcmul_(e, e, value=-1.0)
    score.copy_(torch.where(exhausted & (score > -torch.inf), tie, score))
    score.scatter_(1, j, -torch.inf)
    return e


def fixed_shape_step(
    kernel: torch.Tensor,
    score: torch.Tensor,
    tie: torch.Tensor,
    floor: torch.Tensor,
    chol: torch.Tensor,
    order: torch.Tensor,
    step: torch.Tensor,
) -> None:
    """One greedy pick with every shape fixed and the step number on the device (so a CUDA graph can
    replay it): the Cholesky rows not yet written are zero, so projecting on all of ``chol`` equals
    projecting on the rows written so far. Advances ``step``."""
    g, n, _ = kernel.shape
    j = score.argmax(dim=1, keepdim=True)
    kj = kernel.gather(1, j[:, :, None].expand(g, 1, n)).squeeze(1)
    cj = chol.gather(2, j[:, None, :].expand(g, chol.shape[1], 1))  # [G, S, 1]
    e = _advance(score, tie, floor, j, kj - torch.bmm(cj.transpose(1, 2), chol).squeeze(1))
    chol.index_copy_(1, step, e[:, None])
    order.index_copy_(1, step, j)
    step.add_(1)


def _graph_order(
    kernel: torch.Tensor, score: torch.Tensor, tie: torch.Tensor, floor: torch.Tensor, steps: int
) -> torch.Tensor:
    """:func:`_eager_order` with the steps replayed as a CUDA graph (``graph_steps.run_steps``), so the
    host launches one graph per 32 picks instead of a dozen kernels per pick. Picks past ``steps`` (to
    fill the last replay) land in padding rows and are discarded."""
    from prune_bench.kernels.graph_steps import padded_steps, run_steps

    g, n, _ = kernel.shape
    rows = padded_steps(steps, kernel.device)
    chol = kernel.new_zeros(g, rows, n)
    order = torch.zeros(g, rows, dtype=torch.long, device=kernel.device)
    step = torch.zeros(1, dtype=torch.long, device=kernel.device)
    run_steps(lambda: fixed_shape_step(kernel, score, tie, floor, chol, order, step), steps, kernel.device)
    return order[:, :steps]
