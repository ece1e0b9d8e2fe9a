"""``SyntheticVideoQA``: the built-in benchmark, generated deterministically from a seed.

Items are generated per task in chunks of :data:`CHUNK` with a CPU generator whose seed is a hash
of (split, seed, task, chunk), so an item never depends on ``num_items`` or on the other tasks, the
``train`` split (which the default model's training draws from) never shares a seed with ``test``
or ``val``, and the same seed gives the same pixels on every machine. Items are interleaved task by
task (``needle, order, count, ...``), so ``--limit N`` keeps every task represented.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from prune_bench.benchmarks.base import Benchmark, VideoQAItem
from prune_bench.benchmarks.synthetic.tasks import TaskBatch, generate
from prune_bench.benchmarks.synthetic.vocab import TASKS

CHUNK = 64
SPLITS = ("train", "val", "test")


def split_seed(split: str, seed: int, task: str, chunk: int) -> int:
    """The generator seed of one chunk; distinct splits hash to disjoint seeds."""
    digest = hashlib.sha256(f"prune-bench-synthetic/{split}/{seed}/{task}/{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class SyntheticVideoQA(Benchmark):
    """Generated multiple-choice video questions in six tasks (see :mod:`...synthetic.tasks`).

    ``data_dir`` (optional) writes every video as an MP4 there and hands out items with
    ``video_path`` instead of frames, so evaluation goes through the same decoding as users' videos.
    """

    name = "synthetic"

    def __init__(
        self,
        split: str = "test",
        num_items: int = 300,
        num_frames: int = 32,
        size: int = 64,
        seed: int = 0,
        tasks: Sequence[str] | str = TASKS,
        data_dir: str | Path | None = None,
        fps: float = 8.0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
        if isinstance(tasks, str):
            tasks = [t.strip() for t in tasks.split(",") if t.strip()]
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ValueError(f"unknown synthetic tasks {unknown} (tasks: {', '.join(TASKS)})")
        self.split, self.num_items, self.num_frames, self.size, self.seed = (
            split,
            int(num_items),
            num_frames,
            size,
            seed,
        )
        self.tasks = tuple(tasks)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.fps = fps
        self._chunks: dict[tuple[str, int], TaskBatch] = {}

    def _chunk(self, task: str, chunk: int) -> TaskBatch:
        key = (task, chunk)
        if key not in self._chunks:
            g = torch.Generator().manual_seed(split_seed(self.split, self.seed, task, chunk))
            self._chunks[key] = generate(task, g, CHUNK, self.num_frames, self.size)
        return self._chunks[key]

    def item(self, index: int) -> VideoQAItem:
        """Item ``index`` (0-based) of this split."""
        task = self.tasks[index % len(self.tasks)]
        local = index // len(self.tasks)
        batch = self._chunk(task, local // CHUNK)
        j = local % CHUNK
        item_id = f"{self.name}-{self.split}-s{self.seed}-{task}-{local:05d}"
        video: torch.Tensor | None = batch.frames[j]
        path = None
        if self.data_dir is not None:
            from prune_bench.benchmarks.video import write_mp4

            target = self.data_dir / f"{item_id}.mp4"
            if not target.is_file():
                write_mp4(video, target, fps=self.fps)  # type: ignore[arg-type]
            path, video = str(target), None
        return VideoQAItem(
            item_id=item_id,
            task=task,
            question=batch.questions[j],
            options=batch.options[j],
            answer=int(batch.answer[j]),
            video=video,
            video_path=path,
            meta=dict(batch.meta[j]),
        )

    def items(self, limit: int | None = None) -> list[VideoQAItem]:
        n = self.num_items if limit is None else min(limit, self.num_items)
        return [self.item(i) for i in range(n)]
