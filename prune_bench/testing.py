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
