"""What every model adapter offers: encode a video question, run a pruning plan, answer.

An adapter owns a Hugging Face model, turns a video question into a :class:`TokenState` (the LLM
input with each token's layout), runs prefill and decode through :class:`DecoderRunner`, and scores
multiple-choice answers from the logits of the option letters (or option words, for the shipped
small model, which answers with the word).

What an adapter writes is its architecture: the vision side (:meth:`Adapter.encode_video`), the
video's placeholder ids (:meth:`Adapter.video_span`), its positions and its :class:`ModelInfo`. The
rest is shared: the prompt (adapters/prompt.py, re-exported here), the frame preprocessing
(adapters/preprocess.py), the splice and the layout (adapters/layout.py), synthetic samples
(adapters/synthetic.py), the vision-attention hooks (adapters/vision_capture.py) and the decoder loop
(adapters/decoder.py).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from prune_bench.adapters.decoder import DecoderRunner, Mode, PrefillResult
from prune_bench.adapters.graph_decode import GraphPool, GraphStep, decode_path
from prune_bench.adapters.layout import VideoTokens, splice_video, video_layout
from prune_bench.adapters.placement import DeviceMap, module_device, video_on

# re-exported: the prompt and the preprocessing live in their own modules
from prune_bench.adapters.preprocess import frames_to_pixels as frames_to_pixels
from prune_bench.adapters.prompt import DEFAULT_USER_TEXT as DEFAULT_USER_TEXT
from prune_bench.adapters.prompt import LETTERS as LETTERS
from prune_bench.adapters.prompt import LLAVA_CHAT_TEMPLATE as LLAVA_CHAT_TEMPLATE
from prune_bench.adapters.prompt import PromptFormat
from prune_bench.adapters.synthetic import synthetic_sample
from prune_bench.core.context import VisionAttention
from prune_bench.core.ledger import LayerCount, Retention, measure
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import ModelInfo
from prune_bench.core.timing import Clock
from prune_bench.errors import UserError


@dataclass
class EncodedSample:
    """A prompt ready for the LLM: its state, the answer token ids, the vision-side extras."""

    state: TokenState
    answer_ids: list[int] | None
    vision: Callable[[], VisionAttention] | None = None
    encode_ms: float = 0.0
    frames: int = 0


@dataclass
class AnswerResult:
    """Everything one (sample, plan) run produced."""

    choice: int | None
    option_logits: list[float] | None
    generated: list[int]
    counts: list[LayerCount]
    input_visual: int
    total_visual: int
    decode_visible_visual: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: which implementation each hand-written kernel ran as (``prune_bench.kernels.record_paths``)
    kernels: dict[str, str] = field(default_factory=dict)

    @property
    def retention(self) -> Retention:
        """Input, layer-average and decode retention (the ledger's measure of this run)."""
        return measure(self.counts, self.input_visual, self.total_visual, self.decode_visible_visual)

    @property
    def layer_average_retention(self) -> float:
        """Mean over layers of the visual tokens a layer processed, as a fraction of the total (a
        layer's attention and its MLP each count half)."""
        return self.retention.layer_average

    @property
    def input_retention(self) -> float:
        return self.retention.input

    @property
    def decode_retention(self) -> float:
        return self.retention.decode


class Adapter(ABC):
    """Base class of model adapters."""

    name: ClassVar[str]
    #: named architectures this adapter builds with random weights (for speed work, no download)
    architectures: ClassVar[dict[str, Callable[[], Any]]] = {}
    #: tiny architectures (name -> config builder taking ``num_layers=``) the adapter contract and the
    #: strategy contract run on, each built by :meth:`tiny`
    tiny_architectures: ClassVar[dict[str, Callable[..., Any]]] = {}

    model: Any
    config: Any
    #: the HF language model whose decoder layers ``runner`` runs
    lm: Any
    runner: DecoderRunner
    prompt_format: PromptFormat
    tokenizer: Any | None = None
    #: ``(height, width)`` the vision tower's frames have (what :meth:`pixels` resizes to)
    frame_size: tuple[int, int]

    @classmethod
    @abstractmethod
    def handles(cls, config: Any) -> bool:
        """Whether this adapter runs models with this Hugging Face config."""

    @classmethod
    def tiny(cls, name: str, *, num_layers: int = 8, seed: int = 0) -> Adapter:
        """Tiny architecture ``name`` with random weights on the CPU, at the contracts' size: a few
        dozen pixels a frame side, 16 LLM tokens a layout frame."""
        raise NotImplementedError(f"{cls.__name__} declares no tiny architectures")

    @classmethod
    def _tiny_config(cls, name: str, **kwargs: Any) -> Any:
        if name not in cls.tiny_architectures:
            known = ", ".join(sorted(cls.tiny_architectures)) or "none"
            raise UserError(f"{cls.name} has no tiny architecture '{name}' (known: {known})")
        return cls.tiny_architectures[name](**kwargs)

    @abstractmethod
    def model_info(self, num_frames: int) -> ModelInfo:
        """The model and the layout of a video of ``num_frames`` input frames, as strategies see them."""

    def prompt_ids(
        self, question: str, options: Sequence[str], video_ids: Sequence[int], fmt: PromptFormat | None = None
    ) -> tuple[list[int], list[int]]:
        """Token ids of the prompt in ``fmt`` (default: the model's own) with ``video_ids`` in place of the
        video, and the options' answer ids."""
        if self.tokenizer is None:
            raise UserError(
                "this model has no tokenizer (random-weight architecture); it only runs speed measurements"
            )
        return (fmt or self.prompt_format).token_ids(self.tokenizer, question, options, video_ids)

    @abstractmethod
    def video_token_count(self, num_frames: int) -> int:
        """Video tokens the LLM sees for ``num_frames`` input frames."""

    @abstractmethod
    def video_span(self, n_video: int) -> list[int]:
        """The prompt ids that stand for a video of ``n_video`` tokens (with any markers around them)."""

    @property
    def video_token_id(self) -> int:
        """The placeholder id the video's tokens replace in the prompt."""
        return int(self.config.video_token_id)

    @property
    @abstractmethod
    def plain_text_vocab(self) -> int:
        """Ids below this are plain text (no multimodal placeholder or marker): synthetic prompts draw from them."""

    @abstractmethod
    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, H, W, 3]`` uint8 frames as the vision tower's input."""

    @abstractmethod
    def encode_video(self, frames_pixels: torch.Tensor, capture_vision: bool) -> VideoTokens:
        """Vision tower and projector on ``frames_pixels`` (as :meth:`pixels` makes them): the video's
        LLM tokens and their grid, and the lazily computed vision attention when ``capture_vision``."""

    def positions(self, input_ids: torch.Tensor, video: VideoTokens) -> torch.Tensor | None:
        """The prompt's position ids, when they are not ``0..N-1`` (Qwen's M-RoPE: ``[3, N]``)."""
        return None

    def reference_inputs(self, ids: Sequence[int], frames_pixels: torch.Tensor) -> dict[str, Any]:
        """The keyword arguments of the unmodified Hugging Face model's forward for this prompt and
        video, a batch of one (what its processor would hand it): the adapter contract's reference."""
        raise NotImplementedError(f"{type(self).__name__} gives no reference inputs for its HF model")

    def encode_ids(
        self, ids: list[int], frames_pixels: torch.Tensor, answer_ids: list[int] | None, capture_vision: bool
    ) -> EncodedSample:
        """Vision tower and projector on ``frames_pixels``, spliced into the prompt ``ids`` (whose video
        placeholders are :meth:`video_span` of this video's token count)."""
        t0 = time.perf_counter()
        device = self.device
        input_ids = torch.tensor(ids, device=module_device(self.runner.embed))  # the LLM's input device
        with torch.no_grad():
            video = video_on(self.encode_video(frames_pixels, capture_vision), input_ids.device)
            embeds, slots = splice_video(self.runner.embed, input_ids, self.video_token_id, video.embeds)
            position = self.positions(input_ids, video)
        state = video_layout(embeds, slots, video.grid, newline=video.newline, position=position)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return EncodedSample(
            state=state,
            answer_ids=answer_ids,
            vision=video.vision,
            encode_ms=(time.perf_counter() - t0) * 1000,
            frames=video.frames,
        )

    def encode(
        self,
        frames: torch.Tensor,
        question: str,
        options: Sequence[str],
        *,
        capture_vision: bool,
        prompt_format: PromptFormat | None = None,
    ) -> EncodedSample:
        """Vision tower, projector and prompt: the unpruned LLM input of one sample, in
        ``prompt_format`` (default: the model's own, ``self.prompt_format``)."""
        video = self.video_span(self.video_token_count(frames.shape[0]))
        ids, answer_ids = self.prompt_ids(question, options, video, prompt_format)
        return self.encode_ids(ids, self.pixels(frames), answer_ids, capture_vision)

    def encode_synthetic(
        self, num_frames: int, text_tokens: int, *, capture_vision: bool, seed: int = 0
    ) -> EncodedSample:
        """A video of synthetic scenes and random text ids at the real shape, for speed work."""
        return synthetic_sample(self, num_frames, text_tokens, capture_vision=capture_vision, seed=seed)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---------------------------------------------------------------------------------- runs
    # The primitives the run object (prune_bench.session.Session) composes; nothing else builds a plan
    # or a decode loop.
    def prefill(
        self,
        sample: EncodedSample,
        plan: PruningPlan,
        *,
        mode: Mode = "drop",
        max_new_tokens: int = 0,
        seed: int = 0,
        clock: Clock | None = None,
    ) -> PrefillResult:
        """The LLM prefill of ``sample`` under ``plan``, with room for ``max_new_tokens`` decode steps;
        stages that draw random numbers get a generator seeded with ``seed``."""
        return self.runner.prefill(
            sample.state,
            plan,
            mode=mode,
            max_new_tokens=max_new_tokens,
            clock=clock,
            generator=torch.Generator(device=self.device).manual_seed(seed),
            vision=sample.vision,
        )

    def decode(
        self,
        pre: PrefillResult,
        plan: PruningPlan,
        choose: Callable[[int, torch.Tensor], int],
        steps: int,
        clock: Clock,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """The decode loop: ``(token, logits)`` per step, where ``logits`` predicted ``token`` and
        ``choose(step, logits)`` picked it (greedy: the argmax; teacher forcing: the target's token).
        Up to ``steps`` tokens; the caller stops early by leaving the loop (after an end-of-sequence)."""
        logits, position = pre.logits, pre.state.next_position
        graph = self._graph_step(pre, plan) if steps > 1 else None
        done = 0
        try:
            for step in range(steps):
                token = choose(step, logits)
                yield token, logits
                if step == steps - 1:
                    return
                if graph is not None:
                    try:
                        logits = graph(token, position + step, step, pre, clock)
                        done = step + 1
                        continue
                    except RuntimeError as exc:  # a graph that cannot be captured: eager from here on
                        self._graph_pool.failed(pre, plan, exc)
                        graph.store_back(pre, done)
                        graph = None
                logits = self.runner.decode_step(token, position + step, step, pre, plan, clock)
        finally:
            if graph is not None:
                graph.store_back(pre, done)

    def _sparse_experts(self) -> bool:
        found = self.__dict__.get("_has_experts")
        if found is None:
            found = self.__dict__["_has_experts"] = any(
                hasattr(layer.mlp, "experts") for layer in self.runner.layers
            )
        return bool(found)

    def _graph_step(self, pre: PrefillResult, plan: PruningPlan) -> GraphStep | None:
        """The decode step as CUDA graphs over static buffers (adapters/graph_decode.py) on CUDA, unless
        ``PRUNE_BENCH_DECODE=eager``; None: the eager loop (the CPU's, and the reference). Models with
        sparse mixture-of-experts blocks decode eagerly: their routing reads the chosen experts back
        to the host, which a CUDA graph cannot capture."""
        if decode_path(pre.caches[0].key.device) != "graph" or self._sparse_experts():
            return None
        pool = self.__dict__.get("_graph_pool")
        if pool is None:
            pool = self.__dict__["_graph_pool"] = GraphPool()
        return pool.step_for(self.runner, pre, plan)

    def run(
        self,
        sample: EncodedSample,
        plan: PruningPlan,
        *,
        mode: Mode = "drop",
        max_new_tokens: int = 0,
        seed: int = 0,
        eos_token_id: int | None = None,
    ) -> AnswerResult:
        """Prefill ``sample`` under ``plan``, score the options, and greedily decode if asked."""
        clock = Clock(self.device)
        wall = time.perf_counter()
        pre = self.prefill(sample, plan, mode=mode, max_new_tokens=max_new_tokens, seed=seed, clock=clock)
        choice, option_logits = None, None
        if sample.answer_ids is not None:
            scores = pre.logits[torch.tensor(sample.answer_ids, device=pre.logits.device)].float()
            choice = int(scores.argmax())
            option_logits = scores.tolist()
        generated: list[int] = []
        if max_new_tokens:
            with clock.measure("decode"):
                for token, _ in self.decode(pre, plan, greedy, max_new_tokens, clock):
                    generated.append(token)
                    if eos_token_id is not None and token == eos_token_id:
                        break
        timings = clock.totals_ms()
        timings["wall"] = (time.perf_counter() - wall) * 1000.0
        timings["encode"] = sample.encode_ms
        last = pre.caches[-1]
        visible_vis = int(
            ((last.layout.kind == 1) & (last.visible if last.visible is not None else True)).sum()  # type: ignore[operator]
        )
        return AnswerResult(
            choice=choice,
            option_logits=option_logits,
            generated=generated,
            counts=pre.counts,
            input_visual=pre.input_visual,
            total_visual=sample.state.num_visual,
            decode_visible_visual=visible_vis,
            timings_ms=timings,
        )


def greedy(step: int, logits: torch.Tensor) -> int:
    """The decode loop's greedy choice: the most likely token."""
    return int(logits.argmax())


def resolve_model_path(path_or_id: str) -> str:
    """A local directory as is; a hub id as its folder in the local Hugging Face cache (downloaded there
    first when it is not cached: :func:`prune_bench.adapters.hub.hub_checkpoint`); anything that looks
    like a path but is missing is a user error."""
    p = Path(path_or_id).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise UserError(
                f"model directory '{path_or_id}' has no config.json; point --model at a Hugging Face model directory"
            )
        return str(p)
    looks_like_path = path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") != 1
    if looks_like_path:
        raise UserError(
            f"model path '{path_or_id}' does not exist; pass an existing directory or a hub id like org/name"
        )
    from prune_bench.adapters.hub import hub_checkpoint

    return hub_checkpoint(path_or_id)  # the cached folder, or one line when the Hub cannot provide it


# ------------------------------------------------------------------- shared by every adapter
RopeFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def default_dtype(device: str, dtype: torch.dtype | None) -> torch.dtype:
    """bf16 on CUDA, float32 on the CPU, unless asked otherwise."""
    return dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)


