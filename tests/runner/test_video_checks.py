"""Broken and short videos of a published benchmark, as a run meets them: headers are read before the
model loads (an empty or unreadable file is reported up front and recorded as that item's failure), the
native decoders' own noise never reaches the terminal, and videos shorter than --frames are warned about."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prune_bench.benchmarks.native_stderr import native_reason, native_stderr_captured
from prune_bench.benchmarks.probe import header_problem
from prune_bench.benchmarks.video import load_video, write_mp4
from prune_bench.errors import UserError

pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402


def _video(path: Path, frames: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.arange(frames, dtype=np.uint8)[:, None, None, None] * 12
    write_mp4(np.broadcast_to(ramp, (frames, 32, 32, 3)).copy(), path, fps=8)


def _egoschema(root: Path, frames: tuple[int, ...]) -> None:
    rows = [
        {
            "question_idx": f"q{n}",
            "question": f"What is C doing {n}?",
            "video_idx": f"clip{n}",
            "option": [f"{c}. option {c}" for c in "ABCDE"],
            "answer": str(n % 5),
        }
        for n in range(len(frames))
    ]
    for n, count in enumerate(frames):
        _video(root / "videos" / f"clip{n}.mp4", count)
    (root / "Subset").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "Subset" / "test-00000-of-00001.parquet")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from prune_bench.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def broken(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.mp4"
    _video(good)
    data = good.read_bytes()
    files = {"good": good, "empty": tmp_path / "empty.mp4", "cut": tmp_path / "cut.mp4", "junk": tmp_path / "junk.mp4"}
    files["empty"].write_bytes(b"")
    files["cut"].write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: cut off
    files["junk"].write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    return files


def test_header_problems_name_what_is_wrong(broken) -> None:
    assert header_problem(broken["good"]) is None
    assert header_problem(broken["empty"]) == "is empty (0 bytes)"
    assert header_problem(broken["cut"]) is not None and header_problem(broken["junk"]) is not None
    assert "No such file" in (header_problem(broken["good"].with_name("missing.mp4")) or "")


def test_decoding_a_broken_video_is_one_line_and_no_native_noise(broken, capfd) -> None:
    for name in ("empty", "cut", "junk"):
        with pytest.raises(UserError) as err:
            load_video(broken[name], 4)
        assert "\n" not in str(err.value) and broken[name].name in str(err.value)
    captured = capfd.readouterr()
    assert "moov atom" not in captured.err and "video_reader.cc" not in captured.err, captured.err


def test_native_stderr_is_captured_and_its_reason_kept() -> None:
    import os

    with native_stderr_captured() as lines:
        os.write(2, b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55e99d172640] moov atom not found\n")
    assert native_reason(lines) == "moov atom not found"
    assert native_reason(["[18:49:08] /src/video/video_reader.cc:83: ERROR opening: x.mp4"]) == (
        "ERROR opening: x.mp4"
    )


def test_unreadable_videos_are_reported_before_the_model_loads_and_recorded(tmp_path: Path) -> None:
    root = tmp_path / "ego"
    _egoschema(root, (16, 16, 16, 16))
    (root / "videos" / "clip1.mp4").write_bytes(b"")
    (root / "videos" / "clip2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 junk" * 10)
    out = tmp_path / "out"
    proc = _run("compare", "none", "--benchmark", "egoschema_subset", "--data-dir", str(root), "--frames", "4",
                "--out", str(out), "--no-progress", "--device", "cpu")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "moov atom" not in proc.stderr and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    warn = next(i for i, line in enumerate(lines) if "cannot be read" in line)
    model = next(i for i, line in enumerate(lines) if line.startswith("model:"))
    assert warn < model and "2 item(s)" in lines[warn]  # reported before the model loaded
    failed = {json.loads(x)["item_id"]: json.loads(x)["error"] for x in (out / "failures.jsonl").read_text().splitlines()}
    assert len(failed) == 2 and any("is empty (0 bytes)" in e for e in failed.values())
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_videos_shorter_than_the_frames_asked_are_warned_about(tmp_path: Path) -> None:
    root = tmp_path / "ego"
    _egoschema(root, (16, 3))
    proc = _run("compare", "none", "--benchmark", "egoschema_subset", "--data-dir", str(root), "--frames", "6",
                "--out", str(tmp_path / "out"), "--no-progress", "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # the console wraps long lines
    assert text.count("shorter than --frames 6") == 1, proc.stdout
    assert "1 item(s) have videos shorter than --frames 6 (first: q1, 3 distinct frames)" in text
    assert "pass --frames 3 to give every item distinct frames" in text
