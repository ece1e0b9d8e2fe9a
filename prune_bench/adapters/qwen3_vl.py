"""Adapter for Hugging Face ``Qwen3VLForConditionalGeneration`` and ``Qwen3VLMoeForConditionalGeneration``.

Qwen3-VL (Qwen team, "Qwen3-VL technical report", arXiv 2511.21631). The official repository,
QwenLM/Qwen3-VL (read at commit 96588727e44c), runs the model through transformers and samples video
with its ``qwen-vl-utils`` (2 fps, frame counts in multiples of 2, 128 to 768 tokens a frame pair).
The model code we follow is transformers' port, ``models/qwen3_vl/modeling_qwen3_vl.py``,
``modeling_qwen3_vl_moe.py`` and ``processing_qwen3_vl.py`` of release tag v5.25.0 (and v5.17.0, the
GPU machine's version: what we use is the same in both; the tests pass on either), and we reuse
:class:`~prune_bench.adapters.qwen2_vl.Qwen2VLAdapter` for what the families share: 2-frame temporal
patches cut as the video processor cuts them, 2 x 2 merged tokens, the M-RoPE ids from the model's own
``get_rope_index`` kept by every token through pruning, decoding at the prompt's largest position + 1.

What is Qwen3-VL's own, and how pruning meets it:

* **Text timestamps.** The processor writes each frame pair as ``<{t:.1f} seconds>`` text, then
  ``<|vision_start|>``, the pair's tokens, ``<|vision_end|>`` (:meth:`Qwen3VLAdapter.video_span`).
  Timestamps and markers are text tokens: never pruned, never counted as visual in a budget; the
  layout numbers frames by the video placeholders only, so frame, row and col are those of the
  merged grid. ``get_rope_index`` gives each frame pair its own position block (temporal id = start).
* **DeepStack.** The tower also returns features from blocks ``deepstack_visual_indexes`` (merged by
  their own mergers), which HF adds to the hidden states of the visual positions after LLM layers
  ``0 .. K-1``. Here the adapter hands the decoder loop a residual (:class:`DeepStack`): after layer
  ``l < K`` each visual token still alive gets the feature of its own ``source`` index; a token pruned
  before that layer gets nothing (drop mode has no row for it; mask mode masks it out).
* **QK-norm and interleaved M-RoPE** are the language model's: the decoder loop applies the layer's
  ``q_norm`` / ``k_norm``, and the rotary module's ``(cos, sin)`` already interleave t/h/w.
* **MoE** (30B-A3B): each layer's sparse MLP block routes the tokens that reach it; a pruned token
  costs no expert.
* **Vision attention** for VisionZip-style strategies: the tower's last block (the merger's input),
  full attention within each frame pair, pooled over each 2 x 2 merge unit, as for Qwen2-VL.

Deliberate differences from HF / the official pipeline:

* Timestamps: HF computes them from the decoded frames' indices and the video's frame rate; the
  adapter receives sampled frames only, so it assumes they were sampled at ``fps`` (default 2, HF's
  and qwen-vl-utils' rate) from 0 s, and times pair ``k`` at ``(2k + 0.5) / fps`` (the mean of its two
  frames, as HF). An odd last frame, which HF pads by repetition and times at ``(T - 1) / fps``, is
  timed like a full pair.
* Without a tokenizer (random-weight and tiny models) the timestamp text is written with stand-in
  ids below the multimodal ids, one per piece of Qwen's pre-tokenizer (each digit, the dot, the
  brackets and `` seconds``), so speed runs see the real prompt length.
* Merged tokens (``weight > 1``) get the DeepStack feature of the token they were merged into (their
  ``source``), not a mean over the group: :class:`TokenState` keeps no group membership, and merging
  strategies merge tokens whose features are alike.
* Frames are resized to one ``frame_size`` for every video (as for Qwen2-VL), not by qwen-vl-utils'
  per-video ``smart_resize`` (aspect ratio kept within its token bounds); retention is computed from
  the token counts the run actually had, and the layout's grid is read from the tower's patch grid.
* The prompt template is Qwen3-VL's chat format without a system turn (its template writes one only
  when the conversation has one); pixels are normalised with mean = std = 0.5 (its processor's).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from prune_bench.adapters.base import EncodedSample, PromptFormat, resolve_model_path
from prune_bench.adapters.configs import (
    qwen3_vl_8b_config,
    qwen3_vl_30b_a3b_config,
    tiny_qwen3_vl_config,
    tiny_qwen3_vl_moe_config,
)
from prune_bench.adapters.decoder import Mode, PrefillResult
from prune_bench.adapters.layout import VideoTokens
from prune_bench.adapters.prompt import DEFAULT_USER_TEXT, LLAVA_CHAT_TEMPLATE
from prune_bench.adapters.qwen2_vl import Qwen2VLAdapter
from prune_bench.adapters.vision_capture import capture_block_attention
from prune_bench.core.hookspecs import hookimpl
from prune_bench.core.stages import PruningPlan
from prune_bench.core.timing import Clock

_CONFIGS = ("Qwen3VLConfig", "Qwen3VLMoeConfig")

#: Qwen3-VL's chat format: no system turn unless the conversation has one
QWEN3_CHAT_TEMPLATE = f"<|im_start|>user\n{{video}}{DEFAULT_USER_TEXT}<|im_end|>\n<|im_start|>assistant\n"
#: its video processor's normalisation (IMAGENET_STANDARD_MEAN / STD)
QWEN3_PROMPT_FORMAT = PromptFormat(template=QWEN3_CHAT_TEMPLATE, pixel_mean=(0.5,) * 3, pixel_std=(0.5,) * 3)

# How Qwen's tokenizer splits a timestamp: digits one by one, a word with its leading space, punctuation.
_TIMESTAMP_PIECES = re.compile(r"\d| ?[A-Za-z]+|[^\dA-Za-z\s]")


def qwen3_prompt_format(fmt: PromptFormat) -> PromptFormat:
    """A format read from a Qwen3-VL checkpoint's directory, with Qwen3-VL's chat template where the
    directory names none (its pixel statistics, 0.5, are the default's)."""
    return replace(fmt, template=QWEN3_CHAT_TEMPLATE) if fmt.template == LLAVA_CHAT_TEMPLATE else fmt


@dataclass
class DeepStack:
    """The DeepStack residual of one sample: ``features[l]`` ``[n_visual, D]`` is added after LLM layer
    ``l`` to the visual token with visual ordinal ``ordinal[source]`` (``-1`` for non-visual sources)."""

    features: torch.Tensor  # [K, n_visual, D]
    ordinal: torch.Tensor  # [N] for every source of the unpruned prompt

    def __call__(self, layer: int, source: torch.Tensor) -> torch.Tensor | None:
        if layer >= self.features.shape[0]:
            return None
        ordinal = self.ordinal[source.to(self.ordinal.device)]  # the layer may sit on another GPU
        visual = ordinal >= 0
        rows = self.features[layer][ordinal.clamp(min=0)]
        return torch.where(visual[:, None], rows, 0)  # no host sync: text rows add exactly zero


@dataclass
class DeepStackVideo(VideoTokens):
    """:class:`VideoTokens` with the tower's DeepStack features ``[K, n, D]`` (video token order)."""

    deepstack: torch.Tensor | None = None


@dataclass
class DeepStackSample(EncodedSample):
    """:class:`EncodedSample` with its :class:`DeepStack` residual."""

    deepstack: DeepStack | None = None


class Qwen3VLAdapter(Qwen2VLAdapter):
    """Runs ``Qwen3VLForConditionalGeneration`` / ``Qwen3VLMoeForConditionalGeneration`` under a plan.

    :param frame_size: ``(height, width)`` every frame is resized to, multiples of
        ``patch_size * spatial_merge_size`` (32); default 14 merged tokens a side (448 px).
    :param fps: the rate the frames are assumed to be sampled at, for their timestamps.
    """

    name = "qwen3_vl"
    architectures: dict[str, Callable[[], Any]] = {  # type: ignore[misc]
        "qwen3-vl-8b": qwen3_vl_8b_config,
        "qwen3-vl-30b-a3b": qwen3_vl_30b_a3b_config,
        "tiny-qwen3-vl": tiny_qwen3_vl_config,
    }
    tiny_architectures: dict[str, Callable[..., Any]] = {  # type: ignore[misc]
        "tiny-qwen3-vl": tiny_qwen3_vl_config,
        "tiny-qwen3-vl-moe": tiny_qwen3_vl_moe_config,
    }

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        prompt_format: PromptFormat | None = None,
        *,
        frame_size: tuple[int, int] | None = None,
        fps: float = 2.0,
    ) -> None:
        super().__init__(
            model, tokenizer, prompt_format or QWEN3_PROMPT_FORMAT, frame_size=frame_size, fps=fps
        )
        self._encoded: list[DeepStackVideo] | None = None

    # ------------------------------------------------------------------------------- loading
    @classmethod
    def handles(cls, config: Any) -> bool:
        return type(config).__name__ in _CONFIGS

    @staticmethod
    def _model_class(config: Any) -> Any:
        import transformers

        if type(config).__name__ == "Qwen3VLMoeConfig":
            return transformers.Qwen3VLMoeForConditionalGeneration
        return transformers.Qwen3VLForConditionalGeneration

    @classmethod
    def from_pretrained(cls, path_or_id: str, **kwargs: Any) -> Qwen3VLAdapter:
        adapter = super().from_pretrained(path_or_id, **kwargs)
        adapter.prompt_format = qwen3_prompt_format(
            PromptFormat.from_model_dir(resolve_model_path(path_or_id))
        )
        return adapter  # type: ignore[return-value]

    @classmethod
    def tiny(cls, name: str = "tiny-qwen3-vl", *, num_layers: int = 8, seed: int = 0) -> Qwen3VLAdapter:
        """32 x 32-pixel frames of 8 x 8 patches, merged to 4 x 4 tokens a frame pair."""
        return cls.from_config(cls._tiny_config(name, num_layers=num_layers), seed=seed, frame_size=(32, 32))  # type: ignore[return-value]

    # -------------------------------------------------------------------------------- prompt
    def frame_pair_times(self, pairs: int) -> list[float]:
        """Seconds of each frame pair: the mean time of its two frames, frames sampled at ``fps``."""
        tp = self.temporal_patch
        return [(k * tp + (tp - 1) / 2) / self.fps for k in range(pairs)]

    def timestamp_ids(self, seconds: float) -> list[int]:
        """The ids of ``<{seconds:.1f} seconds>``: the tokenizer's, or stand-ins of the same count."""
        text = f"<{seconds:.1f} seconds>"
        if self.tokenizer is not None:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        vocab = self.plain_text_vocab
        return [zlib.crc32(piece.encode()) % vocab for piece in _TIMESTAMP_PIECES.findall(text)]

    def video_span(self, n_video: int) -> list[int]:
        """Per frame pair: its timestamp, ``<|vision_start|>``, its tokens, ``<|vision_end|>``."""
        cfg = self.config
        rows, cols = self.merged_grid(*self.frame_size)
        pairs, rest = divmod(n_video, rows * cols)
        if rest:
            raise ValueError(f"{n_video} video tokens are not whole frame pairs of {rows}x{cols}")
        ids: list[int] = []
        for seconds in self.frame_pair_times(pairs):
            ids += self.timestamp_ids(seconds)
            ids += [cfg.vision_start_token_id, *[cfg.video_token_id] * (rows * cols), cfg.vision_end_token_id]
        return ids

    # -------------------------------------------------------------------------------- vision
    def encode_video(self, frames_pixels: torch.Tensor, capture_vision: bool) -> DeepStackVideo:
        """The tower's merged tokens and DeepStack features; its last block's attention when asked."""
        flat, grid = self.patchify(frames_pixels.to(self.device))
        tower: Any = self.visual
        attn = tower.blocks[-1].attn
        with capture_block_attention(attn, self.merge**2, enabled=capture_vision) as captured:
            out = tower(flat.to(tower.dtype), grid_thw=grid)
        _, gh, gw = (int(v) for v in grid[0])
        video = DeepStackVideo(
            out.pooler_output,
            (gh // self.merge, gw // self.merge),
            frames=int(frames_pixels.shape[0]),
            vision=captured.result if captured is not None else None,
            thw=grid,
            deepstack=torch.stack(list(out.deepstack_features)) if out.deepstack_features else None,
        )
        if self._encoded is not None:
            self._encoded.append(video)
        return video

    @contextmanager
    def _collecting(self) -> Iterator[list[DeepStackVideo]]:
        """The videos :meth:`encode_video` makes while active (the base ``encode_ids`` keeps only
        their tokens)."""
        collected: list[DeepStackVideo] = []
        self._encoded = collected
        try:
            yield collected
        finally:
            self._encoded = None

    def encode_ids(
        self, ids: list[int], frames_pixels: torch.Tensor, answer_ids: list[int] | None, capture_vision: bool
    ) -> DeepStackSample:
        with self._collecting() as videos:
            sample = super().encode_ids(ids, frames_pixels, answer_ids, capture_vision)
        (video,) = videos
        state = sample.state
        deepstack = None
        if video.deepstack is not None:
            ordinal = torch.full((len(state),), -1, dtype=torch.long, device=state.device)
            ordinal[state.visual_index] = torch.arange(state.num_visual, device=state.device)
            deepstack = DeepStack(video.deepstack.to(state.device, state.hidden.dtype), ordinal)
        values = {f.name: getattr(sample, f.name) for f in fields(sample)}
        return DeepStackSample(**values, deepstack=deepstack)

    # ---------------------------------------------------------------------------------- runs
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
        """As :meth:`Adapter.prefill`, with the sample's DeepStack residual in the decoder loop."""
        if not isinstance(sample, DeepStackSample):
            raise TypeError(
                "a Qwen3-VL sample must come from Qwen3VLAdapter.encode_ids (its DeepStack features)"
            )
        return self.runner.prefill(
            sample.state,
            plan,
            mode=mode,
            max_new_tokens=max_new_tokens,
            clock=clock,
            generator=torch.Generator(device=self.device).manual_seed(seed),
            vision=sample.vision,
            residual=sample.deepstack,
        )


@hookimpl
def register_adapters(register: Callable[[type[Any]], None]) -> None:
    register(Qwen3VLAdapter)
