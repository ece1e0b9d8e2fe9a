"""The six synthetic tasks, each generating a whole batch of videos and questions at once.

Every generator takes a :class:`torch.Generator` (on the device the tensors live on), the batch
size, frames and frame size, and the position (0-3) the right option must take in each item, and
returns a :class:`TaskBatch`. Tasks are built so that pruning strategies fail them differently:

- ``needle``: a small shape flashes for a single frame in otherwise static scenes; what colour was it?
- ``order``: two objects appear one after the other for 3-5 frames; which colour came first?
- ``count``: 2-6 scenes of equal length with distinct full-frame backgrounds, each cut fading through
  one black frame; how many?
- ``motion``: a small object crosses the frame (a static one does not); which way did it move?
- ``detail``: each of 2-3 scenes holds a small object (about one token's area) of a different shape;
  the shape in a named scene?
- ``change``: an object changes colour 1-3 frames before the end; its colour at the end?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from prune_bench.benchmarks.synthetic.render import backgrounds, draw, palette, scene_index
from prune_bench.benchmarks.synthetic.vocab import (
    BACKGROUND_NAMES,
    DIRECTIONS,
    NUMBERS,
    OBJECT_NAMES,
    QUESTIONS,
    SHAPES,
)

MIN_FRAMES = 12


@dataclass
class TaskBatch:
    """``n`` items of one task: frames uint8 ``[n, T, S, S, 3]``, questions, options, answer indices."""

    task: str
    frames: torch.Tensor
    questions: list[str]
    options: list[tuple[str, ...]]
    answer: torch.Tensor
    meta: list[dict[str, Any]] = field(default_factory=list)

    @property
    def answer_words(self) -> list[str]:
        return [opts[a] for opts, a in zip(self.options, self.answer.tolist(), strict=True)]


class _Rand:
    """Shorthands for drawing batched random numbers from one generator on one device."""

    def __init__(self, g: torch.Generator, n: int) -> None:
        self.g, self.n, self.device = g, n, g.device

    def int(self, lo: int, hi: int, *shape: int) -> torch.Tensor:
        """Integers in ``[lo, hi)``, shaped ``[n, *shape]``."""
        return torch.randint(lo, hi, (self.n, *shape), generator=self.g, device=self.device)

    def uniform(self, lo: float | torch.Tensor, hi: float | torch.Tensor, *shape: int) -> torch.Tensor:
        u = torch.rand((self.n, *shape), generator=self.g, device=self.device)
        return lo + (hi - lo) * u

    def distinct(
        self, pool: int, k: int, first: torch.Tensor | None = None, avoid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[n, k]`` distinct indices from ``range(pool)``; ``first`` ``[n, j]`` are placed first and
        ``avoid`` ``[n, j]`` never chosen."""
        score = torch.rand((self.n, pool), generator=self.g, device=self.device)
        if avoid is not None:
            score.scatter_(1, avoid, 2.0)
        if first is not None:
            score.scatter_(
                1,
                first,
                -1.0
                - torch.arange(first.shape[1], 0, -1, device=self.device, dtype=score.dtype)[None].expand_as(
                    first
                ),
            )
        return score.argsort(dim=1)[:, :k]


