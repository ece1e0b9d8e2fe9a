"""The one place that decides which implementation of a kernel runs, falls back when one cannot run,
and records which one did.

Kernels and their paths, fastest first:

* ``"dpp"``, HieraVid's batched greedy DPP (:func:`dpp_paths`): ``persistent`` (every pick of a stage
  in one resident Triton kernel, ``dpp_persistent.py``, where the stage's kernels fit one program per
  multiprocessor), ``triton`` (one Triton kernel per pick replayed as a CUDA graph, ``dpp_triton.py``),
  ``graph`` (the PyTorch step of ``strategies/common/dpp.py`` replayed as a CUDA graph), ``eager``
  (the PyTorch step, pick by pick). ``PRUNE_BENCH_DPP`` = ``persistent|triton|graph|eager`` forces one
  (``persistent`` still takes ``triton`` for a stage whose kernels do not fit it); unset or ``auto``:
  ``persistent``/``triton`` on CUDA when Triton imports, then ``graph`` and ``eager``; ``eager`` off
  CUDA.
* ``"gram"``, the Gram product of the DPP kernel and of DivPrune's cosine distances
  (:func:`gram_matrix`): ``triton`` (``gram.py``) on CUDA GPUs with TF32 when Triton imports, else
  ``torch`` (``torch.matmul`` in float32).
* ``"maxmin"``, DivPrune's greedy max-min picks (:func:`maxmin_paths`): ``triton`` (the whole loop in
  one Triton program, ``maxmin_triton.py``, up to :data:`MAXMIN_MAX_N` items), ``graph`` (the PyTorch
  step of ``strategies/common/diversity.py`` replayed as CUDA graphs of 32 picks), ``eager`` (that
  step, pick by pick). ``PRUNE_BENCH_MAXMIN`` = ``triton|graph|eager`` forces one (``triton`` with more
  items than the kernel takes runs ``graph`` on CUDA, ``eager`` elsewhere); unset or ``auto``:
  ``triton`` on CUDA when Triton imports and the items fit, then ``graph`` and ``eager``; ``eager`` off
  CUDA. Every path picks the same items from the same distance matrix, ties included.

Falling back. :func:`run` tries a kernel's paths in order. A path that fails (its kernel cannot be
built or launched here, or raises :class:`KernelUnavailable`, as the persistent kernel does when its
grid barrier times out) gives one ``RuntimeWarning`` per (kernel, path, device), its reason is kept
(:func:`fallback_reasons`), a Triton path that failed is not tried again on that device
(:func:`clear_failures` forgets), and the next path runs; the path recorded then says so
(``"persistent->triton"``). A path forced by ``PRUNE_BENCH_DPP`` or ``PRUNE_BENCH_MAXMIN`` that cannot
run is a :class:`~prune_bench.errors.UserError` (an unknown value, Triton not installed, a CUDA-only
path on another device, a kernel that fails to build), except a barrier timeout, after which the
per-pick kernel runs.

Recording. ``with record_paths() as paths:`` yields a dict that fills with ``{kernel: path}`` for the
kernels that ran inside the block (this thread's or task's context: a ``ContextVar``; nested blocks
each see theirs), e.g. ``{"gram": "torch", "dpp": "eager"}`` on the CPU or ``{"gram": "triton",
"dpp": "persistent"}`` on an H200 (DivPrune: ``{"maxmin": "eager"}`` on the CPU, whose distances are
``x @ x^T`` directly, ``{"gram": "triton", "maxmin": "triton"}`` on an H200). A kernel that ran on several paths inside one block (stages of
different shapes) lists them in order of first use, ``"persistent, triton"``; ``"a->b"`` means ``a``
was the path chosen and ``b`` ran instead.

This module imports no Triton (nor any kernel module): a kernel module is imported when its path is
about to run.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import torch

from prune_bench.errors import UserError

T = TypeVar("T")


class KernelUnavailable(RuntimeError):
    """A kernel that cannot run here at this time, found out by running it (e.g. the persistent DPP
    kernel's grid barrier timed out: not all of its programs were resident). :func:`run` runs the next
    path, also when ``PRUNE_BENCH_DPP`` forced this one."""


def triton_available() -> bool:
    """Whether the ``triton`` package is installed (it comes with PyTorch's CUDA builds on Linux)."""
    return importlib.util.find_spec("triton") is not None


def interpreted() -> bool:
    """Whether Triton kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``, for tests)."""
    return os.environ.get("TRITON_INTERPRET", "").strip() == "1"


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of ``exc``."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: The variable that forces a greedy-DPP path, and its values.
DPP_ENV = "PRUNE_BENCH_DPP"
DPP_PATHS = ("auto", "persistent", "triton", "graph", "eager")
#: The variable that forces a max-min (DivPrune) path, its values, and the most items the Triton
#: kernel takes (``maxmin_triton.MAX_N``; here so that choosing a path imports no Triton).
MAXMIN_ENV = "PRUNE_BENCH_MAXMIN"
MAXMIN_PATHS = ("auto", "triton", "graph", "eager")
MAXMIN_MAX_N = 16384
#: Paths whose failure is remembered per device (a kernel that did not build will not build next time;
#: a CUDA-graph capture that failed, e.g. inside another capture, may succeed later).
_REMEMBERED = frozenset({"persistent", "triton"})
#: What each path is, for warnings and errors.
_NAMES = {
    ("dpp", "persistent"): "persistent Triton greedy-DPP kernel",
    ("dpp", "triton"): "per-pick Triton greedy-DPP kernel",
    ("dpp", "graph"): "CUDA-graph capture of the greedy-DPP step",
    ("gram", "triton"): "Triton Gram kernel",
    ("maxmin", "triton"): "Triton max-min diversity kernel",
    ("maxmin", "graph"): "CUDA-graph capture of the max-min diversity step",
}

_lock = threading.Lock()
_failed: set[tuple[str, str, str]] = set()  # (kernel, path, device) not to try again
_warned: set[tuple[str, str, str]] = set()
_reasons: dict[tuple[str, str, str], str] = {}
_recorders: ContextVar[tuple[dict[str, str], ...]] = ContextVar("prune_bench_kernel_paths", default=())


# ---------------------------------------------------------------------------------------- recording
@contextmanager
def record_paths() -> Iterator[dict[str, str]]:
    """Yield a dict that fills with ``{kernel name: path}`` for every kernel that runs inside the block
    (see the module docstring for the values)."""
    paths: dict[str, str] = {}
    token = _recorders.set((*_recorders.get(), paths))
    try:
        yield paths
    finally:
        _recorders.reset(token)


def note(kernel: str, path: str) -> None:
    """Record that ``kernel`` ran on ``path``, in every :func:`record_paths` block open here."""
    for paths in _recorders.get():
        seen = paths.get(kernel)
        if seen is None:
            paths[kernel] = path
        elif path not in seen.split(", "):
            paths[kernel] = f"{seen}, {path}"


def fallback_reasons() -> dict[str, str]:
    """Why each path that failed here did: ``{"dpp persistent cuda:0": "BarrierTimeout: ..."}``."""
    with _lock:
        return {" ".join(key): reason for key, reason in _reasons.items()}


def clear_failures() -> None:
    """Forget the failed paths and their warnings: the next call tries every path again."""
    with _lock:
        _failed.clear()
        _warned.clear()
        _reasons.clear()


# ----------------------------------------------------------------------------------------- choosing
def _where(device: torch.device) -> str:
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


def forced_dpp_path() -> str | None:
    """The greedy-DPP path ``PRUNE_BENCH_DPP`` forces, or ``None`` (unset or ``auto``)."""
    choice = os.environ.get(DPP_ENV, "auto").strip().lower() or "auto"
    if choice not in DPP_PATHS:
        raise UserError(f"{DPP_ENV}={choice!r} is not one of {', '.join(DPP_PATHS)}; unset it for 'auto'")
    return None if choice == "auto" else choice


def dpp_paths(device: torch.device, g: int, n: int) -> tuple[str, ...]:
    """The greedy-DPP paths to try, in order, for ``g`` kernels of ``n`` items on ``device`` (see the
    module docstring); a forced path that cannot run on ``device`` is a ``UserError``."""
    forced = forced_dpp_path()
    cuda = device.type == "cuda"
    if forced in ("persistent", "triton"):
        if not triton_available():
            raise UserError(
                f"{DPP_ENV}={forced} needs the 'triton' package (pip install triton), or unset it"
            )
        if not cuda and not interpreted():
            raise UserError(
                f"{DPP_ENV}={forced} runs Triton kernels, which need a CUDA device (this stage runs on "
                f"{device.type}) or TRITON_INTERPRET=1; unset it"
            )
    if forced == "graph" and not cuda:
        raise UserError(
            f"{DPP_ENV}=graph replays CUDA graphs and needs a CUDA device (this stage runs on "
            f"{device.type}); unset it or set it to eager"
        )
    if forced == "eager" or (forced is None and not cuda):
        return ("eager",)
    if forced == "graph":
        return ("graph",)
    if forced is None and not triton_available():
        return ("graph", "eager")
    head = ("persistent", "triton") if forced != "triton" and _persistent_fits(g, n, device) else ("triton",)
    return head if forced else (*head, "graph", "eager")


def _persistent_fits(g: int, n: int, device: torch.device) -> bool:
    """Whether ``g`` kernels of ``n`` items fit the persistent kernel's layout on ``device`` (one
    resident program per multiprocessor); a module that fails to import counts as a failed path."""
    if device.type != "cuda":
        return False
    try:
        from prune_bench.kernels import dpp_persistent

        return dpp_persistent.fits(g, n, device)
    except Exception as exc:  # noqa: BLE001 - Triton too old or too new to import: not this path
        _fail("dpp", "persistent", device, exc, "the next path", remember=True)
        return False


def dpp_path(device: torch.device, g: int = 1, n: int = 1) -> str:
    """The greedy-DPP path that runs first for ``g`` kernels of ``n`` items on ``device``: the first of
    :func:`dpp_paths` not known to fail here."""
    paths = dpp_paths(device, g, n)
    return next((p for p in paths if not _known_failed("dpp", p, device)), paths[-1])


def forced_maxmin_path() -> str | None:
    """The max-min path ``PRUNE_BENCH_MAXMIN`` forces, or ``None`` (unset or ``auto``)."""
    choice = os.environ.get(MAXMIN_ENV, "auto").strip().lower() or "auto"
    if choice not in MAXMIN_PATHS:
        raise UserError(
            f"{MAXMIN_ENV}={choice!r} is not one of {', '.join(MAXMIN_PATHS)}; unset it for 'auto'"
        )
    return None if choice == "auto" else choice


def maxmin_paths(device: torch.device, n: int) -> tuple[str, ...]:
    """The max-min paths to try, in order, for ``n`` items on ``device`` (see the module docstring); a
    forced path that cannot run on ``device`` is a ``UserError``."""
    forced = forced_maxmin_path()
    cuda = device.type == "cuda"
    fits = 1 <= n <= MAXMIN_MAX_N
    if forced == "triton":
        if not triton_available():
            raise UserError(
                f"{MAXMIN_ENV}=triton needs the 'triton' package (pip install triton), or unset it"
            )
        if not cuda and not interpreted():
            raise UserError(
                f"{MAXMIN_ENV}=triton runs a Triton kernel, which needs a CUDA device (this selection "
                f"runs on {device.type}) or TRITON_INTERPRET=1; unset it"
            )
        if fits:
            return ("triton",)
        return ("graph",) if cuda else ("eager",)  # more items than one program holds
    if forced == "graph" and not cuda:
        raise UserError(
            f"{MAXMIN_ENV}=graph replays CUDA graphs and needs a CUDA device (this selection runs on "
            f"{device.type}); unset it or set it to eager"
        )
    if forced == "eager" or not cuda:
        return ("eager",)
    if forced == "graph":
        return ("graph",)
    return ("triton", "graph", "eager") if fits and triton_available() else ("graph", "eager")


def maxmin_path(device: torch.device, n: int) -> str:
    """The max-min path that runs first for ``n`` items on ``device``: the first of
    :func:`maxmin_paths` not known to fail here."""
    paths = maxmin_paths(device, n)
    return next((p for p in paths if not _known_failed("maxmin", p, device)), paths[-1])


def gram_paths(x: torch.Tensor) -> tuple[str, ...]:
    """The Gram-product paths to try for ``x``: the Triton kernel on CUDA GPUs with TF32 (compute
    capability 8.0 and up) when Triton imports, then ``torch.matmul``."""
    if triton_available() and x.is_cuda and torch.cuda.get_device_capability(x.device) >= (8, 0):
        return ("triton", "torch")
    return ("torch",)


# ------------------------------------------------------------------------------------------ running
def _known_failed(kernel: str, path: str, device: torch.device) -> bool:
    with _lock:
        return (kernel, path, _where(device)) in _failed


def _fail(
    kernel: str, path: str, device: torch.device, exc: BaseException, instead: str, *, remember: bool
) -> None:
    key = (kernel, path, _where(device))
    with _lock:
        _reasons[key] = first_line(exc)
        if remember:
            _failed.add(key)
        first = key not in _warned
        _warned.add(key)
    if first:
        name = _NAMES.get((kernel, path), f"{kernel} path {path!r}")
        warnings.warn(
            f"the {name} on {key[2]} failed ({first_line(exc)}); using {instead}",
            RuntimeWarning,
            stacklevel=4,
        )


def run(
    kernel: str,
    device: torch.device,
    paths: Sequence[str],
    impls: Mapping[str, Callable[[], T]],
    *,
    forced: bool = False,
    env: str = DPP_ENV,
) -> T:
    """Run the first of ``paths`` that works (``impls[path]()``), falling back and recording as the
    module docstring says; ``forced``: the paths come from the variable ``env`` (``PRUNE_BENCH_DPP``
    unless told), so a failure other than :class:`KernelUnavailable` is a ``UserError``. The last
    path's own errors propagate."""
    chosen = paths[0]
    for k, path in enumerate(paths):
        last = k == len(paths) - 1
        if not last and _known_failed(kernel, path, device):
            continue
        try:
            out = impls[path]()
        except KernelUnavailable as exc:
            if last:
                raise
            _fail(kernel, path, device, exc, f"the {paths[k + 1]} path", remember=True)
            continue
        except Exception as exc:
            if forced:
                raise UserError(
                    f"{env}={os.environ.get(env, '').strip()}: the "
                    f"{_NAMES.get((kernel, path), path)} cannot run here ({first_line(exc)}); unset "
                    f"{env} to let prune-bench fall back to a slower path"
                ) from exc
            if last:
                raise
            _fail(kernel, path, device, exc, f"the {paths[k + 1]} path", remember=path in _REMEMBERED)
            continue
        note(kernel, path if path == chosen else f"{chosen}->{path}")
        return out
    raise AssertionError("unreachable: the last path runs or raises")  # pragma: no cover


def run_dpp(device: torch.device, g: int, n: int, impls: Mapping[str, Callable[[], T]]) -> T:
    """Run greedy DPP for ``g`` kernels of ``n`` items on ``device`` with ``impls`` (one callable per
    path name, see :func:`dpp_paths`)."""
    return run("dpp", device, dpp_paths(device, g, n), impls, forced=forced_dpp_path() is not None)


def run_maxmin(device: torch.device, n: int, impls: Mapping[str, Callable[[], T]]) -> T:
    """Run DivPrune's max-min picks for ``n`` items on ``device`` with ``impls`` (one callable per path
    name, see :func:`maxmin_paths`)."""
    forced = forced_maxmin_path() is not None
    return run("maxmin", device, maxmin_paths(device, n), impls, forced=forced, env=MAXMIN_ENV)


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """``x @ x^T`` for ``x`` ``[G, n, d]``, float32: the Triton kernel on CUDA GPUs with TF32, else
    ``torch.matmul`` (:func:`gram_paths`)."""
    x = x.float()

    def triton_gram() -> torch.Tensor:
        from prune_bench.kernels.gram import gram_triton

        return gram_triton(x)

    return run(
        "gram", x.device, gram_paths(x), {"triton": triton_gram, "torch": lambda: x @ x.transpose(1, 2)}
    )
