"""The run object: one configured pruning run on one model.

A :class:`Session` is built from (model or adapter, strategy spec, keep, budget unit, mode, seed) and is
the only place that turns a strategy into pruning plans and runs them. ``compare`` / ``sweep`` /
``ablate``, ``speed``, the lmms-eval model, the default model's evaluation during training and the
strategy contract all go through it::

    from prune_bench import Session

    session = Session.load(None, "hieravid", keep=0.3)      # the shipped small model, on CPU or CUDA
    sample = session.encode(frames, "What moves?", ["ball", "cube"])
    result = session.answer(sample)                           # option scoring
    result.choice, result.retention.layer_average

What it owns:

* the strategy, budgeted once for the configured frame count (``for_budget``), and the plan cache per
  frame count (a video sampled at ``--fps`` may have fewer frames; its plan is built for the frames it
  has, with the knobs chosen for the configured count);
* the check that the adapter can give the stages what they need (``Stage.needs`` against
  ``ModelInfo.capabilities``), made when a plan is built, not when a stage runs;
* ``encode`` (a question, a benchmark item), ``answer`` (option scoring), ``generate`` (greedy text, cut
  at stop strings), ``loglikelihood`` (a continuation's log-probability), all over the adapter's one
  prefill and one decode loop;
* :meth:`describe` and :meth:`hash`: the record of what ran, the identity of a results row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from prune_bench.adapters.base import Adapter, AnswerResult, EncodedSample, PromptFormat, greedy
from prune_bench.adapters.decoder import Mode, PrefillResult
from prune_bench.core.compose import build_strategy
from prune_bench.core.ledger import BUDGET_UNITS, BudgetUnit, warn_budget
from prune_bench.core.plugins import Registry, registry
from prune_bench.core.stages import PruningPlan
from prune_bench.core.strategy import ModelInfo, Strategy
from prune_bench.core.timing import Clock
from prune_bench.errors import UserError

if TYPE_CHECKING:
    from prune_bench.benchmarks.base import VideoQAItem
    from prune_bench.benchmarks.frame_cache import FrameCache

MODES: tuple[Mode, ...] = ("drop", "mask")


@dataclass(frozen=True)
class SampledFrames:
    """An item's frames and how they were obtained: which indices, which decoder, which rule."""

    frames: torch.Tensor
    indices: tuple[int, ...]
    decoder: str
    sampling: str

    def describe(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "decoder": self.decoder, "sampling": self.sampling}


def item_frames(
    item: VideoQAItem, num_frames: int, *, sample_fps: float | None = None, cache: FrameCache | None = None
) -> SampledFrames:
    """The item's frames: ``num_frames`` uniformly (or at ``sample_fps``), decoded from disk if needed
    (or read from ``cache``, the decoded-frame cache, when it holds them).

    A file-backed item's ``start``/``end`` bounds restrict sampling to that span.
    """
    if item.video is not None:
        video = item.video
        idx = torch.arange(video.shape[0])
        if video.shape[0] != num_frames:
            idx = torch.linspace(0, video.shape[0] - 1, num_frames).round().long()
            video = video[idx]
        return SampledFrames(video, tuple(idx.tolist()), "in-memory", "uniform")
    if item.video_path is None:
        raise ValueError(f"item {item.item_id} has neither frames nor a video path")
    from prune_bench.benchmarks.video import load_video

    loaded = load_video(
        item.video_path, num_frames, sample_fps=sample_fps, start=item.start, end=item.end, cache=cache
    )
    rule = "uniform" if sample_fps is None else f"{sample_fps:g} fps, at most {num_frames}"
    if item.start is not None or item.end is not None:
        rule += f", within {item.start}-{item.end} s"
    return SampledFrames(loaded.frames, loaded.indices, loaded.decoder, rule)


def item_prompt(item: VideoQAItem, model_format: PromptFormat) -> tuple[str, PromptFormat, str]:
    """How ``item`` is asked of a model whose own format is ``model_format``: (question text, format,
    ``"benchmark"`` or ``"model"``). A benchmark's own prompt goes inside the model's chat template
    where the model answers with letters; otherwise the model's own format asks the bare question."""
    benchmark_format = model_format.with_benchmark_prompt() if item.prompt is not None else None
    if benchmark_format is None or item.prompt is None:
        return item.question, model_format, "model"
    return item.prompt, benchmark_format, "benchmark"


@dataclass(frozen=True)
class EncodedItem:
    """A benchmark item ready for the LLM: the sample, its frames, and which prompt it was asked in
    (``"benchmark"``: the benchmark's own, inside the model's chat template; ``"model"``: the model's)."""

    sample: EncodedSample
    frames: SampledFrames
    prompt: str


