"""The evaluation loop: items x sessions (strategy configurations), resumable through the results store.

Each item is encoded once (vision tower, projector, prompt) and every session runs on that encoding;
a session that already has a record for the item is skipped, so re-running the same command continues
where a killed run stopped. Plans, encoding and answering are the sessions' (prune_bench.session);
this module only orders the work and writes records. The items' frames come from
:func:`prune_bench.runner.prefetch.frames_in_order` (decoded ahead by worker processes, or here), and
the run's throughput (:mod:`prune_bench.runner.throughput`) is returned and added to its manifest.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from prune_bench.adapters.base import Adapter, AnswerResult
from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.published.scoring import ScoreFn, score_by_logits
from prune_bench.core.flops import LMShape
from prune_bench.core.ledger import flops_record
from prune_bench.runner.prefetch import ITEM_ERRORS, frames_in_order, is_file_backed
from prune_bench.runner.store import ResultStore
from prune_bench.runner.throughput import Throughput
from prune_bench.session import EncodedItem, Session

if TYPE_CHECKING:
    from prune_bench.benchmarks.frame_cache import FrameCache


def manifest(adapter: Adapter, context: dict[str, Any]) -> dict[str, Any]:
    from prune_bench.kernels import DPP_ENV

    device = adapter.device
    from prune_bench.core.plugins import registry

    packages = {
        p: _version(p) for p in ("prune-bench", "torch", "transformers", "pluggy", "pydantic", "triton")
    }
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "packages": packages,
        "plugins": registry().plugins(),
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": str(adapter.model.dtype),
        "kernel_env": {k: v for k, v in os.environ.items() if k in (DPP_ENV, "TRITON_INTERPRET")},
        **context,
    }


def one_line(exc: BaseException) -> str:
    """An exception as the one line a failure record and the terminal show."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except Exception:
        return "not installed"


def record_for(
    item: VideoQAItem,
    session: Session,
    config_hash: str,
    result: AnswerResult,
    shape: LMShape,
    encoded: EncodedItem | None = None,
) -> dict[str, Any]:
    """One result line. ``encoded`` adds the sampled frame indices, the decoder and the prompt used
    (newer fields; readers must not expect them in older records)."""
    record: dict[str, Any] = {
        "config_hash": config_hash,
        "item_id": item.item_id,
        "task": item.task,
        "strategy": session.label,
        "keep": session.keep,
        "unit": session.unit,
        "mode": session.mode,
        "choice": result.choice,
        "answer": item.answer,
        "correct": result.choice == item.answer,
        "retention": result.retention.as_dict(),
        "visual_per_layer": [c.visual for c in result.counts],
        "total_visual": result.total_visual,
        "flops": flops_record(shape, result.counts, result.total_visual),
        "timings_ms": result.timings_ms,
    }
    if result.kernels:
        record["kernels"] = result.kernels  # the path each hand-written kernel ran as
    if item.groups:
        record["groups"] = dict(item.groups)
    if encoded is not None:
        record["frames"] = encoded.frames.describe()
        record["prompt"] = encoded.prompt
    return record


@dataclass
class Evaluation:
    """What a run returns: the items it could not evaluate (``{"item_id", "task", "error"}``, one line
    each) and how fast it went."""

    failures: list[dict[str, str]] = field(default_factory=list)
    throughput: Throughput = field(default_factory=lambda: Throughput(workers=0).finish())


