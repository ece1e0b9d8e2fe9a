"""Training batches for the default model, generated on the training device.

A batch mixes every synthetic task (in proportion to ``task_weights``), renders the frames on the
device, and turns each question into exactly the token ids the adapter builds at evaluation time:
the prompt comes from the same :class:`PromptFormat` and the same tokenizer call (see
``Adapter.encode``); the target is the first id of the answer word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from prune_bench.adapters.base import PromptFormat, frames_to_pixels
from prune_bench.benchmarks.synthetic.tasks import TaskBatch, balanced_positions, detail, generate


def shape(g: torch.Generator, n: int, frames: int, size: int) -> TaskBatch:
    """Training-only curriculum task: ``detail`` with a single scene, so the question's scene is the
    only one and the answer depends on recognising the shape alone."""
    batch = detail(g, n, frames, size, balanced_positions(g, n), scenes_range=(1, 1))
    batch.task = "shape"
    return batch


#: question of the ``scene`` curriculum task (its words join the tokenizer's vocabulary)
SCENE_QUESTION = "Which scene colour was behind the {shape}?"


def scene(
    g: torch.Generator, n: int, frames: int, size: int, scenes_range: tuple[int, int] = (2, 3)
) -> TaskBatch:
    """Training-only curriculum task, ``detail`` asked the other way round: the same videos, but the
    question names the shape and the answer is the background of its scene, so the model must tie an
    object to the scene it sits in (the binding ``detail`` needs). Other scenes' backgrounds come first
    among the wrong options."""
    from prune_bench.benchmarks.synthetic.vocab import BACKGROUND_NAMES

    batch = detail(g, n, frames, size, balanced_positions(g, n), scenes_range=scenes_range)
    questions, options = [], []
    for m, slot in zip(batch.meta, batch.answer.tolist(), strict=True):
        others = [b for b in m["scene_backgrounds"] if b != m["background"]]
        order = torch.randperm(len(BACKGROUND_NAMES), generator=g, device=g.device).tolist()
        others += [
            BACKGROUND_NAMES[j] for j in order if BACKGROUND_NAMES[j] not in (m["background"], *others)
        ]
        opts = others[:3]
        opts.insert(slot, m["background"])
        questions.append(SCENE_QUESTION.format(shape=m["shape"]))
        options.append(tuple(opts))
    return TaskBatch("scene", batch.frames, questions, options, batch.answer, batch.meta)


def background(g: torch.Generator, n: int, frames: int, size: int) -> TaskBatch:
    """Training-only task: ``scene`` with a single scene, i.e. name the video's background colour. The
    binding ``detail`` needs starts from telling background colours apart, which the other tasks reward
    ignoring (see the model card); weight 0 by default. Stages 4 and 5 of the shipped model trained with
    it (``background=1`` then ``0.3``); with it the LM's input kept the background colour again."""
    batch = scene(g, n, frames, size, scenes_range=(1, 1))
    batch.task = "background"
    return batch


#: tasks the training mix may draw besides the benchmark's own (never evaluated). ``scene`` and
#: ``background`` have weight 0 by default (the recipe from scratch, stage 1, does not use them); the
#: shipped model's later stages did (see its model card for each stage's mix).
TRAINING_TASKS = {"shape": shape, "scene": scene, "background": background}
TRAINING_QUESTIONS = (SCENE_QUESTION,)


@dataclass
class TrainBatch:
    """Pixels ``[B*T, 3, S, S]``, right-padded ids ``[B, L]``, last prompt position, target ids, tasks."""

    pixels: torch.Tensor
    ids: torch.Tensor
    last: torch.Tensor
    target: torch.Tensor
    tasks: list[str]


def task_counts(batch_size: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``batch_size`` over tasks in proportion to ``weights`` (each task at least one item)."""
    total = sum(weights.values())
    counts = {t: max(1, int(batch_size * w / total)) for t, w in weights.items()}
    rest = batch_size - sum(counts.values())
    for t in sorted(weights, key=weights.__getitem__, reverse=True):
        if rest <= 0:
            break
        counts[t] += 1
        rest -= 1
    return counts


class PromptEncoder:
    """Question + options -> prompt ids with the video placeholders, exactly as the adapter does."""

    def __init__(self, tokenizer: Any, fmt: PromptFormat, video_token_id: int, video_tokens: int) -> None:
        self.tokenizer, self.fmt = tokenizer, fmt
        self.video = [video_token_id] * video_tokens
        self._cache: dict[str, list[int]] = {}

    def _ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def prompt(self, question: str, options: tuple[str, ...]) -> list[int]:
        before, after = self.fmt.around_video(question, options)
        return self._ids(before) + self.video + self._ids(after)

    def word(self, word: str) -> int:
        return self._ids(word)[0]


def make_batch(
    parts: list[TaskBatch],
    encoder: PromptEncoder,
    fmt: PromptFormat,
    image_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> TrainBatch:
    """Stack task batches into one model batch (prompts right-padded with id 0)."""
    frames = torch.cat([p.frames for p in parts])
    b, t = frames.shape[:2]
    pixels = frames_to_pixels(frames.flatten(0, 1), image_size, fmt.pixel_mean, fmt.pixel_std, dtype, device)
    prompts, targets, tasks = [], [], []
    for p in parts:
        for q, opts, word in zip(p.questions, p.options, p.answer_words, strict=True):
            prompts.append(encoder.prompt(q, opts))
            targets.append(encoder.word(word))
            tasks.append(p.task)
    longest = max(len(x) for x in prompts)
    ids = torch.zeros(b, longest, dtype=torch.long)
    for i, x in enumerate(prompts):
        ids[i, : len(x)] = torch.tensor(x)
    last = torch.tensor([len(x) - 1 for x in prompts])
    return TrainBatch(pixels, ids.to(device), last.to(device), torch.tensor(targets, device=device), tasks)


def sample_parts(g: torch.Generator, counts: Mapping[str, int], frames: int, size: int) -> list[TaskBatch]:
    """One batch's worth of task batches, drawn on ``g``'s device."""
    return [
        TRAINING_TASKS[task](g, n, frames, size)
        if task in TRAINING_TASKS
        else generate(task, g, n, frames, size)
        for task, n in counts.items()
        if n > 0
    ]
