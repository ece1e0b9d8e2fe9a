"""Built-in benchmarks, registered through the same hook as third-party ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prune_bench.core.hookspecs import hookimpl


def synthetic(**options: Any) -> Any:
    from prune_bench.benchmarks.synthetic import SyntheticVideoQA

    return SyntheticVideoQA(**options)


@hookimpl
def register_benchmarks(register: Callable[[str, Callable[..., Any]], None]) -> None:
    # the published benchmarks under their lmms-eval names, as ``PUBLISHED`` lists them (one list)
    from prune_bench.benchmarks.published import PUBLISHED

    register("synthetic", synthetic)
    for name, cls in PUBLISHED.items():
        register(name, cls)
