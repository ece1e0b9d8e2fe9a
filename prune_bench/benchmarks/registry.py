"""Built-in benchmarks, registered through the same hook as third-party ones."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from prune_bench.core.hookspecs import hookimpl

#: published benchmarks read from a local copy (prune_bench/benchmarks/published/), lmms-eval's names
PUBLISHED_NAMES = (
    "mvbench",
    "videomme",
    "videomme_w_subtitle",
    "egoschema_subset",
    "nextqa_mc_test",
    "mlvu_dev",
    "longvideobench_val_v",
)


def synthetic(**options: Any) -> Any:
    from prune_bench.benchmarks.synthetic import SyntheticVideoQA

    return SyntheticVideoQA(**options)


def published(name: str, **options: Any) -> Any:
    from prune_bench.benchmarks.published import PUBLISHED

    return PUBLISHED[name](**options)


@hookimpl
def register_benchmarks(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("synthetic", synthetic)
    for name in PUBLISHED_NAMES:
        register(name, partial(published, name))
