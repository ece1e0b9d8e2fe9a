"""Published video QA benchmarks read from local copies in lmms-eval's layout (one module each)."""

from __future__ import annotations

from prune_bench.benchmarks.published.common import PublishedBenchmark, PublishedScore
from prune_bench.benchmarks.published.egoschema import EgoSchemaSubset
from prune_bench.benchmarks.published.longvideobench import LongVideoBenchVal
from prune_bench.benchmarks.published.mlvu import MLVUDev
from prune_bench.benchmarks.published.mvbench import MVBench
from prune_bench.benchmarks.published.nextqa import NExTQAMultipleChoice
from prune_bench.benchmarks.published.videomme import VideoMME, VideoMMESubtitles

#: registered name -> class, in the order ``prune-bench list`` shows them
PUBLISHED: dict[str, type[PublishedBenchmark]] = {
    cls.name: cls
    for cls in (
        MVBench,
        VideoMME,
        VideoMMESubtitles,
        EgoSchemaSubset,
        NExTQAMultipleChoice,
        MLVUDev,
        LongVideoBenchVal,
    )
}

__all__ = [
    "PUBLISHED",
    "EgoSchemaSubset",
    "LongVideoBenchVal",
    "MLVUDev",
    "MVBench",
    "NExTQAMultipleChoice",
    "PublishedBenchmark",
    "PublishedScore",
    "VideoMME",
    "VideoMMESubtitles",
]
