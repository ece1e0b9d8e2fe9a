"""The lmms-eval model class against lmms-eval's interface: lmms-eval itself where the lmms extra is
installed (.ci/run's last step), tests/lmms_eval_standin.py where it is not (the test extra leaves it out)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from lmms_eval_standin import imported_against_lmms_eval

from prune_bench.benchmarks.video import write_mp4
from prune_bench.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lmms_module():
    """prune_bench.integrations.lmms_eval imported against lmms-eval (the stand-in if it is absent)."""
    with imported_against_lmms_eval() as module:
        yield module


@pytest.fixture(scope="module")
def model(lmms_module):
    return lmms_module.PruneBenchLMM.create_from_arg_string("strategy=random,keep=0.5,frames=8,device=cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> str:
    frames = torch.arange(16, dtype=torch.uint8).mul(15)[:, None, None, None].expand(16, 64, 64, 3)
    return str(write_mp4(frames.contiguous(), tmp_path_factory.mktemp("lmms") / "clip.mp4"))


def _instance(kind: str, args: tuple) -> Any:
    from lmms_eval.api.instance import Instance

    return Instance(
        request_type=kind, arguments=args, idx=0, metadata={"task": "t", "doc_id": 0, "repeats": 1}
    )


def test_the_class_is_an_lmms_eval_simple_model_found_through_its_manifest(lmms_module, model) -> None:
    from lmms_eval.api.model import lmms

    assert isinstance(model, lmms) and lmms_module.PruneBenchLMM.is_simple
    (manifest,) = lmms_module.manifests()
    assert manifest.model_id == "prune_bench"
    module_name, cls_name = manifest.simple_class_path.rsplit(".", 1)
    assert getattr(importlib.import_module(module_name), cls_name) is lmms_module.PruneBenchLMM
    assert model.session.label.startswith("random") and model.keep == 0.5 and model.session.num_frames == 8


def test_pyproject_registers_the_entry_point_and_the_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["lmms_eval.models"]["prune_bench"]
    assert target == "prune_bench.integrations.lmms_eval:manifests"
    assert any(dep.startswith("lmms-eval") for dep in project["optional-dependencies"]["lmms"])
    assert not any("lmms" in dep for dep in project["optional-dependencies"]["test"])


def test_generate_until_and_loglikelihood_agree_on_the_greedy_answer(model, video) -> None:
    model.task_dict = {"t": {"test": {0: {"video": video, "answer": "?"}}}}
    to_visual = lambda doc: [doc["video"]]  # noqa: E731
    context = "What is shown?"
    (out,) = model.generate_until(
        [_instance("generate_until", (context, {"max_new_tokens": 1}, to_visual, 0, "t", "test"))]
    )
    text = out.text
    assert isinstance(text, str) and text.strip()
    ids = model.tokenizer(text.strip(), add_special_tokens=False)["input_ids"]
    vocab = model.tokenizer.get_vocab()
    other = next(w for w, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i not in ids and w.isalpha())
    results = {}
    for word in (text.strip(), other):
        model.task_dict["t"]["test"][0]["answer"] = word
        (results[word],) = model.loglikelihood(
            [_instance("loglikelihood", (context, lambda doc: doc["answer"], to_visual, 0, "t", "test"))]
        )
    assert results[text.strip()][1] is True and results[other][1] is False
    assert results[other][0] < results[text.strip()][0] <= 0.0


def test_generation_stops_at_until(model, video) -> None:
    model.task_dict = {"t": {"test": {0: {"video": video}}}}
    (full_out,) = model.generate_until(
        [_instance("generate_until", ("Q?", {"max_new_tokens": 4}, lambda d: [d["video"]], 0, "t", "test"))]
    )
    full = full_out.text
    words = full.split()
    if len(words) > 1:
        (cut,) = model.generate_until(
            [
                _instance(
                    "generate_until",
                    (
                        "Q?",
                        {"max_new_tokens": 4, "until": [" " + words[1]]},
                        lambda d: [d["video"]],
                        0,
                        "t",
                        "test",
                    ),
                )
            ]  # fmt: skip
        )
        assert cut.text == full.split(" " + words[1])[0]


def test_bad_model_args_are_one_readable_error(lmms_module, tmp_path) -> None:
    with pytest.raises(UserError, match="unknown model_args for prune_bench: strategie"):
        lmms_module.PruneBenchLMM(strategie="fastv")
    with pytest.raises(UserError, match="keep must be in"):
        lmms_module.PruneBenchLMM(keep="1.5")
    for name in ("frames", "seed"):
        with pytest.raises(UserError, match=f"model_args {name} must be a whole number, got 'x'"):
            lmms_module.PruneBenchLMM.create_from_arg_string(f"strategy=none,device=cpu,{name}=x")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="cannot write the pruning log .*a_file/log.jsonl .*pruning_log=none"):
        lmms_module.PruneBenchLMM.create_from_arg_string(
            f"strategy=none,frames=4,device=cpu,pruning_log={tmp_path / 'a_file' / 'log.jsonl'}"
        )


def test_rank_and_world_size_come_from_the_launcher(lmms_module, monkeypatch) -> None:
    """Under ``accelerate launch --num_processes N`` (or torchrun) each process takes its rank, so
    lmms-eval splits the documents instead of every process answering every one."""
    made = []
    monkeypatch.setattr(lmms_module, "_accelerator", lambda: made.append(1) or object())
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    two = lmms_module.PruneBenchLMM.create_from_arg_string("strategy=none,frames=4,device=cpu")
    assert (two._rank, two._world_size) == (1, 2) and made == [1]
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("LOCAL_RANK")
    one = lmms_module.PruneBenchLMM.create_from_arg_string("strategy=none,frames=4,device=cpu")
    assert (one._rank, one._world_size) == (0, 1) and made == [1]


def test_each_answer_carries_token_counts_and_the_sidecar_what_pruning_achieved(
    lmms_module, video, tmp_path
) -> None:
    log = tmp_path / "out" / "pruning.jsonl"
    lmm = lmms_module.PruneBenchLMM(
        strategy="random", keep="0.5", frames="8", device="cpu", pruning_log=str(log)
    )
    lmm.task_dict = {"t": {"test": {3: {"video": video}}}}
    (out,) = lmm.generate_until(
        [_instance("generate_until", ("Q?", {"max_new_tokens": 3}, lambda d: [d["video"]], 3, "t", "test"))]
    )
    counts = out.token_counts
    assert 0 < counts.output_tokens <= 3 and counts.input_tokens > lmm.session.adapter.video_token_count(8)
    (line,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert (line["task"], line["doc_id"], line["split"], line["response"]) == ("t", 3, "test", out.text)
    assert set(line["retention"]) == {"input", "layer_average", "decode"}
    assert line["retention"]["layer_average"] < 0.75 and line["strategy"].startswith("random")
    assert (
        0 < line["flops"]["exact"] < line["flops"]["exact_full"]
        and line["output_tokens"] == counts.output_tokens
    )


def test_the_sidecar_goes_beside_lmms_evals_output_path(lmms_module, monkeypatch, tmp_path) -> None:
    argv = ["lmms-eval", "--model", "prune_bench", "--output_path", str(tmp_path / "logs"), "--log_samples"]
    assert lmms_module.output_path_arg(argv) == str(tmp_path / "logs")
    assert lmms_module.output_path_arg(["x", f"--output_path={tmp_path}"]) == str(tmp_path)
    monkeypatch.setattr(lmms_module.sys, "argv", argv)
    assert lmms_module.pruning_log_path(None, 0, 1) == tmp_path / "logs" / "prune_bench_pruning.jsonl"
    assert lmms_module.pruning_log_path(None, 1, 2).name == "prune_bench_pruning.jsonl.rank1"
    assert lmms_module.pruning_log_path("none", 0, 1) is None
    monkeypatch.setattr(lmms_module.sys, "argv", ["lmms-eval"])
    # no output folder: lmms-eval saves nothing either
    assert lmms_module.pruning_log_path(None, 0, 1) is None


EXAMPLE = ROOT / "examples" / "lmms_eval_tasks" / "tiny_mc_video"


def _load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"tiny_mc_video_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_example_local_task_runs_through_the_model_and_scores(model, monkeypatch, tmp_path) -> None:
    import yaml

    class TaskLoader(yaml.SafeLoader):  # lmms-eval's YAML tags, read as the names they point to
        pass

    TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    config = yaml.load((EXAMPLE / "tiny_mc_video.yaml").read_text(), Loader=TaskLoader)  # noqa: S506
    assert config["output_type"] == "generate_until" and config["dataset_path"] == "json"
    assert (ROOT / config["dataset_kwargs"]["data_files"]["test"]).is_file()
    monkeypatch.setenv("PRUNE_BENCH_TINY_VIDEOS", str(tmp_path / "videos"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    utils = _load_example("utils")
    for key in ("doc_to_visual", "doc_to_text", "process_results"):
        assert callable(getattr(utils, config[key].removeprefix("utils.")))
    aggregate = getattr(utils, config["metric_list"][0]["aggregation"].removeprefix("utils."))
    assert len(_load_example("make_videos").make_videos()) == 4
    path = ROOT / config["dataset_kwargs"]["data_files"]["test"]
    docs = dict(enumerate(json.loads(line) for line in path.read_text().splitlines()))
    kwargs = config["lmms_eval_specific_kwargs"]["default"]
    assert utils.doc_to_text(docs[0], kwargs) == (
        "What colour fills the video?\nA. green\nB. red\nC. blue\nD. white\n"
        "Answer with the option's letter from the given choices directly."
    )
    # the right letter in any form lmms-eval's parser reads counts; the colour word alone does not
    assert [utils.process_results(docs[0], [r])["accuracy"]["correct"] for r in ("(B) red", "B.", "red", "A")] == [
        True, True, False, False,
    ]  # fmt: skip
    model.task_dict = {config["task"]: {"test": docs}}
    requests = [
        _instance(
            "generate_until",
            (
                utils.doc_to_text(doc, kwargs),
                config["generation_kwargs"],
                utils.doc_to_visual,
                n,
                config["task"],
                "test",
            ),
        )  # fmt: skip
        for n, doc in docs.items()
    ]
    answers = [out.text for out in model.generate_until(requests)]
    results = [utils.process_results(docs[n], [a])["accuracy"] for n, a in enumerate(answers)]
    expected = 100.0 * sum(r["pred"] == docs[n]["answer"] for n, r in enumerate(results)) / 4
    assert len(results) == 4 and aggregate(results) == expected


def test_the_model_joins_the_table_lmms_eval_models_lists_unless_it_is_read_only(
    lmms_module, monkeypatch
) -> None:
    import sys
    import types

    path = "prune_bench.integrations.lmms_eval.PruneBenchLMM"
    table = {"llava_hf": "LlavaHf"}
    loading = types.SimpleNamespace(AVAILABLE_SIMPLE_MODELS=table)  # lmms_eval.models, mid-import
    monkeypatch.setitem(sys.modules, "lmms_eval.models", loading)
    lmms_module.manifests()
    assert table == {"llava_hf": "LlavaHf", "prune_bench": path}
    loading.AVAILABLE_SIMPLE_MODELS = types.MappingProxyType({"llava_hf": "LlavaHf"})
    (manifest,) = lmms_module.manifests()
    assert manifest.simple_class_path == path and "prune_bench" not in loading.AVAILABLE_SIMPLE_MODELS