class Session:
    """One configured pruning run: a strategy at a budget on one model.

    :param adapter: the model (see :meth:`load` to build one from a path or hub id).
    :param strategy: a spec as ``compare`` reads it (``"hieravid"``, ``"visionzip+fastv"``,
        ``"hieravid[segment_level=false]"``) or a :class:`~prune_bench.core.strategy.Strategy` instance,
        used as it is (no budget is solved for it).
    :param keep: the budget, in (0, 1], measured in ``unit``.
    :param unit: ``"layer-average"`` (default), ``"input"`` or ``"flops"``.
    :param mode: ``"drop"`` removes tokens, ``"mask"`` hides them (the oracle).
    :param seed: the seed of the stages' random generator.
    :param options: extra config fields by strategy name (``--set``), e.g. ``{"fastv": {"k": 3}}``.
    :param num_frames: frames a video is sampled to (default: the model's own).
    """

    def __init__(
        self,
        adapter: Adapter,
        strategy: str | Strategy = "none",
        *,
        keep: float = 1.0,
        unit: BudgetUnit = "layer-average",
        mode: Mode = "drop",
        seed: int = 0,
        options: dict[str, dict[str, Any]] | None = None,
        num_frames: int | None = None,
        registry_: Registry | None = None,
    ) -> None:
        if unit not in BUDGET_UNITS:
            raise UserError(f"budget unit must be one of {', '.join(BUDGET_UNITS)}, got '{unit}'")
        if mode not in MODES:
            raise UserError(f"mode must be drop or mask, got '{mode}'")
        self.adapter = adapter
        self.keep, self.unit, self.mode, self.seed = keep, unit, mode, seed
        self.num_frames = adapter.prompt_format.num_frames if num_frames is None else num_frames
        if self.num_frames < 1:
            raise UserError(f"--frames must be at least 1, got {self.num_frames}")
        if isinstance(strategy, Strategy):
            self.strategy = strategy
        else:
            info = adapter.model_info(self.num_frames)
            self.strategy = build_strategy(strategy, keep, unit, info, registry_ or registry(), options)
        if unit == "flops" and keep < 1.0 and not isinstance(strategy, Strategy):
            warn_budget(
                self.strategy.label,
                keep,
                keep,
                "strategies solve --budget-unit flops as layer-average retention (the FLOPs ratio is "
                "close to it, a little below where attention is quadratic)",
            )
        self._plans: dict[int, PruningPlan] = {}
        self.plan(self.num_frames)  # a stage the model cannot serve fails now, not mid-run

    @classmethod
    def load(
        cls, model: str | None = None, strategy: str | Strategy = "none", *, device: str | None = None,
        **kwargs: Any,
    ) -> Session:
        """A session on ``model`` (a local directory or hub id; ``None``: the shipped small model)."""
        from prune_bench.adapters.loading import load_adapter, pick_device

        adapter, _ = load_adapter(model, pick_device(device))
        return cls(adapter, strategy, **kwargs)

    # ----------------------------------------------------------------------------- identity
    @property
    def label(self) -> str:
        """The row's name: the strategy spec as results and tables show it."""
        return self.strategy.label

    def describe(self, context: dict[str, Any] | None = None) -> dict[str, Any]:
        """What runs: the strategy's full configuration, the budget, the mode, the seed where a stage
        draws random numbers (plus ``context``: model, benchmark, frames)."""
        out = {
            "strategy": self.strategy.describe(),
            "keep": self.keep,
            "unit": self.unit,
            "mode": self.mode,
        }
        if self.strategy.random:
            out["seed"] = self.seed
        return {**out, **(context or {})}

    def seed_for(self, item_id: str | None) -> int:
        """The stages' seed for one item: derived from (seed, item id), so a random strategy draws a
        different subset for every item and the same one for the same item in every run."""
        if item_id is None:
            return self.seed
        digest = hashlib.sha256(f"{self.seed}:{item_id}".encode()).digest()
        return int.from_bytes(digest[:7], "little")

    def hash(self, context: dict[str, Any] | None = None) -> str:
        """The configuration's identity in a results store."""
        blob = json.dumps(self.describe(context), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -------------------------------------------------------------------------------- plans
    def model_info(self, frames: int | None = None) -> ModelInfo:
        return self.adapter.model_info(frames or self.num_frames)

    def plan(self, frames: int) -> PruningPlan:
        """The plan for a video of ``frames`` frames (cached); refuses stages the model cannot serve."""
        if frames not in self._plans:
            info = self.adapter.model_info(frames)
            try:
                plan = PruningPlan.of(self.strategy.stages(info), info.num_layers)
            except ValueError as exc:  # a stage mounted past the model's last layer, say
                raise UserError(f"{self.label}: {exc}; choose a layer below {info.num_layers}") from None
            missing = plan.needs - info.capabilities
            if missing:
                raise UserError(
                    f"{self.label} needs {', '.join(sorted(missing))} from the model, which the "
                    f"{info.family} adapter cannot provide for this checkpoint; choose another strategy "
                    "or model"
                )
            self._plans[frames] = plan
        return self._plans[frames]

    @property
    def needs_vision(self) -> bool:
        """Whether a stage asks for the vision tower's attention (so encoding must capture it)."""
        return "vision_attention" in self.plan(self.num_frames).needs

    def _plan_for(self, sample: EncodedSample) -> PruningPlan:
        return self.plan(sample.frames or self.num_frames)

    # ------------------------------------------------------------------------------- encode
    def encode(
        self,
        frames: torch.Tensor,
        question: str,
        options: Sequence[str] = (),
        *,
        prompt_format: PromptFormat | None = None,
        capture_vision: bool | None = None,
    ) -> EncodedSample:
        """``[T, H, W, 3]`` uint8 frames and a question (with its options, if any) as the LLM input.

        ``capture_vision`` defaults to what this session's stages need; several sessions sharing one
        encoding pass ``True`` when any of them needs it.
        """
        capture = self.needs_vision if capture_vision is None else capture_vision
        sample = self.adapter.encode(
            frames, question, options, capture_vision=capture, prompt_format=prompt_format
        )
        if not options:
            sample.answer_ids = None  # nothing to score: the answer is read from text or likelihood
        return sample

    def encode_item(
        self,
        item: VideoQAItem,
        *,
        sample_fps: float | None = None,
        capture_vision: bool | None = None,
        frames: SampledFrames | None = None,
    ) -> EncodedItem:
        """A benchmark item, in the benchmark's own prompt where the model can take it (lmms-eval's
        ``doc_to_text`` inside the model's chat template), else in the model's own format. ``frames``:
        the item's frames as :func:`item_frames` gives them, when already decoded (ahead, by a worker)."""
        if frames is None:
            frames = item_frames(item, self.num_frames, sample_fps=sample_fps)
        question, fmt, kind = item_prompt(item, self.adapter.prompt_format)
        sample = self.encode(
            frames.frames, question, item.options, prompt_format=fmt, capture_vision=capture_vision
        )
        return EncodedItem(sample, frames, kind)

    # ---------------------------------------------------------------------------------- run
    def prefill(self, sample: EncodedSample, *, item_id: str | None = None) -> PrefillResult:
        """Only the pruned prefill: ``.state`` is what survived the last layer (with original
        positions and ``source`` ids), ``.counts`` what each layer processed, ``.logits`` the next
        token's. For tests and analyses of what a strategy keeps."""
        return self.adapter.prefill(
            sample, self._plan_for(sample), mode=self.mode, seed=self.seed_for(item_id)
        )

    def answer(
        self, sample: EncodedSample, *, max_new_tokens: int = 0, item_id: str | None = None
    ) -> AnswerResult:
        """Prefill under this session's plan and score the options (``result.choice``); with
        ``max_new_tokens`` also greedily decode that many tokens (``result.generated``). ``item_id``
        derives the item's own random stream (:meth:`seed_for`); ``result.kernels`` says which path
        each hand-written kernel ran as (``{"gram": "triton", "dpp": "persistent"}``)."""
        return self._run(sample, max_new_tokens, item_id)

    def _run(
        self, sample: EncodedSample, max_new_tokens: int, item_id: str | None, **decode: Any
    ) -> AnswerResult:
        """``adapter.run`` under this session's plan, mode and item seed, recording the kernel paths."""
        from prune_bench import kernels  # here, so that importing the CLI imports no kernel module

        with kernels.record_paths() as paths:
            result = self.adapter.run(
                sample,
                self._plan_for(sample),
                mode=self.mode,
                max_new_tokens=max_new_tokens,
                seed=self.seed_for(item_id),
                **decode,
            )
        result.kernels = dict(paths)
        return result

    def generate(
        self,
        sample: EncodedSample,
        max_new_tokens: int = 16,
        until: Sequence[str] = (),
        *,
        item_id: str | None = None,
    ) -> tuple[str, AnswerResult]:
        """Greedy text, stopped at the end-of-sequence token and cut at the first ``until`` string."""
        tokenizer = self.adapter.tokenizer
        if tokenizer is None:
            raise UserError("this model has no tokenizer (random-weight architecture); it cannot generate text")
        eos = getattr(tokenizer, "eos_token_id", None)
        result = self._run(sample, max_new_tokens, item_id, eos_token_id=eos)
        text = tokenizer.decode(result.generated, skip_special_tokens=True)
        for stop in until:
            if stop and stop in text:
                text = text.split(stop)[0]
        return text, result

    @torch.no_grad()
    def loglikelihood(
        self, sample: EncodedSample, target: Sequence[int], *, item_id: str | None = None
    ) -> tuple[float, bool]:
        """``(log p(target | prompt), whether greedy decoding gives exactly target)``, teacher-forced
        through the same pruned prefill and KV cache as generation."""
        if not target:
            raise UserError("the continuation has no tokens")
        plan = self._plan_for(sample)
        clock = Clock(self.adapter.device)
        pre = self.adapter.prefill(
            sample, plan, mode=self.mode, max_new_tokens=len(target), seed=self.seed_for(item_id), clock=clock
        )
        total, is_greedy = 0.0, True
        for token, logits in self.adapter.decode(pre, plan, lambda step, _: target[step], len(target), clock):
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            total += float(logprobs[token])
            is_greedy = is_greedy and greedy(0, logprobs) == token
        return total, is_greedy
