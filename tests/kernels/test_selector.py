"""The kernel selector (prune_bench/kernels/selector.py): which path runs, how a failed path falls back,
and the record of the paths that ran. CPU only; tests/gpu runs the kernels themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from prune_bench import kernels
from prune_bench.errors import UserError
from prune_bench.kernels import selector
from prune_bench.kernels.selector import KernelUnavailable
from prune_bench.strategies.common.dpp import greedy_dpp_map

CUDA = torch.device("cuda", 0)  # a device object only: nothing here runs on it


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PRUNE_BENCH_DPP", raising=False)
    kernels.clear_failures()
    yield
    kernels.clear_failures()


def _kernel(g: int = 2, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.nn.functional.normalize(
        torch.randn(g, n, 8, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    return x, torch.full((g,), n)


def test_the_cpu_paths_are_recorded_as_eager_and_torch() -> None:
    x, sizes = _kernel()
    with kernels.record_paths() as paths:
        kernel = kernels.gram_matrix(x)
        greedy_dpp_map(kernel, sizes, torch.tensor([3, 5]))
    assert paths == {"gram": "torch", "dpp": "eager"}
    torch.testing.assert_close(kernel, x @ x.transpose(1, 2))


def test_records_nest_and_end_with_their_block() -> None:
    x, _ = _kernel()
    with kernels.record_paths() as outer:
        kernels.gram_matrix(x)
        with kernels.record_paths() as inner:
            greedy_dpp_map(kernels.gram_matrix(x), torch.tensor([12, 12]), torch.tensor([2, 2]))
        assert inner == {"gram": "torch", "dpp": "eager"}
    kernels.gram_matrix(x)  # outside every block: recorded nowhere
    assert outer == {"gram": "torch", "dpp": "eager"}
    assert inner == {"gram": "torch", "dpp": "eager"}


@pytest.mark.filterwarnings("ignore::prune_bench.core.strategy.BudgetWarning")
def test_a_hieravid_run_records_its_kernels(tiny_adapter, tiny_sample) -> None:
    from prune_bench.core.stages import PruningPlan
    from prune_bench.strategies.hieravid import HieraVid

    info = tiny_adapter.model_info(6)
    plan = PruningPlan.of(HieraVid.for_budget(0.3, "layer-average", info).stages(info), info.num_layers)
    with kernels.record_paths() as paths:
        tiny_adapter.run(tiny_sample[2], plan)
    assert paths == {"gram": "torch", "dpp": "eager"}


def test_several_paths_of_one_kernel_are_listed_in_order_of_first_use() -> None:
    with kernels.record_paths() as paths:
        for path in ("persistent", "triton", "persistent", "persistent->triton"):
            selector.note("dpp", path)
    assert paths == {"dpp": "persistent, triton, persistent->triton"}


def test_the_default_paths_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kernels.dpp_paths(torch.device("cpu"), 2, 12) == ("eager",)
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    monkeypatch.setattr(selector, "_persistent_fits", lambda g, n, device: n <= 100)
    assert kernels.dpp_paths(CUDA, 1, 100) == ("persistent", "triton", "graph", "eager")
    assert kernels.dpp_paths(CUDA, 1, 101) == ("triton", "graph", "eager")
    assert kernels.dpp_paths(torch.device("cpu"), 1, 100) == ("eager",)  # also with Triton installed
    monkeypatch.setattr(selector, "triton_available", lambda: False)
    assert kernels.dpp_paths(CUDA, 1, 100) == ("graph", "eager")


@pytest.mark.parametrize(
    ("value", "fits", "paths"),
    [
        ("persistent", True, ("persistent", "triton")),
        ("persistent", False, ("triton",)),  # a stage that does not fit takes the per-pick kernel
        ("triton", True, ("triton",)),
        ("graph", True, ("graph",)),
        ("eager", True, ("eager",)),
        ("auto", True, ("persistent", "triton", "graph", "eager")),
        (" Triton ", True, ("triton",)),
    ],
)
def test_the_variable_forces_a_path(monkeypatch: pytest.MonkeyPatch, value: str, fits: bool, paths) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    monkeypatch.setattr(selector, "_persistent_fits", lambda g, n, device: fits)
    monkeypatch.setenv("PRUNE_BENCH_DPP", value)
    assert kernels.dpp_paths(CUDA, 1, 100) == paths


@pytest.mark.parametrize(
    ("value", "triton", "interpret", "device", "message"),
    [
        ("fast", True, "", "cuda", "is not one of auto, persistent, triton, graph, eager"),
        ("triton", False, "", "cuda", "needs the 'triton' package"),
        ("persistent", False, "", "cuda", "needs the 'triton' package"),
        ("triton", True, "", "cpu", "need a CUDA device .* or TRITON_INTERPRET=1"),
        ("graph", True, "", "cpu", "needs a CUDA device"),
    ],
)
def test_a_forced_path_that_cannot_run_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, value: str, triton: bool, interpret: str, device: str, message: str
) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: triton)
    monkeypatch.setattr(selector, "_persistent_fits", lambda g, n, device: True)
    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    monkeypatch.setenv("PRUNE_BENCH_DPP", value)
    with pytest.raises(UserError, match=message):
        kernels.dpp_paths(torch.device(device), 1, 100)


def test_a_forced_triton_path_runs_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selector, "triton_available", lambda: True)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("PRUNE_BENCH_DPP", "persistent")  # off CUDA no stage fits the persistent kernel
    assert kernels.dpp_paths(torch.device("cpu"), 1, 100) == ("triton",)


def test_greedy_dpp_map_refuses_a_forced_path_the_cpu_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    x, sizes = _kernel()
    monkeypatch.setenv("PRUNE_BENCH_DPP", "graph")
    with pytest.raises(UserError, match="PRUNE_BENCH_DPP=graph"):
        greedy_dpp_map(x @ x.transpose(1, 2), sizes, torch.tensor([3, 3]))


class _Impls:
    """Fake paths: each returns its name, or raises what ``fail`` says; calls are counted."""

    def __init__(self, fail: dict[str, BaseException]) -> None:
        self.fail, self.calls = fail, []

    def __getitem__(self, path: str):
        def impl() -> str:
            self.calls.append(path)
            if path in self.fail:
                raise self.fail[path]
            return path

        return impl


def test_a_barrier_timeout_falls_back_once_warned_and_is_remembered() -> None:
    impls = _Impls({"persistent": KernelUnavailable("barrier stayed closed")})
    paths = ("persistent", "triton", "graph", "eager")
    with kernels.record_paths() as ran, pytest.warns(RuntimeWarning, match="persistent Triton .* barrier"):
        assert selector.run("dpp", CUDA, paths, impls) == "triton"
    assert ran == {"dpp": "persistent->triton"}
    assert impls.calls == ["persistent", "triton"]
    assert kernels.fallback_reasons() == {"dpp persistent cuda:0": "KernelUnavailable: barrier stayed closed"}
    # the next call does not try it again, gives no second warning, and still says what happened
    with kernels.record_paths() as ran:
        assert selector.run("dpp", CUDA, paths, impls) == "triton"
    assert ran == {"dpp": "persistent->triton"} and impls.calls == ["persistent", "triton", "triton"]
    kernels.clear_failures()
    with pytest.warns(RuntimeWarning):
        selector.run("dpp", CUDA, paths, impls)
    assert impls.calls[-2:] == ["persistent", "triton"]


def test_a_kernel_that_does_not_build_falls_back_unless_forced() -> None:
    impls = _Impls({"persistent": RuntimeError("PTX too new\nmore"), "triton": RuntimeError("PTX too new")})
    paths = ("persistent", "triton", "graph", "eager")
    with kernels.record_paths() as ran, pytest.warns(RuntimeWarning) as warned:
        assert selector.run("dpp", CUDA, paths, impls) == "graph"
    assert ran == {"dpp": "persistent->graph"} and len(warned) == 2
    assert "RuntimeError: PTX too new); using the triton path" in str(warned[0].message)
    kernels.clear_failures()
    with pytest.raises(UserError, match="unset PRUNE_BENCH_DPP"):
        selector.run("dpp", CUDA, ("triton",), impls, forced=True)
    assert kernels.fallback_reasons() == {}  # a forced path's failure is an error, not a fall-back


def test_a_forced_persistent_path_still_falls_back_after_a_barrier_timeout() -> None:
    impls = _Impls({"persistent": KernelUnavailable("barrier")})
    with kernels.record_paths() as ran, pytest.warns(RuntimeWarning):
        assert selector.run("dpp", CUDA, ("persistent", "triton"), impls, forced=True) == "triton"
    assert ran == {"dpp": "persistent->triton"}


def test_a_failed_graph_capture_is_tried_again_next_time_but_warned_once() -> None:
    impls = _Impls({"graph": RuntimeError("operation not permitted when stream is capturing")})
    with pytest.warns(RuntimeWarning, match="CUDA-graph capture"):
        assert selector.run("dpp", CUDA, ("graph", "eager"), impls) == "eager"
    assert selector.run("dpp", CUDA, ("graph", "eager"), impls) == "eager"  # no warning this time
    assert impls.calls == ["graph", "eager", "graph", "eager"]


def test_the_last_path_raises_its_own_error() -> None:
    impls = _Impls({"eager": ValueError("bad shape")})
    with pytest.raises(ValueError, match="bad shape"):
        selector.run("dpp", torch.device("cpu"), ("eager",), impls)


def test_importing_hieravid_imports_no_triton() -> None:
    code = (
        "import sys, prune_bench.strategies.hieravid, prune_bench.strategies.divprune, prune_bench.kernels\n"
        "bad = [m for m in sys.modules if m == 'triton' or m.startswith('triton.')\n"
        "       or m in ('prune_bench.kernels.dpp_triton', 'prune_bench.kernels.dpp_persistent',\n"
        "                'prune_bench.kernels.gram', 'prune_bench.kernels.graph_steps',\n"
        "                'prune_bench.kernels.maxmin_triton')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
