"""Every user mistake is one readable line on stderr and exit code 2, before any model loads."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from prune_bench.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compare", "hieravd"), "unknown strategy 'hieravd'; did you mean 'hieravid'?"),
        (("compare", "random", "--keep", "0"), "--keep must be in (0, 1], got 0.0"),
        (("compare", "random", "--keep", "1.5"), "--keep must be in (0, 1], got 1.5"),
        (("compare", "random", "--set", "random.kep=0.2"), "invalid options for strategy 'random': kep"),
        (("compare", "random", "--set", "fastv.k=2"), "names a strategy that is not being compared"),
        (("compare", "random", "--model", "/no/such/model"), "/no/such/model"),
        (
            ("compare", "random", "--benchmark", "synthetc"),
            "unknown benchmark 'synthetc'; did you mean 'synthetic'?",
        ),
        (("list", "--options", "fastw"), "unknown strategy 'fastw'"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, message):
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_list_shows_strategies_and_a_strategys_options():
    proc = _run("list")
    assert proc.returncode == 0, proc.stderr
    for name in ("none", "random", "uniform", "hieravid"):
        assert name in proc.stdout
    proc = _run("list", "--options", "hieravid")
    assert proc.returncode == 0, proc.stderr
    assert "relevance_sign" in proc.stdout and "segment_level" in proc.stdout


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("random.keep=0.5", "random.keep=0.5 conflicts with the budget: --keep 0.3 (layer-average) sets random's 'keep'"),
        ("fastv.keep=0.2", "fastv.keep=0.2 conflicts with the budget: --keep 0.3 (layer-average) sets fastv's 'keep'"),
    ],
)
def test_a_knob_the_budget_sets_is_one_line_with_exit_code_2(tmp_path, option, message):
    """The documented rule (README, docs/writing-a-strategy.md): the budget owns its knobs; setting one
    by hand is one error line, never a traceback (random) or a silent overwrite (fastv)."""
    name = option.split(".")[0]
    proc = _run("compare", name, "--set", option, "--limit", "1", "--out", str(tmp_path / "r"), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "r" / "results.jsonl").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compare", "random+"), "empty strategy name in 'random+'"),
        (("compare", "fastv+fastv"), "mounts fastv twice"),
        (("compare", "random", "--frames", "-3"), "--frames must be at least 1, got -3"),
        (("compare", "random", "--frames", "0"), "--frames must be at least 1, got 0"),
        (("compare", "random", "--device", "tpu0"), "--device must be cpu, cuda or cuda:N, got 'tpu0'"),
        (("compare", "random", "--data-dir", "/tmp"), "--data-dir is for published benchmarks"),
        (("compare", "random", "--set", "fastv"), "(e.g. --set fastv.k=3)"),
        (("compare", "random", "--kep", "0.3"), "No such option '--kep'"),
        (("compare", "random[layer=99]", "--frames", "2", "--limit", "1"), "choose a layer below"),
        (("compare", "random", "--frames", "100000", "--limit", "1"), "more than this model's context"),
    ],
)
def test_more_mistakes_are_one_line_with_exit_code_2(tmp_path, args, message):
    proc = _run(*args, "--out", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "r").exists() or not (tmp_path / "r" / "results.jsonl").exists()


def _broken_model(tmp_path, damage: str):
    from prune_bench.adapters.loading import DEFAULT_MODEL_DIR
    from prune_bench.testing import damaged_checkpoint

    return damaged_checkpoint(DEFAULT_MODEL_DIR, tmp_path / "model", damage)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", "model.safetensors' is unreadable"),
        ("empty", "model.safetensors' is empty"),
        ("pickle only", "holds only pickle weights (pytorch_model.bin)"),
        ("no tokenizer", "has no tokenizer"),
        ("corrupt prune_bench.json", "prune_bench.json' is not valid JSON"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_with_exit_code_2(tmp_path, damage, message):
    model = _broken_model(tmp_path, damage)
    proc = _run("compare", "none", "--model", str(model), "--limit", "1", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
