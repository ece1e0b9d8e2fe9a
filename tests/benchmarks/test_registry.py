"""The published benchmarks are listed once (``PUBLISHED``); the registry and the README follow it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prune_bench.benchmarks.published import PUBLISHED
from prune_bench.benchmarks.registry import register_benchmarks

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_registry_registers_the_published_list_and_synthetic() -> None:
    registered: dict[str, Callable[..., Any]] = {}

    def register(name: str, make: Callable[..., Any]) -> None:
        registered[name] = make

    register_benchmarks(register)
    assert list(registered) == ["synthetic", *PUBLISHED]
    assert all(registered[name] is cls for name, cls in PUBLISHED.items())


def test_readme_table_lists_the_published_benchmarks_in_order() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Published benchmarks from local copies", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z][\w.-]*)` \|", section, flags=re.MULTILINE)
    assert rows == list(PUBLISHED)
