"""The synthetic benchmark: deterministic, balanced, and its answers match the pixels."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from prune_bench.benchmarks.synthetic import TASKS, SyntheticVideoQA, generate
from prune_bench.benchmarks.synthetic.vocab import BACKGROUND_COLOURS, OBJECT_COLOURS


def _gen(task: str, n: int = 16, seed: int = 0):
    return generate(task, torch.Generator().manual_seed(seed), n)


def _has_colour(frames: torch.Tensor, rgb: tuple[int, int, int]) -> torch.Tensor:
    """Per frame: how many pixels have exactly this colour."""
    return (frames == torch.tensor(rgb, dtype=torch.uint8)).all(-1).flatten(1).sum(1)


def test_same_seed_same_items_and_disjoint_splits() -> None:
    a = SyntheticVideoQA(num_items=12, seed=3).items()
    b = SyntheticVideoQA(num_items=12, seed=3).items()
    c = SyntheticVideoQA(split="train", num_items=12, seed=3).items()
    assert [i.item_id for i in a] == [i.item_id for i in b]
    assert all(torch.equal(x.video, y.video) and x.options == y.options for x, y in zip(a, b, strict=True))
    assert not any(torch.equal(x.video, y.video) for x, y in zip(a, c, strict=True))
    assert {i.task for i in a} == set(TASKS)


def test_limit_is_a_prefix() -> None:
    bench = SyntheticVideoQA(num_items=24, seed=1)
    assert [i.item_id for i in bench.items(7)] == [
        i.item_id for i in SyntheticVideoQA(num_items=7, seed=1).items()
    ]


@pytest.mark.parametrize("task", TASKS)
def test_answer_letters_balanced(task: str) -> None:
    counts = Counter(_gen(task, 24).answer.tolist())
    assert sorted(counts) == [0, 1, 2, 3] and max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("task", TASKS)
def test_options_are_distinct_words(task: str) -> None:
    b = _gen(task, 8)
    assert all(len(set(o)) == 4 for o in b.options)
    assert b.frames.dtype == torch.uint8 and b.frames.shape == (8, 32, 64, 64, 3)


def test_needle_colour_flashes_only_in_its_frames() -> None:
    b = _gen("needle")
    for i, meta in enumerate(b.meta):
        present = _has_colour(b.frames[i], OBJECT_COLOURS[b.answer_words[i]]) > 0
        assert present.nonzero().flatten().tolist() == meta["frames"]
        assert len(meta["frames"]) == 1  # a single frame: random pruning at 0.1 can lose all of it


def test_order_first_colour_appears_first() -> None:
    b = _gen("order")
    for i, meta in enumerate(b.meta):
        first = (_has_colour(b.frames[i], OBJECT_COLOURS[b.answer_words[i]]) > 0).nonzero()[0, 0]
        second = (_has_colour(b.frames[i], OBJECT_COLOURS[meta["second"]]) > 0).nonzero()[0, 0]
        assert first < second


def test_count_matches_distinct_backgrounds_and_black_cuts() -> None:
    b = _gen("count")
    words = ["two", "three", "four", "five", "six"]
    for i, meta in enumerate(b.meta):
        corners = [tuple(b.frames[i, t, 0, 0].tolist()) for t in range(b.frames.shape[1])]
        black = [t for t, c in enumerate(corners) if c == (0, 0, 0)]
        scenes = {c for c in corners if c != (0, 0, 0)}
        assert scenes <= set(BACKGROUND_COLOURS.values())
        assert len(scenes) == len(black) + 1 == words.index(b.answer_words[i]) + 2
        assert black == meta["cuts"] and all(b.frames[i, t].eq(0).all() for t in black)
        # a black frame is followed by the new scene's background, never by another cut
        assert all(corners[t + 1] != (0, 0, 0) for t in black if t + 1 < len(corners))


def test_motion_direction_matches_pixels() -> None:
    b = _gen("motion")
    for i, meta in enumerate(b.meta):
        colour = OBJECT_COLOURS[b.questions[i].split()[4]]
        where = [
            (b.frames[i, t] == torch.tensor(colour, dtype=torch.uint8)).all(-1).nonzero().float().mean(0)
            for t in (0, -1)
        ]
        dy, dx = (where[1] - where[0]).tolist()
        seen = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        assert seen == b.answer_words[i] == meta["direction"]


def test_detail_shape_is_in_the_named_scene() -> None:
    b = _gen("detail")
    for i, meta in enumerate(b.meta):
        bg = BACKGROUND_COLOURS[meta["background"]]
        frames = meta["frames"]
        assert all(tuple(b.frames[i, t, 0, 0].tolist()) == bg for t in frames)
        assert b.answer_words[i] == meta["shape"] and meta["background"] in b.questions[i]
        assert meta["scenes"] in (2, 3)
        # the object lies inside one 16x16 token cell of the 64x64 frame, with background all round it
        covered = (b.frames[i, frames[0]] != torch.tensor(bg, dtype=torch.uint8)).any(-1)
        ys, xs = covered.nonzero().unbind(1)
        assert len(ys) > 0
        assert ys.min() // 16 == ys.max() // 16 and xs.min() // 16 == xs.max() // 16
        cell = covered[ys.min() // 16 * 16 :, xs.min() // 16 * 16 :][:16, :16]
        rim = torch.cat([cell[0], cell[-1], cell[:, 0], cell[:, -1]])
        assert not rim.any()


def test_change_final_colour_is_at_the_end() -> None:
    b = _gen("change")
    for i, meta in enumerate(b.meta):
        after = _has_colour(b.frames[i], OBJECT_COLOURS[b.answer_words[i]]) > 0
        before = _has_colour(b.frames[i], OBJECT_COLOURS[meta["before"]]) > 0
        assert after[-1] and not before[-1] and before[0] and not after[0]
        # the new colour shows in the last 1-3 frames only
        assert int(after.sum()) == len(after) - meta["switch"] and 1 <= len(after) - meta["switch"] <= 3


def test_static_objects_drawn_once_a_video_match_per_frame_drawing() -> None:
    from prune_bench.benchmarks.synthetic import render

    g = torch.Generator().manual_seed(0)
    n, t, s = 6, 12, 32
    cx, cy = (torch.rand(n, generator=g) * 20 + 6)[:, None], (torch.rand(n, generator=g) * 20 + 6)[:, None]
    shape, radius = torch.arange(n) % 5, torch.full((n,), 5.0)
    colour = torch.randint(0, 255, (n, 3), generator=g, dtype=torch.uint8)
    visible = torch.rand(n, t, generator=g) > 0.3
    canvas = torch.zeros(n, t, s, s, 3, dtype=torch.uint8)
    static = render.draw(canvas.clone(), shape, colour, cx.expand(-1, t), cy.expand(-1, t), radius, visible)
    moving = render.draw(
        canvas.clone(),
        shape,
        colour,
        cx.expand(-1, t).contiguous(),
        cy.expand(-1, t).contiguous(),
        radius,
        visible,
    )
    assert torch.equal(static, moving) and static.any()
