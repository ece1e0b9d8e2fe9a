"""A minimal stand-in for the parts of lmms-eval prune_bench's model class relies on, for tests on
machines where lmms-eval is not installed (it pulls a CUDA torchvision and more).

What it reproduces, from lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3:
``lmms_eval.api.model.lmms`` (an ABC with ``task_dict``, ``cache_hook`` and ``create_from_arg_string``),
``lmms_eval.api.instance`` (``Instance`` with its ``args``, ``GenerationResult`` and ``TokenCounts``)
and ``lmms_eval.models.registry_v2.ModelManifest``. :func:`imported_against_lmms_eval` imports
``prune_bench.integrations.lmms_eval`` against lmms-eval itself when it is installed, else the stand-in.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

REAL = importlib.util.find_spec("lmms_eval") is not None


def fake_lmms_eval() -> dict[str, types.ModuleType]:
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
    class TokenCounts:
        input_tokens: int | None = None
        output_tokens: int | None = None
        reasoning_tokens: int | None = None

    @dataclass
    class GenerationResult:
        text: str
        token_counts: TokenCounts | None = None

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
    instance = mods["lmms_eval.api.instance"]
    for cls in (Instance, GenerationResult, TokenCounts):
        setattr(instance, cls.__name__, cls)
    mods["lmms_eval.models.registry_v2"].ModelManifest = ModelManifest  # type: ignore[attr-defined]
    return mods


@contextmanager
def imported_against_lmms_eval() -> Iterator[types.ModuleType]:
    """``prune_bench.integrations.lmms_eval`` imported against lmms-eval (the stand-in if absent),
    re-imported as it was afterwards."""
    saved = {n: sys.modules.get(n) for n in fake_lmms_eval()}
    if not REAL:
        sys.modules.update(fake_lmms_eval())
    module = importlib.reload(importlib.import_module("prune_bench.integrations.lmms_eval"))
    try:
        yield module
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
        importlib.reload(module)
