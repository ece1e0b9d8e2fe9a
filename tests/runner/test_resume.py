"""Killing ``prune-bench compare`` with SIGKILL loses nothing finished; the re-run completes the rest,
computes no item twice, and ends with the same results as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prune_bench.training import ModelShape, TrainSettings, train_default_model

ARGS = [
    "compare",
    "random",
    "uniform",
    "--keep",
    "0.3",
    "--limit",
    "36",
    "--frames",
    "12",
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model")
    settings = TrainSettings(
        steps=1,
        minutes=None,
        batch_size=6,
        num_frames=12,
        eval_items=6,
        eval_random_keep=None,
        shape=ModelShape.tiny(),
    )
    train_default_model(out, settings, device="cpu", log=lambda _: None, show_progress=False)
    return out


def _cmd(model: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "prune_bench", *ARGS, "--model", str(model), "--out", str(out)]


def _records(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _comparable(records: list[dict]) -> dict:
    return {
        (r["config_hash"], r["item_id"]): (r["choice"], r["correct"], r["retention"], r["visual_per_layer"])
        for r in records
    }


def test_sigkill_then_rerun_matches_an_uninterrupted_run(model_dir, tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(model_dir, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    results = killed / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 20:
            break
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed; raise --limit")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(killed)
    assert 20 <= len(before) < 3 * 36

    subprocess.run(_cmd(model_dir, killed), check=True, capture_output=True, timeout=600)
    after = _records(killed)
    keys = [(r["config_hash"], r["item_id"]) for r in after]
    assert len(keys) == len(set(keys)) == 3 * 36, "an item was computed twice or is missing"
    assert after[: len(before)] == before, "finished records were rewritten"

    clean = tmp_path / "clean"
    subprocess.run(_cmd(model_dir, clean), check=True, capture_output=True, timeout=600)
    assert _comparable(after) == _comparable(_records(clean))
    manifests = json.loads((killed / "manifest.json").read_text())
    assert len(manifests) == 2 and manifests[0]["packages"]["torch"]
