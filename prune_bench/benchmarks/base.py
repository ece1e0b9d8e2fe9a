"""What a video question-answering benchmark hands the runner: items, and the benchmark interface.

A benchmark is any object with a ``name``, the ``tasks`` it covers and an ``items(limit)`` method
that returns its evaluation items in a fixed order (so ``--limit N`` always means the same first N
items). Each :class:`VideoQAItem` carries its frames in memory (``video``) or a path to a video file
(``video_path``) that :func:`prune_bench.benchmarks.video.load_video` decodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from prune_bench.benchmarks.headline import MEAN_OF_TASKS, HeadlineRule


@dataclass(frozen=True)
class VideoQAItem:
    """One multiple-choice question about one video.

    ``answer`` is the index (``0 .. len(options) - 1``) of the right option; benchmarks have from 2
    to 5 options (letters A-J are supported). ``video`` is uint8 ``[T, H, W, 3]`` or None when the
    frames come from ``video_path``; ``start``/``end`` (seconds) bound the part of the video the
    question is about, when the annotation gives them. ``prompt`` is the benchmark's own text for
    the question (lmms-eval's ``doc_to_text``: question, lettered options, post-prompt), used
    instead of the model's default rendering of ``question`` and ``options`` by models that answer
    with a letter. ``groups`` are further breakdowns besides ``task`` (e.g. Video-MME's task type),
    written into each result record. ``meta`` holds task-specific facts (for tests and analysis,
    never shown to the model).
    """

    item_id: str
    task: str
    question: str
    options: tuple[str, ...]
    answer: int
    video: torch.Tensor | None
    video_path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    prompt: str | None = None
    groups: dict[str, str] = field(default_factory=dict)


class Benchmark(ABC):
    """A named, ordered collection of :class:`VideoQAItem` grouped into tasks."""

    #: the name results are filed under (``results/<name>-...``)
    name: str
    #: the task names items may carry, in display order
    tasks: tuple[str, ...]
    #: how its outcomes become the one number tables and figures show (:mod:`.headline`)
    headline: ClassVar[HeadlineRule] = MEAN_OF_TASKS

    @abstractmethod
    def items(self, limit: int | None = None) -> list[VideoQAItem]:
        """The first ``limit`` items (all when None), always in the same order."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.items())

    def __len__(self) -> int:
        return len(self.items())