def evaluate(
    sessions: Sequence[Session],
    items: Sequence[VideoQAItem] | Iterable[VideoQAItem],
    store: ResultStore,
    context: dict[str, Any],
    *,
    show_progress: bool = True,
    sample_fps: float | None = None,
    run_info: dict[str, Any] | None = None,
    done: Callable[[str, str], bool] | None = None,
    write_manifest: bool = True,
    job_progress: tuple[int, Callable[[], int]] | None = None,
    skip: frozenset[str] = frozenset(),
    workers: int = 0,
    frame_cache: FrameCache | None = None,
    score: ScoreFn | None = None,
) -> Evaluation:
    """Run every session on every item, skipping what ``store`` already holds.

    ``context`` is part of every configuration's identity (its hash); ``run_info`` (device, item count,
    ...) only goes into this run's manifest entry.

    The sessions share one adapter and one frame count. With ``sample_fps`` an item may get fewer
    frames; each session then runs the plan it builds for the frames the item has.

    An item whose video cannot be read, or that fails in the model (out of memory, say), does not stop
    the run: it is returned among the failures (``{"item_id", "task", "error"}``, one line each) and the
    next item runs. Items in ``skip`` (earlier failures, unless retried) are not run.

    ``workers`` processes decode the next items' videos while the model runs (0: each is decoded here
    when its turn comes); ``frame_cache`` keeps decoded frames across runs. Neither changes a record.
    ``score`` answers an item and names its scoring in the record (default: option logits; a published
    benchmark's generate-and-parse is benchmarks/published/scoring.py's).

    Data-parallel ranks (runner/distributed.py) pass ``done`` (what any shard of the directory already
    holds), ``write_manifest=False`` except on rank 0, and on rank 0 ``job_progress`` = (records of the
    whole job, a poll of how many of them are finished), so its one bar shows the whole job.
    """
    if not sessions:
        return Evaluation()
    failures: list[dict[str, str]] = []
    first = sessions[0]
    adapter = first.adapter
    if any(s.adapter is not adapter or s.num_frames != first.num_frames for s in sessions):
        raise ValueError("sessions evaluated together must share one adapter and one frame count")
    hashes = [s.hash(context) for s in sessions]
    capture = any(s.needs_vision for s in sessions)
    shape = LMShape.from_config(adapter.config.text_config)
    items = list(items)
    is_done = done or store.done
    if write_manifest:
        store.write_manifest(
            {
                **manifest(adapter, context),
                **(run_info or {}),
                "configs": {h: s.describe(context) for h, s in zip(hashes, sessions, strict=True)},
            }
        )
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        total, poll = job_progress or (len(items) * len(sessions), None)
        bar = progress.add_task("evaluating", total=total)

        def advance(n: int = 1) -> None:
            if poll is None:
                progress.advance(bar, n)
            else:  # the whole job, as the poll counts it (every rank's shard)
                progress.update(bar, completed=min(total, poll()))

        # what each item still needs, decided before any frame is decoded: the workers decode exactly
        # these items' videos, in this order
        def needs(item: VideoQAItem) -> list[int]:
            return [i for i, h in enumerate(hashes) if not is_done(h, item.item_id)]

        plan = [(item, [] if item.item_id in skip else needs(item)) for item in items]
        work = [item for item, todo in plan if todo]
        # in-memory frames (the synthetic benchmark's) need no decoding: no worker starts for them
        throughput = Throughput(workers=workers if any(is_file_backed(i) for i in work) else 0)
        frames = frames_in_order(
            work,
            first.num_frames,
            sample_fps=sample_fps,
            cache=frame_cache,
            workers=workers,
        )
        try:
            for item, todo in plan:
                advance(len(sessions) - len(todo))
                if not todo:
                    continue
                got = next(frames)
                throughput.waited(got.wait_s)
                written = 0
                try:
                    if got.error is not None:
                        raise got.error
                    started = time.perf_counter()
                    encoded = first.encode_item(item, capture_vision=capture, frames=got.frames)
                    throughput.busy_s += time.perf_counter() - started
                    for i in todo:
                        started = time.perf_counter()
                        result, scored = (score or score_by_logits)(sessions[i], encoded, item)
                        throughput.busy_s += time.perf_counter() - started
                        record = record_for(item, sessions[i], hashes[i], result, shape, encoded)
                        store.append({**record, **scored})
                        written += 1
                        advance()
                except ITEM_ERRORS as exc:
                    # a bad video, an out-of-memory item: recorded as this item's failure; the run goes on
                    failures.append({"item_id": item.item_id, "task": item.task, "error": one_line(exc)})
                    advance(len(todo) - written)
                    if adapter.device.type == "cuda":
                        torch.cuda.empty_cache()
        finally:
            frames.close()  # the workers stop with the loop, however it ends
    throughput.finish()
    if write_manifest:
        store.update_manifest({"throughput": throughput.as_dict()})
    return Evaluation(failures, throughput)
