"""scripts/profile-prefill.py: the GPU idle-gap attribution on a hand-made Chrome trace, and a CPU dry run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "profile-prefill.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("profile_prefill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["profile_prefill"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["profile_prefill"]


def _x(cat, name, ts, dur, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "args": args}


def test_idle_gaps_blame_a_sync_and_a_late_launch(script):
    trace = {
        "traceEvents": [
            _x("user_annotation", "prefill", 0, 1000),
            _x("user_annotation", "stage:x.pick", 400, 300),
            # kernel 1, launched at 10, runs 20-100
            _x("cpu_op", "aten::mm", 5, 10),
            _x("cuda_runtime", "cudaLaunchKernel", 10, 4, correlation=1),
            _x("kernel", "gemm", 20, 80, correlation=1),
            # the host reads a value at 110: a sync that ends at 150, then launches at 300 (gap 100->310)
            _x("cpu_op", "aten::item", 105, 50),
            _x("cuda_runtime", "cudaStreamSynchronize", 110, 40),
            _x("cpu_op", "aten::add", 295, 10),
            _x("cuda_runtime", "cudaLaunchKernel", 300, 4, correlation=2),
            _x("kernel", "add", 310, 10, correlation=2),
            # a late launch inside the stage: kernel 2 ends at 320, the next launches at 500
            _x("cpu_op", "aten::index_select", 495, 10),
            _x("cuda_runtime", "cudaLaunchKernel", 500, 4, correlation=3),
            _x("kernel", "gather", 505, 5, correlation=3),
            # launched outside the prefill range: ignored
            _x("cuda_runtime", "cudaLaunchKernel", 2000, 4, correlation=4),
            _x("kernel", "late", 2005, 5, correlation=4),
        ]
    }
    g = script.idle_gaps(trace)
    assert g["gaps"] == 2
    assert g["busy_ms"] == pytest.approx((80 + 10 + 5) / 1000)
    assert g["idle_ms"] == pytest.approx((210 + 185) / 1000)
    assert g["by_cause"] == {
        "sync:aten::item in prefill": pytest.approx(0.210),
        "launch:aten::index_select in stage:x.pick": pytest.approx(0.185),
    }
    assert g["span_ms"] == pytest.approx(1.0)


def test_no_prefill_range_is_no_gaps(script):
    assert script.idle_gaps({"traceEvents": []})["gaps"] == 0
