"""The Triton fast paths' shared plumbing: whether Triton imports, and the one warning a path gives
when its kernel cannot be built or launched here (a Triton too old or too new for this GPU) before
the caller falls back to PyTorch."""

from __future__ import annotations

import importlib.util
import warnings


def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it comes with PyTorch's CUDA builds on Linux)."""
    return importlib.util.find_spec("triton") is not None


def warn_fallback(kernel: str, exc: Exception, instead: str, *, stacklevel: int = 2) -> None:
    """Warn that the Triton ``kernel`` failed with ``exc`` and ``instead`` runs."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    warnings.warn(
        f"the Triton {kernel} failed ({type(exc).__name__}: {first}); using {instead}",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )
