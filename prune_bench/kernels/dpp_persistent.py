"""Greedy DPP MAP as one persistent Triton kernel: every pick of a stage in a single launch.

The per-pick kernel of ``dpp_triton.py`` pays a kernel launch (a CUDA-graph node) per pick, and each
pick there projects every item on all the Cholesky rows written so far, ``items x picks`` reads that
grow through the stage. Here the programs stay resident for the whole stage; each owns one block of
items of one kernel, keeps their scores in registers, and per pick

1. publishes its block's best score and item, and meets every other program at a grid-wide barrier
   (:func:`_grid_pick`), from which every program reads the same pick ``j`` (first maximum, as
   ``torch.argmax``);
2. extends its items' Cholesky factor by ``e = (A_j - c_j^T P) / sqrt(d_j^2)``, with the rank floor and
   exhausted-kernel rule of ``dpp._advance``, and updates its scores.

The factor is kept right-looking in panels of :func:`panel_size` picks (as blocked Cholesky and
LAPACK's pivoted QR do): ``A`` is the kernel minus the panels completed so far, and ``P`` holds the
current panel's columns only, so a pick reads ``items x panel`` factor entries and one row of ``A``.
When a panel completes, every program subtracts it from its items' columns of ``A`` (a rank-``panel``
update, ``tl.dot``; on GPUs with TF32 in ``tf32x3``, three TF32 products whose error is float32's).
In exact arithmetic that is the eager loop's ``L_j - c_j^T C``; in float32 only the summation order
differs, and the picks are the eager loop's on every shape ``tests/gpu`` and
``scripts/tune-dpp-triton.py`` check.

A spin barrier needs every program resident at once, so the grid is sized to the GPU's
multiprocessor count (:func:`layout`); where the kernels do not fit that way, the selector
(``selector.py``) takes the per-pick kernel. Data other programs wrote is read with ``.cg`` or
volatile loads (L2, not a possibly stale L1 line). Under Triton's CPU interpreter, which runs programs
one after another, only one kernel as a single program runs (what the CPU tests check); ``tests/gpu``
checks the grid on CUDA.

The barrier's wait is bounded. One program per multiprocessor is resident only if nothing else holds
the multiprocessors: on a GPU shared with other processes (MPS, or kernels of other streams) some
programs may not start until others finish, and an unbounded spin then never ends. A program gives up
after ``max_polls`` polls of one barrier (:data:`MAX_POLLS`), sets a flag in a device buffer, and
skips its remaining picks; one waiting at a barrier looks at that flag every :data:`FLAG_EVERY` polls,
so every program ends soon after the first gives up. The host reads the flag after the launch (one
sync; HieraVid reads the kept tokens' count right after the DPP anyway) and raises
:class:`BarrierTimeout`, after which the selector reruns the stage on the per-pick kernel (recorded as
``persistent->triton``). The timings in these docstrings were measured before the wait was bounded;
bounding it (a poll counter, the flag looked up every :data:`FLAG_EVERY` polls, the host's read of the
flag) cost 1 to 6% on an H200 (9.2 against 9.5 ms for 2,144 picks of 3,064 items, 28.2 against 28.6
for 3,817 of 5,608; same picks), and there a barrier that stays closed gives up after about 1.2 s at
:data:`MAX_POLLS` (a kernel of 33,808 items in 2,113 programs, more than can be resident).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from prune_bench.kernels.selector import KernelUnavailable

#: Polls of one grid barrier after which a program gives up (a barrier normally opens within a few;
#: a program that never started, or an SM held by another process, leaves it closed).
MAX_POLLS = 1 << 20
#: A program waiting at a barrier looks at the give-up flag every this many polls.
FLAG_EVERY = 64


class BarrierTimeout(KernelUnavailable):
    """The persistent kernel's grid barrier did not open within its polls: not every program was
    resident at once (e.g. other processes held multiprocessors). Its picks are discarded."""


@triton.jit
def _grid_pick(
    s,
    n,
    i,
    g,
    b,
    G,
    nblocks,
    part_ptr,
    status_ptr,
    max_polls,
    BLOCK_N: tl.constexpr,
    BLOCK_P: tl.constexpr,
    FLAG_EVERY: tl.constexpr,
):
    """Publish this block's best score and item, wait for every program's, return the kernel's (best
    score, pick, whether the barrier opened). Each program writes one int64 (score bits, pick number,
    place in its block) with release semantics (after its earlier stores) and polls its kernel's slots
    until every one carries this pick's number: no shared counter, so no queue of atomics at one
    address (measured against a counter every program increments and polls: 9.7 against 10.8 ms for
    2,144 picks of 3,064 items, on an H200). Slots are double-buffered by pick parity: no program runs
    more than one pick ahead of another, so the slot a program writes is one nobody still reads.

    The wait is bounded: after ``max_polls`` polls, or once the flag at ``status_ptr`` says another
    program gave up (looked at every ``FLAG_EVERY`` polls), the program sets that flag and its third
    value is 0; its (best, pick) are then meaningless (but in range)."""
    block_best = tl.max(s, axis=0)
    local = tl.min(tl.where(s == block_best, tl.arange(0, BLOCK_N), BLOCK_N), axis=0)
    slot = part_ptr + (i % 2) * G * nblocks + g * nblocks
    part = tl.arange(0, BLOCK_P)
    in_parts = part < nblocks
    tl.debug_barrier()  # every thread's earlier stores (factor entries) before the release below
    tag = i & 0x7FFFFF
    bits = block_best.to(tl.int32, bitcast=True).to(tl.int64) << 32
    tl.atomic_xchg(slot + b, bits | ((tag << 8) | local).to(tl.int64), sem="release")
    got = tl.load(slot + part, mask=in_parts, other=0, volatile=True)
    late = tl.sum(tl.where(in_parts & (((got & 0xFFFFFFFF) >> 8) != tag), 1, 0), axis=0)
    polls = tl.full([], 1, tl.int32)
    while (late > 0) & (polls < max_polls):
        got = tl.load(slot + part, mask=in_parts, other=0, volatile=True)
        late = tl.sum(tl.where(in_parts & (((got & 0xFFFFFFFF) >> 8) != tag), 1, 0), axis=0)
        polls += 1
        if polls % FLAG_EVERY == 0:  # noqa: SIM102 - load the flag only then: has another given up?
            if tl.load(status_ptr, volatile=True) != 0:
                polls = max_polls
    if late > 0:  # gave up: tell the others and the host
        tl.atomic_xchg(status_ptr, 1)
    # every later read of another program's data (the pick's factor row) has an address that depends
    # on these values, so it is issued after them
    pv = tl.where(in_parts, (got >> 32).to(tl.int32).to(tl.float32, bitcast=True), float("-inf"))
    pj = tl.where(in_parts, part * BLOCK_N + (got & 0xFF).to(tl.int32), n)
    tl.debug_barrier()
    best = tl.max(pv, axis=0)
    j = tl.minimum(tl.min(tl.where(pv == best, pj, n), axis=0), n - 1).to(tl.int64)
    return best, j, (late == 0).to(tl.int32)


@triton.jit(do_not_specialize=["max_polls"])
def _greedy_blocked(
    resid_ptr,  # [G, n, n] float32: the kernel minus the panels completed so far (a copy; overwritten)
    score_ptr,  # [G, n] starting d^2 + tie (-inf: padding)
    tie_ptr,  # [G, n]
    floor_ptr,  # [G]
    panel_ptr,  # [2, G, n, PANEL] float32: the current panel's factor columns, item-major, by parity
    order_ptr,  # [G, rows] int64 picks
    part_ptr,  # [2, G, nblocks] int64 block maxima (score bits, pick number, item), -1 at launch
    status_ptr,  # [1] int32: 0 at launch; 1 once a program gave up waiting at a barrier
    n,
    rows,
    steps,
    nblocks,
    G,
    max_polls,
    BLOCK_N: tl.constexpr,
    PANEL: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    PRECISION: tl.constexpr,
    FLAG_EVERY: tl.constexpr,
):
    pid = tl.program_id(0)
    g = (pid // nblocks).to(tl.int64)
    b = pid % nblocks
    items = b * BLOCK_N + tl.arange(0, BLOCK_N)
    inside = items < n
    s = tl.load(score_ptr + g * n + items, mask=inside, other=float("-inf"))
    tie = tl.load(tie_ptr + g * n + items, mask=inside, other=0.0)
    floor = tl.load(floor_ptr + g)
    lanes = tl.arange(0, PANEL)
    own = tl.zeros([BLOCK_N, PANEL], dtype=tl.float32)  # this block's rows of the current panel
    alive = tl.full([], 1, tl.int32)  # 0 once a barrier timed out: the remaining picks are skipped
    for i in range(0, steps):
        if alive != 0:
            best, j, alive = _grid_pick(
                s, n, i, g, b, G, nblocks, part_ptr, status_ptr, max_polls, BLOCK_N, BLOCK_P, FLAG_EVERY
            )
            if alive != 0:
                p = i % PANEL
                if (p == 0) & (i > 0):
                    # the previous panel is complete (every program wrote its rows before the barrier
                    # above): subtract it from this block's columns of A, all rows
                    done = panel_ptr + (((i // PANEL) + 1) % 2) * G * n * PANEL + g * n * PANEL
                    for c0 in range(0, n, BLOCK_C):
                        cols = c0 + tl.arange(0, BLOCK_C)
                        pc = tl.load(
                            done + cols[:, None] * PANEL + lanes[None, :],
                            mask=(cols < n)[:, None],
                            other=0.0,
                            cache_modifier=".cg",
                        )
                        at = resid_ptr + (g * n + cols[:, None]) * n + items[None, :]
                        live = (cols < n)[:, None] & inside[None, :]
                        a = tl.load(at, mask=live, other=0.0)
                        a -= tl.dot(pc, tl.trans(own), input_precision=PRECISION)
                        tl.store(at, a, mask=live)
                    own = tl.zeros([BLOCK_N, PANEL], dtype=tl.float32)
                    # row j of A below is read by other threads than the ones that wrote it
                    tl.debug_barrier()
                raw = best - tl.load(tie_ptr + g * n + j)
                # as dpp._advance: no factor update, rank the rest by the tie-breaker
                exhausted = raw <= floor
                current = panel_ptr + ((i // PANEL) % 2) * G * n * PANEL + g * n * PANEL
                aj = tl.load(resid_ptr + (g * n + j) * n + items, mask=inside, other=0.0)
                cj = tl.load(current + j * PANEL + lanes, mask=lanes < p, other=0.0, cache_modifier=".cg")
                e = (aj - tl.sum(own * cj[None, :], axis=1)) * tl.rsqrt(tl.maximum(raw, floor))
                e = tl.where(exhausted, 0.0, e)
                own = tl.where(lanes[None, :] == p, e[:, None], own)
                tl.store(current + items * PANEL + p, e, mask=inside)
                s = s - e * e
                s = tl.where(s > float("-inf"), tl.where(exhausted, tie, s), s)
                s = tl.where(items == j, float("-inf"), s)
                if b == 0:
                    tl.store(order_ptr + g * rows + i, j)


#: Largest block of items one program holds (its registers bound it; the pick packs an item's place in
#: its block into 8 bits).
MAX_BLOCK_N = 256
#: Elements of one tile of the panel update (``BLOCK_C`` columns x ``BLOCK_N`` items).
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


def fits(g: int, n: int, device: torch.device) -> bool:
    """Whether ``g`` kernels of ``n`` items can take the persistent kernel on ``device``."""
    return device.type == "cuda" and layout(g, n, device) is not None


def panel_size(n: int, device: torch.device) -> tuple[int, str]:
    """(picks per panel, ``tl.dot`` precision) for kernels of ``n`` items. Measured on an H200
    (``scripts/tune-dpp-triton.py``, reports/gpu/tune-dpp-triton.jsonl): with ``tf32x3`` 32 picks a
    panel is fastest up to a few thousand items (one of 3,064 items, 2,144 picks: 9.3 ms against 10.5
    with 64; 12.2 with 16 in an earlier call) and 64 beyond (5,608 items, 3,817 picks: 28.4 against
    36.0 ms). Float32 FMA (``ieee``, GPUs without TF32) is only fast with 16 (15.5 ms; 83 ms with 32
    in that earlier call, its tiles presumably spilling registers)."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        return 16, "ieee"
    return (64 if n > 4096 else 32), "tf32x3"


