"""Timing that does not perturb what it measures: CUDA events on the GPU, a monotonic clock on CPU.

Events are recorded without synchronising; the one synchronisation happens when totals are read.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class Clock:
    """Accumulates named intervals on one device."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._events: dict[str, list[tuple[object, object]]] = defaultdict(list)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Time the block as ``name``; under ``torch.profiler`` it also shows as a range of that name."""
        with torch.profiler.record_function(name):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                yield
                end.record()
                self._events[name].append((start, end))
            else:
                t0 = time.perf_counter()
                yield
                self._events[name].append((t0, time.perf_counter()))

    def totals_ms(self) -> dict[str, float]:
        """Milliseconds per name (summed over intervals); synchronises once on CUDA."""
        if self.cuda:
            torch.cuda.synchronize()
        out: dict[str, float] = {}
        for name, spans in self._events.items():
            if self.cuda:
                out[name] = sum(s.elapsed_time(e) for s, e in spans)  # type: ignore[attr-defined]
            else:
                out[name] = sum((e - s) * 1000.0 for s, e in spans)  # type: ignore[operator]
        return out

    def reset(self) -> None:
        self._events.clear()
