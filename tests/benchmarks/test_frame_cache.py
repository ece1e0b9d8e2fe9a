"""The decoded-frame cache: the same frames as decoding, invalidated by a changed file, bounded in size
(least recently used first), stored without pickle, emptied by ``prune-bench cache clear``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from prune_bench.benchmarks import video
from prune_bench.benchmarks.frame_cache import FrameCache, FrameCacheWarning
from prune_bench.benchmarks.video import load_video, write_mp4
from prune_bench.errors import UserError


def _video(path: Path, shade: int = 0, frames: int = 16, size: int = 32) -> Path:
    ramp = torch.arange(frames, dtype=torch.uint8).mul(12).add(shade)
    return write_mp4(ramp[:, None, None, None].expand(frames, size, size, 3).contiguous(), path, fps=8)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding fails the test: frames must come from the cache."""

    def refuse(*args: object) -> None:
        raise AssertionError("a video was decoded")

    monkeypatch.setattr(video, "_load_decord", refuse)
    monkeypatch.setattr(video, "_load_av", refuse)


def test_a_hit_returns_the_decoded_frames_without_decoding(tmp_path: Path, monkeypatch) -> None:
    path = _video(tmp_path / "v.mp4")
    cache = FrameCache.open(tmp_path / "cache")
    decoded = load_video(path, 6, cache=cache, start=0.5, end=1.5)
    assert cache.usage().entries == 1
    with monkeypatch.context() as m:
        m.setattr(video, "_load_decord", lambda *a: pytest.fail("decoded again"))
        m.setattr(video, "_load_av", lambda *a: pytest.fail("decoded again"))
        again = load_video(path, 6, cache=cache, start=0.5, end=1.5)
    assert torch.equal(again.frames, decoded.frames) and again.frames.dtype == torch.uint8
    assert (again.indices, again.fps, again.total_frames) == (
        decoded.indices,
        decoded.fps,
        decoded.total_frames,
    )
    assert (again.backend, again.decoder) == (decoded.backend, decoded.decoder)
    assert torch.equal(decoded.frames, load_video(path, 6, start=0.5, end=1.5).frames)  # as without a cache


def test_another_sampling_rule_or_frame_count_is_a_miss(tmp_path: Path) -> None:
    path = _video(tmp_path / "v.mp4")
    cache = FrameCache.open(tmp_path / "cache")
    load_video(path, 6, cache=cache)
    load_video(path, 8, cache=cache)
    load_video(path, 6, cache=cache, sample_fps=2.0)
    load_video(path, 6, cache=cache, start=1.0)
    assert cache.usage().entries == 4


def test_a_changed_file_is_decoded_again(tmp_path: Path) -> None:
    path = _video(tmp_path / "v.mp4", shade=0)
    cache = FrameCache.open(tmp_path / "cache")
    first = load_video(path, 6, cache=cache)
    _video(path, shade=100)  # the same name, other content
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a newer mtime even on coarse clocks
    second = load_video(path, 6, cache=cache)
    assert not torch.equal(first.frames, second.frames)
    assert torch.equal(second.frames, load_video(path, 6).frames)


def test_the_size_bound_evicts_the_least_recently_used(tmp_path: Path) -> None:
    paths = [_video(tmp_path / f"v{i}.mp4", shade=20 * i) for i in range(3)]
    one = load_video(paths[0], 6).frames.numel()  # bytes of one entry's frames (uint8)
    cache = FrameCache(tmp_path / "cache", max_bytes=int(2.5 * (one + 1024)))  # two entries fit, not three
    cache.dir.mkdir()
    load_video(paths[0], 6, cache=cache)
    load_video(paths[1], 6, cache=cache)
    past = time.time() - 100
    os.utime(cache._path(_key(cache, paths[0])), (past, past))
    os.utime(cache._path(_key(cache, paths[1])), (past + 10, past + 10))
    assert cache.get(_key(cache, paths[0])) is not None  # v0 used again: v1 is now the oldest
    load_video(paths[2], 6, cache=cache)
    left = {p.name for p in paths if cache._path(_key(cache, p)).exists()}
    assert left == {"v0.mp4", "v2.mp4"}
    assert cache.usage().bytes <= cache.max_bytes


def _key(cache: FrameCache, path: Path) -> str:
    decoder = video.decoder_version("decord" if video._have_decord() else "av")
    return cache.key(path, num_frames=6, sample_fps=None, start=None, end=None, decoder=decoder)


