"""The identity of a results row: one configuration on one model and one item set, counted once per item."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prune_bench import Session
from prune_bench.adapters.loading import DEFAULT_MODEL_DIR
from prune_bench.runner.summary import summarize


def _compare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prune_bench", "compare", *args, "--frames", "4", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_set_option_is_part_of_the_rows_name_written_canonically(tiny_adapter) -> None:
    assert Session(tiny_adapter, "fastv", keep=0.5, options={"fastv": {"k": 1}}).label == "fastv[k=1]"
    typed = Session(tiny_adapter, "hieravid[segment_level=False]", keep=0.5, num_frames=4)
    ablated = Session(tiny_adapter, "hieravid[segment_level=false]", keep=0.5, num_frames=4)
    assert typed.label == ablated.label == "hieravid[segment_level=false]"
    assert typed.hash() == ablated.hash()
    assert (
        Session(tiny_adapter, "fastv", keep=0.5).hash()
        != Session(tiny_adapter, "fastv[k=1]", keep=0.5).hash()
    )


def test_the_seed_is_part_of_a_configuration_only_where_a_stage_draws_random_numbers(tiny_adapter) -> None:
    assert Session(tiny_adapter, "none", seed=0).hash() == Session(tiny_adapter, "none", seed=1).hash()
    assert (
        Session(tiny_adapter, "fastv", keep=0.5, seed=0).hash()
        == Session(tiny_adapter, "fastv", keep=0.5, seed=1).hash()
    )
    assert (
        Session(tiny_adapter, "random", keep=0.5, seed=0).hash()
        != Session(tiny_adapter, "random", keep=0.5, seed=1).hash()
    )
    assert Session(tiny_adapter, "visionzip+random", keep=0.5).strategy.random


def test_random_draws_its_own_subset_for_every_item_and_the_same_one_again(tiny_adapter, tiny_sample) -> None:
    sample = tiny_sample[2]
    session = Session(tiny_adapter, "random", keep=0.5)

    def kept(item_id: str) -> list[int]:
        return session.prefill(sample, item_id=item_id).state.source.tolist()

    assert kept("a") == kept("a")
    assert len({tuple(kept(f"item{i}")) for i in range(6)}) > 1


def test_a_row_counts_each_item_once_and_configurations_that_share_a_label_stay_apart() -> None:
    def rec(config_hash: str, item: str, correct: bool) -> dict:
        return {
            "config_hash": config_hash, "item_id": item, "task": "t", "strategy": "fastv", "keep": 0.3,
            "unit": "layer-average", "correct": correct,
            "retention": {"input": 0.3, "layer_average": 0.3, "decode": 0.3},
            "flops": {"exact": 1.0, "paper": 1.0, "exact_full": 2.0, "paper_full": 2.0}, "timings_ms": {},
        }  # fmt: skip

    rows = summarize(
        [rec("h1", "a", False), rec("h1", "a", True), rec("h1", "b", True), rec("h2", "a", False)]
    )
    assert len(rows) == 2
    one = next(r for r in rows if r.config_hash == "h1")
    assert one.items == 2 and one.accuracy["t"] == 100.0  # the later record of item a counts, once
    assert {r.strategy for r in rows} == {"fastv (h1)", "fastv (h2)"}


@pytest.mark.slow
def test_a_larger_limit_reuses_every_record_and_table_counts_each_item_once(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert _compare("random", "--keep", "0.5", "--limit", "2", "--out", str(out)).returncode == 0
    first = _records(out)
    again = _compare("random", "--keep", "0.5", "--limit", "3", "--out", str(out), "--device", "cpu")
    assert again.returncode == 0, again.stderr
    records = _records(out)
    assert records[: len(first)] == first  # nothing recomputed
    assert len(records) == 2 * 3  # none and random, three items each
    table = subprocess.run(
        [sys.executable, "-m", "prune_bench", "table", str(out), "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert [line.split(",")[2] for line in table.stdout.splitlines()[1:]] == ["3", "3"]


@pytest.mark.slow
def test_two_models_with_one_folder_name_never_share_a_directory(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "m", tmp_path / "b" / "m"
    shutil.copytree(DEFAULT_MODEL_DIR, a)
    shutil.copytree(DEFAULT_MODEL_DIR, b)
    config = json.loads((b / "config.json").read_text())
    config["_note"] = "another checkpoint"
    (b / "config.json").write_text(json.dumps(config))
    out = tmp_path / "shared"
    first = _compare("none", "--model", str(a), "--limit", "1", "--out", str(out))
    assert first.returncode == 0, first.stderr
    mixed = _compare("none", "--model", str(b), "--limit", "1", "--out", str(out))
    assert mixed.returncode == 2
    lines = mixed.stderr.strip().splitlines()
    assert len(lines) == 1 and "holds results of another run (model_digest" in lines[0], mixed.stderr
    assert len(_records(out)) == 1  # nothing of the other model was written


def test_an_achieved_budget_off_by_more_than_5_percent_and_an_empty_layer_are_said() -> None:
    from prune_bench.runner.summary import SummaryRow, budget_warnings

    def row(strategy: str, keep: float, unit: str, achieved: float, empty: int | None = None) -> SummaryRow:
        return SummaryRow(
            strategy, keep, unit, 4,
            retention={"input": achieved, "layer_average": achieved, "decode": achieved},
            flops_ratio={"exact": achieved, "paper": achieved}, first_empty_layer=empty,
        )  # fmt: skip

    lines = budget_warnings(
        [row("none", 1.0, "input", 1.0), row("fastv", 0.3, "input", 1.0), row("uniform", 0.1, "layer-average", 0.104),
         row("visionzip", 0.1, "layer-average", 0.125), row("fastv", 0.1, "layer-average", 0.19, empty=2)]
    )  # fmt: skip
    assert any("fastv asked keep=0.3 (input) and achieved 1.000 (+233%)" in line for line in lines)
    assert any("visionzip asked keep=0.1 (layer-average) and achieved 0.125 (+25%)" in line for line in lines)
    assert not any("uniform" in line for line in lines)  # 4% off: within tolerance
    assert any("fastv at keep=0.1 kept no visual token from LLM layer 2 on" in line for line in lines)
