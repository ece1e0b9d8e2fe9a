"""``prune-bench ablate``: a strategy and every ablation it declares, at the same budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prune_bench.core.plugins import registry
from prune_bench.errors import UserError


def test_ablate_runs_the_strategy_and_each_declared_variant(swept: Path) -> None:
    records = [json.loads(line) for line in (swept / "results.jsonl").read_text().splitlines()]
    ablated = {r["strategy"] for r in records if r["strategy"].startswith("hieravid")}
    expected = {"hieravid", *registry().strategy("hieravid").ablation_specs().values()}
    assert ablated == expected and len(expected) > 5
    for name in ablated:
        runs = [r for r in records if r["strategy"] == name]
        assert len(runs) == 6 and {r["keep"] for r in runs} == {0.3}
    by_name = {r["strategy"]: r for r in records if r["item_id"] == records[0]["item_id"]}
    # the variants really change the run: without the layer level all pruning happens at the input
    no_layers = by_name["hieravid[layer_level=false]"]
    assert no_layers["retention"]["input"] == pytest.approx(no_layers["retention"]["layer_average"])
    assert by_name["hieravid"]["retention"]["input"] > by_name["hieravid"]["retention"]["layer_average"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("fastv",), "strategy 'fastv' declares no ablations; strategies that do: "),
        (("hieravd",), "unknown strategy 'hieravd'"),
        (("hieravid", "--keep", "2"), "--keep must be in (0, 1], got 2.0"),
        (("hieravid", "--model", "/no/such/model"), "/no/such/model"),
    ],
)
def test_mistakes_are_one_line_before_any_model_loads(no_model: None, run_cli, args, message) -> None:
    result = run_cli("ablate", *args)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    if args == ("fastv",):
        assert "hieravid" in str(result.exception)  # it names the strategies that have ablations
