"""Downsampling baselines: per-frame spatial average pooling (``pool``), and where the temporal one is.

Why: VTC-Bench ("Are We Using the Right Benchmark: An Evaluation Framework for Visual Token Compression
Methods", Liao et al., ACL 2026, arXiv 2510.07143) finds that plain image downsampling beats many
visual-token compression methods at the same budget. A method that cannot beat downsampling at a
budget is not compressing meaningfully there; these rows say where that line is.

Followed: github.com/Chenfei-Liao/VTC-Bench at commit 983e443. Its downsampling baseline is
``bash scripts/dart.sh false r`` (``VTC_IMAGE_RATIO=r``): in
``external/DART/lmms-eval/lmms_eval/models/qwen2_vl.py`` every input image is resized to
``(w // r, h // r)`` with PIL's bicubic filter before Qwen2-VL's processor, which then encodes the
smaller image into about ``1/r^2`` of the tokens. Its levels ``r = 2, 3, 4, 5, 10`` are compared with
methods at budgets ``0.25, 0.1111, 0.0625, 0.04, 0.01`` (``DOWNSAMPLE_TO_BUDGET`` in
``tools/analyze_results.py``); the LLaVA-OneVision "Downsample" results are Qwen2-VL's, copied
(``tools/reorganize_data.py``). Videos are passed through unresized: VTC-Bench defines no video
downsampling, so ``pool`` is the per-frame form of its image baseline.

**``pool``**, at the ``input`` hook on the LLM input embeddings: each frame's ``rows x cols`` grid
of visual tokens is average-pooled to a coarser ``gr x gc`` grid. Rows are split into ``gr``
contiguous bins (row ``r`` goes to bin ``floor(r * gr / rows)``; bin sizes differ by at most one),
columns likewise; a window's merged token has the mean of its tokens' hidden states (unweighted, as
a pooling of grid cells), sits at the window's first (top-left) token's place with that token's
original position id and layout, and stands for the window's tokens (``weight``). Text and the
LLaVA-OneVision newline token are untouched. The grid is the one whose kept fraction
``gr * gc / (rows * cols)`` is closest to ``keep`` (ties: the most isotropic, then more rows); the
grid is read from the layout at run time.

Defaults: ``keep = 0.25`` (VTC-Bench's first level, ``r = 2``), any grid (``isotropic=False``),
original positions (``position_policy="keep"``).

Budgets: pooling happens before the LLM, so ``"input"``, ``"layer-average"`` and ``"flops"`` all
mean the fraction of visual tokens entering the LLM, and ``keep`` is the budget. When the closest
grid is more than 5 % (relative) off ``keep`` we warn; ``ModelInfo`` carries only the tokens per
frame, so that check assumes the most square ``rows x cols`` with that count (the adapters' grids
are square, or Qwen2-VL's grid of the configured frame size); the achieved retention is recorded
either way.

**Temporal downsampling** is ``uniform[mode=temporal]`` (``prune_bench/strategies/simple.py``), not
duplicated here: it keeps ``round(T * keep)`` (at least one) whole frames at
``linspace(0, T - 1, k).round()``, evenly spaced with the first and last included, every kept frame
exactly as encoded and at its original positions. That is plain frame subsampling of the sampled
frames (LLaVA-OneVision encodes frames independently; on Qwen2-VL a layout frame is one temporal
patch of two frames, so it subsamples frame pairs). Two details to know: it rounds the ``linspace``
(half to even) where VTC-Bench's frame sampler (its ``qwen2_vl.py``) truncates (``np.linspace(...,
dtype=int)``), and it does not warn when ``round(T * keep) / T`` is more than 5 % off ``keep`` (the
run-level 5 % check still flags the row).

Where ``pool`` differs from VTC-Bench's downsampling, and why:

* Token space, not pixel space. VTC-Bench resizes the pixels (bicubic) and re-encodes; the vision
  tower then sees a low-resolution image. ``pool`` averages the full-resolution frame's projected
  tokens: a strategy acts on the encoded video and cannot re-run the tower at another resolution.
  (LLaVA-OneVision's own video pooling, a bilinear 2x resize of the projected features, is the same
  kind of operation at a fixed factor.)
* Any grid, not one integer factor on both sides. Budgets between VTC-Bench's levels are reachable,
  and the two axes may be pooled by very different factors (14x14 at ``keep=0.2`` pools to 13x3:
  39 cells, the closest count, has no squarer grid); ``isotropic=True`` allows only grids with one
  scale on both axes, as a resize by one factor (6x6 there, 8 % off, with a warning; on a 14x14
  grid ``keep=0.25`` gives 7x7 either way, VTC-Bench's ``r = 2``).
* Exact counts. Qwen2-VL's ``smart_resize`` rounds the resized image to multiples of 28 pixels, so
  VTC-Bench's token ratio is only about ``1/r^2``; ours is exactly ``gr * gc / (rows * cols)``.
  Where ``gr`` does not divide ``rows`` the windows are near-equal contiguous bins (a partition;
  ``adaptive_avg_pool2d`` would overlap them), not a continuous resampling.
* Positions. A re-encoded smaller image gets contiguous positions (and, with M-RoPE, the coarse
  grid's row/column indices); we keep the top-left token's original position by default.
  ``position_policy="reindex"`` gives contiguous 1-D positions (on M-RoPE it shifts all three axes
  of each token by one amount, which is not the coarse grid's indices).
* Videos: applied to every frame (VTC-Bench downsamples images only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from pydantic import Field

from prune_bench.core.context import StageContext
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.ledger import warn_budget
from prune_bench.core.stages import Stage
from prune_bench.core.state import PositionPolicy, TokenState
from prune_bench.core.strategy import BudgetUnit, ModelInfo, Strategy, StrategyConfig

#: relative distance from ``keep`` beyond which the closest grid is reported
TOLERANCE = 0.05


class PoolConfig(StrategyConfig):
    keep: float = Field(
        0.25,
        gt=0,
        le=1,
        description="fraction of visual tokens kept: the pooled grid closest to it (VTC r=2: 0.25)",
    )
    isotropic: bool = Field(
        False, description="only grids pooled by one scale on both axes, as VTC-Bench's resize by one factor"
    )
    position_policy: PositionPolicy = Field(
        "keep",
        description="'keep' the window's top-left token's original position, or 'reindex' contiguously",
    )


def pool_grid(rows: int, cols: int, keep: float, isotropic: bool = False) -> tuple[int, int]:
    """The pooled ``(gr, gc)`` grid whose kept fraction ``gr * gc / (rows * cols)`` is closest to ``keep``.

    Ties go to the most isotropic grid (``gr / rows`` closest to ``gc / cols``), then to more rows.
    With ``isotropic`` only grids with one scale on both axes (rounded) are candidates.
    """
    if isotropic:
        candidates = {(a, min(cols, max(1, round(a * cols / rows)))) for a in range(1, rows + 1)}
        candidates |= {(min(rows, max(1, round(b * rows / cols))), b) for b in range(1, cols + 1)}
    else:
        candidates = {(a, b) for a in range(1, rows + 1) for b in range(1, cols + 1)}
    target = keep * rows * cols

    def key(grid: tuple[int, int]) -> tuple[float, float, int]:
        a, b = grid
        return (round(abs(a * b - target), 9), round(abs(math.log(a * cols / (b * rows))), 9), -a)

    return min(candidates, key=key)


def square_layout(tokens_per_frame: int) -> tuple[int, int]:
    """The most square ``rows x cols`` with ``tokens_per_frame`` cells (rows <= cols)."""
    rows = max(d for d in range(1, math.isqrt(tokens_per_frame) + 1) if tokens_per_frame % d == 0)
    return rows, tokens_per_frame // rows


def pool_targets(state: TokenState, grid: tuple[int, int]) -> torch.Tensor:
    """``[N]`` merge target of every token: the top-left visual token of its pooling window (itself
    for every other token), for :meth:`TokenState.merge`."""
    n = len(state)
    target = torch.arange(n, device=state.device)
    vis = state.visual_index
    if vis.numel() == 0:
        return target
    rows, cols = state.frame_grid
    gr, gc = grid
    r, c, f = state.row[vis].long(), state.col[vis].long(), state.frame[vis].long()
    window = (f * gr + r * gr // rows) * gc + c * gc // cols
    # the smallest (row, col) alive in each window, with its index: a unique key per token
    order = (r * cols + c) * n + vis
    first = torch.full((int(window.max()) + 1,), torch.iinfo(torch.long).max, device=state.device)
    first.scatter_reduce_(0, window, order, reduce="amin")
    target[vis] = first[window] % n
    return target


class SpatialPooling(Strategy):
    name = "pool"
    summary = (
        "average-pool each frame's tokens to the coarser grid closest to the budget (VTC-Bench's baseline)"
    )
    Config = PoolConfig
    config: PoolConfig
    ablations: ClassVar[dict[str, dict[str, Any]]] = {
        "isotropic grid (one factor)": {"isotropic": True},
        "contiguous positions (reindex)": {"position_policy": "reindex"},
    }

    @classmethod
    def for_budget(cls, keep: float, unit: BudgetUnit, model: ModelInfo, **options: Any) -> Strategy:
        strategy = cls(keep=keep, **options)
        if model.tokens_per_frame:
            rows, cols = square_layout(model.tokens_per_frame)
            gr, gc = pool_grid(rows, cols, keep, strategy.config.isotropic)
            achieved = gr * gc / (rows * cols)
            if abs(achieved - keep) > TOLERANCE * keep:
                warn_budget(
                    cls.name, keep, achieved, f"the closest pooled grid of {rows}x{cols} is {gr}x{gc}"
                )
        return strategy

    def pool(self, state: TokenState, ctx: StageContext) -> TokenState:
        if state.num_visual == 0:
            return state
        rows, cols = state.frame_grid
        grid = pool_grid(rows, cols, self.config.keep, self.config.isotropic)
        if grid == (rows, cols):
            return state
        return state.merge(pool_targets(state, grid), weighting="uniform")

    def stages(self, model: ModelInfo) -> list[Stage]:
        return [
            Stage("pool.spatial_average", "input", self.pool, position_policy=self.config.position_policy)
        ]


@hookimpl
def register_strategies(register: Callable[[type[Strategy]], None]) -> None:
    register(SpatialPooling)
