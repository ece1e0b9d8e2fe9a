"""Time the greedy-DPP paths on this GPU, at the shapes HieraVid's stages give them.

    python scripts/tune-dpp-triton.py [--sweep]

Shapes (hidden 3584, random features and relevance): HieraVid's three in-LLM stages at 32 frames keep
0.3 on LLaVA-OneVision-7B when the video forms one segment (3,064 / 2,144 / 1,500 tokens), its first
stage at 64 frames (5,608 tokens, 3,817 picks), and 30% picks of one to sixteen segments. Prints one
JSON line per (shape, path, setting) with the median of 5 runs, and whether the picks equal the
CUDA-graph path's. Paths: ``graph`` (the PyTorch step replayed), ``triton`` (a kernel per pick),
``persistent`` (one kernel per stage, for each panel size and precision). ``--sweep`` also times the per-pick
kernel's block sizes and picks per captured graph, from which ``dpp_triton.blocks`` was chosen.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

from prune_bench.kernels import dpp_persistent, dpp_triton
from prune_bench.strategies.common import dpp

SHAPES = [
    (1, 3064, 2144),
    (1, 2144, 1500),
    (1, 1500, 645),
    (1, 5608, 3817),
    (1, 3136, 941),
    (4, 784, 235),
    (16, 196, 59),
    (1, 1568, 470),
]
PANELS = [(16, "ieee"), (32, "tf32x3"), (64, "tf32x3")]
BLOCKS = [(16, 128), (16, 256), (32, 64), (32, 128), (64, 64)]
GRAPH_STEPS = [4, 8, 16, 32]


def timed(kernel: torch.Tensor, sizes: torch.Tensor, budgets: torch.Tensor) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for i in range(6):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = dpp.greedy_dpp_map(kernel, sizes, budgets)
        torch.cuda.synchronize()
        if i:
            times.append(1000 * (time.perf_counter() - start))
    assert out is not None
    return statistics.median(times), out


def report(case: tuple, path: str, **setting: object) -> None:
    """Time ``case`` (kernel, sizes, budgets, reference picks, shape) on the path the environment and
    module settings select; print one JSON line."""
    kernel, sizes, budgets, reference, shape = case
    ms, out = timed(kernel, sizes, budgets)
    same = bool(torch.equal(out, reference))
    print(json.dumps({**shape, "path": path, **setting, "ms": round(ms, 2), "same_picks": same}), flush=True)


def main(sweep: bool) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    for segments, size, picks in SHAPES:
        x = torch.nn.functional.normalize(
            torch.randn(segments, size, 3584, device="cuda", generator=g), dim=-1
        )
        r = torch.rand(segments, size, device="cuda", generator=g)
        kernel = r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :]
        sizes = torch.full((segments,), size)
        budgets = torch.full((segments,), picks)
        shape = {"segments": segments, "size": size, "picks": picks}

        os.environ["PRUNE_BENCH_DPP"] = "graph"
        ms, reference = timed(kernel, sizes, budgets)
        print(json.dumps({**shape, "path": "graph", "ms": round(ms, 2)}), flush=True)
        case = (kernel, sizes, budgets, reference, shape)
        os.environ["PRUNE_BENCH_DPP"] = "triton"
        report(case, "triton")
        os.environ["PRUNE_BENCH_DPP"] = "persistent"
        if dpp_persistent.layout(segments, size, kernel.device) is None:
            continue
        default_panel = dpp_persistent.panel_size
        for panel in PANELS:
            dpp_persistent.panel_size = lambda n, device, p=panel: p  # type: ignore[misc]
            report(case, "persistent", PANEL=panel[0], PRECISION=panel[1])
        dpp_persistent.panel_size = default_panel  # type: ignore[misc]
        if not sweep or size * segments < 3000:
            continue
        os.environ["PRUNE_BENCH_DPP"] = "triton"
        default_steps, default_blocks = dpp_triton.GRAPH_STEPS, dpp_triton.blocks
        for dpp_triton.GRAPH_STEPS in GRAPH_STEPS:
            report(case, "triton", GRAPH_STEPS=dpp_triton.GRAPH_STEPS)
        dpp_triton.GRAPH_STEPS = default_steps
        for block_n, block_t in BLOCKS:
            dpp_triton.blocks = lambda n, bn=block_n, bt=block_t: (bn, bt)  # type: ignore[misc]
            report(case, "triton", BLOCK_N=block_n, BLOCK_T=block_t)
        dpp_triton.blocks = default_blocks  # type: ignore[misc]


if __name__ == "__main__":
    main("--sweep" in sys.argv[1:])
