"""The speed run's video: rendered scenes, noise, a file; centred features; the segments it gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prune_bench.adapters.base import Adapter
from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.benchmarks.video import write_mp4
from prune_bench.errors import UserError
from prune_bench.runner.speed import segments_formed
from prune_bench.runner.speed_input import (
    centre_visual_features,
    input_frames,
    noise_clip,
    scene_clip,
    speed_sample,
    video_clip,
)
from prune_bench.session import Session

#: the strategies whose pre-LLM stages record temporal segments in ``TokenState.segment``
SEGMENTERS = ("hieravid", "fastvid", "prunevid", "holitom", "flashvid")


@pytest.fixture(scope="module")
def tiny() -> Adapter:
    return LlavaOnevisionAdapter.tiny(num_layers=8)


def _change(clip: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels that differ from the previous frame, per transition."""
    return (clip[1:] != clip[:-1]).any(dim=-1).float().mean(dim=(1, 2))


def test_scene_clip_cuts_between_its_scenes_and_changes_little_inside_one() -> None:
    clip = scene_clip(32, 64, scenes=8)
    assert clip.shape == (32, 64, 64, 3) and clip.dtype == torch.uint8
    change = _change(clip)
    cuts = torch.arange(4, 32, 4) - 1  # transition t -> t + 1 where frame t + 1 opens a scene
    inside = torch.ones(31, dtype=torch.bool)
    inside[cuts] = False
    assert change[cuts].min() > 0.5 and change[inside].max() < 0.1
    assert torch.equal(clip, scene_clip(32, 64, scenes=8)) and not torch.equal(
        clip, scene_clip(32, 64, seed=1)
    )


def test_scene_clip_of_one_scene_has_no_cut_and_more_scenes_than_frames_is_one_a_frame() -> None:
    assert _change(scene_clip(16, 64, scenes=1)).max() < 0.1
    assert _change(scene_clip(4, 64, scenes=9)).min() > 0.5
    with pytest.raises(UserError, match="at least one frame and one scene"):
        scene_clip(8, 64, scenes=0)


def test_noise_clip_is_deterministic_and_independent_frame_to_frame() -> None:
    clip = noise_clip(4, 32)
    assert clip.shape == (4, 32, 32, 3) and torch.equal(clip, noise_clip(4, 32))
    assert _change(clip).min() > 0.9


def test_a_video_file_is_decoded_at_the_frame_count_asked(tmp_path: Path) -> None:
    path = write_mp4(scene_clip(24, 64, scenes=3), tmp_path / "clip.mp4", fps=8)
    frames = video_clip(path, 6)
    assert frames.shape == (6, 64, 64, 3) and frames.dtype == torch.uint8
    assert torch.equal(input_frames(str(path), 6, 384), frames)  # any other name is a path, at its own size


def test_a_missing_or_corrupt_video_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist") as missing:
        video_clip(tmp_path / "absent.mp4", 8)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 64)
    with pytest.raises(UserError, match="could not decode") as corrupt:
        video_clip(broken, 8)
    assert "\n" not in str(missing.value) and "\n" not in str(corrupt.value)


def test_centring_removes_the_direction_every_visual_token_shares(tiny: Adapter) -> None:
    sample = speed_sample(tiny, scene_clip(8, 64, scenes=2), 12, features="tower", capture_vision=False)
    state = sample.state
    vis = state.visual_index
    g = torch.Generator().manual_seed(0)
    # tokens that are one large common vector plus small distinct parts: nearly parallel as given
    common = 50 * torch.randn(state.hidden.shape[1], generator=g)
    hidden = state.hidden.clone()
    hidden[vis] = common + torch.randn(vis.numel(), hidden.shape[1], generator=g)
    given = sample.__class__(**{**sample.__dict__, "state": state.with_hidden(hidden)})
    out = centre_visual_features(given).state.hidden

    def mean_cos(x: torch.Tensor) -> float:
        n = torch.nn.functional.normalize(x, dim=-1)
        return float((n @ n.T).mean())

    assert mean_cos(hidden[vis]) > 0.99 and abs(mean_cos(out[vis])) < 0.05
    torch.testing.assert_close(out[vis].norm(dim=-1), hidden[vis].norm(dim=-1))
    text = torch.ones(len(state), dtype=torch.bool)
    text[vis] = False
    assert torch.equal(out[text], hidden[text])


def test_speed_sample_keeps_the_towers_time_and_refuses_an_unknown_treatment(tiny: Adapter) -> None:
    clip = scene_clip(8, 64, scenes=2)
    sample = speed_sample(tiny, clip, 12, features="centred", capture_vision=True)
    assert sample.frames == 8 and sample.encode_ms > 0 and sample.vision is not None
    with pytest.raises(UserError, match="choose centred or tower"):
        speed_sample(tiny, clip, 12, features="whitened", capture_vision=False)


def _segments(adapter: Adapter, name: str, features: str, *, scenes: int = 8) -> dict[str, int | None]:
    clip = input_frames(name, 32, max(adapter.frame_size), scenes=scenes)
    sample = speed_sample(adapter, clip, 16, features=features, capture_vision=True)
    return {s: segments_formed(Session(adapter, s, keep=0.3, num_frames=32), sample) for s in SEGMENTERS}


@pytest.mark.filterwarnings("ignore::UserWarning")  # budget warnings of the per-frame strategies
def test_rendered_scenes_with_centred_features_form_several_segments_in_every_segmenter(
    tiny: Adapter,
) -> None:
    counts = _segments(tiny, "scenes", "centred")
    assert all(n is not None and 1 < n <= 32 for n in counts.values()), counts
    assert counts["hieravid"] is not None and counts["hieravid"] >= 4, counts
    # the tiny tower's own tokens hide most cuts from HieraVid's thresholds: what centring is for
    tower = _segments(tiny, "scenes", "tower")
    assert tower["hieravid"] is not None and tower["hieravid"] < counts["hieravid"], (tower, counts)


def test_one_scene_with_centred_features_is_one_hieravid_segment(tiny: Adapter) -> None:
    sample = speed_sample(tiny, scene_clip(32, 64, scenes=1), 16, features="centred", capture_vision=False)
    assert segments_formed(Session(tiny, "hieravid", keep=0.3, num_frames=32), sample) == 1


def test_a_strategy_without_segments_reports_none(tiny: Adapter) -> None:
    sample = speed_sample(tiny, scene_clip(8, 64), 12, features="centred", capture_vision=False)
    assert segments_formed(Session(tiny, "random", keep=0.3, num_frames=8), sample) is None
    assert segments_formed(Session(tiny, "none", num_frames=8), sample) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_at_a_real_shape_the_random_tower_hides_the_scenes_and_centring_restores_them() -> None:
    from prune_bench.adapters.configs import llava_onevision_7b_config

    adapter = LlavaOnevisionAdapter.from_config(llava_onevision_7b_config(), device="cuda")
    assert _segments(adapter, "noise", "tower")["hieravid"] == 1  # the single-segment worst case
    assert _segments(adapter, "scenes", "tower")["hieravid"] == 1  # the towers' tokens hide the cuts
    # measured on the CPU at this shape (fp32): 5 of the 8 scenes; two cuts between similar
    # backgrounds stay above HieraVid's thresholds
    assert (_segments(adapter, "scenes", "centred")["hieravid"] or 0) >= 4
