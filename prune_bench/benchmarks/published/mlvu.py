"""MLVU dev set (multiple choice), as lmms-eval's ``mlvu_dev`` runs it.

Layout (``sy1998/MLVU_dev`` plus lmms-eval's cache folder): the question table as a parquet (or json)
file in ``DIR/`` or ``DIR/data/`` (e.g. ``DIR/test-00000-of-00001.parquet``) with the columns
``video_name, question, answer, task_type``, and the videos at ``DIR/<video_name>``. The question text
holds its options (``(A) ...`` lines), the answer is their letter.

Prompt (lmms-eval ``mlvu_doc_to_text``, default kwargs): the question with its options, then
``\\nOnly give the best option.\\nBest option: (``. Score: the mean of the per-task accuracies
(MLVU's M-avg), divided by all seven dev task types as lmms-eval divides (``mlvu_aggregate_results_dev``:
a type with no questions counts 0, so a partial copy or ``--limit`` scores low, there as here).

Generation (``mlvu_dev.yaml``): greedy, at most 16 new tokens, until ``"\\n\\n"``; the answer is
lmms-eval's ``extract_mcq_answer`` over the letters A-D, compared with the answer letter.
"""

from __future__ import annotations

import random
import re

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.headline import HeadlineRule
from prune_bench.benchmarks.published.common import (
    PublishedBenchmark,
    find_video,
    letter_index,
    read_annotations,
)
from prune_bench.benchmarks.published.parsing import Parsed, extract_mcq_answer
from prune_bench.benchmarks.published.scoring import Generation
from prune_bench.errors import UserError

TASK_TYPES = ("anomaly_reco", "count", "ego", "needle", "order", "plotQA", "topic_reasoning")
POST_PROMPT = "\nOnly give the best option.\nBest option: ("
_OPTION = re.compile(r"^\(([A-J])\)\s*(.*)$")


def inline_options(question: str) -> list[str]:
    """The ``(A) text`` lines of an MLVU question, in order."""
    return [m.group(2).strip() for line in question.splitlines() if (m := _OPTION.match(line.strip()))]


class MLVUDev(PublishedBenchmark):
    name = "mlvu_dev"
    tasks = TASK_TYPES
    layout = "DIR/test-00000-of-00001.parquet (columns video_name, question, answer, task_type) and DIR/<video_name>"
    headline = HeadlineRule(
        over="tasks",
        all_tasks=TASK_TYPES,
        text="mean of the accuracies of its 7 task types, a type without questions counting 0",
    )
    generation = Generation(max_new_tokens=16)

    def parse(self, item: VideoQAItem, response: str, rng: random.Random) -> Parsed:
        return Parsed(extract_mcq_answer(response, "ABCD"))

    def load(self) -> list[VideoQAItem]:
        path = self.annotation(
            ["*.parquet", "data/*.parquet", "*.json", "data/*.json"], "the question table (parquet or json)"
        )
        items = []
        for n, doc in enumerate(read_annotations(path)):
            question = str(doc["question"])
            options = inline_options(question) or [str(c) for c in doc.get("candidates") or []]
            if len(options) < 2:
                raise UserError(
                    f"{path}: row {n} has no '(A) ...' option lines in its question; check the file"
                )
            items.append(
                VideoQAItem(
                    item_id=f"{doc['task_type']}/{n}",
                    task=str(doc["task_type"]),
                    question=question.splitlines()[0],
                    options=tuple(options),
                    answer=letter_index(doc["answer"], len(options), f"{path.name}: row {n}"),
                    video=None,
                    video_path=str(find_video(self.root, str(doc["video_name"]))),
                    prompt=question + POST_PROMPT,
                )
            )
        return items
