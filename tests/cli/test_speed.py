"""``prune-bench speed`` on the tiny architectures (CPU): rows, outputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize("arch", ["tiny-llava-onevision", "tiny-qwen2-vl"])
def test_speed_measures_every_strategy_and_writes_its_outputs(run_cli, arch: str, tmp_path: Path) -> None:
    out = tmp_path / "speed"
    result = run_cli("speed", "random", "hieravid", "--arch", arch, "--frames", "8", "--keep", "0.3",
                     "--repeats", "1", "--warmup", "0", "--decode-tokens", "2", "--device", "cpu",
                     "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads((out / "speed.json").read_text())
    rows = {r["strategy"]: r for r in data["rows"]}
    assert set(rows) == {"none", "random", "hieravid"} and not data["failures"]
    assert rows["none"]["speedup"] == pytest.approx(1.0)
    assert rows["random"]["retention_layer_average"] == pytest.approx(0.3, abs=0.02)
    assert rows["random"]["ideal_speedup"] > 1.2 and rows["hieravid"]["pruning_ms"] > 0
    # overhead is pruning over the pruned LM prefill (stages excluded), so it can exceed 1
    h = rows["hieravid"]
    assert h["overhead"] == pytest.approx(h["pruning_ms"] / h["lm_prefill_ms"])
    # ... and is broken down by stage: HieraVid's segment level and its three in-LLM stages
    assert len(h["stage_ms"]) == 4 and all(ms > 0 for ms in h["stage_ms"].values())
    assert sum(h["stage_ms"].values()) == pytest.approx(h["pruning_ms"], rel=0.2)
    assert data["meta"]["arch"] == arch and "cpu" in json.dumps(data["meta"]["machine"]).lower()
    assert (out / "speed.md").is_file()
    # the table is printed whole, not folded into ellipses
    assert "LM prefill ms" in result.output and "achieved/ideal" in result.output


def test_speed_unknown_architecture_is_one_line(run_cli) -> None:
    result = run_cli("speed", "random", "--arch", "llava-onevison-7b", "--device", "cpu")
    assert result.exit_code != 0 and "did you mean llava-onevision-7b" in str(
        result.exception or result.output
    )