def load_hf_checkpoint(
    model_cls: Any, where: str, path_or_id: str, dtype: torch.dtype, attn: str, device_map: DeviceMap | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local directory or hub id, placed by ``device_map`` when given
    (adapters/placement.py); a failure is one readable line."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    if Path(where).is_dir():
        check_checkpoint_dir(Path(where))
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the commands print their own status; errors stay one line
    try:
        placed = {} if device_map is None else {"device_map": device_map}
        model = model_cls.from_pretrained(where, dtype=dtype, attn_implementation=attn, **placed)
        tokenizer = AutoTokenizer.from_pretrained(where)
    except (OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not load model '{path_or_id}' ({first}); download it first "
            "(huggingface-cli download ...) and pass its local directory to --model"
        ) from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return model, tokenizer


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_checkpoint_dir(path: Path) -> None:
    """What ``from_pretrained`` would fail on with a long traceback, or a misleading one, as one line:
    weights that are missing, pickle-only, empty or truncated, and a missing tokenizer."""
    safetensors = sorted(path.glob("*.safetensors"))
    pickles = sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if not safetensors:
        if pickles:
            raise UserError(
                f"'{path}' holds only pickle weights ({pickles[0].name}), which prune-bench does not load "
                "(unpickling runs code); convert them once with save_pretrained(..., safe_serialization=True)"
            )
        raise UserError(f"'{path}' has no weights (*.safetensors); point --model at a complete checkpoint")
    from safetensors import safe_open

    for weights in safetensors:
        try:
            with safe_open(str(weights), framework="pt") as f:
                f.keys()
        except Exception as exc:  # safetensors raises its own error types for a bad header
            reason = "empty" if weights.stat().st_size == 0 else f"unreadable: {str(exc).splitlines()[0]}"
            raise UserError(
                f"'{weights}' is {reason} (a truncated or interrupted download?); download it again"
            ) from None
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(
            f"'{path}' has no tokenizer ({', '.join(TOKENIZER_FILES[:3])}); copy the checkpoint's tokenizer "
            "files into it"
        )


def random_hf_model(
    model_cls: Any, config: Any, device: str, dtype: torch.dtype, seed: int, attn: str
) -> Any:
    """``model_cls`` at ``config``'s shape with random weights, built directly on ``device``."""
    torch.manual_seed(seed)
    config._attn_implementation = attn
    with torch.device(device):
        return model_cls._from_config(config, dtype=dtype)


def rope_1d(rotary: nn.Module) -> RopeFn:
    """The loop's ``rope(x, position)`` over an HF rotary embedding with 1-D positions (a batch of one)."""

    def rope(x: torch.Tensor, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = rotary(x[None], position[None])
        return cos[0], sin[0]

    return rope


def decoder_runner(lm: Any, lm_head: nn.Module, rope: RopeFn, text: Any) -> DecoderRunner:
    """The shared prefill/decode loop over a Qwen2-style HF language model's layers (``text``: its config)."""
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return DecoderRunner(
        lm.layers,
        lm.norm,
        lm_head,
        lm.embed_tokens,
        rope,
        text.num_attention_heads,
        text.num_key_value_heads,
        head_dim,
    )
