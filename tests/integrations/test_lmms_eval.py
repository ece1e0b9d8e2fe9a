"""The lmms-eval model class against lmms-eval's documented interface (a stand-in module when it is absent).

The stand-in copies what prune_bench relies on from lmms-eval 0.7: ``lmms_eval.api.model.lmms`` (an
ABC with ``task_dict``, ``cache_hook`` and ``create_from_arg_string``), ``Instance.args`` and
``lmms_eval.models.registry_v2.ModelManifest``.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import sys
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from prune_bench.benchmarks.video import write_mp4
from prune_bench.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
REAL = importlib.util.find_spec("lmms_eval") is not None


def _fake_lmms_eval() -> dict[str, types.ModuleType]:
    class CacheHook:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Any, Any]] = []

        def add_partial(self, attr: str, req: Any, res: Any) -> None:
            self.calls.append((attr, req, res))

    class lmms(abc.ABC):  # noqa: N801 - lmms-eval's name
        is_simple = True

        def __init__(self) -> None:
            self._rank, self._world_size = 0, 1
            self.cache_hook = CacheHook()
            self.task_dict: dict[str, Any] = {}

        @abc.abstractmethod
        def loglikelihood(self, requests): ...  # type: ignore[no-untyped-def]

        @abc.abstractmethod
        def generate_until(self, requests): ...  # type: ignore[no-untyped-def]

        @abc.abstractmethod
        def generate_until_multi_round(self, requests): ...  # type: ignore[no-untyped-def]

        @classmethod
        def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):  # type: ignore[no-untyped-def]
            args = dict(kv.split("=", 1) for kv in arg_string.split(",") if kv)
            extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
            return cls(**args, **extra)

    @dataclass
    class Instance:
        request_type: str
        arguments: tuple
        idx: int
        metadata: dict = field(default_factory=dict)

        @property
        def args(self) -> tuple:
            return self.arguments

    @dataclass(frozen=True)
    class ModelManifest:
        model_id: str
        simple_class_path: str | None = None
        chat_class_path: str | None = None
        aliases: tuple[str, ...] = ()

    mods = {n: types.ModuleType(n) for n in ("lmms_eval", "lmms_eval.api", "lmms_eval.api.model",
                                             "lmms_eval.api.instance", "lmms_eval.models",
                                             "lmms_eval.models.registry_v2")}  # fmt: skip
    mods["lmms_eval.api.model"].lmms = lmms  # type: ignore[attr-defined]
    mods["lmms_eval.api.instance"].Instance = Instance  # type: ignore[attr-defined]
    mods["lmms_eval.models.registry_v2"].ModelManifest = ModelManifest  # type: ignore[attr-defined]
    return mods


@pytest.fixture(scope="module")
def lmms_module():
    """prune_bench.integrations.lmms_eval imported against lmms-eval (the stand-in if it is absent)."""
    saved = {n: sys.modules.get(n) for n in _fake_lmms_eval()}
    if not REAL:
        sys.modules.update(_fake_lmms_eval())
    module = importlib.reload(importlib.import_module("prune_bench.integrations.lmms_eval"))
    yield module
    for name, mod in saved.items():
        if mod is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = mod
    importlib.reload(module)


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
    (text,) = model.generate_until(
        [_instance("generate_until", (context, {"max_new_tokens": 1}, to_visual, 0, "t", "test"))]
    )
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
    (full,) = model.generate_until(
        [_instance("generate_until", ("Q?", {"max_new_tokens": 4}, lambda d: [d["video"]], 0, "t", "test"))]
    )
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
        assert cut == full.split(" " + words[1])[0]


def test_bad_model_args_are_one_readable_error(lmms_module) -> None:
    with pytest.raises(UserError, match="unknown model_args for prune_bench: strategie"):
        lmms_module.PruneBenchLMM(strategie="fastv")
    with pytest.raises(UserError, match="keep must be in"):
        lmms_module.PruneBenchLMM(keep="1.5")


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
