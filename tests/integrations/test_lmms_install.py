"""lmms-eval itself, installed with the ``lmms`` extra as the README says: its evaluator imports, its own
model registry resolves ``--model prune_bench`` to our class, ``lmms-eval models`` lists it, and its
command line runs the example local task through the model on CPU.

Skipped where lmms-eval is not installed (the ``test`` extra leaves it out: .ci/run installs it in a
later step and runs these tests again). An lmms-eval that is installed but fails to import (a CUDA
torchvision beside a CPU torch, filelock 4) fails here instead of being skipped.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prune_bench.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "examples" / "lmms_eval_tasks"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lmms_eval") is None,
    reason="lmms-eval is not installed (the lmms extra; README, section lmms-eval, says how)",
)


def test_lmms_evals_evaluator_imports_with_a_filelock_it_can_patch() -> None:
    # The evaluator imports transformers' pipelines, which import torchvision when it is installed: a
    # CUDA build beside a CPU torch fails here ("operator torchvision::nms does not exist").
    importlib.import_module("lmms_eval.evaluator")
    # lmms-eval's evaluate() patches filelock._api.FileLockMeta on every run; filelock 4 has no _api.
    assert hasattr(importlib.import_module("filelock._api"), "FileLockMeta")


def test_model_prune_bench_resolves_through_lmms_evals_registry() -> None:
    from lmms_eval.api.model import lmms
    from lmms_eval.models import MODEL_REGISTRY_V2, get_model

    from prune_bench.integrations.lmms_eval import PruneBenchLMM

    resolved = MODEL_REGISTRY_V2.resolve("prune_bench")
    assert (resolved.model_type, resolved.class_path) == (
        "simple",
        "prune_bench.integrations.lmms_eval.PruneBenchLMM",
    )
    assert get_model("prune_bench") is PruneBenchLMM and issubclass(PruneBenchLMM, lmms)


def test_lmms_eval_models_lists_prune_bench(capsys: pytest.CaptureFixture[str]) -> None:
    from lmms_eval.cli.models_cmd import run_models

    run_models(argparse.Namespace(aliases=False))
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["prune_bench", "simple"] in rows


def test_bad_model_args_reach_the_user_through_lmms_evals_loader() -> None:
    from lmms_eval.models import get_model

    # what lmms-eval's simple_evaluate does with --model and --model_args
    with pytest.raises(UserError, match="unknown model_args for prune_bench: strategie"):
        get_model("prune_bench").create_from_arg_string("strategie=fastv", {"batch_size": 1})
    with pytest.raises(UserError, match="model_args frames must be a whole number, got 'eight'"):
        get_model("prune_bench").create_from_arg_string("frames=eight", {"batch_size": 1})


def _run(command: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PRUNE_BENCH_TINY_VIDEOS": str(tmp_path / "videos"),
        "HF_HOME": str(tmp_path / "hf"),  # the json dataset's cache, not the user's
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
    }
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _lmms_eval(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lmms_eval", "--tasks", "prune_bench_tiny_mc_video"]
    return _run([*command, "--include_path", str(TASKS), "--batch_size", "1", *args], tmp_path)


@pytest.mark.slow
def test_lmms_evals_command_line_runs_the_example_task_through_the_model(tmp_path: Path) -> None:
    made = _run([sys.executable, str(TASKS / "tiny_mc_video" / "make_videos.py")], tmp_path)
    assert made.returncode == 0 and len(list((tmp_path / "videos").glob("*.mp4"))) == 4, made.stderr
    logs = tmp_path / "logs"
    model_args = "strategy=random,keep=0.5,frames=4,device=cpu"
    run = _lmms_eval(["--model", "prune_bench", "--model_args", model_args, "--output_path", str(logs),
                      "--log_samples", "--limit", "2"], tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Error during evaluation" not in run.stdout + run.stderr
    (results_file,) = logs.rglob("*_results.json")
    results = json.loads(results_file.read_text())["results"]["prune_bench_tiny_mc_video"]
    assert 0.0 <= results["accuracy,none"] <= 100.0
    (samples_file,) = logs.rglob("*_samples_prune_bench_tiny_mc_video.jsonl")
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    pruning = [json.loads(line) for line in (logs / "prune_bench_pruning.jsonl").read_text().splitlines()]
    assert sorted(s["doc_id"] for s in samples) == sorted(p["doc_id"] for p in pruning) == [0, 1]
    assert all(p["strategy"].startswith("random") and p["retention"]["input"] < 1.0 for p in pruning)

    # lmms-eval catches a model's exception, prints it and exits 0 (with --verbosity DEBUG it re-raises);
    # what we control is that the reason is ours, readable, and that nothing is written as a result
    bad = _lmms_eval(["--model", "prune_bench", "--model_args", "keep=2", "--output_path", str(tmp_path / "bad")],
                     tmp_path)  # fmt: skip
    assert "keep must be in" in bad.stdout + bad.stderr
    assert not list((tmp_path / "bad").rglob("*_results.json"))


@pytest.mark.slow
def test_two_processes_under_torchrun_answer_each_document_once_and_gather_them_all(tmp_path: Path) -> None:
    # lmms-eval splits the documents by the launcher's rank (here torchrun's, two gloo CPU processes),
    # each process answers its share through our model and rank 0 gathers every answer
    made = _run([sys.executable, str(TASKS / "tiny_mc_video" / "make_videos.py")], tmp_path)
    assert made.returncode == 0, made.stderr
    logs = tmp_path / "logs"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "lmms_eval"]
    run = _run([*torchrun, "--tasks", "prune_bench_tiny_mc_video", "--include_path", str(TASKS), "--batch_size", "1",
                "--model", "prune_bench", "--model_args", "strategy=random,keep=0.5,frames=4,device=cpu",
                "--output_path", str(logs), "--log_samples"], tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Error during evaluation" not in run.stdout + run.stderr, (run.stdout + run.stderr)[-3000:]
    answered = {
        rank: [
            json.loads(line)["doc_id"]
            for line in (logs / f"prune_bench_pruning.jsonl.rank{rank}").read_text().splitlines()
        ]
        for rank in (0, 1)
    }
    assert answered[0] and answered[1] and not set(answered[0]) & set(answered[1])  # each once, both worked
    assert sorted(answered[0] + answered[1]) == [0, 1, 2, 3]
    (samples_file,) = logs.rglob("*_samples_prune_bench_tiny_mc_video.jsonl")
    assert sorted(json.loads(line)["doc_id"] for line in samples_file.read_text().splitlines()) == [
        0,
        1,
        2,
        3,
    ]
