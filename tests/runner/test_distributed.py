"""Data-parallel evaluation under torchrun (CPU, gloo): a multi-process run equals a single-process one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prune_bench.errors import UserError
from prune_bench.runner import distributed
from prune_bench.runner.distributed import Ranks
from prune_bench.runner.store import ResultStore

ARGS = ("compare", "random", "fastv", "--keep", "0.5", "--frames", "4", "--no-progress")


def _single(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prune_bench", *ARGS, *args], capture_output=True, text=True, timeout=300
    )


def _torchrun(n: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
         "-m", "prune_bench", *ARGS, *args],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def _records(out: Path) -> dict[tuple[str, str], dict]:
    records = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        r.pop("timings_ms")
        records[r["config_hash"], r["item_id"]] = r
    return records


def test_ranks_come_from_torchruns_variables_and_interleave_items(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ranks = Ranks.from_env()
    assert ranks.distributed and not ranks.is_main and ranks.shard == "rank1"
    assert ranks.items(list(range(8))) == [1, 4, 7]
    assert ranks.device("cuda") == "cuda:1" and ranks.device("cpu") == "cpu"
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(UserError, match="RANK=3 is not a rank of WORLD_SIZE=3"):
        Ranks.from_env()
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert not Ranks.from_env().distributed


def test_merging_shards_keeps_one_record_per_configuration_and_item(tmp_path: Path) -> None:
    def rec(h: str, item: str) -> dict:
        return {"config_hash": h, "item_id": item, "x": 1}

    with ResultStore(tmp_path) as main:
        main.append(rec("h", "a"))
    for shard, records in (("rank0", [rec("h", "a"), rec("h", "b")]), ("rank1", [rec("h", "c")])):
        with ResultStore(tmp_path, shard=shard) as store:
            for r in records:
                store.append(r)
    assert distributed.done_everywhere(tmp_path)("h", "c")
    assert distributed.merge_shards(tmp_path) == 2
    assert distributed.shard_paths(tmp_path) == []
    merged = [(r["config_hash"], r["item_id"]) for r in ResultStore(tmp_path, read_only=True).records()]
    assert sorted(merged) == [("h", "a"), ("h", "b"), ("h", "c")]


@pytest.mark.slow
def test_two_ranks_write_what_one_process_writes_and_resume_across_a_change_of_ranks(tmp_path: Path) -> None:
    single, multi = tmp_path / "single", tmp_path / "multi"
    one = _single("--limit", "6", "--out", str(single))
    assert one.returncode == 0, one.stderr
    # half the items with one process, then all of them with two: nothing finished is recomputed
    part = _single("--limit", "3", "--out", str(multi))
    assert part.returncode == 0, part.stderr
    before = (multi / "results.jsonl").read_text().splitlines()
    two = _torchrun(2, "--limit", "6", "--out", str(multi))
    assert two.returncode == 0, two.stderr
    after = (multi / "results.jsonl").read_text().splitlines()
    assert after[: len(before)] == before and len(after) == 18  # 3 configurations x 6 items
    assert _records(multi) == _records(single)  # identical records, timings aside
    assert not list(multi.glob("results.rank*"))  # shards merged and removed
    assert "merged 9 records from 2 ranks" in two.stdout
