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


FAST_SPEED = ["--arch", "tiny-llava-onevision", "--keep", "0.3", "--repeats", "1", "--warmup", "0",
              "--decode-tokens", "2", "--device", "cpu"]  # fmt: skip


def test_speed_reports_the_segments_each_strategy_formed_on_the_rendered_scenes(
    run_cli, tmp_path: Path
) -> None:
    out = tmp_path / "speed"
    result = run_cli(
        "speed", "random", "hieravid", "fastvid", "--frames", "16", *FAST_SPEED, "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "speed.json").read_text())
    rows = {r["strategy"]: r for r in data["rows"]}
    assert rows["none"]["segments"] is None and rows["random"]["segments"] is None
    assert rows["hieravid"]["segments"] > 1 and rows["fastvid"]["segments"] > 1
    assert data["meta"]["input"] == "scenes" and data["meta"]["features"] == "centred"
    text = (out / "speed.md").read_text()
    assert "| ret. layer-avg | segments |" in text
    assert "rendered clip of 8 scenes" in text and "centred" in text
    assert "segments" in result.output


def test_speed_on_noise_keeps_the_towers_tokens(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "noise"
    result = run_cli("speed", "hieravid", "--input", "noise", "--frames", "8", *FAST_SPEED, "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads((out / "speed.json").read_text())
    assert data["meta"]["input"] == "noise" and data["meta"]["features"] == "tower"
    assert all(r["segments"] is None or r["segments"] >= 1 for r in data["rows"])
    assert "random pixels" in (out / "speed.md").read_text()


def test_speed_measures_a_users_video_file(run_cli, tmp_path: Path) -> None:
    from prune_bench.benchmarks.video import write_mp4
    from prune_bench.runner.speed_input import scene_clip

    video = write_mp4(scene_clip(24, 64, scenes=3), tmp_path / "mine.mp4", fps=8)
    out = tmp_path / "video"
    result = run_cli(
        "speed", "hieravid", "--video", str(video), "--frames", "8", *FAST_SPEED, "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "speed.json").read_text())
    rows = {r["strategy"]: r for r in data["rows"]}
    assert set(rows) == {"none", "hieravid"} and rows["hieravid"]["frames"] == 8 and not data["failures"]
    assert data["meta"]["input"] == "video" and str(video) in data["meta"]["input_description"]


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from prune_bench.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err.strip()  # type: ignore[return-value]


def test_a_missing_or_corrupt_video_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 64)
    for path, says in ((tmp_path / "absent.mp4", "does not exist"), (broken, "could not decode")):
        code, err = _main(["speed", "hieravid", "--video", str(path), "--frames", "8", *FAST_SPEED], capsys)
        assert code == 2 and says in err and len(err.splitlines()) == 1, err


def test_input_and_video_together_or_no_scene_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _main(["speed", "hieravid", "--input", "noise", "--video", "x.mp4", *FAST_SPEED], capsys)
    assert code == 2 and "not both" in err and len(err.splitlines()) == 1, err
    code, err = _main(["speed", "hieravid", "--scenes", "0", *FAST_SPEED], capsys)
    assert code == 2 and "--scenes must be at least 1" in err, err
