"""Training the default model: a 3-step CPU smoke run, and training sees what evaluation sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prune_bench.adapters.base import PromptFormat
from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter
from prune_bench.adapters.loading import DEFAULT_MODEL_DIR
from prune_bench.benchmarks.synthetic import SyntheticVideoQA
from prune_bench.core.stages import PruningPlan
from prune_bench.training import (
    PROMPT_TEMPLATE,
    ModelShape,
    TrainSettings,
    answer_logits,
    train_default_model,
    video_token_count,
)
from prune_bench.training.data import PromptEncoder, make_batch, sample_parts


def tiny_settings(**changes: object) -> TrainSettings:
    """A CPU smoke run: the tiny shape, 12 frames, a handful of steps and held-out items."""
    base: dict[str, object] = {
        "steps": 3,
        "minutes": None,
        "batch_size": 6,
        "num_frames": 12,
        "warmup": 2,
        "eval_items": 6,
        "eval_random_keep": None,
        "shape": ModelShape.tiny(),
    }
    return TrainSettings(**{**base, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    settings = tiny_settings()
    summary = train_default_model(out, settings, device="cpu", log=lambda _: None, show_progress=False)
    assert summary["steps"] == 3 and set(summary["heldout"]["none"]) >= {"needle", "avg"}
    return out


def test_smoke_run_writes_a_loadable_model_dir(tiny_dir: Path) -> None:
    for name in ("model.safetensors", "config.json", "tokenizer.json", "prune_bench.json", "MODEL_CARD.md"):
        assert (tiny_dir / name).is_file(), name
    adapter = LlavaOnevisionAdapter.from_pretrained(str(tiny_dir))
    assert adapter.prompt_format.answer_mode == "option_word" and adapter.prompt_format.num_frames == 12
    item = SyntheticVideoQA(num_items=1, num_frames=12, size=32).items()[0]
    result = adapter.run(
        adapter.encode(item.video, item.question, item.options, capture_vision=False), PruningPlan.of([], 2)
    )
    assert result.choice in range(4)


def test_training_prompt_and_logits_match_the_adapter(tiny_dir: Path) -> None:
    adapter = LlavaOnevisionAdapter.from_pretrained(str(tiny_dir))
    fmt = PromptFormat.from_model_dir(tiny_dir)
    assert fmt.template == PROMPT_TEMPLATE
    shape = ModelShape.tiny()
    encoder = PromptEncoder(
        adapter.tokenizer, fmt, adapter.config.video_token_id, video_token_count(shape, 12)
    )
    parts = sample_parts(torch.Generator().manual_seed(0), {"motion": 1, "detail": 1}, 12, shape.image_size)
    batch = make_batch(parts, encoder, fmt, shape.image_size, torch.device("cpu"))
    with torch.no_grad():
        logits = answer_logits(
            adapter.model, batch.pixels, batch.ids, batch.last, adapter.config.video_token_id
        )
    for i, part in enumerate(parts):
        question, options = part.questions[0], part.options[0]
        ids, answer_ids = adapter.prompt_ids(
            question, options, adapter.video_span(adapter.video_token_count(12))
        )
        assert ids == batch.ids[i, : len(ids)].tolist() and int(batch.last[i]) == len(ids) - 1
        assert int(batch.target[i]) == answer_ids[int(part.answer[0])]
        sample = adapter.encode(part.frames[0], question, options, capture_vision=False)
        result = adapter.run(sample, PruningPlan.of([], adapter.config.text_config.num_hidden_layers))
        torch.testing.assert_close(
            torch.tensor(result.option_logits), logits[i, answer_ids], atol=1e-3, rtol=1e-3
        )


@pytest.mark.parametrize("task", ["needle", "count"])
def test_shipped_model_is_small_and_answers(task: str) -> None:
    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 20 * 2**20
    assert json.loads((DEFAULT_MODEL_DIR / "prune_bench.json").read_text())["answer_mode"] == "option_word"
    adapter = LlavaOnevisionAdapter.from_pretrained(str(DEFAULT_MODEL_DIR))
    items = SyntheticVideoQA(num_items=4, tasks=(task,)).items()
    plan = PruningPlan.of([], adapter.config.text_config.num_hidden_layers)
    right = sum(
        adapter.run(adapter.encode(i.video, i.question, i.options, capture_vision=False), plan).choice
        == i.answer
        for i in items
    )
    assert right >= 3


def test_shape_curriculum_is_single_scene_detail() -> None:
    (part,) = sample_parts(torch.Generator().manual_seed(1), {"shape": 8}, 12, 32)
    assert part.task == "shape" and all(m["scenes"] == 1 for m in part.meta)
    assert sorted(part.answer.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_weights_option_and_retrain_command() -> None:
    from prune_bench.errors import UserError
    from prune_bench.training import parse_weights, retrain_command

    assert parse_weights("count=2, shape=0") == {"count": 2.0, "shape": 0.0}
    for bad in ("count", "colour=1", "count=x"):
        with pytest.raises(UserError):
            parse_weights(bad)
    s = TrainSettings(lr=1e-3, batch_size=128)
    s.task_weights["count"] = 2.0
    from dataclasses import asdict

    cmd = retrain_command(asdict(s))
    assert "--lr 0.001" in cmd and "--batch-size 128" in cmd and "count=2" in cmd
    assert retrain_command(asdict(TrainSettings())).endswith("--seed 0 --minutes 8")
    # the shipped model's directory is refused without the flag, so its retrain command carries it
    shipped = "prune-bench train-default --out prune_bench/assets/default_model --overwrite-shipped --seed"
    assert retrain_command(asdict(TrainSettings())).startswith(shipped)
    assert (
        retrain_command(asdict(TrainSettings()), out=str(DEFAULT_MODEL_DIR)).count("--overwrite-shipped") == 1
    )
    assert "--overwrite-shipped" not in retrain_command(asdict(TrainSettings()), out="my_model/")


def test_scene_curriculum_asks_detail_the_other_way_round() -> None:
    (part,) = sample_parts(torch.Generator().manual_seed(2), {"scene": 8}, 12, 32)
    assert part.task == "scene" and sorted(part.answer.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    for q, opts, word, m in zip(part.questions, part.options, part.answer_words, part.meta, strict=True):
        assert m["shape"] in q and word == m["background"] and len(set(opts)) == 4
        assert set(m["scene_backgrounds"]) <= set(opts)  # the video's other scenes are among the options
        assert m["scene_shapes"][m["scene"]] == m["shape"]


def test_init_carries_weights_over_by_word(tiny_dir: Path) -> None:
    from transformers import LlavaOnevisionForConditionalGeneration

    from prune_bench.training import build_config, load_init

    old = LlavaOnevisionForConditionalGeneration.from_pretrained(str(tiny_dir), dtype=torch.float32)
    old_vocab = LlavaOnevisionAdapter.from_pretrained(str(tiny_dir)).tokenizer.get_vocab()
    # a grown vocabulary: one new word sorted first shifts every id by one
    vocab = {"aardvark": 0, **{w: i + 1 for w, i in old_vocab.items()}}
    config = build_config(ModelShape.tiny(), len(vocab), vocab["<video>"], vocab["<image>"], vocab["[PAD]"])
    model, earlier = load_init(str(tiny_dir), config, vocab)
    assert earlier["steps"] == 3 and earlier["new_words"] == ["aardvark"]
    theirs = old.state_dict()
    for name, param in model.state_dict().items():
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            torch.testing.assert_close(param[1:], theirs[name], rtol=0, atol=0)
        else:
            torch.testing.assert_close(param, theirs[name], rtol=0, atol=0)


def test_continued_run_records_its_stages(tiny_dir: Path, tmp_path: Path) -> None:
    from prune_bench.errors import UserError
    from prune_bench.training import load_init, model_card, retrain_commands

    settings = tiny_settings(steps=2, warmup=1, init=str(tiny_dir), lr=3e-4)
    summary = train_default_model(tmp_path, settings, device="cpu", log=lambda _: None, show_progress=False)
    assert summary["init"]["steps"] == 3 and "heldout" not in summary["init"]
    first, second = retrain_commands(summary)
    assert "--out /tmp/default-model-stage-1" in first and "--init" not in first
    assert "--init /tmp/default-model-stage-1" in second and "--lr 0.0003" in second
    assert "--overwrite-shipped" not in first
    assert "--out prune_bench/assets/default_model --overwrite-shipped" in second
    assert "Continued from the weights of an earlier run: 3 steps" in model_card(summary)
    assert "5 optimiser steps in all" in model_card(summary)
    with pytest.raises(UserError, match="not a model directory"):
        load_init(str(tmp_path / "nowhere"), None, {})


def test_background_task_names_the_single_scene_colour() -> None:
    from prune_bench.benchmarks.synthetic.vocab import BACKGROUND_COLOURS

    (part,) = sample_parts(torch.Generator().manual_seed(4), {"background": 8}, 12, 32)
    assert part.task == "background" and sorted(part.answer.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    for i, (opts, word, m) in enumerate(zip(part.options, part.answer_words, part.meta, strict=True)):
        assert m["scenes"] == 1 and len(set(opts)) == 4
        assert tuple(part.frames[i, 0, 0, 0].tolist()) == BACKGROUND_COLOURS[word]


def test_public_names_import_from_the_package() -> None:
    import prune_bench.training as training
    from prune_bench.training.evaluation import evaluate_model_dir

    for name in training.__all__:
        assert getattr(training, name) is not None, name
    assert training.evaluate_model_dir is evaluate_model_dir
    for name in ("ModelShape", "TrainSettings", "train_default_model", "load_init", "parse_weights"):
        assert name in training.__all__


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from prune_bench.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code, capsys.readouterr().err.strip()  # type: ignore[return-value]


def test_train_default_without_out_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main(["train-default"], capsys)
    assert code == 2 and "Missing option '--out'" in err, err


@pytest.mark.parametrize("relative", [False, True])
def test_train_default_refuses_the_shipped_dir(
    relative: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import prune_bench.training as training

    monkeypatch.setattr(training, "train_default_model", lambda *a, **k: pytest.fail("trained"))
    out = str(DEFAULT_MODEL_DIR)
    if relative:  # as the model card's retrain command names it, from the directory above the package
        monkeypatch.chdir(DEFAULT_MODEL_DIR.parents[2])
        out = "prune_bench/assets/default_model/"
    before = (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_mtime_ns
    code, err = _main(["train-default", "--out", out, "--no-progress"], capsys)
    assert code == 2 and "\n" not in err, err
    assert err.startswith("error: ") and "shipped model" in err and "--overwrite-shipped" in err
    assert (DEFAULT_MODEL_DIR / "model.safetensors").stat().st_mtime_ns == before


def test_overwrite_shipped_lets_the_shipped_dir_through(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import prune_bench.training as training

    calls: list[str] = []
    monkeypatch.setattr(training, "train_default_model", lambda out, *a, **k: calls.append(out))
    from prune_bench.cli.main import main

    main(["train-default", "--out", str(DEFAULT_MODEL_DIR), "--overwrite-shipped", "--device", "cpu"])
    assert calls == [str(DEFAULT_MODEL_DIR)]
