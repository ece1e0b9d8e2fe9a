"""Reading and writing video files.

:func:`load_video` samples ``num_frames`` frames uniformly over the whole video, as lmms-eval does
for LLaVA-OneVision (``np.linspace(0, total - 1, num_frames, dtype=int)``), or at ``sample_fps``
frames per second (LLaVA-Video's rule: uniform ``num_frames`` instead when that gives more), within
optional ``start``/``end`` bounds in seconds (MVBench's bounded tasks), with decord when it is
installed and PyAV otherwise. The result names the exact frame indices and the decoder and its
version, so records say which pixels a model saw; with a :class:`~prune_bench.benchmarks.frame_cache.
FrameCache` the sampled frames are read from it when it holds them and stored in it when decoded.
:func:`write_mp4` writes H.264 (yuv420p) MP4 files with PyAV.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from prune_bench.benchmarks.native_stderr import native_reason, native_stderr_captured
from prune_bench.errors import UserError

if TYPE_CHECKING:
    from prune_bench.benchmarks.frame_cache import FrameCache

Backend = Literal["auto", "decord", "av"]


@dataclass(frozen=True)
class LoadedVideo:
    """Sampled frames (uint8 ``[T, H, W, 3]``), the file's frame rate and length, and which frames.

    ``backend`` is the decoder's name (``decord`` or ``av``), ``decoder`` its name and version.
    """

    frames: torch.Tensor
    fps: float
    total_frames: int
    indices: tuple[int, ...]
    backend: str
    decoder: str = ""


def uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """lmms-eval's uniform sampling: ``num_frames`` indices from first to last frame (repeats if short)."""
    return np.linspace(0, total - 1, num_frames, dtype=int)


def frame_indices(
    total: int,
    video_fps: float,
    num_frames: int,
    *,
    sample_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Which frames to decode: uniform ``num_frames``, or one every ``1/sample_fps`` seconds.

    ``start``/``end`` (seconds) restrict sampling to that span of the video when the frame rate is
    known. By rate, frames are taken at ``first, first + fps/sample_fps, ...``; if that gives more
    than ``num_frames`` (or none), uniform ``num_frames`` over the span are taken instead, as
    LLaVA-Video's loader does.
    """
    first, last = 0, total - 1
    if video_fps > 0 and (start is not None or end is not None):
        lo = round(start * video_fps) if start is not None else 0
        hi = round(end * video_fps) if end is not None else last
        first, last = max(0, min(lo, last)), max(0, min(hi, last))
        if last < first:
            first, last = last, first
    span = last - first + 1
    if sample_fps is not None and video_fps > 0:
        step = video_fps / sample_fps
        by_rate = np.arange(first, last + 1, step).round().astype(int)
        by_rate = by_rate[by_rate <= last]
        if 0 < len(by_rate) <= num_frames:
            return by_rate
    return first + uniform_indices(span, num_frames)


def decoder_version(backend: str) -> str:
    """``"decord 0.6.0"`` / ``"av 14.0.1"``: what a record names as the decoder of its frames."""
    try:
        module = __import__(backend)
    except ImportError:
        return f"{backend} (not installed)"
    return f"{backend} {getattr(module, '__version__', 'unknown')}"


def _have_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def load_video(
    path: str | os.PathLike[str],
    num_frames: int,
    backend: Backend = "auto",
    *,
    sample_fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    cache: FrameCache | None = None,
) -> LoadedVideo:
    """Decode the frames :func:`frame_indices` picks from the video at ``path``.

    ``backend="auto"`` uses decord when it imports and PyAV otherwise. A missing, empty or
    undecodable file raises :class:`UserError`. With ``cache``, frames it holds for this file (as it is
    now), rule and decoder are returned without decoding, and decoded ones are stored in it.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"video '{path}' does not exist; check the path (or the benchmark's --data-dir)")
    if num_frames < 1:
        raise UserError(f"num_frames must be at least 1, got {num_frames}")
    use = backend
    if use == "auto":
        use = "decord" if _have_decord() else "av"
    if sample_fps is not None and sample_fps <= 0:
        raise UserError(f"the sampling rate must be positive, got {sample_fps} frames per second")

    def pick(total: int, fps: float) -> np.ndarray:
        return frame_indices(total, fps, num_frames, sample_fps=sample_fps, start=start, end=end)

    key = None
    if cache is not None:
        key = cache.key(
            p,
            num_frames=num_frames,
            sample_fps=sample_fps,
            start=start,
            end=end,
            decoder=decoder_version(use),
        )
        hit = cache.get(key)
        if hit is not None:
            return hit
    noise: list[str] = []
    try:
        with native_stderr_captured() as noise:  # FFmpeg's and decord's own lines stay off the terminal
            video = _load_decord(p, pick) if use == "decord" else _load_av(p, pick)
    except UserError:
        raise
    except Exception as exc:  # decoders raise their own error types for broken files
        first = native_reason(noise) or _without_log_prefix(
            (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        )[:200]
        raise UserError(
            f"could not decode video '{path}' with {use} ({first}); re-encode it, e.g. "
            f"ffmpeg -i '{path}' -c:v libx264 -pix_fmt yuv420p fixed.mp4"
        ) from None
    video = replace(video, decoder=decoder_version(video.backend))
    if cache is not None and key is not None:
        cache.put(key, video)
    return video


Picker = Callable[[int, float], np.ndarray]


def _without_log_prefix(line: str) -> str:
    """decord's ``[18:49:08] /src/video/video_reader.cc:151: Check failed: ...`` as ``Check failed: ...``."""
    return native_reason([line]) or line


def _load_decord(path: Path, pick: Picker) -> LoadedVideo:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    total = len(reader)
    if total == 0:
        raise UserError(f"video '{path}' has no frames; re-encode it or remove it from the benchmark")
    fps = float(reader.get_avg_fps())
    idx = pick(total, fps)
    frames = reader.get_batch(idx.tolist()).asnumpy()
    reader.seek(0)  # works around decord's memory growth after get_batch (decord #197)
    del reader
    return LoadedVideo(
        torch.from_numpy(np.ascontiguousarray(frames)), fps, total, tuple(idx.tolist()), "decord"
    )


def _load_av(path: Path, pick: Picker) -> LoadedVideo:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise UserError(f"'{path}' has no video stream; pass a video file")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 0.0)
        claimed = int(stream.frames or 0)
        if claimed > 0:
            wanted = pick(claimed, fps)
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
    wanted = pick(len(every), fps)
    frames = np.stack([every[i] for i in wanted.tolist()])
    return LoadedVideo(torch.from_numpy(frames), fps, len(every), tuple(wanted.tolist()), "av")


def probe_video(path: str | os.PathLike[str]) -> tuple[int, float]:
    """``(frame count, frames per second)`` of a video, without decoding it when the container knows."""
    try:
        if _have_decord():
            import decord

            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            return len(reader), float(reader.get_avg_fps())
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            total = int(stream.frames or 0) or sum(1 for _ in container.decode(stream))
            return total, float(stream.average_rate or 0.0)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"could not read video '{path}' ({first}); re-encode or re-download it") from None


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
