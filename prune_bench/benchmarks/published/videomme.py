"""Video-MME, without and with subtitles, as lmms-eval's ``videomme`` / ``videomme_w_subtitle`` run it.

Layout (``lmms-eval/Video-MME`` plus its cache folder): ``DIR/videomme/test-00000-of-00001.parquet``,
``DIR/data/<videoID>.mp4`` (``.MP4``/``.mkv`` too) and, for subtitles, ``DIR/subtitle/<videoID>.srt``.

Prompt (lmms-eval ``videomme_doc_to_text``, default kwargs): the instruction line, the question,
the options as given (``A. ...``), then ``\\nAnswer with the option's letter from the given choices
directly.``; with subtitles, ``This video's subtitles are listed below:`` and the subtitle lines
that cover one of 32 uniformly sampled frames (lmms-eval's ``frame_num: 32``; lines without
Video-MME's ``<font>`` markup are dropped, as lmms-eval drops them; a video without ``.srt`` gets
"No subtitles available"), then the same question ending in ``The best answer is:``. Score: accuracy over all
questions, broken down by duration (the ``task``), task type and domain.

Generation (lmms-eval ``videomme.yaml``): greedy, at most 16 new tokens, until ``"\\n\\n"``; the answer
is lmms-eval's ``extract_mcq_answer`` over the letters A-D (``videomme_process_results``).
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.published.common import (
    PublishedBenchmark,
    find_video,
    letter_index,
    read_annotations,
    split_lettered,
)
from prune_bench.benchmarks.published.parsing import Parsed, extract_mcq_answer
from prune_bench.benchmarks.published.scoring import Generation

INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video and the "
    "subtitles. Respond with only the letter (A, B, C, or D) of the correct option."
)
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
SUBTITLE_FRAMES = 32
_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')


def _seconds(stamp: str) -> float:
    h, m, rest = stamp.strip().split(":")
    s, ms = rest.split(",")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def subtitle_text(srt: Path, total_frames: int, fps: float, num_frames: int = SUBTITLE_FRAMES) -> str:
    """The subtitle lines shown at ``num_frames`` uniformly sampled frames (lmms-eval's selection)."""
    cues = []
    for block in srt.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) >= 3 and " --> " in lines[1]:
            a, b = lines[1].split(" --> ")
            cues.append((int(_seconds(a) * fps), int(_seconds(b) * fps), " ".join(lines[2:])))
    sampled = np.linspace(0, total_frames - 1, num_frames, dtype=int).tolist()
    shown = sorted({i for f in sampled for i, (a, b, _) in enumerate(cues) if a <= f < b})
    texts = [m[0] for i in shown if (m := _FONT.findall(cues[i][2]))]
    return "\n".join(texts)


class VideoMME(PublishedBenchmark):
    name = "videomme"
    tasks = ("short", "medium", "long")
    layout = "DIR/videomme/test-00000-of-00001.parquet and DIR/data/<videoID>.mp4 (lmms-eval/Video-MME)"
    group_keys = ("task_type", "domain")
    subtitles = False
    generation = Generation(max_new_tokens=16)

    def parse(self, item: VideoQAItem, response: str, rng: random.Random) -> Parsed:
        return Parsed(extract_mcq_answer(response, "ABCD"))

    def load(self) -> list[VideoQAItem]:
        path = self.annotation(["videomme/test-*.parquet", "videomme/test*.json*"], "the question file")
        videos = self.require(self.root / "data", "the video folder data/")
        if self.subtitles:
            self.require(self.root / "subtitle", "the subtitle folder subtitle/")
        items = []
        for doc in read_annotations(path):
            raw = [str(o) for o in doc["options"]]
            where = f"{path.name}: question {doc['question_id']}"
            items.append(
                VideoQAItem(
                    item_id=str(doc["question_id"]),
                    task=str(doc["duration"]),
                    question=doc["question"],
                    options=tuple(split_lettered(o) for o in raw),
                    answer=letter_index(doc["answer"], len(raw), where),
                    video=None,
                    video_path=str(find_video(videos, str(doc["videoID"]))),
                    prompt=INSTRUCTION + "\n" + doc["question"] + "\n" + "\n".join(raw) + "\n" + POST_PROMPT,
                    groups={"task_type": str(doc["task_type"]), "domain": str(doc["domain"])},
                    meta={"videoID": str(doc["videoID"])},
                )
            )
        return items


class VideoMMESubtitles(VideoMME):
    name = "videomme_w_subtitle"
    layout = (
        "DIR/videomme/test-00000-of-00001.parquet, DIR/data/<videoID>.mp4 and "
        "DIR/subtitle/<videoID>.srt (lmms-eval/Video-MME)"
    )
    subtitles = True

    def finish(self, item: VideoQAItem) -> VideoQAItem:
        from prune_bench.benchmarks.video import probe_video

        srt = self.root / "subtitle" / f"{item.meta['videoID']}.srt"
        text = "No subtitles available"  # lmms-eval's words when the video has no .srt
        if srt.is_file():
            text = subtitle_text(srt, *probe_video(item.video_path))  # type: ignore[arg-type]
        question = (item.prompt or "").removesuffix("\n" + POST_PROMPT)
        prompt = (
            "This video's subtitles are listed below: \n" + text + "\n" + question + "\nThe best answer is:"
        )
        return replace(item, prompt=prompt)
