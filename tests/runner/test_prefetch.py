"""Frames decoded ahead by worker processes: the same records as without workers on a local copy of
Video-MME, a corrupt video in the middle is that item's failure, a dead or stuck worker is one line."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.video import write_mp4
from prune_bench.cli.main import main
from prune_bench.errors import RunIncomplete
from prune_bench.runner import prefetch
from prune_bench.runner.prefetch import frames_in_order
from prune_bench.runner.store import ResultStore
from prune_bench.session import item_frames

pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402

FAST = ["--frames", "8", "--keep", "0.5", "--device", "cpu", "--no-progress"]


def _video(path: Path, shade: int, frames: int = 16) -> None:
    ramp = torch.arange(frames, dtype=torch.uint8).mul(12).add(shade)
    write_mp4(ramp[:, None, None, None].expand(frames, 32, 32, 3).contiguous(), path, fps=8)


def zero_frame_data(path: Path) -> None:
    """Zero the coded frames of an mp4 and keep its header: it opens, then fails to decode."""
    raw = path.read_bytes()
    start, moov = raw.find(b"mdat") + 4, raw.find(b"moov") - 4
    assert 0 < start < moov
    path.write_bytes(raw[:start] + bytes(moov - start) + raw[moov:])


def make_videomme(root: Path, n: int = 5) -> Path:
    rows = []
    for i in range(n):
        vid = f"v{i:03d}"
        rows.append(
            {
                "video_id": f"{i:03d}", "duration": "short", "domain": "Knowledge",
                "sub_category": "Astronomy", "url": "https://example.invalid", "videoID": vid,
                "question_id": f"{i:03d}-1", "task_type": "Counting Problem",
                "question": f"How many stars {i}?", "options": ["A. one", "B. two", "C. three", "D. four"],
                "answer": "ABCD"[i % 4],
            }
        )  # fmt: skip
        _video(root / "data" / f"{vid}.mp4", shade=9 * i)
    (root / "videomme").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "videomme" / "test-00000-of-00001.parquet")
    return root


def _run(code: int, *args: str) -> None:
    try:
        main(list(args))
    except SystemExit as exc:
        assert (exc.code or 0) == code, f"exit code {exc.code}"
    else:
        assert code == 0


def _records(out: Path) -> list[dict[str, Any]]:
    """The records without their timings (the only field a run's speed changes), in written order."""
    return [
        {k: v for k, v in r.items() if k != "timings_ms"} for r in ResultStore(out, read_only=True).records()
    ]


@pytest.fixture(scope="module")
def videomme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_videomme(tmp_path_factory.mktemp("videomme"))


def test_records_with_workers_equal_records_without(videomme: Path, tmp_path: Path, capsys) -> None:
    common = ["compare", "random", *FAST, "--benchmark", "videomme", "--data-dir", str(videomme)]
    _run(0, *common, "--workers", "0", "--out", str(tmp_path / "w0"))
    _run(0, *common, "--workers", "2", "--out", str(tmp_path / "w2"))
    without, with_workers = _records(tmp_path / "w0"), _records(tmp_path / "w2")
    assert len(without) == 10 and with_workers == without
    printed = capsys.readouterr().out
    assert "throughput: 5 items in" in printed and "(2 decoding worker(s))" in printed
    (manifest,) = ResultStore(tmp_path / "w2", read_only=True).manifests()
    measured = manifest["throughput"]
    assert measured["items"] == 5 and measured["workers"] == 2
    assert 0 < measured["model_busy_fraction"] <= 1 and measured["items_per_s"] > 0
    assert 0 <= measured["first_frames_s"] <= measured["frame_wait_s"] < measured["wall_s"]


def test_resumed_run_with_workers_decodes_only_what_is_left(videomme: Path, tmp_path: Path, capsys) -> None:
    common = ["compare", "random", *FAST, "--benchmark", "videomme", "--data-dir", str(videomme)]
    out = tmp_path / "out"
    _run(0, *common, "--workers", "2", "--limit", "2", "--out", str(out))
    _run(0, *common, "--workers", "2", "--out", str(out))
    assert "throughput: 3 items in" in capsys.readouterr().out  # 2 of the 5 were there already
    _run(0, *common, "--workers", "0", "--out", str(tmp_path / "w0"))
    assert sorted(map(json.dumps, _records(out))) == sorted(map(json.dumps, _records(tmp_path / "w0")))


def test_a_corrupt_video_in_the_middle_is_that_items_failure_with_workers(tmp_path: Path, capsys) -> None:
    root = make_videomme(tmp_path / "videomme")
    zero_frame_data(root / "data" / "v002.mp4")  # its header reads; its frames do not decode
    out = tmp_path / "out"
    _run(1, "compare", "random", *FAST, "--benchmark", "videomme", "--data-dir", str(root),
         "--workers", "2", "--out", str(out))  # fmt: skip
    assert "1 item(s) could not be evaluated (first: 002-1: could not decode video" in capsys.readouterr().err
    assert {r["item_id"] for r in _records(out)} == {"000-1", "001-1", "003-1", "004-1"}
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["item_id"] == "002-1" and "v002.mp4" in failure["error"]


def _items(root: Path, n: int = 5) -> list[VideoQAItem]:
    return [
        VideoQAItem(f"i{i}", "t", "q", ("a", "b"), 0, None, video_path=str(root / "data" / f"v{i:03d}.mp4"))
        for i in range(n)
    ]


def test_frames_come_in_the_items_order_equal_to_decoding_here(videomme: Path) -> None:
    memory = VideoQAItem("m", "t", "q", ("a", "b"), 0, torch.zeros(4, 32, 32, 3, dtype=torch.uint8))
    items = _items(videomme)
    items.insert(2, memory)  # an in-memory item between file-backed ones
    got = list(frames_in_order(items, 6, workers=2))
    assert [g.item.item_id for g in got] == [i.item_id for i in items]
    for g in got:
        here = item_frames(g.item, 6)
        assert g.error is None and g.frames is not None
        assert torch.equal(g.frames.frames, here.frames) and g.frames.describe() == here.describe()


def test_a_decode_error_is_the_items_error_and_the_next_items_come(tmp_path: Path) -> None:
    root = make_videomme(tmp_path / "videomme", n=4)
    (root / "data" / "v001.mp4").write_bytes(b"not a video at all")
    got = list(frames_in_order(_items(root, 4), 6, workers=2))
    assert [g.error is None for g in got] == [True, False, True, True]
    assert "could not decode video" in str(got[1].error) and "v001.mp4" in str(got[1].error)


class ExitInWorker:
    """Stands in for the frame cache; its key kills the worker process that decodes (a decoder crash)."""

    def key(self, *args: object, **kwargs: object) -> str:
        os._exit(3)


class HangInWorker:
    """Stands in for the frame cache; its key never returns (a decoder stuck on a file)."""

    def key(self, *args: object, **kwargs: object) -> str:
        time.sleep(600)
        return ""


def test_a_dead_worker_is_one_line_naming_the_items(videomme: Path) -> None:
    with pytest.raises(RunIncomplete, match=r"a frame-decoding worker died .* from item i0 on"):
        list(frames_in_order(_items(videomme, 2), 6, workers=1, cache=ExitInWorker()))  # type: ignore[arg-type]


def test_a_stuck_worker_is_one_line_after_the_timeout_not_a_hang(
    videomme: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(prefetch.TIMEOUT_ENV, "2")
    started = time.perf_counter()
    with pytest.raises(RunIncomplete, match="item i0 .* was still decoding after 2 s"):
        list(frames_in_order(_items(videomme, 2), 6, workers=1, cache=HangInWorker()))  # type: ignore[arg-type]
    assert time.perf_counter() - started < 60


def test_default_workers_leave_a_core_to_the_model_and_none_beside_a_cpu_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert prefetch.default_workers("cuda") == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert prefetch.default_workers("cuda") == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert prefetch.default_workers("cuda") == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 ranks on this host share its 16 CPUs
    assert prefetch.default_workers("cuda") == 1
    assert prefetch.default_workers("cuda:3") == 1 and prefetch.default_workers("cpu") == 0


def test_a_bad_timeout_setting_is_one_line(videomme: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prune_bench.errors import UserError

    monkeypatch.setenv(prefetch.TIMEOUT_ENV, "soon")
    with pytest.raises(UserError, match="PRUNE_BENCH_DECODE_TIMEOUT must be a positive number"):
        list(frames_in_order(_items(videomme, 1), 6, workers=1))


def test_a_stuck_worker_does_not_keep_the_process_from_exiting(videomme: Path) -> None:
    """The stopped pool's workers are terminated, not only forgotten: concurrent.futures joins its
    manager thread at interpreter exit, so a worker left in a decode would hang the process there."""
    import subprocess
    import sys

    script = (
        f"import sys; from pathlib import Path; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_prefetch import HangInWorker, _items\n"
        "from prune_bench.errors import RunIncomplete\n"
        "from prune_bench.runner.prefetch import frames_in_order\n"
        "try:\n"
        f"    list(frames_in_order(_items(Path({str(videomme)!r}), 2), 6, workers=1, cache=HangInWorker()))\n"
        "except RunIncomplete:\n"
        "    print('stopped')\n"
    )
    env = {**os.environ, prefetch.TIMEOUT_ENV: "2"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0 and "stopped" in proc.stdout, proc.stderr