def test_entries_are_safetensors_of_uint8_without_pickle(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    path = _video(tmp_path / "v.mp4")
    cache = FrameCache.open(tmp_path / "cache")
    decoded = load_video(path, 6, cache=cache)
    (entry,) = cache.dir.glob("frames-*.safetensors")
    arrays = load_file(str(entry))
    assert set(arrays) == {"frames"} and arrays["frames"].dtype.name == "uint8"
    assert (arrays["frames"] == decoded.frames.numpy()).all()
    assert not list(cache.dir.glob(".*.tmp"))  # written through a temporary file, renamed whole


def test_a_damaged_entry_is_a_miss_and_is_written_again(tmp_path: Path, no_decoding) -> None:
    path = _video(tmp_path / "v.mp4")
    cache = FrameCache.open(tmp_path / "cache")
    key = _key(cache, path)
    cache._path(key).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{torn")
    assert cache.get(key) is None and not cache._path(key).exists()


def test_an_unusable_cache_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file; pass a directory as --frame-cache"):
        FrameCache.open(tmp_path / "file")
    with pytest.raises(UserError, match="--frame-cache-gb must be a positive size"):
        FrameCache.open(tmp_path / "c", max_gb=0)


def test_a_full_disk_is_a_warning_and_the_frames_still_come(tmp_path: Path, monkeypatch) -> None:
    import safetensors.numpy

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    cache = FrameCache.open(tmp_path / "cache")
    with pytest.warns(FrameCacheWarning, match="No space left on device"):
        got = load_video(_video(tmp_path / "v.mp4"), 6, cache=cache)
    assert got.frames.shape[0] == 6 and cache.usage().entries == 0


def test_cache_clear_removes_the_entries_and_nothing_else(tmp_path: Path) -> None:
    from prune_bench.cli.main import cli

    cache = FrameCache.open(tmp_path / "cache")
    for i in range(2):
        load_video(_video(tmp_path / f"v{i}.mp4", shade=i), 6, cache=cache)
    (cache.dir / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["cache", "info", str(cache.dir)])
    assert result.exit_code == 0 and "2 decoded video(s)" in result.output
    result = CliRunner().invoke(cli, ["cache", "clear"], env={"PRUNE_BENCH_FRAME_CACHE": str(cache.dir)})
    assert result.exit_code == 0 and "removed 2 decoded video(s)" in result.output
    assert cache.usage().entries == 0 and (cache.dir / "notes.txt").read_text() == "mine"


def _videomme(root: Path, n: int) -> Path:
    """A local copy of Video-MME (lmms-eval's layout) with ``n`` short generated videos."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = [
        {
            "video_id": f"{i:03d}", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
            "url": "https://example.invalid", "videoID": f"v{i:03d}", "question_id": f"{i:03d}-1",
            "task_type": "Counting Problem", "question": f"How many stars {i}?",
            "options": ["A. one", "B. two", "C. three", "D. four"], "answer": "ABCD"[i % 4],
        }
        for i in range(n)
    ]  # fmt: skip
    for i in range(n):
        _video(root / "data" / f"v{i:03d}.mp4", shade=9 * i)
    (root / "videomme").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "videomme" / "test-00000-of-00001.parquet")
    return root


def _compare(*args: str) -> list[dict[str, object]]:
    from prune_bench.cli.main import main
    from prune_bench.runner.store import ResultStore

    try:
        main(
            ["compare", "random", "--frames", "8", "--keep", "0.5", "--device", "cpu", "--no-progress", *args]
        )
    except SystemExit as exc:
        assert not exc.code, f"exit code {exc.code}"
    out = Path(args[args.index("--out") + 1])
    return [
        {k: v for k, v in r.items() if k != "timings_ms"} for r in ResultStore(out, read_only=True).records()
    ]


def test_a_second_run_reads_every_frame_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    root = _videomme(tmp_path / "videomme", n=3)
    common = ["--benchmark", "videomme", "--data-dir", str(root), "--workers", "0"]
    monkeypatch.setenv("PRUNE_BENCH_FRAME_CACHE", str(tmp_path / "cache"))
    first = _compare(*common, "--out", str(tmp_path / "first"))
    assert FrameCache(tmp_path / "cache", 0).usage().entries == 3
    for name in ("_load_decord", "_load_av"):
        monkeypatch.setattr(video, name, lambda *a: pytest.fail("decoded again"))
    assert _compare(*common, "--out", str(tmp_path / "second")) == first
