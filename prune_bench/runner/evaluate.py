"""The evaluation loop: items x sessions (strategy configurations), resumable through the results store.

Each item is encoded once (vision tower, projector, prompt) and every session runs on that encoding;
a session that already has a record for the item is skipped, so re-running the same command continues
where a killed run stopped. Plans, encoding and answering are the sessions' (prune_bench.session);
this module only orders the work and writes records.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import version
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from prune_bench.adapters.base import Adapter, AnswerResult
from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.core.flops import LMShape
from prune_bench.core.ledger import flops_record
from prune_bench.errors import UserError
from prune_bench.runner.store import ResultStore
from prune_bench.session import EncodedItem, Session


def manifest(adapter: Adapter, context: dict[str, Any]) -> dict[str, Any]:
    from prune_bench.kernels import DPP_ENV

    device = adapter.device
    from prune_bench.core.plugins import registry

    packages = {p: _version(p) for p in ("prune-bench", "torch", "transformers", "pluggy", "pydantic", "triton")}
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
) -> list[dict[str, str]]:
    """Run every session on every item, skipping what ``store`` already holds.

    ``context`` is part of every configuration's identity (its hash); ``run_info`` (device, item count,
    ...) only goes into this run's manifest entry.

    The sessions share one adapter and one frame count. With ``sample_fps`` an item may get fewer
    frames; each session then runs the plan it builds for the frames the item has.

    An item whose video cannot be read, or that fails in the model (out of memory, say), does not stop
    the run: it is returned among the failures (``{"item_id", "task", "error"}``, one line each) and the
    next item runs. Items in ``skip`` (earlier failures, unless retried) are not run.

    Data-parallel ranks (runner/distributed.py) pass ``done`` (what any shard of the directory already
    holds), ``write_manifest=False`` except on rank 0, and on rank 0 ``job_progress`` = (records of the
    whole job, a poll of how many of them are finished), so its one bar shows the whole job.
    """
    failures: list[dict[str, str]] = []
    if not sessions:
        return failures
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

        for item in items:
            todo = [i for i, h in enumerate(hashes) if not is_done(h, item.item_id)]
            if item.item_id in skip:
                todo = []
            advance(len(sessions) - len(todo))
            if not todo:
                continue
            try:
                encoded = first.encode_item(item, sample_fps=sample_fps, capture_vision=capture)
                for i in todo:
                    result = sessions[i].answer(encoded.sample, item_id=item.item_id)
                    store.append(record_for(item, sessions[i], hashes[i], result, shape, encoded))
                    advance()
            except (UserError, RuntimeError, ValueError, OSError) as exc:
                # a bad video, an out-of-memory item: recorded as this item's failure; the run goes on
                failures.append({"item_id": item.item_id, "task": item.task, "error": one_line(exc)})
                advance(len(sessions))
                if adapter.device.type == "cuda":
                    torch.cuda.empty_cache()
    return failures
