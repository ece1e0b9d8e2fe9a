"""How fast a run went: items per second, the share of wall time the model was busy, the time it
waited for frames. Every evaluation measures it; the console summary shows it and the manifest keeps it.

Wall time runs from the start of the loop (decoding workers starting included) to its last item.
"Busy" is the time spent encoding items and answering them (vision tower, projector, prefill, decode);
"waiting" is the time the loop spent getting the next item's frames: the whole decode without
prefetch, only what the workers had not finished in time with it. The rest is writing records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Throughput:
    workers: int
    items: int = 0
    busy_s: float = 0.0
    wait_s: float = 0.0
    wall_s: float = 0.0
    #: the wait for the first item's frames (with workers: their start-up and one decode)
    first_frames_s: float = 0.0
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def waited(self, seconds: float) -> None:
        """One more item reached the model after ``seconds`` waiting for its frames."""
        if not self.items:
            self.first_frames_s = seconds
        self.items += 1
        self.wait_s += seconds

    def finish(self) -> Throughput:
        self.wall_s = time.perf_counter() - self._started
        return self

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def busy_fraction(self) -> float:
        return min(1.0, self.busy_s / self.wall_s) if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """What the manifest records (seconds and fractions rounded to what the figures can carry)."""
        return {
            "items": self.items,
            "wall_s": round(self.wall_s, 3),
            "items_per_s": round(self.items_per_s, 4),
            "model_busy_fraction": round(self.busy_fraction, 4),
            "frame_wait_s": round(self.wait_s, 3),
            "first_frames_s": round(self.first_frames_s, 3),
            "workers": self.workers,
        }

    def line(self) -> str:
        """One console line, e.g. ``throughput: 40 items in 12.1 s (3.31 items/s); model busy 94% ...``."""
        if not self.items:
            return "throughput: no item needed running (every record was already there)"
        decoding = f"{self.workers} decoding worker(s)" if self.workers else "no decoding workers"
        return (
            f"throughput: {self.items} items in {self.wall_s:.1f} s ({self.items_per_s:.2f} items/s); "
            f"model busy {100 * self.busy_fraction:.0f}% of the time, {self.wait_s:.1f} s waiting for "
            f"frames ({decoding})"
        )
