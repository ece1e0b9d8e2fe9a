"""The words and colours of the synthetic benchmark: object and background palettes, shapes, numbers.

Object colours are bright and saturated, background colours dark or muted, so an object never
blends into a scene; the two palettes use different names, so a question that names a scene by its
background never collides with an answer that is an object's colour.
"""

from __future__ import annotations

import re

TASKS: tuple[str, ...] = ("needle", "order", "count", "motion", "detail", "change")

OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 80, 255),
    "yellow": (245, 230, 40),
    "cyan": (40, 230, 230),
    "magenta": (235, 50, 235),
    "orange": (255, 140, 0),
    "white": (250, 250, 250),
}

BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "navy": (20, 20, 95),
    "maroon": (105, 20, 20),
    "olive": (90, 90, 15),
    "teal": (15, 90, 90),
    "purple": (70, 20, 105),
    "gray": (100, 100, 100),
    "brown": (95, 55, 25),
    "forest": (20, 80, 30),
}

SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross", "ring")
NUMBERS: tuple[str, ...] = ("two", "three", "four", "five", "six")  # scene counts 2..6
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

OBJECT_NAMES: tuple[str, ...] = tuple(OBJECT_COLOURS)
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUND_COLOURS)

QUESTIONS: dict[str, str] = {
    "needle": "What colour was the flash?",
    "order": "Which colour appeared first?",
    "count": "How many scenes are there?",
    "motion": "Which way did the {colour} {shape} move?",
    "detail": "What shape was the small object in the {background} scene?",
    "change": "What colour was the {shape} at the end?",
}


def all_words() -> list[str]:
    """Every word a synthetic question or option can contain (lower case, punctuation apart)."""
    words: set[str] = set()
    for text in QUESTIONS.values():
        words.update(re.findall(r"\w+|[^\w\s]+", re.sub(r"\{\w+\}", " ", text).lower()))
    for group in (OBJECT_NAMES, BACKGROUND_NAMES, SHAPES, NUMBERS, DIRECTIONS):
        words.update(group)
    return sorted(words)
