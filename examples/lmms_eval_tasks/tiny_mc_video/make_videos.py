"""Write the tiny task's four clips (one colour each, 16 frames at 8 fps) where the task reads them:
``videos/`` next to this file, or the folder $PRUNE_BENCH_TINY_VIDEOS names.

    python examples/lmms_eval_tasks/tiny_mc_video/make_videos.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from prune_bench.benchmarks.video import write_mp4

sys.path.insert(0, str(Path(__file__).parent))
from utils import video_dir  # noqa: E402  # the task's own functions, beside this file

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220), "white": (245, 245, 245)}


def make_videos() -> list[Path]:
    folder = video_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_mp4(
            torch.tensor(rgb, dtype=torch.uint8).expand(16, 64, 64, 3).contiguous(), folder / f"{name}.mp4"
        )
        for name, rgb in COLOURS.items()
    ]


if __name__ == "__main__":
    for path in make_videos():
        print(path)
