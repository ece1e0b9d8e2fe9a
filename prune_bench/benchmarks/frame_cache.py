"""An opt-in cache of decoded frames on disk, so that a sweep run again tomorrow decodes no video twice.

One file per (video file, sampling): ``frames-<key>.safetensors`` holding the uint8 ``[T, H, W, 3]``
frames, with the frame rate, frame count, sampled indices and decoder in its metadata. The key is a
hash of everything the pixels depend on: the file's resolved path, size and modification time (ns),
the frame count asked for, the sampling rule (rate, start/end bounds) and the decoder's name and
version; a changed or replaced video, another rule or another decoder is a miss, never stale frames.
safetensors needs no pickle to read. Entries are written whole through a temporary file and a
rename (concurrent writers, a kill mid-write), read back under their key (a damaged entry is dropped
as a miss), and the directory is held under a size bound: after each write the least recently used
entries (by access time, set on every hit) are removed. ``prune-bench cache clear`` empties it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prune_bench.benchmarks.video import LoadedVideo
from prune_bench.errors import UserError

#: where ``--frame-cache`` is read from when the option is not given
CACHE_ENV = "PRUNE_BENCH_FRAME_CACHE"
#: the default size bound, in GB (10^9 bytes)
DEFAULT_MAX_GB = 20.0
PREFIX, SUFFIX = "frames-", ".safetensors"
#: bumped when what an entry holds changes, so older entries are misses
FORMAT = 1
TAG = "CACHEDIR.TAG"
_TAG_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# prune-bench decoded-frame cache\n"


class FrameCacheWarning(UserWarning):
    """The cache could not store an entry (a full disk, say); the run goes on decoding."""


@dataclass(frozen=True)
class CacheUsage:
    entries: int
    bytes: int


class FrameCache:
    """Decoded frames under ``directory``, at most ``max_bytes`` of them."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.dir = Path(directory).expanduser()
        self.max_bytes = int(max_bytes)

    @classmethod
    def open(cls, directory: str | os.PathLike[str], max_gb: float = DEFAULT_MAX_GB) -> FrameCache:
        """The cache in ``directory``, created if needed; an unusable directory or bound is one line."""
        if not max_gb > 0:
            raise UserError(f"--frame-cache-gb must be a positive size in GB, got {max_gb:g} (e.g. 20)")
        cache = cls(directory, int(max_gb * 1e9))
        if cache.dir.exists() and not cache.dir.is_dir():
            raise UserError(f"frame cache '{cache.dir}' is a file; pass a directory as --frame-cache")
        try:
            cache.dir.mkdir(parents=True, exist_ok=True)
            tag = cache.dir / TAG
            if not tag.exists():  # tells backup tools this is a cache (the CACHEDIR.TAG convention)
                tag.write_text(_TAG_TEXT, encoding="utf-8")
        except OSError as exc:
            raise UserError(
                f"cannot use '{cache.dir}' as the frame cache ({exc.strerror}); pass a writable "
                "directory as --frame-cache"
            ) from None
        if not os.access(cache.dir, os.W_OK | os.X_OK):
            raise UserError(f"frame cache '{cache.dir}' is not writable; pass another --frame-cache")
        return cache

    # -- keys ---------------------------------------------------------------------------------------

    def key(
        self,
        path: str | os.PathLike[str],
        *,
        num_frames: int,
        sample_fps: float | None,
        start: float | None,
        end: float | None,
        decoder: str,
    ) -> str:
        """The entry name of these frames of the file at ``path`` as it is now on disk."""
        real = os.path.realpath(path)
        stat = os.stat(real)
        identity = {
            "format": FORMAT,
            "path": real,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "frames": num_frames,
            "fps": sample_fps,
            "start": start,
            "end": end,
            "decoder": decoder,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.dir / f"{PREFIX}{key}{SUFFIX}"

    # -- entries ------------------------------------------------------------------------------------

    def get(self, key: str) -> LoadedVideo | None:
        """The frames stored under ``key``, or None (not there, or damaged: then it is removed)."""
        from safetensors import safe_open

        path = self._path(key)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                frames = f.get_tensor("frames")
            if meta.get("key") != key or frames.dtype != np.uint8 or frames.ndim != 4:
                raise ValueError("not an entry of this key")
            video = LoadedVideo(
                torch.from_numpy(np.ascontiguousarray(frames)),
                float(meta["fps"]),
                int(meta["total_frames"]),
                tuple(int(i) for i in json.loads(meta["indices"])),
                meta["backend"],
                meta["decoder"],
            )
        except FileNotFoundError:
            return None
        except Exception:  # a torn or foreign file: a miss, and gone so that it is written again
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # the access time the size bound evicts by (mounts may not keep atime)
        return video

    def put(self, key: str, video: LoadedVideo) -> None:
        """Store ``video`` under ``key`` (whole or not at all), then hold the size bound."""
        from safetensors.numpy import save_file

        frames = np.ascontiguousarray(video.frames.numpy())
        if frames.nbytes > self.max_bytes:
            return  # one entry larger than the whole bound would only evict everything else
        meta: dict[str, Any] = {
            "key": key,
            "fps": repr(video.fps),
            "total_frames": str(video.total_frames),
            "indices": json.dumps(list(video.indices)),
            "backend": video.backend,
            "decoder": video.decoder,
        }
        path = self._path(key)
        tmp = self.dir / f".{path.name}.{os.getpid()}.tmp"
        try:
            save_file({"frames": frames}, str(tmp), metadata=meta)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            warnings.warn(
                FrameCacheWarning(f"could not store decoded frames in '{self.dir}' ({exc.strerror})"),
                stacklevel=2,
            )
            return
        self.evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(access time, size, path) of every entry."""
        out = []
        try:
            listing = list(os.scandir(self.dir))
        except OSError:
            return []
        for entry in listing:
            if not (entry.name.startswith(PREFIX) and entry.name.endswith(SUFFIX)):
                continue
            try:
                st = entry.stat()
            except OSError:  # removed by another process meanwhile
                continue
            out.append((st.st_atime, st.st_size, Path(entry.path)))
        return out

    def evict(self) -> int:
        """Remove the least recently used entries until the cache holds at most ``max_bytes``;
        returns how many were removed."""
        entries = sorted(self._entries(), key=lambda e: (e[0], e[2].name))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
            total -= size
        return removed

    def usage(self) -> CacheUsage:
        entries = self._entries()
        return CacheUsage(len(entries), sum(size for _, size, _ in entries))

    def clear(self) -> CacheUsage:
        """Remove every entry (and leftover temporary files); returns what was removed. Files that
        are not the cache's own are left alone."""
        entries = self._entries()
        for _, _, path in entries:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for leftover in self.dir.glob(f".{PREFIX}*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        return CacheUsage(len(entries), sum(size for _, size, _ in entries))
