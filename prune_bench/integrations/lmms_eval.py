"""prune-bench as an lmms-eval model: ``lmms-eval eval --model prune_bench --model_args ...``.

``--model_args pretrained=DIR,strategy=hieravid,keep=0.3[,frames=32,device=cuda,budget_unit=input,
fps=1,mode=drop,seed=0]`` runs lmms-eval's tasks through prune-bench's adapters with the strategy
mounted (``pretrained`` left out: the shipped small model; a strategy spec may be ``a+b`` or carry
options, ``hieravid[segment_level=false]``). lmms-eval finds the class through the ``lmms_eval.models``
entry-point group (``pyproject.toml``: ``prune_bench = "prune_bench.integrations.lmms_eval:manifests"``),
which its model registry (``ModelRegistryV2.load_entrypoint_manifests``) loads; install as the
README's "lmms-eval" section says (torch and torchvision from one index: a CUDA torchvision beside a CPU
torch fails to load, and lmms-eval's evaluator imports transformers, which imports torchvision).

The class is a "simple" lmms-eval model (``is_simple = True``): lmms-eval hands it ``Instance``
objects whose ``args`` are ``(context, gen_kwargs, doc_to_visual, doc_id, task, split)`` for
``generate_until`` and ``(context, doc_to_target, doc_to_visual, doc_id, task, split)`` for
``loglikelihood``; the document is ``self.task_dict[task][split][doc_id]``. ``context`` is the task's
whole ``doc_to_text`` prompt; it goes into the model's chat template in place of the default
question/options text (:meth:`PromptFormat.with_benchmark_prompt`), so a letter-answering checkpoint
sees exactly what lmms-eval's own ``llava_onevision``/``qwen2_vl`` models would show it.

What pruning achieved, per request: lmms-eval's per-sample log (``--log_samples``) keeps, of what a
model returns, only the text and a ``TokenCounts`` (input, output and reasoning token counts; the doc
and the request arguments are dropped before writing). So ``generate_until`` returns lmms-eval's
``GenerationResult`` with the prompt's and the answer's token counts, and writes the rest, the achieved
retention in its three units and the prefill FLOPs (run and unpruned, both conventions), one JSON line
per request to a sidecar file joinable with lmms-eval's samples on ``(task, doc_id)``: ``model_args
pruning_log=PATH``, by default ``prune_bench_pruning.jsonl`` in the ``--output_path`` folder lmms-eval was
started with (none without one; ``.rank<N>`` added per process in a multi-process launch).

Followed: lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3 (``api/instance.py``,
``evaluator.py``, ``loggers/evaluation_tracker.py``, ``api/task.py``); run against lmms-eval 0.7.3 from
PyPI (``tests/integrations/test_lmms_install.py``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
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

try:  # lmms-eval >= 0.7's typed results (per-sample token counts); a plain string otherwise
    from lmms_eval.api.instance import GenerationResult, TokenCounts
except ImportError:
    GenerationResult = TokenCounts = None  # type: ignore[assignment,misc]

MODEL_NAME = "prune_bench"
PRUNING_LOG = "prune_bench_pruning.jsonl"


def manifests() -> list[Any]:
    """The ``lmms_eval.models`` entry point: lmms-eval's manifest naming this module's class."""
    from lmms_eval.models.registry_v2 import ModelManifest

    class_path = f"{__name__}.PruneBenchLMM"
    list_in_lmms_eval_models_command(class_path)
    return [ModelManifest(model_id=MODEL_NAME, simple_class_path=class_path)]


def list_in_lmms_eval_models_command(class_path: str) -> None:
    """Name the model in ``lmms-eval models``, which lists only lmms-eval's built-in tables.

    lmms-eval 0.7.3 resolves ``--model`` through its registry (where :func:`manifests` puts us) but its
    ``models`` command and wizard read ``AVAILABLE_SIMPLE_MODELS``, which only its deprecated
    ``LMMS_EVAL_PLUGINS`` path adds to, as done here. The registry loads entry points while
    ``lmms_eval.models`` is being imported, so the module is taken from ``sys.modules`` (importing it
    would recurse); a table that is not a plain dict (a read-only view derived from the registry, as
    lmms-eval's open PR #1450 makes it, listing entry-point models itself) is left alone.
    """
    models = sys.modules.get("lmms_eval.models")
    table = getattr(models, "AVAILABLE_SIMPLE_MODELS", None)
    if type(table) is dict:
        table.setdefault(MODEL_NAME, class_path)


def _as_float(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"model_args {name} must be a number, got {value!r}") from None


def _as_int(name: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"model_args {name} must be a whole number, got {value!r}") from None


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


def output_path_arg(argv: Sequence[str]) -> str | None:
    """The ``--output_path`` lmms-eval's command line names (it hands models no output folder)."""
    for n, arg in enumerate(argv):
        if arg == "--output_path" and n + 1 < len(argv):
            return argv[n + 1]
        if arg.startswith("--output_path="):
            return arg.split("=", 1)[1]
    return None


def pruning_log_path(pruning_log: str | None, rank: int, world: int) -> Path | None:
    """Where this process writes its per-request pruning records (None: nowhere)."""
    if pruning_log in ("none", ""):
        return None
    if pruning_log is None:
        out = output_path_arg(sys.argv)
        if out is None:
            return None
        pruning_log = str(Path(out) / PRUNING_LOG)
    path = Path(pruning_log).expanduser()
    return path.with_name(f"{path.name}.rank{rank}") if world > 1 else path


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
        pruning_log: str | None = None,
        **unknown: Any,
    ) -> None:
        from prune_bench.adapters.loading import load_adapter, pick_device
        from prune_bench.core.compose import check_keep
        from prune_bench.runner.distributed import Ranks
        from prune_bench.session import Session

        if HAVE_LMMS_EVAL:
            super().__init__()
        else:
            self.task_dict: dict[str, Any] = {}
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
                "strategy, keep, frames, device, budget_unit, fps, mode, seed, pruning_log)"
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
            seed=_as_int("seed", seed),
            num_frames=_as_int("frames", frames) if frames not in (None, "") else None,
        )
        self.prompt_format = adapter.prompt_format.with_benchmark_prompt()
        self.pruning_log = pruning_log_path(pruning_log, self._rank, self._world_size)
        if self.pruning_log is not None:
            try:
                self.pruning_log.parent.mkdir(parents=True, exist_ok=True)
                self.pruning_log.write_text("")  # this run's requests only
            except OSError as exc:
                raise UserError(
                    f"cannot write the pruning log {self.pruning_log} ({exc.strerror}); pass "
                    "model_args pruning_log=PATH in a writable folder, or pruning_log=none"
                ) from None

    # ------------------------------------------------------------------------------ helpers
    @property
    def device(self) -> Any:
        """This process's model device: lmms-eval's evaluator puts the tensors it gathers across ranks
        there (``lm.device``), as for its own models."""
        return self.session.adapter.device

    @property
    def tokenizer(self) -> Any:
        return self.session.adapter.tokenizer

    def _doc(self, task: str, split: str, doc_id: Any) -> Any:
        return self.task_dict[task][split][doc_id]

    def _encode(self, context: str, visual: Sequence[Any]) -> Any:
        """The sample for ``context`` (the task's whole prompt) about ``visual``; no option scoring."""
        frames = frames_of_visual(visual, self.session.num_frames, self.sample_fps)
        return self.session.encode(frames, context, prompt_format=self.prompt_format)

    def _log_pruning(self, request: Any, result: Any, text: str, input_tokens: int) -> None:
        """One sidecar line: what pruning achieved on this request (retention, FLOPs)."""
        from prune_bench.core.flops import LMShape
        from prune_bench.core.ledger import flops_record

        if self.pruning_log is None:
            return
        _, _, _, doc_id, task, split = request.args
        shape = LMShape.from_config(self.session.adapter.config.text_config)
        line = {
            "task": task, "doc_id": doc_id, "split": split, "model": self.model_label,
            "strategy": self.session.label, "keep": self.keep, "unit": self.session.unit, "mode": self.session.mode,
            "retention": result.retention.as_dict(), "visual_per_layer": [c.visual for c in result.counts],
            "total_visual": result.total_visual, "flops": flops_record(shape, result.counts, result.total_visual),
            "input_tokens": input_tokens, "output_tokens": len(result.generated), "response": text,
        }  # fmt: skip
        with self.pruning_log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(line, default=str) + "\n")

    # ------------------------------------------------------------------------ lmms-eval API
    def generate_until(self, requests: list[Any]) -> list[Any]:
        """Greedy answers, cut at the first ``until`` string (lmms-eval's ``gen_kwargs``; at most
        ``max_new_tokens``, 1024 where the task names none, as lmms-eval's Hugging Face video models
        cap). Each is lmms-eval's ``GenerationResult`` with its token counts where lmms-eval has it."""
        from prune_bench.benchmarks.published.scoring import DEFAULT_MAX_NEW_TOKENS

        out = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            sample = self._encode(context, doc_to_visual(self._doc(task, split, doc_id)))
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
            text, result = self.session.generate(sample, max_new, until, item_id=f"{task}/{doc_id}")
            self._log_pruning(request, result, text, len(sample.state))
            if GenerationResult is not None:
                counts = TokenCounts(input_tokens=len(sample.state), output_tokens=len(result.generated))
                out.append(GenerationResult(text=text, token_counts=counts))
            else:
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
