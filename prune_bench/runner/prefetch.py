"""Frames decoded ahead of the model: while the model runs on one item, worker processes decode the
videos of the next ones.

:func:`frames_in_order` hands the items' frames back one by one, in the items' order, whatever order
the workers finish in, so what the run records, skips and shards is exactly what it would be without
workers. At most ``AHEAD`` items per worker are decoded ahead (bounded memory). A video the worker
cannot decode comes back as that item's failure (its one-line reason), the same failure the run records
without workers. A worker that dies (a decoder crashing on a file, the out-of-memory killer) or an item
that decodes for longer than ``PRUNE_BENCH_DECODE_TIMEOUT`` seconds ends the run with one line; the
records written so far are kept and the same command continues.

Why a ``concurrent.futures`` process pool rather than torch's DataLoader: each item is one future, so a
decode error is that item's own exception and a dead worker is reported when the loop asks for the
frames; the DataLoader's SIGCHLD handler raises a dead worker's error asynchronously, in the middle of
whatever the main thread runs, where the per-item failure path would blame the item on the model. The
frames come back pickled through a pipe, which a small ``/dev/shm`` (containers' 64 MB default) does
not limit. Workers start from a clean ``forkserver`` (no fork of a process holding CUDA or threads)
and exit when the run's process is gone.

In-memory items (the synthetic benchmark's) have nothing to decode: their frames are taken in this
process, with or without workers, and no worker starts for a run that has only such items.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from prune_bench.errors import RunIncomplete, UserError
from prune_bench.session import SampledFrames, item_frames

if TYPE_CHECKING:
    from prune_bench.benchmarks.base import VideoQAItem
    from prune_bench.benchmarks.frame_cache import FrameCache

#: what makes one item fail without stopping the run (an unreadable video; in the model, out of memory)
ITEM_ERRORS: tuple[type[BaseException], ...] = (UserError, RuntimeError, ValueError, OSError)
#: items decoded ahead per worker
AHEAD = 2
TIMEOUT_ENV = "PRUNE_BENCH_DECODE_TIMEOUT"
DEFAULT_TIMEOUT_S = 900.0
MOST_DEFAULT_WORKERS = 4


def default_workers(device: str) -> int:
    """With the model on a GPU, ``min(4, CPUs - 1)``, the CPUs this process may use shared among the
    ranks of a data-parallel job on this host (one core stays with the process that drives the model).
    With the model on the CPU, 0: its own threads already use every core, and a worker decoding beside
    them slows it more than it saves (reports/throughput.md)."""
    if not str(device).startswith("cuda"):
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(0, min(MOST_DEFAULT_WORKERS, cpus // local_ranks - 1))


def decode_timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r} (e.g. 900)")
    return value


@dataclass(frozen=True)
class Frames:
    """One item's frames, or why they could not be read, and how long the loop waited for them."""

    item: VideoQAItem
    frames: SampledFrames | None
    error: BaseException | None
    wait_s: float


def is_file_backed(item: VideoQAItem) -> bool:
    return item.video is None and item.video_path is not None


def _decode(
    item: VideoQAItem, num_frames: int, sample_fps: float | None, cache: FrameCache | None
) -> tuple[np.ndarray, tuple[int, ...], str, str]:
    """In a worker: the item's frames as a numpy array (pickled through the pipe, no shared memory)."""
    got = item_frames(item, num_frames, sample_fps=sample_fps, cache=cache)
    return got.frames.numpy(), got.indices, got.decoder, got.sampling


def _start_worker() -> None:
    torch.set_num_threads(1)  # the decoders' threads are the workers; torch here only wraps arrays
    parent = os.getppid()

    def exit_when_orphaned() -> None:  # the run's process was killed: do not decode on for nobody
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=exit_when_orphaned, daemon=True, name="prune-bench-orphan-watch").start()


def _context() -> Any:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    # nothing preloaded: a worker forked from a server that imported torch could inherit its thread
    # pool's locks (OpenMP is not fork-safe); each worker imports what it needs itself
    return multiprocessing.get_context("forkserver")


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now, also one stuck in a decode (which ``shutdown`` alone would wait for)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    # taken before shutdown, which forgets them (``_processes = None``): a worker left alive in a
    # decode would keep the interpreter from exiting (concurrent.futures joins its manager thread)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


def _here(item: VideoQAItem, num_frames: int, sample_fps: float | None, cache: FrameCache | None) -> Frames:
    """The item's frames taken in this process, when the loop asks for them."""
    started = time.perf_counter()
    try:
        frames, error = item_frames(item, num_frames, sample_fps=sample_fps, cache=cache), None
    except ITEM_ERRORS as exc:
        frames, error = None, exc
    return Frames(item, frames, error, time.perf_counter() - started)


def frames_in_order(
    items: Sequence[VideoQAItem],
    num_frames: int,
    *,
    sample_fps: float | None = None,
    cache: FrameCache | None = None,
    workers: int = 0,
) -> Generator[Frames, None, None]:
    """Each of ``items``' frames, in order: decoded by ``workers`` processes ahead of the caller, or
    here, when asked (``workers=0``, today's path). A decode error is the item's ``error``."""
    files = [item for item in items if is_file_backed(item)]
    if workers <= 0 or not files:
        for item in items:
            yield _here(item, num_frames, sample_fps, cache)
        return
    timeout = decode_timeout_s()
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(files)), mp_context=_context(), initializer=_start_worker
    )
    pending: deque[Future[tuple[np.ndarray, tuple[int, ...], str, str]]] = deque()
    queued = iter(files)

    def top_up() -> None:
        while len(pending) < workers * AHEAD:
            item = next(queued, None)
            if item is None:
                return
            pending.append(pool.submit(_decode, item, num_frames, sample_fps, cache))

    finished = False
    try:
        top_up()
        for item in items:
            if not is_file_backed(item):
                yield _here(item, num_frames, sample_fps, cache)
                continue
            started = time.perf_counter()
            frames: SampledFrames | None = None
            error: BaseException | None = None
            future = pending.popleft()
            top_up()
            if not wait([future], timeout=timeout).done:
                raise RunIncomplete(
                    f"the video of item {item.item_id} ({item.video_path}) was still decoding after "
                    f"{timeout:g} s; the records so far are kept: check the file, or raise "
                    f"{TIMEOUT_ENV}, and re-run the same command to continue"
                )
            try:
                array, indices, decoder, sampling = future.result()
                frames = SampledFrames(torch.from_numpy(array), indices, decoder, sampling)
            except BrokenProcessPool as exc:
                raise RunIncomplete(
                    f"a frame-decoding worker died ({exc or 'killed'}) while the videos from item "
                    f"{item.item_id} on were decoding; the records so far are kept: re-run the same "
                    "command to continue (--workers 0 decodes in this process, to find a video that "
                    "crashes the decoder)"
                ) from None
            except ITEM_ERRORS as exc:
                error = exc
            yield Frames(item, frames, error, time.perf_counter() - started)
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # stopped early: an error, Ctrl-C, a run-ending failure
            _stop(pool)
