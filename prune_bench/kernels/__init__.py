"""Hand-written GPU kernels, and the one selector that decides which implementation runs.

* ``selector.py``: for a kernel and (device, shape), which path runs, the fall-back when one cannot
  run (one warning, the reason kept, never a silent switch), ``PRUNE_BENCH_DPP``, whether Triton
  imports or runs interpreted, and the record of the paths that ran. Strategies call
  :func:`gram_matrix` and ``selector.run_dpp``, never a kernel module directly.
* ``dpp_persistent.py``: HieraVid's greedy DPP, every pick of a stage in one resident Triton kernel
  (a bounded grid barrier between picks, the Cholesky factor in panels).
* ``dpp_triton.py``: the same, one Triton kernel per pick replayed as a CUDA graph.
* ``gram.py``: the DPP kernel's Gram product ``x @ x^T`` as a Triton kernel (three TF32 products per
  tile).
* ``maxmin_triton.py``: DivPrune's greedy max-min picks, the whole loop in one Triton program (up to
  16,384 tokens).
* ``graph_steps.py``: replays a fixed-shape greedy step as a CUDA graph (the DPP's PyTorch and
  per-pick paths, DivPrune's max-min picks).

The greedy DPP algorithm itself (its PyTorch step, the inputs every path starts from) is
``prune_bench/strategies/common/dpp.py``.

Which path ran. ``record_paths()`` is a context manager yielding a dict that fills with
``{kernel name: path}`` for the kernels that ran inside the block::

    from prune_bench import kernels

    with kernels.record_paths() as paths:
        adapter.run(sample, plan)
    paths  # {"gram": "torch", "dpp": "eager"} on the CPU; {"gram": "triton", "dpp": "persistent"} on an H200

Values: ``dpp`` one of ``persistent``, ``triton``, ``graph``, ``eager``; ``gram`` one of ``triton``,
``torch``; ``maxmin`` one of ``triton``, ``graph``, ``eager``. ``"a->b"``: ``a`` was chosen, could not run, and ``b`` ran (``"persistent->triton"`` after a
barrier timeout); several paths inside one block (stages of different shapes) are listed in order of
first use, ``"persistent, triton"``. Blocks nest, and are per thread or task (a ``ContextVar``).
:func:`fallback_reasons` says why each failed path failed.

Importing this package, or any strategy, imports no Triton and no kernel module: only
``dpp_persistent``, ``dpp_triton``, ``gram`` and ``maxmin_triton`` import Triton, and they, like ``graph_steps``, are
imported when their kernel is about to run.
"""

from __future__ import annotations

from prune_bench.kernels.selector import (
    DPP_ENV,
    DPP_PATHS,
    KernelUnavailable,
    clear_failures,
    dpp_path,
    dpp_paths,
    fallback_reasons,
    gram_matrix,
    gram_paths,
    record_paths,
)

__all__ = [
    "DPP_ENV",
    "DPP_PATHS",
    "KernelUnavailable",
    "clear_failures",
    "dpp_path",
    "dpp_paths",
    "fallback_reasons",
    "gram_matrix",
    "gram_paths",
    "record_paths",
]
