"""EgoSchema, the 500-question subset with public answers, as lmms-eval's ``egoschema_subset`` runs it.

Layout (``lmms-eval/egoschema``, config ``Subset``, plus its cache folder):
``DIR/Subset/test-00000-of-00001.parquet`` and ``DIR/videos/<video_idx>.mp4``. The full 5,000
question set (configs ``MC``/``GENERATION``) has no answers (scored only by the EgoSchema server),
so rows without an answer are an error here.

Prompt (lmms-eval ``egoschema_doc_to_text``): the question, each of the five options on its own line
as the dataset gives it, then ``\\nAnswer with the option's letter from the given choices
directly.`` Score: accuracy (lmms-eval's ``score``).
"""

from __future__ import annotations

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.published.common import (
    PublishedBenchmark,
    find_video,
    letter_index,
    read_annotations,
    split_lettered,
)
from prune_bench.errors import UserError

POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


class EgoSchemaSubset(PublishedBenchmark):
    name = "egoschema_subset"
    tasks = ("egoschema",)
    layout = "DIR/Subset/test-00000-of-00001.parquet and DIR/videos/<video_idx>.mp4 (lmms-eval/egoschema)"

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
                )
            )
        return items
