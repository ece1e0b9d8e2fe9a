"""What every model adapter offers: encode a video question, run a pruning plan, answer.

An adapter owns a Hugging Face model, turns a video question into a :class:`TokenState` (the LLM
input with each token's layout), runs prefill and decode through :class:`DecoderRunner`, and scores
multiple-choice answers from the logits of the option letters (or option words, for the shipped
small model, which answers with the word).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F

from prune_bench.adapters.decoder import DecoderRunner, LayerCount, Mode, PrefillResult
from prune_bench.core.context import VisionAttention
from prune_bench.core.stages import PruningPlan
from prune_bench.core.state import TokenState
from prune_bench.core.strategy import ModelInfo
from prune_bench.core.timing import Clock
from prune_bench.errors import UserError

LETTERS = "ABCDEFGHIJ"

#: the user text of the LLaVA and Qwen chat templates that a benchmark's own prompt replaces
DEFAULT_USER_TEXT = "{question}\n{options}\nAnswer with the option's letter from the given choices directly."

LLAVA_CHAT_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{video}\n{question}\n"
    "{options}\nAnswer with the option's letter from the given choices directly.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@dataclass(frozen=True)
class PromptFormat:
    """How a question becomes a prompt, and how the answer is read off the logits.

    ``answer_mode="letter"`` lists options as ``A. text`` lines and compares the logits of the
    letters (lmms-eval's convention for real checkpoints); ``"option_word"`` lists the option words
    and compares the logits of the words themselves (the shipped small model answers that way).
    """

    template: str = LLAVA_CHAT_TEMPLATE
    answer_mode: Literal["letter", "option_word"] = "letter"
    num_frames: int = 32
    pixel_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    pixel_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @classmethod
    def from_model_dir(cls, path: str | Path | None) -> PromptFormat:
        """Read ``prune_bench.json`` (and ``preprocessor_config.json``) from a model directory."""
        if path is None or not Path(path).is_dir():
            return cls()
        values: dict[str, Any] = {}
        pre = Path(path) / "preprocessor_config.json"
        if pre.is_file():
            cfg = json.loads(pre.read_text())
            if "image_mean" in cfg:
                values["pixel_mean"] = tuple(cfg["image_mean"])
                values["pixel_std"] = tuple(cfg["image_std"])
        own = Path(path) / "prune_bench.json"
        if own.is_file():
            cfg = json.loads(own.read_text())
            values["template"] = cfg.get("prompt_template", cls.template)
            for key in ("answer_mode", "num_frames"):
                if key in cfg:
                    values[key] = cfg[key]
            for key in ("pixel_mean", "pixel_std"):
                if key in cfg:
                    values[key] = tuple(cfg[key])
        return cls(**values)

    def with_benchmark_prompt(self) -> PromptFormat | None:
        """This format with ``{question}`` standing for a benchmark's whole prompt, or None.

        A benchmark that ships its own prompt (lmms-eval's ``doc_to_text``: question, lettered
        options, post-prompt) is asked inside the model's chat template with that text in place of
        the default question, options and post-prompt, as lmms-eval does. Only letter-answering
        formats whose template holds the default user text can take it; the shipped small model
        (``option_word``) only understands its own format.
        """
        if self.answer_mode != "letter" or DEFAULT_USER_TEXT not in self.template:
            return None
        return replace(self, template=self.template.replace(DEFAULT_USER_TEXT, "{question}"))

    def render_options(self, options: Sequence[str]) -> str:
        if self.answer_mode == "letter":
            return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        return " ".join(options)

    def around_video(self, question: str, options: Sequence[str]) -> tuple[str, str]:
        """The prompt text before and after the video placeholder."""
        text = self.template.format(video="\x00", question=question, options=self.render_options(options))
        before, after = text.split("\x00")
        return before, after

    def token_ids(
        self, tokenizer: Any, question: str, options: Sequence[str], video_ids: Sequence[int]
    ) -> tuple[list[int], list[int]]:
        """The prompt's token ids, with ``video_ids`` where the video goes, and the options' answer ids."""
        before, after = self.around_video(question, options)
        ids = tokenizer(before, add_special_tokens=False)["input_ids"] + list(video_ids)
        ids += tokenizer(after, add_special_tokens=False)["input_ids"]
        return ids, self.answer_ids(tokenizer, options)

    def answer_ids(self, tokenizer: Any, options: Sequence[str]) -> list[int]:
        """The token id each option is scored by: its letter, or the first token of its word."""
        words = list(LETTERS[: len(options)]) if self.answer_mode == "letter" else list(options)
        ids = []
        for word in words:
            piece = tokenizer(word, add_special_tokens=False)["input_ids"]
            if not piece:
                raise UserError(f"option '{word}' is not in the tokenizer's vocabulary")
            ids.append(piece[0])
        return ids


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

    @property
    def layer_average_retention(self) -> float:
        """Mean over layers of the visual tokens a layer processed, as a fraction of the total.

        A layer's count is the average of what its attention and its MLP saw, so a stage that runs
        between the two (after attention, before the MLP) is counted as half a layer.
        """
        if not self.counts or not self.total_visual:
            return 1.0
        per_layer = [(c.attn_visual + c.mlp_visual) / 2 for c in self.counts]
        return sum(per_layer) / (len(per_layer) * self.total_visual)

    @property
    def input_retention(self) -> float:
        return self.input_visual / self.total_visual if self.total_visual else 1.0

    @property
    def decode_retention(self) -> float:
        return self.decode_visible_visual / self.total_visual if self.total_visual else 1.0


def frames_to_pixels(
    frames: torch.Tensor,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """uint8 frames ``[T, H, W, 3]`` -> normalised ``[T, 3, size, size]`` (SigLIP's preprocessing)."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise UserError(f"expected video frames shaped [T, H, W, 3], got {tuple(frames.shape)}")
    x = frames.to(device).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(
            0, 1
        )
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - m) / s).to(dtype)


