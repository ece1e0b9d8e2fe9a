from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from prune_bench.cli.report_cmd import report
from prune_bench.errors import UserError


def test_markdown_by_default(store_dir: Path) -> None:
    result = CliRunner().invoke(report, [str(store_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("| strategy | keep | n | a | b | avg |")
    assert "rel. FLOPs (exact)" in result.output


def test_csv_and_paper_flops(store_dir: Path) -> None:
    result = CliRunner().invoke(report, [str(store_dir), "--format", "csv", "--flops", "paper"])
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert parsed[0]["strategy"] == "none" and "flops_paper" in parsed[0]


def test_latex_to_file_and_plots(tmp_path: Path, store_dir: Path) -> None:
    out, figs = tmp_path / "table.tex", tmp_path / "figs"
    args = [str(store_dir / "results.jsonl"), "--format", "latex", "-o", str(out)]
    args += ["--plots", str(figs), "--pdf"]
    result = CliRunner().invoke(report, args)
    assert result.exit_code == 0, result.output
    assert r"\begin{tabular}" in out.read_text() and result.stdout == ""
    # the figures of 'prune-bench plot' (no ablation ran here, so no ablation figure)
    stems = ["accuracy_vs_flops_exact", "accuracy_vs_retention", "accuracy_vs_ttft", "tokens_per_layer"]
    assert sorted(p.stem for p in figs.glob("*.png")) == stems == sorted(p.stem for p in figs.glob("*.pdf"))
    assert "plot: " in result.stderr


@pytest.mark.parametrize("setup", ["missing", "no_file", "empty", "torn"])
def test_missing_or_empty_directory_is_a_user_error(tmp_path: Path, setup: str) -> None:
    target = tmp_path / "results"
    if setup != "missing":
        target.mkdir()
    if setup == "empty":
        (target / "results.jsonl").write_text("")
    if setup == "torn":
        (target / "results.jsonl").write_text('{"config_hash": "x", "item')
    result = CliRunner().invoke(report, [str(target)])
    assert isinstance(result.exception, UserError)
    message = str(result.exception)
    assert "\n" not in message and str(target) in message
    assert not (setup == "missing" and target.exists())  # reading never creates the directory


def test_user_error_is_one_line_through_main(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import click

    from prune_bench.cli import main as main_mod

    # The command is registered in cli/commands.py; mount it alone here to test main's error path.
    monkeypatch.setattr(main_mod, "cli", click.Group(commands={"report": report}))
    with pytest.raises(SystemExit) as exit_info:
        main_mod.main(["report", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "does not exist" in err and "\n" not in err
