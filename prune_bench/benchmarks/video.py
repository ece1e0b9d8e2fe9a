"""Reading and writing video files.

:func:`load_video` samples ``num_frames`` frames uniformly over the whole video, as lmms-eval does
for LLaVA-OneVision (``np.linspace(0, total - 1, num_frames, dtype=int)``), with decord when it is
installed and PyAV otherwise. :func:`write_mp4` writes H.264 (yuv420p) MP4 files with PyAV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from prune_bench.errors import UserError

Backend = Literal["auto", "decord", "av"]


@dataclass(frozen=True)
class LoadedVideo:
    """Sampled frames (uint8 ``[T, H, W, 3]``), the file's frame rate and length, and which frames."""

    frames: torch.Tensor
    fps: float
    total_frames: int
    indices: tuple[int, ...]
    backend: str


def uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """lmms-eval's uniform sampling: ``num_frames`` indices from first to last frame (repeats if short)."""
    return np.linspace(0, total - 1, num_frames, dtype=int)


def _have_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def load_video(path: str | os.PathLike[str], num_frames: int, backend: Backend = "auto") -> LoadedVideo:
    """Decode ``num_frames`` uniformly spaced frames of the video at ``path``.

    ``backend="auto"`` uses decord when it imports and PyAV otherwise. A missing, empty or
    undecodable file raises :class:`UserError`.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"video '{path}' does not exist; check the path (or the benchmark's --data-dir)")
    if num_frames < 1:
        raise UserError(f"num_frames must be at least 1, got {num_frames}")
    use = backend
    if use == "auto":
        use = "decord" if _have_decord() else "av"
    try:
        video = _load_decord(p, num_frames) if use == "decord" else _load_av(p, num_frames)
    except UserError:
        raise
    except Exception as exc:  # decoders raise their own error types for broken files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(
            f"could not decode video '{path}' with {use} ({first}); re-encode it, e.g. "
            f"ffmpeg -i '{path}' -c:v libx264 -pix_fmt yuv420p fixed.mp4"
        ) from None
    return video


def _load_decord(path: Path, num_frames: int) -> LoadedVideo:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    total = len(reader)
    if total == 0:
        raise UserError(f"video '{path}' has no frames; re-encode it or remove it from the benchmark")
    idx = uniform_indices(total, num_frames)
    frames = reader.get_batch(idx.tolist()).asnumpy()
    fps = float(reader.get_avg_fps())
    reader.seek(0)  # works around decord's memory growth after get_batch (decord #197)
    del reader
    return LoadedVideo(
        torch.from_numpy(np.ascontiguousarray(frames)), fps, total, tuple(idx.tolist()), "decord"
    )


def _load_av(path: Path, num_frames: int) -> LoadedVideo:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise UserError(f"'{path}' has no video stream; pass a video file")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 0.0)
        claimed = int(stream.frames or 0)
        if claimed > 0:
            wanted = uniform_indices(claimed, num_frames)
            keep = set(wanted.tolist())
            got: dict[int, np.ndarray] = {}
            count = 0
            for i, frame in enumerate(container.decode(stream)):
                count = i + 1
                if i in keep:
                    got[i] = frame.to_ndarray(format="rgb24")
            if count == claimed:
                frames = np.stack([got[i] for i in wanted.tolist()])
                return LoadedVideo(torch.from_numpy(frames), fps, count, tuple(wanted.tolist()), "av")
    # the container's frame count is missing or wrong: decode everything, then sample
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        every = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    if not every:
        raise UserError(f"video '{path}' has no frames; re-encode it or remove it from the benchmark")
    wanted = uniform_indices(len(every), num_frames)
    frames = np.stack([every[i] for i in wanted.tolist()])
    return LoadedVideo(torch.from_numpy(frames), fps, len(every), tuple(wanted.tolist()), "av")


def write_mp4(
    frames: torch.Tensor | np.ndarray, path: str | os.PathLike[str], fps: float = 8.0, crf: int = 12
) -> Path:
    """Write uint8 ``[T, H, W, 3]`` frames as an H.264 (yuv420p) MP4; height and width must be even."""
    import av

    array = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise UserError(
            f"write_mp4 expects uint8 frames shaped [T, H, W, 3], got {array.dtype} {array.shape}"
        )
    t, h, w, _ = array.shape
    if h % 2 or w % 2:
        raise UserError(f"H.264 needs even frame sizes, got {h}x{w}; resize or crop the frames first")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), mode="w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for i in range(t):
            for packet in stream.encode(av.VideoFrame.from_ndarray(array[i], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out
