"""LongVideoBench validation set, video only, as lmms-eval's ``longvideobench_val_v`` runs it.

Layout (``longvideobench/LongVideoBench``, unpacked where lmms-eval puts it): ``DIR/lvb_val.json``
(or ``DIR/validation-00000-of-00001.parquet``) and ``DIR/videos/<video_path>``.

Prompt (lmms-eval ``longvideobench_doc_to_text``, default kwargs): the question, then ``A. ...``
lines for the 4-5 candidates, then ``\\nAnswer with the option's letter from the given choices
directly.\\n``. Score: accuracy over all questions (``lvb_acc``), broken down by duration group (the
``task``) and question category.

Generation (``longvideobench_val_v.yaml``): greedy, at most 32 new tokens, until ``"\\n\\n"``; the
answer is the first capital A-E once the answer phrases are removed (a random letter when there is
none; lmms-eval's ``parse_multi_choice_response`` of this task). ``lvb_acc`` is a fraction there, % here.
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
from prune_bench.benchmarks.published.parsing import Parsed, parse_longvideobench
from prune_bench.benchmarks.published.scoring import Generation

POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"


def candidates_of(doc: dict) -> list[str]:
    """``candidates`` (lvb_val.json) or ``option0..4`` with ``N/A`` for absent ones (the parquet)."""
    if doc.get("candidates"):
        return [str(c) for c in doc["candidates"]]
    return [str(doc[f"option{i}"]) for i in range(5) if doc.get(f"option{i}") not in (None, "N/A")]


class LongVideoBenchVal(PublishedBenchmark):
    name = "longvideobench_val_v"
    tasks = ("15", "60", "600", "3600")
    layout = "DIR/lvb_val.json and DIR/videos/<video_path> (longvideobench/LongVideoBench)"
    group_keys = ("question_category",)
    generation = Generation(max_new_tokens=32)

    def parse(self, item: VideoQAItem, response: str, rng: random.Random) -> Parsed:
        return parse_longvideobench(response, len(item.options), rng)

    def load(self) -> list[VideoQAItem]:
        path = self.annotation(["lvb_val.json", "validation-*.parquet"], "the validation question file")
        videos = self.require(self.root / "videos", "the video folder videos/")
        items = []
        for doc in read_annotations(path):
            options = candidates_of(doc)
            question = str(doc["question"])
            items.append(
                VideoQAItem(
                    item_id=str(doc["id"]),
                    task=str(doc["duration_group"]),
                    question=question,
                    options=tuple(options),
                    answer=letter_index(doc["correct_choice"], len(options), f"{path.name}: {doc['id']}"),
                    video=None,
                    video_path=str(find_video(videos, str(doc["video_path"]))),
                    prompt=question + "\n" + "\n".join(lettered(options)) + "\n" + POST_PROMPT,
                    groups={"question_category": str(doc["question_category"])},
                )
            )
        return items
