"""Vectorised drawing of whole batches of videos: backgrounds per frame, shapes per frame.

Everything works on ``[n, T, ...]`` tensors on any device; there is no per-sample Python loop.
Coordinates are in pixels (pixel centres at ``i + 0.5``), ``y`` pointing down.
"""

from __future__ import annotations

import torch

from prune_bench.benchmarks.synthetic.vocab import BACKGROUND_COLOURS, OBJECT_COLOURS, SHAPES


def palette(kind: str, device: torch.device | str) -> torch.Tensor:
    """The object or background palette as uint8 ``[colours, 3]``."""
    table = OBJECT_COLOURS if kind == "object" else BACKGROUND_COLOURS
    return torch.tensor(list(table.values()), dtype=torch.uint8, device=device)


def scene_index(counts: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``[n, T]`` scene number of every frame: ``counts[i]`` scenes of (nearly) equal length."""
    t = torch.arange(num_frames, device=counts.device)
    return (t[None, :] * counts[:, None]) // num_frames


def backgrounds(bg_ids: torch.Tensor, scenes: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 canvas ``[n, T, S, S, 3]`` painted with each frame's scene colour.

    ``bg_ids`` ``[n, K]`` gives the background colour of each scene, ``scenes`` ``[n, T]`` the scene of
    each frame.
    """
    colours = palette("background", bg_ids.device)[bg_ids.gather(1, scenes)]  # [n, T, 3]
    n, t, _ = colours.shape
    return colours[:, :, None, None, :].expand(n, t, size, size, 3).clone()


def shape_mask(
    shape: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, radius: torch.Tensor, size: int
) -> torch.Tensor:
    """Boolean ``[n, T, S, S]``: pixels covered by shape ``shape[i]`` of half-size ``radius[i]``
    centred at ``(cx[i, t], cy[i, t])``."""
    coords = torch.arange(size, device=cx.device, dtype=torch.float32) + 0.5
    dx = coords[None, None, None, :] - cx[:, :, None, None]
    dy = coords[None, None, :, None] - cy[:, :, None, None]
    r = radius[:, None, None, None]
    ax, ay = dx.abs(), dy.abs()
    d2 = dx * dx + dy * dy
    masks = {
        "square": (ax <= r) & (ay <= r),
        "circle": d2 <= r * r,
        "triangle": (dy >= -r) & (dy <= r) & (ax <= (dy + r) / 2),
        "cross": ((ax <= r / 3) & (ay <= r)) | ((ay <= r / 3) & (ax <= r)),
        "ring": (d2 <= r * r) & (d2 >= (0.5 * r) ** 2),
    }
    out = torch.zeros((*cx.shape, size, size), dtype=torch.bool, device=cx.device)
    for i, name in enumerate(SHAPES):
        out |= masks[name] & (shape == i)[:, None, None, None]
    return out


def draw(
    canvas: torch.Tensor,
    shape: torch.Tensor,
    colour: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    radius: torch.Tensor,
    visible: torch.Tensor,
) -> torch.Tensor:
    """Paint one object per video onto ``canvas`` (in place and returned).

    ``colour`` is uint8 ``[n, 3]`` or ``[n, T, 3]``; ``cx``, ``cy`` are ``[n, T]``; ``visible`` is
    boolean ``[n, T]``.
    """
    size = canvas.shape[2]
    if cx.stride(1) == 0 and cy.stride(1) == 0:  # a static object: one mask a video, not one a frame
        mask = shape_mask(shape, cx[:, :1], cy[:, :1], radius, size).expand(-1, cx.shape[1], -1, -1)
    else:
        mask = shape_mask(shape, cx, cy, radius, size)
    mask = mask & visible[:, :, None, None]
    if colour.dim() == 2:
        colour = colour[:, None, :].expand(-1, canvas.shape[1], -1)
    paint = colour[:, :, None, None, :].expand_as(canvas)
    canvas.copy_(torch.where(mask[..., None], paint, canvas))
    return canvas