def greedy_order(
    kernel: torch.Tensor,
    score: torch.Tensor,
    tie: torch.Tensor,
    floor: torch.Tensor,
    steps: int,
    *,
    panel: tuple[int, str] | None = None,
    block_n: int | None = None,
    max_polls: int = MAX_POLLS,
) -> torch.Tensor:
    """``[G, steps]`` pick order, as ``dpp._eager_order`` computes it, in one launch. On CUDA the grid
    is :func:`layout`'s; under Triton's CPU interpreter (programs run one after another, so a barrier
    between programs would never open) a single kernel as one program. ``panel`` overrides
    :func:`panel_size`; ``block_n`` (a power of two from 16 to :data:`MAX_BLOCK_N`) overrides the
    layout with one program per ``block_n`` items, whether or not they can all be resident (tests of
    the barrier's timeout). Raises :class:`BarrierTimeout` when a barrier stayed closed for
    ``max_polls`` polls."""
    g, n, _ = kernel.shape
    device = kernel.device
    if block_n is not None:
        if block_n < 16 or block_n > MAX_BLOCK_N or block_n & (block_n - 1):
            raise ValueError(f"block_n={block_n} is not a power of two from 16 to {MAX_BLOCK_N}")
        nprog = g * triton.cdiv(n, block_n)
    elif device.type == "cuda":
        laid = layout(g, n, device)
        if laid is None:
            raise ValueError(f"{g} kernels of {n} items do not fit one resident program per multiprocessor")
        block_n, nprog = laid
    elif g == 1 and n <= MAX_BLOCK_N:
        block_n, nprog = max(16, triton.next_power_of_2(n)), 1
    else:
        raise ValueError(f"off CUDA the persistent kernel runs one kernel of at most {MAX_BLOCK_N} items")
    size, precision = panel or panel_size(n, device)
    nblocks = triton.cdiv(n, block_n)
    rows = max(steps, 1)
    resid = kernel.float().contiguous().clone()
    panels = torch.zeros(2, g, n, size, dtype=torch.float32, device=device)
    order = torch.zeros(g, rows, dtype=torch.long, device=device)
    part = torch.full((2, g, nblocks), -1, dtype=torch.int64, device=device)
    status = torch.zeros(1, dtype=torch.int32, device=device)
    _greedy_blocked[(nprog,)](
        resid, score.float().contiguous(), tie.float().contiguous(), floor.float().reshape(g).contiguous(),
        panels, order, part, status, n, rows, steps, nblocks, g, max_polls,
        BLOCK_N=block_n, PANEL=size, BLOCK_C=max(16, TILE // block_n),
        BLOCK_P=triton.next_power_of_2(nblocks), PRECISION=precision, FLAG_EVERY=FLAG_EVERY,
        num_warps=4 if block_n <= 64 else 8,
    )  # fmt: skip
    if status.item():  # one host sync: the caller reads the picks' count back right after anyway
        raise BarrierTimeout(
            f"{nprog} programs for {g} kernels of {n} items were not all resident: a grid barrier "
            f"stayed closed for {max_polls} polls (other work on this GPU?)"
        )
    return order[:, :steps]
