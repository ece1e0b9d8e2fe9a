"""Keep the native video decoders' own messages off the terminal.

FFmpeg (inside decord and PyAV) and decord's C++ logging write straight to file descriptor 2 (``[mov,mp4,...
@ 0x...] moov atom not found``, ``video_reader.cc:83: ERROR opening ...``), around Python's ``sys.stderr``.
prune-bench reports a broken video as one line of its own (or as that item's failure), so those lines
are noise: :func:`native_stderr_captured` sends descriptor 2 to a temporary file for the duration of a
decoder call and hands back what was written there, for the error message to quote if it helps.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

_lock = threading.Lock()  # descriptor 2 is the process's: one capture at a time


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[list[str]]:
    """Within the block, what native code writes to descriptor 2 is captured; the yielded list receives
    its non-empty lines when the block ends. Python's own ``sys.stderr`` is flushed first, so nothing
    already printed is lost or captured."""
    lines: list[str] = []
    fd = 2  # the descriptor native code writes to, whatever Python's sys.stderr is at the moment
    with _lock, tempfile.TemporaryFile(mode="w+b") as sink:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.flush()
        saved = os.dup(fd)
        os.dup2(sink.fileno(), fd)
        try:
            yield lines
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            lines.extend(line.strip() for line in text.splitlines() if line.strip())


def native_reason(lines: list[str]) -> str:
    """The most telling captured line without FFmpeg's ``[demuxer @ 0x..]`` or decord's ``[time] file:line:``
    prefix (``moov atom not found``), or an empty string."""
    for line in reversed(lines):
        text = line
        while text.startswith("[") and "]" in text:
            text = text.split("]", 1)[1].strip()
        if ".cc:" in text.split(" ", 1)[0]:
            text = text.split(" ", 1)[1] if " " in text else ""
        if text:
            return text[:160]
    return ""
