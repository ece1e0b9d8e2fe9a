"""Reading every video's header before any model loads, so that empty and unreadable files are reported
up front (and recorded as those items' failures) instead of surfacing one by one mid-run.

A probe opens the container with PyAV and reads its stream headers only: no frame is decoded, so it
costs milliseconds per file. It cannot see damage further into a file (a cut-off tail of a file whose
index sits at its start); such an item still fails on its own when it is decoded, with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.native_stderr import native_reason, native_stderr_captured


def header_problem(path: str | Path) -> str | None:
    """Why the video at ``path`` cannot be read (one phrase), or None when its header is sound."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if size == 0:
        return "is empty (0 bytes)"
    import av

    with native_stderr_captured() as noise:
        try:
            with av.open(str(p)) as container:
                streams = container.streams.video
                problem = None if streams else "has no readable video stream (cut short, or not a video?)"
        except Exception as exc:  # PyAV raises its own error types for broken containers
            problem = f"is unreadable ({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]})"
    if problem is not None and noise and "unreadable" in problem:
        reason = native_reason(noise)
        if reason:
            problem = f"is unreadable ({reason})"
    return problem


def unreadable_items(items: Sequence[VideoQAItem], *, show_progress: bool = False) -> list[dict[str, str]]:
    """Failure entries (as ``failures.jsonl`` holds them) for the file-backed items whose video header
    cannot be read; each file is probed once however many questions share it."""
    from rich.progress import Progress

    paths = sorted({item.video_path for item in items if item.video_path is not None})
    problems: dict[str, str | None] = {}
    with Progress(transient=True, disable=not show_progress or len(paths) < 50) as progress:
        task = progress.add_task("reading video headers", total=len(paths))
        for path in paths:
            problems[path] = header_problem(path)
            progress.advance(task)
    return [
        {"item_id": item.item_id, "task": item.task, "error": f"video '{item.video_path}' {problem}"}
        for item in items
        if item.video_path is not None and (problem := problems[item.video_path]) is not None
    ]
