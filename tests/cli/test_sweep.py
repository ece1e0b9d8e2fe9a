"""``prune-bench sweep``: every strategy at every keep into one resumable store; ``--keep`` takes
several values; mistakes are one readable line before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from prune_bench.cli.evaluation import KeepOption
from prune_bench.errors import UserError


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_sweep_runs_each_strategy_at_each_keep_and_a_rerun_computes_nothing(
    swept: Path, run_cli, fast
) -> None:
    records = [r for r in _records(swept) if "[" not in r["strategy"] and r["strategy"] != "hieravid"]
    runs = {(r["strategy"], r["keep"]) for r in records}
    assert runs == {("none", 1.0), ("random", 0.2), ("random", 0.4), ("uniform", 0.2), ("uniform", 0.4)}
    assert len(records) == 6 * len(runs)  # six items each
    for r in records:
        assert r["retention"]["layer_average"] == pytest.approx(r["keep"], abs=0.05)
    before = (swept / "results.jsonl").read_text()
    result = run_cli(
        "sweep", "random", "uniform", "--keep", "0.2", "--keep", "0.4", "--out", str(swept), *fast
    )
    assert result.exit_code == 0, result.output
    assert (swept / "results.jsonl").read_text() == before  # resumed: nothing recomputed
    assert "random" in result.output and "uniform" in result.output


def test_keep_takes_several_values_and_may_repeat() -> None:
    @click.command()
    @click.argument("names", nargs=-1)
    @click.option("--keep", "keeps", cls=KeepOption, type=float, multiple=True)
    def cmd(names: tuple[str, ...], keeps: tuple[float, ...]) -> None:
        click.echo(json.dumps([list(names), list(keeps)]))

    def parse(*args: str) -> list:
        result = CliRunner().invoke(cmd, list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    assert parse("a", "--keep", "0.1", "0.2", "0.3") == [["a"], [0.1, 0.2, 0.3]]
    assert parse("--keep", "0.1", "0.2", "a", "b", "--keep", "0.5") == [["a", "b"], [0.1, 0.2, 0.5]]
    assert parse("--keep", "1", "--keep", "0.25") == [[], [1.0, 0.25]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hieravd",), "unknown strategy 'hieravd'; did you mean 'hieravid'?"),
        (("random", "--keep", "0.2", "0"), "--keep must be in (0, 1], got 0.0"),
        (("random", "--keep", "0.3", "1.5"), "--keep must be in (0, 1], got 1.5"),
        (("random", "--keep", "0.2", "-0.1"), "--keep must be in (0, 1], got -0.1"),
        (("random", "--limit", "0"), "--limit must be at least 1"),
        (("random", "--set", "random.kep=1"), "invalid options for strategy 'random': kep"),
    ],
)
def test_mistakes_are_one_line_before_any_model_loads(
    no_model: None, run_cli, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("sweep", *args)
    assert isinstance(result.exception, UserError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_the_console_table_names_tasks_in_full_with_intervals_and_tests(swept: Path, run_cli, fast) -> None:
    """Issue 'Numbers a paper can print': full task names (MVBench's start alike), the average's 95%
    interval and the McNemar p against 'none', and a note when rows are too small to tell apart."""
    result = run_cli("sweep", "random", "--keep", "0.2", "--out", str(swept), *fast)
    assert result.exit_code == 0, result.output
    tasks = {r["task"] for r in _records(swept)}
    header = next(line for line in result.output.splitlines() if "strategy" in line and "keep" in line)
    assert all(t in header for t in tasks), header
    assert "95% CI" in header and "p vs none" in header
    assert "note: a row holds as few as 6 items" in " ".join(result.output.split())
