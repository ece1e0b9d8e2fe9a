"""Run a fixed-shape step many times, on CUDA as one captured CUDA graph replayed.

Greedy selections (the DPP's picks, DivPrune's max-min picks) are sequential: each pick is a handful
of small kernels that depend on the previous pick, so eagerly the host's launch cost, not the GPU,
sets the pace. A step whose tensors keep their shapes and addresses, and that keeps its step number on
the device, can be captured once as a CUDA graph of ``chunk`` steps and replayed: one launch per
``chunk`` picks. The caller sizes its buffers for :func:`padded_steps` steps; the steps past ``count``
(filling the last replay) must be harmless, e.g. write into padding that is discarded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Steps per captured graph.
CHUNK = 32


def padded_steps(count: int, device: torch.device, chunk: int = CHUNK) -> int:
    """How many times :func:`run_steps` calls the step for ``count`` steps on ``device``."""
    if device.type != "cuda" or count <= 1:
        return count
    return 1 + -(-(count - 1) // chunk) * chunk


def run_steps(step: Callable[[], None], count: int, device: torch.device, chunk: int = CHUNK) -> None:
    """Call ``step()`` ``count`` times (eagerly off CUDA); on CUDA the first call runs eagerly on a side
    stream (the warm-up capture needs) and the rest replay a captured graph of ``chunk`` calls, for
    :func:`padded_steps` calls in all."""
    if device.type != "cuda" or count <= 1:
        for _ in range(count):
            step()
        return
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(chunk):
            step()
    for _ in range(-(-(count - 1) // chunk)):
        graph.replay()
