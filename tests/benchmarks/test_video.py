"""MP4 round trip through load_video (decord and PyAV), and readable errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prune_bench.benchmarks import video as video_mod
from prune_bench.benchmarks.synthetic import SyntheticVideoQA
from prune_bench.benchmarks.video import load_video, write_mp4
from prune_bench.errors import UserError

BACKENDS = ["av"] + (["decord"] if video_mod._have_decord() else [])


@pytest.fixture(scope="module")
def item_mp4(tmp_path_factory: pytest.TempPathFactory):
    """One synthetic item in memory and the same item written as an MP4."""
    mem = SyntheticVideoQA(num_items=3, num_frames=16, seed=5).items()[2]
    disk = SyntheticVideoQA(
        num_items=3, num_frames=16, seed=5, data_dir=tmp_path_factory.mktemp("mp4")
    ).items()[2]
    return mem, disk


@pytest.mark.parametrize("backend", BACKENDS)
def test_mp4_round_trip(item_mp4, backend: str) -> None:
    mem, disk = item_mp4
    assert disk.video is None and disk.video_path and Path(disk.video_path).is_file()
    loaded = load_video(disk.video_path, 16, backend=backend)  # type: ignore[arg-type]
    assert loaded.frames.shape == mem.video.shape and loaded.frames.dtype == torch.uint8
    assert loaded.total_frames == 16 and loaded.indices == tuple(range(16))
    assert (loaded.frames.float() - mem.video.float()).abs().mean() < 6.0


def test_uniform_sampling_like_lmms_eval(tmp_path: Path) -> None:
    frames = (
        torch.arange(10, dtype=torch.uint8).mul(25)[:, None, None, None].expand(10, 32, 32, 3).contiguous()
    )
    path = write_mp4(frames, tmp_path / "ramp.mp4")
    loaded = load_video(path, 4, backend="av")
    assert loaded.indices == (0, 3, 6, 9)


def test_pyav_fallback_when_decord_is_missing(item_mp4, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_mod, "_have_decord", lambda: False)
    assert load_video(item_mp4[1].video_path, 8).backend == "av"


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_video(tmp_path / "nope.mp4", 8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_file_is_a_user_error(tmp_path: Path, backend: str) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(UserError, match="could not decode") as err:
        load_video(bad, 8, backend=backend)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
