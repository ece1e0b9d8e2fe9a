"""The selector's choice of DivPrune's max-min path (``kernels.selector.maxmin_paths``), its forcing
variable, and what the CPU records. CPU only; tests/gpu/test_maxmin_triton.py runs the kernel itself."""

from __future__ import annotations

import pytest
import torch

from prune_bench import kernels
from prune_bench.errors import UserError
from prune_bench.kernels import selector
from prune_bench.strategies.common.diversity import greedy_max_min_diversity, second_smallest

CUDA = torch.device("cuda", 0)  # a device object only: nothing here runs on it


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(selector.MAXMIN_ENV, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    kernels.clear_failures()
    yield
    kernels.clear_failures()


def test_the_default_paths_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    assert selector.maxmin_paths(CUDA, 6272) == ("triton", "graph", "eager")
    assert selector.maxmin_paths(CUDA, selector.MAXMIN_MAX_N) == ("triton", "graph", "eager")
    assert selector.maxmin_paths(CUDA, selector.MAXMIN_MAX_N + 1) == ("graph", "eager")
    assert selector.maxmin_paths(torch.device("cpu"), 6272) == ("eager",)  # also with Triton installed
    monkeypatch.setattr(selector, "triton_available", lambda: False)
    assert selector.maxmin_paths(CUDA, 6272) == ("graph", "eager")


@pytest.mark.parametrize(
    ("value", "n", "paths"),
    [
        ("triton", 6272, ("triton",)),
        ("triton", 20000, ("graph",)),  # more tokens than one program holds
        (" Graph ", 6272, ("graph",)),
        ("eager", 6272, ("eager",)),
        ("auto", 6272, ("triton", "graph", "eager")),
        ("", 6272, ("triton", "graph", "eager")),
    ],
)
def test_the_variable_forces_a_path(monkeypatch: pytest.MonkeyPatch, value: str, n: int, paths) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    monkeypatch.setenv(selector.MAXMIN_ENV, value)
    assert selector.maxmin_paths(CUDA, n) == paths


@pytest.mark.parametrize(
    ("value", "triton", "device", "message"),
    [
        ("fast", True, "cuda", "is not one of auto, triton, graph, eager"),
        ("triton", False, "cuda", "needs the 'triton' package"),
        ("triton", True, "cpu", "needs a CUDA device .* or TRITON_INTERPRET=1"),
        ("graph", True, "cpu", "needs a CUDA device"),
    ],
)
def test_a_forced_path_that_cannot_run_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, value: str, triton: bool, device: str, message: str
) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: triton)
    monkeypatch.setenv(selector.MAXMIN_ENV, value)
    with pytest.raises(UserError, match=message):
        selector.maxmin_paths(torch.device(device), 100)


def test_a_forced_triton_path_runs_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv(selector.MAXMIN_ENV, "triton")
    assert selector.maxmin_paths(torch.device("cpu"), 100) == ("triton",)
    assert selector.maxmin_paths(torch.device("cpu"), 20000) == ("eager",)


def test_the_cpu_records_the_eager_path_and_no_gram() -> None:
    # the CPU's distances are x @ x^T directly (the reference), not selector.gram_matrix
    features = torch.randn(30, 8, generator=torch.Generator().manual_seed(0))
    with kernels.record_paths() as paths:
        picks = greedy_max_min_diversity(features, 9)
    assert paths == {"maxmin": "eager"}
    assert len(set(picks.tolist())) == 9


def test_a_failed_kernel_falls_back_to_the_next_path_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    calls: list[str] = []

    def impl(path: str):
        def run() -> str:
            calls.append(path)
            if path == "triton":
                raise RuntimeError("PTX too new for this driver")
            return path

        return run

    impls = {p: impl(p) for p in ("triton", "graph", "eager")}
    with kernels.record_paths() as ran, pytest.warns(RuntimeWarning, match="Triton max-min diversity kernel"):
        assert selector.run_maxmin(CUDA, 6272, impls) == "graph"
    assert ran == {"maxmin": "triton->graph"}
    assert kernels.fallback_reasons() == {"maxmin triton cuda:0": "RuntimeError: PTX too new for this driver"}
    # remembered: the next selection goes straight to the graph path, without a second warning
    assert selector.maxmin_path(CUDA, 6272) == "graph"
    assert selector.run_maxmin(CUDA, 6272, impls) == "graph" and calls == ["triton", "graph", "graph"]


def test_a_forced_kernel_that_fails_is_a_user_error_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    monkeypatch.setenv(selector.MAXMIN_ENV, "triton")

    def broken() -> None:
        raise RuntimeError("no kernel image")

    with pytest.raises(UserError, match="PRUNE_BENCH_MAXMIN=triton: the Triton max-min diversity kernel"):
        selector.run_maxmin(CUDA, 6272, {"triton": broken})


def test_second_smallest_equals_topk_and_leaves_the_matrix_as_it_was() -> None:
    # CUDA's nearest-neighbour distances; a column whose minimum occurs twice keeps it as the second
    g = torch.Generator().manual_seed(3)
    dist = torch.randint(0, 5, (40, 40), generator=g).float() + 0.5 * torch.rand(40, 40, generator=g)
    dist[7, 3] = dist[9, 3] = -1.0
    before = dist.clone()
    assert torch.equal(second_smallest(dist), torch.topk(dist, 2, dim=0, largest=False).values[1])
    assert torch.equal(dist, before)
    assert second_smallest(dist)[3] == -1.0
