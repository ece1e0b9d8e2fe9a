"""prune-bench as an lmms-eval model: ``lmms-eval eval --model prune_bench --model_args ...``.

``--model_args pretrained=DIR,strategy=hieravid,keep=0.3[,frames=32,device=cuda,budget_unit=input,
fps=1,mode=drop,seed=0]`` runs lmms-eval's tasks through prune-bench's adapters with the strategy
mounted (``pretrained`` left out: the shipped small model; a strategy spec may be ``a+b`` or carry
options, ``hieravid[segment_level=false]``). lmms-eval finds the class through the ``lmms_eval.models``
entry-point group (``pyproject.toml``: ``prune_bench = "prune_bench.integrations.lmms_eval:manifests"``),
which its model registry (``ModelRegistryV2.load_entrypoint_manifests``) loads; install with
``pip install 'prune-bench[lmms]'``.

The class is a "simple" lmms-eval model (``is_simple = True``): lmms-eval hands it ``Instance``
objects whose ``args`` are ``(context, gen_kwargs, doc_to_visual, doc_id, task, split)`` for
``generate_until`` and ``(context, doc_to_target, doc_to_visual, doc_id, task, split)`` for
``loglikelihood``; the document is ``self.task_dict[task][split][doc_id]``. ``context`` is the task's
whole ``doc_to_text`` prompt; it goes into the model's chat template in place of the default
question/options text (:meth:`PromptFormat.with_benchmark_prompt`), so a letter-answering checkpoint
sees exactly what lmms-eval's own ``llava_onevision``/``qwen2_vl`` models would show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from prune_bench.errors import UserError

try:  # lmms-eval is optional: pip install 'prune-bench[lmms]'
    from lmms_eval.api.model import lmms as _LmmsBase

    HAVE_LMMS_EVAL = True
except ImportError:  # the class still works (and is tested) without it
    _LmmsBase = object  # type: ignore[assignment,misc]
    HAVE_LMMS_EVAL = False

MODEL_NAME = "prune_bench"


def manifests() -> list[Any]:
    """The ``lmms_eval.models`` entry point: lmms-eval's manifest naming this module's class."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_NAME, simple_class_path=f"{__name__}.PruneBenchLMM")]


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"model_args {name} must be a number, got {value!r}") from None


def frames_of_visual(visual: Sequence[Any], num_frames: int, sample_fps: float | None) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` from what a task's ``doc_to_visual`` returns: a video path or images."""
    from prune_bench.benchmarks.video import load_video, uniform_indices

    if not visual:
        raise UserError("the task gave no visual input; prune_bench models answer questions about videos")
    first = visual[0]
    if isinstance(first, str):
        return load_video(first, num_frames, sample_fps=sample_fps).frames
    images = np.stack([np.asarray(im.convert("RGB") if hasattr(im, "convert") else im) for im in visual])
    picked = images[uniform_indices(len(images), num_frames)]
    return torch.from_numpy(np.ascontiguousarray(picked)).to(torch.uint8)


def _accelerator() -> Any:
    """The accelerate Accelerator lmms-eval's evaluator gathers through in a multi-process launch."""
    try:
        from accelerate import Accelerator
    except ImportError:
        raise UserError(
            "a multi-process lmms-eval run needs accelerate (pip install accelerate), as lmms-eval does"
        ) from None
    return Accelerator()


class PruneBenchLMM(_LmmsBase):  # type: ignore[misc,valid-type]
    """An lmms-eval model that answers through a prune-bench adapter with a pruning strategy mounted."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        strategy: str = "hieravid",
        keep: float | str = 0.3,
        frames: int | str | None = None,
        device: str | None = None,
        budget_unit: str = "layer-average",
        fps: float | str | None = None,
        mode: str = "drop",
        seed: int | str = 0,
        batch_size: int | str = 1,
        **unknown: Any,
    ) -> None:
        from prune_bench.adapters.loading import load_adapter, pick_device
        from prune_bench.core.compose import check_keep
        from prune_bench.runner.distributed import Ranks
        from prune_bench.session import Session

        if HAVE_LMMS_EVAL:
            super().__init__()
        else:
            self.task_dict = {}
        # The launcher's place for this process (accelerate launch and torchrun both set RANK and
        # WORLD_SIZE): lmms-eval splits the documents by rank and gathers the answers, as with its own
        # models, which take the same numbers from an accelerate Accelerator.
        ranks = Ranks.from_env()
        self._rank, self._world_size = ranks.rank, ranks.world
        if ranks.distributed:
            self.accelerator = _accelerator()
        if unknown:
            raise UserError(
                f"unknown model_args for prune_bench: {', '.join(sorted(unknown))} (known: pretrained, "
                "strategy, keep, frames, device, budget_unit, fps, mode, seed)"
            )
        if str(batch_size) != "1":
            raise UserError(f"prune_bench runs one sample at a time; pass --batch_size 1, got {batch_size}")
        self.keep = _as_float("keep", keep)
        check_keep(self.keep)
        self.sample_fps = None if fps in (None, "", "none") else _as_float("fps", fps)
        self.device_name = ranks.device(pick_device(device))
        adapter, self.model_label = load_adapter(pretrained, self.device_name)
        self.session = Session(
            adapter,
            strategy,
            keep=self.keep,
            unit=budget_unit,  # type: ignore[arg-type]  # Session checks it
            mode=mode,  # type: ignore[arg-type]
            seed=int(seed),
            num_frames=int(frames) if frames not in (None, "") else None,
        )
        self.prompt_format = adapter.prompt_format.with_benchmark_prompt()

    # ------------------------------------------------------------------------------ helpers
    @property
    def tokenizer(self) -> Any:
        return self.session.adapter.tokenizer

    def _doc(self, task: str, split: str, doc_id: Any) -> Any:
        return self.task_dict[task][split][doc_id]

    def _encode(self, context: str, visual: Sequence[Any]) -> Any:
        """The sample for ``context`` (the task's whole prompt) about ``visual``; no option scoring."""
        frames = frames_of_visual(visual, self.session.num_frames, self.sample_fps)
        return self.session.encode(frames, context, prompt_format=self.prompt_format)

    # ------------------------------------------------------------------------ lmms-eval API
    def generate_until(self, requests: list[Any]) -> list[str]:
        """Greedy answers, cut at the first ``until`` string (lmms-eval's ``gen_kwargs``)."""
        out = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            sample = self._encode(context, doc_to_visual(self._doc(task, split, doc_id)))
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            text, _ = self.session.generate(sample, int(gen_kwargs.get("max_new_tokens", 16)), until)
            out.append(text)
            if HAVE_LMMS_EVAL:
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return out

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        """``(log p(continuation | context, video), whether greedy decoding gives the continuation)``."""
        out = []
        for request in requests:
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            doc = self._doc(task, split, doc_id)
            continuation = doc_to_target(doc)
            continuation = continuation[0] if isinstance(continuation, list) else str(continuation)
            target = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not target:
                raise UserError(
                    f"the continuation {continuation!r} has no tokens; check the task's doc_to_target"
                )
            out.append(self.session.loglikelihood(self._encode(context, doc_to_visual(doc)), target))
        return out

    def generate_until_multi_round(self, requests: list[Any]) -> list[str]:
        raise NotImplementedError(
            "prune_bench answers single-round tasks; multi-round tasks are not supported"
        )
