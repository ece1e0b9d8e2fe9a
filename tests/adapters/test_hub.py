"""A hub id runs from the local Hugging Face cache, or fails in one line at once (no retry storm)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from prune_bench.adapters.loading import DEFAULT_MODEL_DIR


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HF_HUB_OFFLINE", None)
    env.update(
        HF_HUB_CACHE=str(tmp_path / "hub"),
        HF_HOME=str(tmp_path / "hf"),
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing listens there: "offline" at once, not after a timeout
        **extra,
    )
    return env


def _compare(tmp_path, model: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-c", "from prune_bench.cli.main import main; main()",
            "compare", "none", "--model", model, "--limit", "1", "--frames", "2", "--device", "cpu",
            "--out", str(tmp_path / "r"), "--no-progress",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(tmp_path, **env),
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "cannot reach the Hugging Face Hub to fetch 'someorg/somemodel'"),
        ({"HF_HUB_OFFLINE": "1"}, "is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    ],
)
def test_an_uncached_hub_id_without_network_is_one_line_at_once(tmp_path, env, message):
    proc = _compare(tmp_path, "someorg/somemodel", **env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Retry" not in proc.stderr
    assert not (tmp_path / "r" / "results.jsonl").exists()


def _cache_as_hub_snapshot(tmp_path, repo: str) -> None:
    """The shipped model laid out as the Hub's cache lays out a downloaded repository."""
    org, name = repo.split("/")
    root = tmp_path / "hub" / f"models--{org}--{name}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(DEFAULT_MODEL_DIR, root / "snapshots" / revision)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(revision)


def test_a_cached_hub_id_runs_from_the_cache_without_the_network(tmp_path):
    _cache_as_hub_snapshot(tmp_path, "someorg/cachedmodel")
    proc = _compare(tmp_path, "someorg/cachedmodel")
    assert proc.returncode == 0, proc.stderr
    assert "Retry" not in proc.stderr
    assert (tmp_path / "r" / "results.jsonl").stat().st_size > 0
