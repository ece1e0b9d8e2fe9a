"""One small real results store for the command tests: ``sweep`` then ``ablate`` on the shipped
default model (6 items, one or two a task, 16 frames), shared by the tests of ``plot`` and ``table``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

FAST = ["--limit", "6", "--frames", "16", "--device", "cpu", "--no-progress"]


def invoke(*args: str) -> Result:
    """Run ``prune-bench ARGS`` in-process, the way ``main`` does (commands from the plugin hook)."""
    from prune_bench.cli.main import cli

    return CliRunner().invoke(cli, list(args))


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., Result]:
    """``run_cli("sweep", ...)``: a prune-bench command run in-process."""
    return invoke


@pytest.fixture(scope="session")
def fast() -> list[str]:
    """Options that keep a real evaluation to a second or two."""
    return list(FAST)


@pytest.fixture(scope="session")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory holding a sweep (random, uniform at keep 0.2 and 0.4) and the ablations
    of hieravid at keep 0.3."""
    out = tmp_path_factory.mktemp("results") / "run"
    result = invoke("sweep", "random", "uniform", "--keep", "0.2", "0.4", "--out", str(out), *FAST)
    assert result.exit_code == 0, result.output
    result = invoke("ablate", "hieravid", "--keep", "0.3", "--out", str(out), *FAST)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: every mistake must be caught before."""
    from prune_bench.cli import evaluation

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(evaluation, "load_adapter", refuse)