def place_answer(correct: torch.Tensor, distractors: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """``[n, 4]`` option indices: ``correct`` at ``position``, the 3 ``distractors`` in the other slots."""
    slot = torch.arange(4, device=correct.device)[None, :].expand(correct.shape[0], 4)
    at = slot == position[:, None]
    from_d = (slot - (slot > position[:, None]).long()).clamp(max=distractors.shape[1] - 1)
    return torch.where(at, correct[:, None], distractors.gather(1, from_d))


def _words(index: torch.Tensor, vocab: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [tuple(vocab[j] for j in row) for row in index.tolist()]


def _scenes(
    r: _Rand, lo: int, hi: int, frames: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random scene layout: (counts ``[n]``, background ids ``[n, 6]``, scene of each frame, canvas)."""
    counts = r.int(lo, hi + 1)
    bg = r.distinct(len(BACKGROUND_NAMES), 6)
    scenes = scene_index(counts, frames)
    return counts, bg, scenes, backgrounds(bg, scenes, size)


def _static(v: torch.Tensor, frames: int) -> torch.Tensor:
    return v[:, None].expand(-1, frames)


def _position(r: _Rand, radius: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return r.uniform(radius + 1, size - radius - 1), r.uniform(radius + 1, size - radius - 1)


def needle(g: torch.Generator, n: int, frames: int, size: int, position: torch.Tensor) -> TaskBatch:
    r, s = _Rand(g, n), size / 64
    counts, bg, scenes, canvas = _scenes(r, 1, 3, frames, size)
    colour = r.int(0, len(OBJECT_NAMES))
    shape, radius = r.int(0, len(SHAPES)), r.uniform(5.0, 7.0) * s
    cx, cy = _position(r, radius, size)
    # one frame: with 16 tokens a frame, random pruning at keep 0.1 loses every token of it about one
    # time in five (0.9^16), while a strategy that looks for the odd frame out keeps it
    duration = torch.ones(n, dtype=torch.long, device=canvas.device)
    start = r.int(2, frames - 3)
    t = torch.arange(frames, device=canvas.device)[None]
    visible = (t >= start[:, None]) & (t < (start + duration)[:, None])
    draw(
        canvas,
        shape,
        palette("object", canvas.device)[colour],
        _static(cx, frames),
        _static(cy, frames),
        radius,
        visible,
    )
    opts = place_answer(colour, r.distinct(len(OBJECT_NAMES), 3, avoid=colour[:, None]), position)
    meta = [
        {"colour": OBJECT_NAMES[c], "frames": list(range(a, a + d)), "center": (x, y), "scenes": k}
        for c, a, d, x, y, k in zip(
            colour.tolist(),
            start.tolist(),
            duration.tolist(),
            cx.tolist(),
            cy.tolist(),
            counts.tolist(),
            strict=True,
        )
    ]
    return TaskBatch("needle", canvas, [QUESTIONS["needle"]] * n, _words(opts, OBJECT_NAMES), position, meta)


def order(g: torch.Generator, n: int, frames: int, size: int, position: torch.Tensor) -> TaskBatch:
    r, s = _Rand(g, n), size / 64
    counts, bg, scenes, canvas = _scenes(r, 1, 2, frames, size)
    colours = r.distinct(len(OBJECT_NAMES), 2)
    lengths = r.int(3, 6, 2)
    first = r.int(0, frames // 3)
    earliest = first + lengths[:, 0] + 1
    second = earliest + (r.uniform(0.0, 1.0) * (frames - lengths[:, 1] - earliest + 1).float()).long()
    t = torch.arange(frames, device=canvas.device)[None]
    pal = palette("object", canvas.device)
    starts = torch.stack([first, second], 1)
    for k in range(2):
        radius = r.uniform(6.0, 9.0) * s
        cx, cy = _position(r, radius, size)
        visible = (t >= starts[:, k : k + 1]) & (t < (starts[:, k] + lengths[:, k])[:, None])
        draw(
            canvas,
            r.int(0, len(SHAPES)),
            pal[colours[:, k]],
            _static(cx, frames),
            _static(cy, frames),
            radius,
            visible,
        )
    distract = r.distinct(len(OBJECT_NAMES), 3, first=colours[:, 1:], avoid=colours[:, :1])
    opts = place_answer(colours[:, 0], distract, position)
    meta = [
        {"first": OBJECT_NAMES[a], "second": OBJECT_NAMES[b], "starts": (s0, s1)}
        for (a, b), (s0, s1) in zip(colours.tolist(), starts.tolist(), strict=True)
    ]
    return TaskBatch("order", canvas, [QUESTIONS["order"]] * n, _words(opts, OBJECT_NAMES), position, meta)


def count(g: torch.Generator, n: int, frames: int, size: int, position: torch.Tensor) -> TaskBatch:
    r, s = _Rand(g, n), size / 64
    counts, bg, scenes, canvas = _scenes(r, 2, 6, frames, size)
    radius = r.uniform(5.0, 8.0) * s
    cx, cy = _position(r, radius, size)
    shape, colour = r.int(0, len(SHAPES)), r.int(0, len(OBJECT_NAMES))
    on = torch.ones(n, frames, dtype=torch.bool, device=canvas.device)
    draw(
        canvas,
        shape,
        palette("object", canvas.device)[colour],
        _static(cx, frames),
        _static(cy, frames),
        radius,
        on,
    )
    # every cut fades through one black frame (the first frame of each scene after the first), as
    # edited video often does: the scene count is then readable frame by frame, and a strategy that
    # drops whole frames (or merges them away) can miss a cut
    cut = torch.zeros_like(scenes, dtype=torch.bool)
    cut[:, 1:] = scenes[:, 1:] != scenes[:, :-1]
    canvas.masked_fill_(cut[:, :, None, None, None], 0)
    correct = counts - 2
    opts = place_answer(correct, r.distinct(len(NUMBERS), 3, avoid=correct[:, None]), position)
    meta = [
        {
            "scenes": k,
            "backgrounds": [BACKGROUND_NAMES[b] for b in row[:k]],
            "cuts": c.nonzero().flatten().tolist(),
        }
        for k, row, c in zip(counts.tolist(), bg.tolist(), cut, strict=True)
    ]
    return TaskBatch("count", canvas, [QUESTIONS["count"]] * n, _words(opts, NUMBERS), position, meta)


def motion(g: torch.Generator, n: int, frames: int, size: int, position: torch.Tensor) -> TaskBatch:
    r, s = _Rand(g, n), size / 64
    counts, bg, scenes, canvas = _scenes(r, 1, 2, frames, size)
    colours = r.distinct(len(OBJECT_NAMES), 2)
    pal = palette("object", canvas.device)
    on = torch.ones(n, frames, dtype=torch.bool, device=canvas.device)
    # a static distractor of another colour, drawn first so the mover passes over it
    radius0 = r.uniform(5.0, 7.0) * s
    x0, y0 = _position(r, radius0, size)
    draw(
        canvas,
        r.int(0, len(SHAPES)),
        pal[colours[:, 1]],
        _static(x0, frames),
        _static(y0, frames),
        radius0,
        on,
    )
    direction, shape = r.int(0, 4), r.int(0, len(SHAPES))
    radius = r.uniform(5.0, 7.0) * s
    begin, end = r.uniform(0.15 * size, 0.3 * size), r.uniform(0.7 * size, 0.85 * size)
    frac = torch.linspace(0.0, 1.0, frames, device=canvas.device)[None]
    forward = begin[:, None] + (end - begin)[:, None] * frac  # increasing coordinate
    along = torch.where(((direction == 0) | (direction == 2))[:, None], forward.flip(1), forward)
    across = _static(r.uniform(radius + 1, size - radius - 1), frames)
    horizontal = (direction <= 1)[:, None]
    cx, cy = torch.where(horizontal, along, across), torch.where(horizontal, across, along)
    draw(canvas, shape, pal[colours[:, 0]], cx, cy, radius, on)
    distract = r.distinct(4, 3, avoid=direction[:, None])
    opts = place_answer(direction, distract, position)
    questions = [
        QUESTIONS["motion"].format(colour=OBJECT_NAMES[c], shape=SHAPES[k])
        for c, k in zip(colours[:, 0].tolist(), shape.tolist(), strict=True)
    ]
    meta = [
        {"direction": DIRECTIONS[d], "start": (x[0], y[0]), "end": (x[-1], y[-1])}
        for d, x, y in zip(direction.tolist(), cx.tolist(), cy.tolist(), strict=True)
    ]
    return TaskBatch("motion", canvas, questions, _words(opts, DIRECTIONS), position, meta)


def detail(
    g: torch.Generator,
    n: int,
    frames: int,
    size: int,
    position: torch.Tensor,
    scenes_range: tuple[int, int] = (2, 3),
) -> TaskBatch:
    r, s = _Rand(g, n), size / 64
    counts, bg, scenes, canvas = _scenes(r, *scenes_range, frames, size)
    shapes = r.distinct(len(SHAPES), 4)
    colours = r.int(0, len(OBJECT_NAMES), 4)
    pal = palette("object", canvas.device)
    cell = size / 4  # one 2x2-pooled token of a 64x64 frame at patch 8
    for k in range(4):
        radius = r.uniform(5.0, 6.0) * s
        # centred on a token cell (+-1 px) and smaller than it (at most 14 of its 16 px): the object lies
        # inside one token, which a pruning strategy either keeps or loses, with a rim of its scene's
        # background around it, so that token alone tells both the shape and the scene it sits in
        cx, cy = ((r.int(0, 4, 2).float() + 0.5) * cell + r.uniform(-1.0, 1.0, 2) * s).unbind(1)
        cx, cy = cx.clamp(radius + 1, size - radius - 1), cy.clamp(radius + 1, size - radius - 1)
        draw(
            canvas,
            shapes[:, k],
            pal[colours[:, k]],
            _static(cx, frames),
            _static(cy, frames),
            radius,
            scenes == k,
        )
    target = (r.uniform(0.0, 1.0) * counts.float()).long().clamp(max=counts - 1)
    correct = shapes.gather(1, target[:, None])[:, 0]
    opts = place_answer(correct, r.distinct(len(SHAPES), 3, avoid=correct[:, None]), position)
    named = bg.gather(1, target[:, None])[:, 0]
    questions = [QUESTIONS["detail"].format(background=BACKGROUND_NAMES[b]) for b in named.tolist()]
    meta = [
        {
            "scene": q,
            "scenes": k,
            "shape": SHAPES[c],
            "background": BACKGROUND_NAMES[b],
            "frames": [t for t in range(frames) if t * k // frames == q],
            "scene_shapes": [SHAPES[j] for j in row_s[:k]],
            "scene_backgrounds": [BACKGROUND_NAMES[j] for j in row_b[:k]],
        }
        for q, k, c, b, row_s, row_b in zip(
            target.tolist(),
            counts.tolist(),
            correct.tolist(),
            named.tolist(),
            shapes.tolist(),
            bg.tolist(),
            strict=True,
        )
    ]
    return TaskBatch("detail", canvas, questions, _words(opts, SHAPES), position, meta)


def change(g: torch.Generator, n: int, frames: int, size: int, position: torch.Tensor) -> TaskBatch:
    r, s = _Rand(g, n), size / 64
    counts, bg, scenes, canvas = _scenes(r, 1, 2, frames, size)
    colours = r.distinct(len(OBJECT_NAMES), 2)  # before, after
    shape, radius = r.int(0, len(SHAPES)), r.uniform(5.0, 7.0) * s
    cx, cy = _position(r, radius, size)
    # the new colour shows for the last 1-3 frames only: a strategy that thins out the end loses it
    switch = frames - r.int(1, 4)
    t = torch.arange(frames, device=canvas.device)[None]
    pal = palette("object", canvas.device)
    colour = torch.where(
        (t >= switch[:, None])[..., None], pal[colours[:, 1]][:, None], pal[colours[:, 0]][:, None]
    )
    on = torch.ones(n, frames, dtype=torch.bool, device=canvas.device)
    draw(canvas, shape, colour, _static(cx, frames), _static(cy, frames), radius, on)
    distract = r.distinct(len(OBJECT_NAMES), 3, first=colours[:, :1], avoid=colours[:, 1:])
    opts = place_answer(colours[:, 1], distract, position)
    questions = [QUESTIONS["change"].format(shape=SHAPES[k]) for k in shape.tolist()]
    meta = [
        {"before": OBJECT_NAMES[a], "after": OBJECT_NAMES[b], "switch": w, "center": (x, y)}
        for (a, b), w, x, y in zip(colours.tolist(), switch.tolist(), cx.tolist(), cy.tolist(), strict=True)
    ]
    return TaskBatch("change", canvas, questions, _words(opts, OBJECT_NAMES), position, meta)


GENERATORS: dict[str, Callable[[torch.Generator, int, int, int, torch.Tensor], TaskBatch]] = {
    "needle": needle,
    "order": order,
    "count": count,
    "motion": motion,
    "detail": detail,
    "change": change,
}


def balanced_positions(g: torch.Generator, n: int) -> torch.Tensor:
    """Answer positions 0-3 such that every block of 4 consecutive items uses each letter once."""
    blocks = torch.rand((n // 4 + 1, 4), generator=g, device=g.device).argsort(dim=1)
    return blocks.flatten()[:n]


def generate(
    task: str,
    g: torch.Generator,
    n: int,
    frames: int = 32,
    size: int = 64,
    position: torch.Tensor | None = None,
) -> TaskBatch:
    """``n`` items of ``task`` drawn from ``g`` (on ``g``'s device), letters balanced unless given."""
    if task not in GENERATORS:
        raise ValueError(f"unknown synthetic task '{task}' (tasks: {', '.join(GENERATORS)})")
    if frames < MIN_FRAMES or size < 32 or size % 2:
        raise ValueError(f"synthetic videos need >= {MIN_FRAMES} frames and an even size >= 32")
    if position is None:
        position = balanced_positions(g, n)
    return GENERATORS[task](g, n, frames, size, position)
