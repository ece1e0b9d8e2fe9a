"""Helpers for testing strategies, built-in or third-party: run a plan through prefill and greedy
decoding and get every step's logits, so drop mode can be compared with mask mode."""

from __future__ import annotations

from typing import Any

import torch

from prune_bench.adapters.base import Adapter, EncodedSample, greedy
from prune_bench.adapters.decoder import Mode, PrefillResult
from prune_bench.core.stages import PruningPlan
from prune_bench.core.timing import Clock


def prefill_and_decode(
    adapter: Adapter, sample: EncodedSample, plan: PruningPlan, mode: Mode, steps: int
) -> tuple[PrefillResult, list[torch.Tensor]]:
    """Prefill under ``plan`` and greedily decode ``steps - 1`` tokens; returns the prefill result and
    the logits of every step (the prefill's first)."""
    pre = adapter.prefill(sample, plan, mode=mode, max_new_tokens=steps)
    out = [logits for _, logits in adapter.decode(pre, plan, greedy, steps, Clock(pre.logits.device))]
    return pre, out


def assert_drop_equals_mask(
    adapter: Adapter, sample: EncodedSample, plan: PruningPlan, steps: int = 3, **tolerance: Any
) -> tuple[PrefillResult, PrefillResult]:
    """Drop mode and mask mode give the same logits at every step and keep the same tokens."""
    pre_d, drop = prefill_and_decode(adapter, sample, plan, "drop", steps)
    pre_m, mask = prefill_and_decode(adapter, sample, plan, "mask", steps)
    for d, m in zip(drop, mask, strict=True):
        torch.testing.assert_close(d, m, **({"atol": 1e-4, "rtol": 1e-4} | tolerance))
    assert torch.equal(pre_d.state.source, pre_m.state.source)
    return pre_d, pre_m


#: the ways :func:`damaged_checkpoint` can break a checkpoint folder
CHECKPOINT_DAMAGES = ("truncated", "empty", "pickle only", "no tokenizer", "corrupt prune_bench.json")


def damaged_checkpoint(model_dir: Any, out: Any, damage: str) -> Any:
    """A copy of the checkpoint folder ``model_dir`` at ``out`` with one of :data:`CHECKPOINT_DAMAGES`
    (for the tests and the reliability report: each must be one error line, never a traceback)."""
    import shutil
    from pathlib import Path

    if damage not in CHECKPOINT_DAMAGES:
        raise ValueError(f"unknown damage {damage!r}; one of {CHECKPOINT_DAMAGES}")
    out = Path(out)
    shutil.copytree(model_dir, out)
    weights = out / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "pickle only":
        weights.rename(out / "pytorch_model.bin")
    elif damage == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (out / name).unlink()
    else:
        (out / "prune_bench.json").write_text("{not json")
    return out
