"""scripts/selection-overhead.py: its host-read counter and one measured strategy."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "selection-overhead.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("selection_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["selection_overhead"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["selection_overhead"]


def test_host_read_counter_counts_what_would_synchronise_and_restores_torch(script):
    x = torch.arange(6.0)
    item = torch.Tensor.item
    with script.count_host_reads() as reads:
        x.max().item()
        x[x > 2]  # a boolean mask
        x[torch.tensor([0, 1])]  # an index tensor: no read
        torch.nonzero(x)
        bool(x.any())
        x[x > 2] = 0.0  # a scalar through a mask: no read
        torch.tensor([1, 2], device=x.device)  # a blocking copy to a device
        torch.tensor([1, 2])  # stays on the host
    assert reads == {"item": 1, "bool-mask index": 1, "nonzero": 1, "__bool__": 1, "host-to-device copy": 1}
    assert torch.Tensor.item is item


def test_measure_times_each_stage_and_counts_pdrops_one_read(script):
    shape = script.SHAPES["llava-onevision-0.5b"]
    device = torch.device("cpu")
    args = argparse.Namespace(frames=2, keep=0.5, warmup=0, repeats=1)
    state = script.synthetic_state(shape, args.frames, device, torch.float32)
    vision = script.synthetic_vision(shape, args.frames, device)
    layer = script.RandomLayer(shape, device, torch.float32)
    row = script.measure("pdrop", args, shape, device, state, vision, layer)
    assert list(row["stage_ms"]) == ["pdrop.stage1", "pdrop.stage2", "pdrop.stage3"]
    assert row["host_syncs"] == 1 and row["syncs_by_kind"] == {"nonzero": 1}  # stage 1 reads its count
    assert row["visual_before"] == 2 * 196 > row["visual_after"] > 0 and row["aten_ops"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("name", "reads"), [("pdrop", 1), ("visionzip", 3), ("vispruner", 2)])
def test_on_cuda_the_stages_synchronise_no_more_than_the_cpu_count_says(script, name, reads):
    shape = script.SHAPES["llava-onevision-0.5b"]
    device = torch.device("cuda")
    args = argparse.Namespace(frames=4, keep=0.3, warmup=1, repeats=1)
    state = script.synthetic_state(shape, args.frames, device, torch.bfloat16)
    vision = script.synthetic_vision(shape, args.frames, device)
    layer = script.RandomLayer(shape, device, torch.bfloat16)
    row = script.measure(name, args, shape, device, state, vision, layer)
    assert row["host_syncs"] <= reads, row["syncs_by_kind"]
