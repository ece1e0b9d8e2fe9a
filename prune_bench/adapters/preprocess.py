"""Frames to the vision tower's input, as the Hugging Face processors prepare them (no model code here).

:func:`frames_to_pixels` resizes and normalises uint8 frames (every adapter's ``pixels``);
:func:`temporal_patches` flattens them into Qwen2-VL's patch rows, as its video processor does.
``frames_to_pixels`` is re-exported from :mod:`prune_bench.adapters.base`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from prune_bench.errors import UserError


def frames_to_pixels(
    frames: torch.Tensor,
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """uint8 frames ``[T, H, W, 3]`` -> normalised ``[T, 3, h, w]`` (``size``: ``h = w``, or ``(h, w)``):
    bicubic antialiased resizing when the size differs, then ``(x - mean) / std`` (SigLIP's and CLIP's
    preprocessing)."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise UserError(f"expected video frames shaped [T, H, W, 3], got {tuple(frames.shape)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    x = frames.to(device).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != hw:
        x = F.interpolate(x, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - m) / s).to(dtype)


def temporal_patches(
    pixels: torch.Tensor, temporal_patch: int, patch: int, merge: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[T, C, H, W]`` -> (``pixel_values_videos`` ``[L, C*tp*p*p]``, ``video_grid_thw`` ``[1, 3]``).

    Exactly the HF Qwen2-VL video processor's flattening: an odd last frame is repeated, then patches
    are ordered (frame pair, merged row, merged col, row in the merge unit, col in the merge unit).
    ``H`` and ``W`` must be multiples of ``patch * merge``.
    """
    if pixels.dim() != 4:
        raise UserError(f"expected pixels shaped [T, C, H, W], got {tuple(pixels.shape)}")
    tp, p, m = temporal_patch, patch, merge
    t, c, h, w = pixels.shape
    if h % (p * m) or w % (p * m):
        raise UserError(f"frames of {h}x{w} px are not multiples of {p * m}")
    if pad := -t % tp:
        pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
        t += pad
    gt, gh, gw = t // tp, h // p, w // p
    x = pixels.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gt * gh * gw, c * tp * p * p)
    return x, torch.tensor([[gt, gh, gw]], device=pixels.device)
