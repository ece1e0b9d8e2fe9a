"""The video a speed run measures: rendered scenes, noise, or the user's own file.

``speed`` times every strategy at a real architecture's shape with random weights, so the video is
the one thing that decides how many segments or windows a segment-based method forms (HieraVid's
segmenter, FastVID's DySeg, PruneVid's clusters, HoliTom's windows, FlashVID's segments), and with
them the cost of its per-segment selection: a greedy DPP over one segment makes every pick in
sequence, over eight segments an eighth of them in a batch.

* ``scenes`` (the default): a clip with scene structure drawn by the synthetic benchmark's renderer
  (:mod:`prune_bench.benchmarks.synthetic.render`): ``scenes`` scenes of (nearly) equal length, hard
  cuts between them, each a flat background of its own palette colour with a few still objects and
  one larger object moving across it; deterministic by seed.
* ``noise``: uniform random pixels, every frame independent: the named single-segment worst case
  (below: a random tower at a real shape maps it to near-identical tokens).
* a file (``--video``): decoded by the project's own decoder (:func:`~prune_bench.benchmarks.video.
  load_video`, uniform sampling) at the requested frame count.

Whichever it is, the frames go through the adapter's own preprocessing and random-weight tower
(:meth:`Adapter.pixels`, :meth:`Adapter.encode_ids`), exactly as in an evaluation.

What a random-weight tower does to scene structure. Measured on the CPU at llava-onevision-7b's shape
(SigLIP so400m, projector and pooling at their real shape, fp32, 32 frames, 8 scenes), it maps every
token close to one direction: the tokens of one frame have a mean cosine similarity of 0.993, the
same position in consecutive frames 0.99-1.00 inside a scene and still 0.66-0.95 across a cut. The
ordering survives, so the segmenters that cut at the least similar transitions find the scenes
(FastVID 8 segments, FlashVID 8, PruneVid 8, HoliTom 4), but HieraVid's absolute thresholds (a new
segment where fewer than 40 % of the tokens have similarity above 0.6 to the previous frame) see ONE
segment. Hence the feature treatment ``centred``: the video's visual tokens minus their mean over the
video, each rescaled to the norm it had, a shift of every visual token by the same vector computed
from the tower's own output (nothing is drawn). On the same clip the tokens then have 0.95-1.00
inside a scene and -0.57 to 0.74 across a cut: HieraVid forms 5 segments (the two cuts between
similar backgrounds stay above its thresholds), FastVID 8, FlashVID 8, PruneVid 7, HoliTom 8.
``tower`` hands the stages the tower's output unchanged. ``centred`` is the default for scenes and
a file, ``tower`` for noise: through the same tower noise gives 0.88-0.92 between frames, and
HieraVid 1 segment, HoliTom 1, PruneVid 2, FastVID and FlashVID their minimum of 8 (centred, noise
would be a segment every frame). Centring amplifies whatever differs inside a video, so a clip of
one scene, centred, gives the frame-level segmenters its motion as cuts (FastVID a segment a frame
at the tiny test shape) while HieraVid still forms one. At the tiny test shapes the raw tower keeps
noise apart (a segment most frames); the ``segments`` column always says what each method formed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from prune_bench.benchmarks.synthetic.render import backgrounds, draw, palette, scene_index
from prune_bench.benchmarks.synthetic.vocab import BACKGROUND_COLOURS, OBJECT_COLOURS, SHAPES
from prune_bench.errors import UserError

if TYPE_CHECKING:
    from prune_bench.adapters.base import Adapter, EncodedSample

#: the named inputs of ``speed --input``
INPUTS: tuple[str, ...] = ("scenes", "noise")
#: what the stages get: the tower's output as is, or centred (see the module docstring)
FEATURES: tuple[str, ...] = ("centred", "tower")
#: scenes of the ``scenes`` input (8 over 32 frames: 4 frames a scene)
DEFAULT_SCENES = 8


def default_features(input_name: str) -> str:
    """``tower`` for noise (the single-segment worst case), ``centred`` for scenes and files."""
    return "tower" if input_name == "noise" else "centred"


def scene_clip(
    num_frames: int, size: int, *, scenes: int = DEFAULT_SCENES, clutter: int = 4, seed: int = 0
) -> torch.Tensor:
    """uint8 ``[T, size, size, 3]``: ``scenes`` scenes (at most one a frame) with hard cuts between them.

    Each scene has its own background colour (distinct while the palette lasts), ``clutter`` still
    objects (texture the tokens of a frame can tell apart) and one larger object moving in a straight
    line across it, whose shape and colour differ from the previous scene's.
    """
    if num_frames < 1 or scenes < 1:
        raise UserError(f"a scene clip needs at least one frame and one scene, got {num_frames} and {scenes}")
    g = torch.Generator().manual_seed(seed)
    k = min(scenes, num_frames)
    scene = scene_index(torch.tensor([k]), num_frames)[0]  # [T]
    n_bg, n_obj, n_shape = len(BACKGROUND_COLOURS), len(OBJECT_COLOURS), len(SHAPES)
    bg = torch.cat([torch.randperm(n_bg, generator=g) for _ in range(-(-k // n_bg))])[:k]
    canvas = backgrounds(bg[None], scene[None], size)  # [1, T, S, S, 3]
    objects = palette("object", "cpu")
    first = torch.searchsorted(scene, torch.arange(k))  # each scene's first frame
    length = torch.bincount(scene, minlength=k)
    progress = (torch.arange(num_frames) - first[scene]).float() / (length[scene] - 1).clamp_min(1).float()
    still_r, moving_r = max(1.5, size / 14), max(2.0, size / 8)
    for i in range(k):  # a handful of scenes and objects: each draw is vectorised over the frames
        visible = (scene == i)[None]
        for j in range(clutter + 1):
            r = still_r if j < clutter else moving_r
            a, b = (r + torch.rand(2, 2, generator=g) * (size - 2 * r)).unbind(0)  # start, end (x, y)
            if j == clutter:  # the moving object: consecutive scenes never share its shape or colour
                shape = torch.tensor([(i + int(bg[0])) % n_shape])
                colour = objects[(3 * i + int(bg[0])) % n_obj]
                path = a + (b - a) * progress[:, None]  # [T, 2]
            else:
                shape = torch.randint(n_shape, (1,), generator=g)
                colour = objects[int(torch.randint(n_obj, (1,), generator=g))]
                path = a.expand(num_frames, 2)  # still: one mask for the whole clip
            draw(canvas, shape, colour[None], path[None, :, 0], path[None, :, 1], torch.tensor([r]), visible)
    return canvas[0]


def noise_clip(num_frames: int, size: int, *, seed: int = 0) -> torch.Tensor:
    """uint8 ``[T, size, size, 3]`` of independent uniform random pixels (no structure at all)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num_frames, size, size, 3), generator=g, dtype=torch.uint8)


