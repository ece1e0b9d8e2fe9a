"""Time the Triton greedy-DPP kernel's block sizes (and the CUDA-graph path) on this GPU.

    python scripts/tune-dpp-triton.py

Shapes: one segment of a whole 32-frame video down to 16 short ones (hidden 3584), 30% picks each,
as HieraVid's first in-LLM stage sees them on LLaVA-OneVision-7B. Prints one JSON line per
(shape, path, picks per captured graph or BLOCK_N x BLOCK_T) with the median of 5 runs, and whether the picks equal the graph
path's. ``dpp_triton.blocks`` picks from this table.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import torch

from prune_bench.strategies.common import dpp, dpp_triton

SHAPES = [(1, 3136, 941), (4, 784, 235), (16, 196, 59), (1, 1568, 470)]
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


def main() -> None:
    default_steps, default_blocks = dpp_triton.GRAPH_STEPS, dpp_triton.blocks
    g = torch.Generator(device="cuda").manual_seed(0)
    for segments, size, picks in SHAPES:
        x = torch.nn.functional.normalize(
            torch.randn(segments, size, 3584, device="cuda", generator=g), dim=-1
        )
        r = torch.rand(segments, size, device="cuda", generator=g)
        kernel = r[:, :, None] * (x @ x.transpose(1, 2)) * r[:, None, :]
        sizes = torch.full((segments,), size, device="cuda")
        budgets = torch.full((segments,), picks, device="cuda")
        os.environ["PRUNE_BENCH_DPP"] = "graph"
        ms, reference = timed(kernel, sizes, budgets)
        shape = {"segments": segments, "size": size, "picks": picks}
        print(json.dumps({**shape, "path": "graph", "ms": round(ms, 2)}), flush=True)
        os.environ["PRUNE_BENCH_DPP"] = "persistent"
        ms, out = timed(kernel, sizes, budgets)
        print(json.dumps({**shape, "path": "persistent", "ms": round(ms, 2),
                          "same_picks": bool(torch.equal(out, reference))}), flush=True)  # fmt: skip
        os.environ["PRUNE_BENCH_DPP"] = "triton"
        for steps in GRAPH_STEPS:
            dpp_triton.GRAPH_STEPS = steps
            ms, out = timed(kernel, sizes, budgets)
            print(json.dumps({**shape, "path": "triton", "GRAPH_STEPS": steps, "ms": round(ms, 2),
                              "same_picks": bool(torch.equal(out, reference))}), flush=True)  # fmt: skip
        dpp_triton.GRAPH_STEPS = default_steps
        for block_n, block_t in BLOCKS:
            dpp_triton.blocks = lambda n, bn=block_n, bt=block_t: (bn, bt)  # type: ignore[misc]
            ms, out = timed(kernel, sizes, budgets)
            same = bool(torch.equal(out, reference))
            print(json.dumps({**shape, "path": "triton", "BLOCK_N": block_n, "BLOCK_T": block_t,
                              "ms": round(ms, 2), "same_picks": same}), flush=True)  # fmt: skip
        dpp_triton.blocks = default_blocks  # type: ignore[misc]


if __name__ == "__main__":
    main()
