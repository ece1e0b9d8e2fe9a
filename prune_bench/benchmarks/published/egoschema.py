"""EgoSchema, the 500-question subset with public answers, as lmms-eval's ``egoschema_subset`` runs it.

Layout (``lmms-eval/egoschema``, config ``Subset``, plus its cache folder):
``DIR/Subset/test-00000-of-00001.parquet`` and ``DIR/videos/<video_idx>.mp4``. The full 5,000
question set (configs ``MC``/``GENERATION``) has no answers (scored only by the EgoSchema server),
so rows without an answer are an error here.

Prompt (lmms-eval ``egoschema_doc_to_text``): the question, each of the five options on its own line
as the dataset gives it, then ``\\nAnswer with the option's letter from the given choices
directly.`` Score: accuracy (lmms-eval's ``score``, a fraction there, in % here).

Generation (``_default_template_yaml``): greedy, at most 16 new tokens, until ``"\\n\\n"``; the answer is
read by ``egoschema_process_results_generation`` (MMMU's parser, matching option text against the
options as given, ``"A. ..."`` prefix included; a random letter when nothing matches).
"""

from __future__ import annotations

import random

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.published.common import (
    PublishedBenchmark,
    find_video,
    letter_index,
    read_annotations,
    split_lettered,
)
from prune_bench.benchmarks.published.parsing import Parsed, parse_egoschema
from prune_bench.benchmarks.published.scoring import Generation
from prune_bench.errors import UserError

POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


class EgoSchemaSubset(PublishedBenchmark):
    name = "egoschema_subset"
    tasks = ("egoschema",)
    layout = "DIR/Subset/test-00000-of-00001.parquet and DIR/videos/<video_idx>.mp4 (lmms-eval/egoschema)"
    generation = Generation(max_new_tokens=16)

    def parse(self, item: VideoQAItem, response: str, rng: random.Random) -> Parsed:
        return parse_egoschema(response, item.meta["options_as_given"], rng)

    def load(self) -> list[VideoQAItem]:
        path = self.annotation(["Subset/test-*.parquet", "Subset/test*.json*"], "the Subset question file")
        videos = self.require(self.root / "videos", "the video folder videos/")
        items = []
        for doc in read_annotations(path):
            if doc.get("answer") in (None, ""):
                raise UserError(
                    f"{path}: question {doc['question_idx']} has no answer; only the 500-question Subset "
                    "has public answers (the full set is scored by the EgoSchema server)"
                )
            raw = [str(o) for o in doc["option"]]
            items.append(
                VideoQAItem(
                    item_id=str(doc["question_idx"]),
                    task="egoschema",
                    question=doc["question"],
                    options=tuple(split_lettered(o) for o in raw),
                    answer=letter_index(doc["answer"], len(raw), f"{path.name}: {doc['question_idx']}"),
                    video=None,
                    video_path=str(find_video(videos, str(doc["video_idx"]))),
                    prompt=doc["question"] + "".join("\n" + o for o in raw) + POST_PROMPT,
                    meta={"options_as_given": tuple(raw)},
                )
            )
        return items
