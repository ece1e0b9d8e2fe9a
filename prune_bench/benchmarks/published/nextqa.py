"""NExT-QA multiple choice (5 options), as lmms-eval's ``nextqa_mc_test`` runs it.

Layout (``lmms-eval/NExTQA``, config ``MC``, plus its cache folder):
``DIR/MC/test-00000-of-00001.parquet`` and ``DIR/NExTVideo/<video>.mp4``.

Prompt (lmms-eval ``nextqa_doc_to_text_mc``; the task sets no pre- or post-prompt): the question,
then ``A. <a0>`` ... ``E. <a4>`` on their own lines. Score: exact match, accuracy over all
questions; the breakdown is by question type (``CW``, ``TN``, ``DC``, ...; the ``task``) and by
NExT-QA's three categories (causal, temporal, descriptive).

Generation: the task sets no ``generation_kwargs``, so lmms-eval stops at ``"\\n\\n"`` and its
Hugging Face video models cap at 1024 new tokens; the answer is read by ``nextqa_mc_process_results``
(MMMU's parser: the last bracketed or spaced letter; a random letter when nothing matches).
"""

from __future__ import annotations

import random

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.published.common import (
    PublishedBenchmark,
    find_video,
    letter_index,
    lettered,
    read_annotations,
)
from prune_bench.benchmarks.published.parsing import Parsed, parse_nextqa
from prune_bench.benchmarks.published.scoring import Generation

CATEGORIES = {"C": "causal", "T": "temporal", "D": "descriptive"}
TYPES = ("CW", "CH", "TN", "TC", "TP", "DL", "DC", "DO")


class NExTQAMultipleChoice(PublishedBenchmark):
    name = "nextqa_mc_test"
    tasks = TYPES
    layout = "DIR/MC/test-00000-of-00001.parquet and DIR/NExTVideo/<video>.mp4 (lmms-eval/NExTQA)"
    group_keys = ("category",)
    generation = Generation()

    def parse(self, item: VideoQAItem, response: str, rng: random.Random) -> Parsed:
        return parse_nextqa(response, item.options, rng)

    def load(self) -> list[VideoQAItem]:
        path = self.annotation(
            ["MC/test-*.parquet", "MC/test*.json*", "MC/test*.csv"], "the MC question file"
        )
        videos = self.require(self.root / "NExTVideo", "the video folder NExTVideo/")
        items = []
        for n, doc in enumerate(read_annotations(path)):
            options = [str(doc[f"a{i}"]).strip() for i in range(5)]
            qtype = str(doc.get("type", "?"))
            question = str(doc["question"]).strip()
            items.append(
                VideoQAItem(
                    item_id=f"{doc['video']}/{doc.get('qid', n)}",
                    task=qtype,
                    question=question,
                    options=tuple(options),
                    answer=letter_index(doc["answer"], 5, f"{path.name}: row {n}"),
                    video=None,
                    video_path=str(find_video(videos, str(doc["video"]))),
                    prompt="\n".join([question, *lettered(options)]),
                    groups={"category": CATEGORIES.get(qtype[:1], "other")},
                )
            )
        return items