def video_clip(path: str | Path, num_frames: int) -> torch.Tensor:
    """``num_frames`` frames of the video at ``path``, sampled uniformly by the project's decoder; a
    missing or undecodable file is one :class:`UserError` line."""
    from prune_bench.benchmarks.video import load_video

    return load_video(path, num_frames).frames


def input_frames(
    input_name: str, num_frames: int, size: int, *, scenes: int = DEFAULT_SCENES, seed: int = 0
) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` of a named input (``scenes``, ``noise``) or of a video file (any other
    name is a path)."""
    if input_name == "scenes":
        return scene_clip(num_frames, size, scenes=scenes, seed=seed)
    if input_name == "noise":
        return noise_clip(num_frames, size, seed=seed)
    return video_clip(input_name, num_frames)


def centre_visual_features(sample: EncodedSample) -> EncodedSample:
    """``sample`` with its visual tokens minus their mean over the video, each rescaled to the norm it
    had: the same shift for every visual token, so what differs between tokens is what the stages
    compare (text and newline tokens are left as they are)."""
    state = sample.state
    vis = state.visual_index
    x = state.hidden[vis].float()
    centred = x - x.mean(dim=0, keepdim=True)
    scale = x.norm(dim=-1, keepdim=True) / centred.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    hidden = state.hidden.clone()
    hidden[vis] = (centred * scale).to(hidden.dtype)
    return replace(sample, state=state.with_hidden(hidden))


def speed_sample(
    adapter: Adapter,
    frames: torch.Tensor,
    text_tokens: int,
    *,
    features: str,
    capture_vision: bool,
    seed: int = 0,
) -> EncodedSample:
    """``frames`` through the adapter's preprocessing and tower inside a synthetic prompt of
    ``text_tokens`` random ids (:func:`~prune_bench.adapters.synthetic.synthetic_sample`), the visual
    tokens treated as ``features`` says; ``encode_ms`` is the tower's time alone."""
    from prune_bench.adapters.synthetic import synthetic_sample

    if features not in FEATURES:
        raise UserError(f"unknown feature treatment '{features}'; choose {' or '.join(FEATURES)}")
    sample = synthetic_sample(
        adapter, frames.shape[0], text_tokens, capture_vision=capture_vision, seed=seed, frames=frames
    )
    return centre_visual_features(sample) if features == "centred" else sample