class Adapter(ABC):
    """Base class of model adapters."""

    name: ClassVar[str]
    #: named architectures this adapter builds with random weights (for speed work, no download)
    architectures: ClassVar[dict[str, Callable[[], Any]]] = {}

    model: Any
    runner: DecoderRunner
    prompt_format: PromptFormat
    tokenizer: Any | None = None

    @classmethod
    @abstractmethod
    def handles(cls, config: Any) -> bool:
        """Whether this adapter runs models with this Hugging Face config."""

    @abstractmethod
    def model_info(self, num_frames: int) -> ModelInfo: ...

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

    @abstractmethod
    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, H, W, 3]`` uint8 frames as the vision tower's input."""

    @abstractmethod
    def encode_ids(
        self, ids: list[int], frames_pixels: torch.Tensor, answer_ids: list[int] | None, capture_vision: bool
    ) -> EncodedSample:
        """Vision tower and projector on ``frames_pixels``, spliced into the prompt ``ids``."""

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

    @abstractmethod
    def encode_synthetic(
        self, num_frames: int, text_tokens: int, *, capture_vision: bool, seed: int = 0
    ) -> EncodedSample:
        """A random-pixel video and random text ids at the real shape, for speed work."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---------------------------------------------------------------------------------- runs
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
        generator = torch.Generator(device=self.device).manual_seed(seed)
        wall = time.perf_counter()
        pre: PrefillResult = self.runner.prefill(
            sample.state,
            plan,
            mode=mode,
            max_new_tokens=max_new_tokens,
            clock=clock,
            generator=generator,
            vision=sample.vision,
        )
        logits = pre.logits
        choice, option_logits = None, None
        if sample.answer_ids is not None:
            scores = logits[torch.tensor(sample.answer_ids, device=logits.device)].float()
            choice = int(scores.argmax())
            option_logits = scores.tolist()
        generated: list[int] = []
        if max_new_tokens:
            position = pre.state.next_position
            token = int(logits.argmax())
            with clock.measure("decode"):
                for step in range(max_new_tokens):
                    generated.append(token)
                    if eos_token_id is not None and token == eos_token_id:
                        break
                    if step == max_new_tokens - 1:
                        break
                    logits = self.runner.decode_step(token, position + step, step, pre, plan, clock)
                    token = int(logits.argmax())
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


def resolve_model_path(path_or_id: str) -> str:
    """A local directory as is; anything that looks like a path but is missing is a user error."""
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
    return path_or_id


# ------------------------------------------------------------------- shared by every adapter
RopeFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def default_dtype(device: str, dtype: torch.dtype | None) -> torch.dtype:
    """bf16 on CUDA, float32 on the CPU, unless asked otherwise."""
    return dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)


def load_hf_checkpoint(
    model_cls: Any, where: str, path_or_id: str, dtype: torch.dtype, attn: str
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local directory or hub id; a failure is one readable line."""
    from transformers import AutoTokenizer

    try:
        model = model_cls.from_pretrained(where, dtype=dtype, attn_implementation=attn)
        tokenizer = AutoTokenizer.from_pretrained(where)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not load model '{path_or_id}' ({first}); download it first "
            "(huggingface-cli download ...) and pass its local directory to --model"
        ) from None
    return model, tokenizer


def random_hf_model(
    model_cls: Any, config: Any, device: str, dtype: torch.dtype, seed: int, attn: str
) -> Any:
    """``model_cls`` at ``config``'s shape with random weights, built directly on ``device``."""
    torch.manual_seed(seed)
    config._attn_implementation = attn
    with torch.device(device):
        return model_cls._from_config(config, dtype=dtype)


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
