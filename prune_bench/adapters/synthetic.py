"""Synthetic samples at a model's real shape, for speed work: scenes instead of noise, random text ids.

``Adapter.encode_synthetic`` is :func:`synthetic_sample` over the adapter's own video span, frame size
and plain-text vocabulary, so every adapter's synthetic prompt is built the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from prune_bench.adapters.base import Adapter, EncodedSample

#: text tokens before the video in a synthetic prompt (at most; half the text when it is shorter)
SYSTEM_PREFIX_TOKENS = 14


def synthetic_scenes(
    num_frames: int, size: int, generator: torch.Generator, frames_per_scene: int = 8
) -> torch.Tensor:
    """uint8 ``[T, size, size, 3]``: scenes of ``frames_per_scene`` frames, each a random smooth image
    held still with sensor noise and a square moving across it.

    Speed runs use it instead of pure noise so that methods exploiting temporal redundancy (HieraVid's
    segments, DyCoke's merging) meet the structure real videos have: a random-pixel video makes every
    frame its own segment and every token unique, which flatters some methods and penalises others.
    """
    scenes = (num_frames + frames_per_scene - 1) // frames_per_scene
    coarse = torch.rand(scenes, 3, 8, 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    video = images.repeat_interleave(frames_per_scene, dim=0)[:num_frames].clone()  # [T, 3, H, W]
    side = max(2, size // 8)
    for t in range(num_frames):  # a handful of frames: a Python loop over frames is fine here
        x = (t * size // max(1, num_frames)) % (size - side)
        video[t, :, size // 2 - side // 2 : size // 2 + side // 2, x : x + side] = 1.0
    video = video + 0.02 * torch.randn(video.shape, generator=generator)
    return (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def synthetic_sample(
    adapter: Adapter,
    num_frames: int,
    text_tokens: int,
    *,
    capture_vision: bool,
    seed: int = 0,
    frames: torch.Tensor | None = None,
) -> EncodedSample:
    """Square scenes at the adapter's larger frame side (or the uint8 ``frames`` given, ``[T, H, W, 3]``)
    and ``text_tokens`` random ids below its multimodal token ids: a system-prompt-like prefix, then
    the video span, then the question."""
    g = torch.Generator().manual_seed(seed)
    if frames is None:
        frames = synthetic_scenes(num_frames, max(adapter.frame_size), g)
    num_frames = frames.shape[0]
    text = torch.randint(0, adapter.plain_text_vocab, (text_tokens,), generator=g).tolist()
    split = min(SYSTEM_PREFIX_TOKENS, text_tokens // 2)
    ids = text[:split] + adapter.video_span(adapter.video_token_count(num_frames)) + text[split:]
    return adapter.encode_ids(ids, adapter.pixels(frames), None, capture_vision)
