from __future__ import annotations

import torch

from prune_bench.adapters.base import AnswerResult
from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.core.flops import LMShape, prefill_flops
from prune_bench.core.ledger import LayerCount
from prune_bench.runner.evaluate import record_for
from prune_bench.session import Session


def test_unpruned_flops_count_every_visual_token_even_when_layer_0_prunes(tiny_adapter):
    # 10 text tokens, 100 visual; a stage before layer 0's attention keeps 30 of them
    counts = [LayerCount(40, 30, 40, 30), LayerCount(40, 30, 40, 30)]
    result = AnswerResult(
        choice=0,
        option_logits=[0.0],
        generated=[],
        counts=counts,
        input_visual=100,
        total_visual=100,
        decode_visible_visual=30,
    )
    shape = LMShape(
        hidden_size=64, intermediate_size=128, num_heads=4, num_kv_heads=2, head_dim=16, num_layers=2
    )
    item = VideoQAItem("i", "t", "q", ("a", "b"), 0, torch.zeros(1, 2, 2, 3, dtype=torch.uint8))
    rec = record_for(item, Session(tiny_adapter, "none", unit="input"), "h", result, shape)
    assert rec["flops"]["exact_full"] == prefill_flops(shape, [LayerCount.full(110, 100)] * 2, "exact")
    assert rec["flops"]["exact"] == prefill_flops(shape, [LayerCount(40, 30, 40, 30)] * 2, "exact")
