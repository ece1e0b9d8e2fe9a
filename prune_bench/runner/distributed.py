"""Data-parallel evaluation on PyTorch's own engine: ``torchrun --nproc-per-node N -m prune_bench compare``.

torchrun starts N processes and tells each its place (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; its
rendezvous does the same across nodes with ``--nnodes`` and ``--rdzv-endpoint``). Evaluation needs no
tensor traffic between ranks, so the process group is gloo, used only to coordinate: a bounded barrier
and one gather of each rank's status at the end.

* Items are sharded by rank, interleaved (``items[rank::world]``), so every task is spread over ranks.
* Each rank loads the model on its own device (``cuda:LOCAL_RANK``), encodes each of its items once for
  all configurations, and appends to its own shard of the store, ``results.rank<R>.jsonl`` (its own
  lock). A record already anywhere in the directory (the merged file or any shard, from a run with any
  N) is never recomputed: resume works per shard and across a change of N.
* At the end every rank reaches one barrier that waits at most ``PRUNE_BENCH_DIST_TIMEOUT`` seconds
  (default 1800): a rank that died is named instead of leaving the others hanging. Rank 0 then merges
  the shards into ``results.jsonl`` (records not already there, one per (configuration, item)), removes
  them, and prints the summary; a rank that failed is one line naming the rank and its item.
* Progress: one bar, on rank 0, for the whole job (it counts the records in every shard).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from prune_bench.errors import UserError
from prune_bench.runner.store import RESULTS, ResultStore

TIMEOUT_ENV = "PRUNE_BENCH_DIST_TIMEOUT"
SHARD_PREFIX = "rank"


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun job (``world == 1``: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> str | None:
        return f"{SHARD_PREFIX}{self.rank}" if self.distributed else None

    @classmethod
    def from_env(cls) -> Ranks:
        """What torchrun (or accelerate, which sets the same variables) says; one process otherwise."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise UserError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc})") from None
        if world < 1 or not 0 <= rank < world:
            raise UserError(f"RANK={rank} is not a rank of WORLD_SIZE={world}; launch with torchrun")
        return cls(rank, world, local)

    def device(self, device: str) -> str:
        """Each rank on its own GPU: ``cuda`` becomes ``cuda:LOCAL_RANK`` (an explicit index is kept)."""
        if self.distributed and device == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def items(self, items: list[Any]) -> list[Any]:
        """This rank's share, interleaved so that every task is spread over the ranks."""
        return items[self.rank :: self.world]


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "1800")
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise UserError(f"{TIMEOUT_ENV} must be positive, got {raw!r}")
    return value


def init(ranks: Ranks) -> None:
    """Join torchrun's process group (gloo: only coordination travels between ranks)."""
    import torch.distributed as dist

    if not ranks.distributed or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:
        raise UserError("WORLD_SIZE > 1 without MASTER_ADDR: launch data-parallel runs with torchrun")
    dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s()))


def finish(ranks: Ranks, status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's ``status`` (``{"rank", "error", "item"}``), gathered on every rank after a barrier
    that waits at most :func:`timeout_s`; a rank that never arrives is one error line naming it."""
    import torch.distributed as dist

    if not ranks.distributed:
        return [status]
    timeout = timedelta(seconds=timeout_s())
    try:
        dist.monitored_barrier(timeout=timeout, wait_all_ranks=True)
        statuses: list[Any] = [None] * ranks.world
        dist.all_gather_object(statuses, status)
    except RuntimeError as exc:  # gloo names the ranks that did not reach the barrier
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"rank {ranks.rank}: another rank stopped before the end ({first}); finished records are "
            "kept: re-run the same command to finish"
        ) from None
    return [s for s in statuses if s is not None]


def shutdown(ranks: Ranks) -> None:
    """Leave the process group together: a last bounded barrier (rank 0 has merged by then), so that
    no rank tears its connections down while another still uses them."""
    import torch.distributed as dist

    if not ranks.distributed or not dist.is_initialized():
        return
    with contextlib.suppress(RuntimeError):  # a rank is gone: nothing left to wait for
        dist.monitored_barrier(timeout=timedelta(seconds=timeout_s()), wait_all_ranks=True)
    dist.destroy_process_group()


def shard_paths(directory: Path) -> list[Path]:
    """The rank shards in a results directory, from a run with any number of ranks."""
    return sorted(
        p
        for p in directory.glob(f"{RESULTS}.{SHARD_PREFIX}*.jsonl")
        if p.name.count(".") == 2 and p.name[len(RESULTS) + 1 + len(SHARD_PREFIX) : -6].isdigit()
    )


def _shard_store(path: Path) -> ResultStore:
    return ResultStore(path.parent, shard=path.name[len(RESULTS) + 1 : -6], read_only=True)


def done_everywhere(directory: Path) -> Callable[[str, str], bool]:
    """``done(config_hash, item_id)`` over the merged file and every shard: what any earlier run, with
    any number of ranks, already finished."""
    stores = [ResultStore(directory, read_only=True), *(_shard_store(p) for p in shard_paths(directory))]
    finished = {(r["config_hash"], r["item_id"]) for s in stores for r in s.records()}
    return lambda config_hash, item_id: (config_hash, item_id) in finished


def records_everywhere(directory: Path) -> Iterator[dict[str, Any]]:
    for path in shard_paths(directory):
        yield from _shard_store(path).records()


def count_everywhere(directory: Path) -> int:
    """Records in the shards now (for rank 0's progress bar)."""
    total = 0
    for path in shard_paths(directory):
        try:
            with path.open("rb") as f:
                total += sum(1 for _ in f)
        except OSError:
            continue
    return total


def merge_shards(directory: Path) -> int:
    """Rank 0, after the barrier: append every shard record that ``results.jsonl`` lacks (one per
    (configuration, item)), then remove the shards. Returns how many records were added."""
    shards = shard_paths(directory)
    if not shards:
        return 0
    added = 0
    with ResultStore(directory) as store:
        for path in shards:
            for record in _shard_store(path).records():
                if not store.done(record["config_hash"], record["item_id"]):
                    store.append(record)
                    added += 1
    for path in shards:  # only once every record is in the merged file, on disk
        for leftover in (path, path.with_suffix(".lock")):
            leftover.unlink(missing_ok=True)
    return added


class ProgressPoll:
    """Rank 0's view of the whole job: the records every shard holds, read at most every ``every`` s."""

    def __init__(self, directory: Path, every: float = 2.0) -> None:
        self.directory, self.every = directory, every
        self._at, self._count = 0.0, 0

    def __call__(self) -> int:
        now = time.monotonic()
        if now - self._at >= self.every:
            self._at, self._count = now, count_everywhere(self.directory)
        return self._count
