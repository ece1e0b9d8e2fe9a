"""The tiny task's functions, as lmms-eval's task YAML names them (``!function utils.<name>``).

The answer is read the way lmms-eval's Video-MME and MLVU read theirs (``extract_mcq_answer``, here
prune-bench's re-implementation, so the task needs nothing beyond prune-bench and lmms-eval).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prune_bench.benchmarks.published.parsing import extract_mcq_answer

LETTERS = "ABCDEFGH"


def video_dir() -> Path:
    """Where the clips are: $PRUNE_BENCH_TINY_VIDEOS, else ``videos/`` next to this file."""
    return Path(os.environ.get("PRUNE_BENCH_TINY_VIDEOS") or Path(__file__).parent / "videos")


def doc_to_visual(doc: dict[str, Any]) -> list[str]:
    path = video_dir() / doc["video"]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing; run examples/lmms_eval_tasks/tiny_mc_video/make_videos.py"
        )
    return [str(path)]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    kwargs = lmms_eval_specific_kwargs or {}
    options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(doc["options"]))
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}\n{options}{kwargs.get('post_prompt', '')}"


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    letter = extract_mcq_answer(results[0], LETTERS[: len(doc["options"])])
    return {
        "accuracy": {"question_id": doc["question_id"], "pred": letter, "correct": letter == doc["answer"]}
    }


def aggregate_accuracy(results: list[dict[str, Any]]) -> float:
    return 100.0 * sum(r["correct"] for r in results) / len(results) if results else 0.0
