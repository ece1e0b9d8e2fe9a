"""MVBench (OpenGVLab): 20 temporal tasks, 2-5 options each, as lmms-eval's ``mvbench`` group runs it.

Layout: ``DIR/json/<task>.json`` (the ``OpenGVLab/MVBench`` dataset repo) and the unpacked videos
under ``DIR/video/<folder>/`` (or directly ``DIR/<folder>/``, lmms-eval's ``$HF_HOME/mvbench_video``),
with lmms-eval's folder per task (``DATA_LIST``). Tasks whose json file is absent are skipped; a
task whose json is there but whose video folder is not is an error.

Time bounds: the star and sta tasks' annotations carry ``start``/``end``. lmms-eval reads the
pre-cut ``*_segment`` folders and ignores them; when only the official full-length folder is there
(``star/Charades_v1_480``, ``sta/sta_video``, as MVBench's own evaluation reads it) the bounds are
applied to the frame sampling.

Prompt (lmms-eval ``mvbench_doc_to_text``): ``Question:<q>\\nOption:\\n(A) ...\\n(B) ...\\n`` then
``Only give the best option.\\n``. Score: each task's accuracy; the headline is their mean (the
MVBench paper's average; 200 questions per task, so it equals accuracy over all items).
"""

from __future__ import annotations

import random
from itertools import zip_longest
from pathlib import Path

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.headline import HeadlineRule
from prune_bench.benchmarks.published.common import LETTERS, PublishedBenchmark, find_video, read_annotations
from prune_bench.benchmarks.published.parsing import Parsed, mvbench_normalise
from prune_bench.benchmarks.published.scoring import Generation
from prune_bench.errors import UserError

#: lmms-eval's ``tasks/mvbench/utils.py`` DATA_LIST: the video folder of each task
DATA_LIST = {
    "action_sequence": "star/Charades_segment",
    "moving_count": "clevrer/video_validation",
    "action_prediction": "star/Charades_segment",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment",
    "action_antonym": "ssv2_video_mp4",
    "action_count": "perception/videos",
    "scene_transition": "scene_qa/video",
    "object_shuffle": "perception/videos",
    "object_existence": "clevrer/video_validation",
    "fine_grained_pose": "nturgbd_convert",
    "unexpected_action": "FunQA_test/test",
    "moving_direction": "clevrer/video_validation",
    "state_change": "perception/videos",
    "object_interaction": "star/Charades_segment",
    "character_order": "perception/videos",
    "action_localization": "sta/sta_video_segment",
    "counterfactual_inference": "clevrer/video_validation",
    "fine_grained_action": "Moments_in_Time_Raw/videos",
    "moving_attribute": "clevrer/video_validation",
    "egocentric_navigation": "vlnqa",
}
#: the official full-length folders of the pre-cut ones; their items' start/end bounds apply
FULL_LENGTH = {"star/Charades_segment": "star/Charades_v1_480", "sta/sta_video_segment": "sta/sta_video"}
POST_PROMPT = "Only give the best option.\n"


def mvbench_prompt(question: str, candidates: list[str]) -> str:
    options = "".join(f"({LETTERS[i]}) {c}\n" for i, c in enumerate(candidates))
    return "Question:" + question + "\nOption:\n" + options + POST_PROMPT


class MVBench(PublishedBenchmark):
    name = "mvbench"
    tasks = tuple(DATA_LIST)
    layout = "DIR/json/<task>.json and DIR/video/<task folder>/<video> (OpenGVLab/MVBench, unzipped)"
    headline = HeadlineRule(
        over="tasks",
        skip_unanswered=True,
        text="mean of the 20 task accuracies, each over the questions with a non-empty answer; lmms-eval "
        "reports the tasks one by one (its mvbench group sets no aggregate) and papers print their mean",
    )
    generation = Generation(max_new_tokens=16)

    def parse(self, item: VideoQAItem, response: str, rng: random.Random) -> Parsed:
        # mcq_acc compares mvbench_normalise(response) with mvbench_normalise(right letter) = the letter
        return Parsed(mvbench_normalise(response))

    def load(self) -> list[VideoQAItem]:
        json_dir = self.require(self.root / "json", "the annotation folder json/")
        present = [t for t in self.tasks if (json_dir / f"{t}.json").is_file()]
        if not present:
            raise UserError(
                f"{self.name}: no task file (e.g. action_antonym.json) in '{json_dir}'; expected {self.layout}"
            )
        video_root = self.root / "video" if (self.root / "video").is_dir() else self.root
        per_task = [self._task_items(task, json_dir / f"{task}.json", video_root) for task in present]
        # Round-robin over tasks, so that --limit N samples every task.
        return [i for group in zip_longest(*per_task) for i in group if i is not None]

    def _task_items(self, task: str, path: Path, video_root: Path) -> list[VideoQAItem]:
        folder, bounded = video_root / DATA_LIST[task], False
        if not folder.is_dir() and DATA_LIST[task] in FULL_LENGTH:
            folder, bounded = video_root / FULL_LENGTH[DATA_LIST[task]], True
        if not folder.is_dir():
            raise UserError(
                f"{self.name}: videos of task '{task}' not found: no folder '{video_root / DATA_LIST[task]}'; "
                f"unzip the MVBench video archives into '{video_root}' (or remove json/{task}.json)"
            )
        items = []
        for n, doc in enumerate(read_annotations(path)):
            candidates = [str(c) for c in doc["candidates"]]
            if doc["answer"] not in candidates:
                raise UserError(f"{path}: item {n} has answer {doc['answer']!r} outside its candidates")
            items.append(
                VideoQAItem(
                    item_id=f"{task}/{n}",
                    task=task,
                    question=doc["question"],
                    options=tuple(candidates),
                    answer=candidates.index(doc["answer"]),
                    video=None,
                    video_path=str(find_video(folder, doc["video"])),
                    start=float(doc["start"]) if bounded and "start" in doc else None,
                    end=float(doc["end"]) if bounded and "end" in doc else None,
                    prompt=mvbench_prompt(doc["question"], candidates),
                )
            )
        return items
