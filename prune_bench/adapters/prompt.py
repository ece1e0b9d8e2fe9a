"""How a question becomes a prompt and how an answer is read off the logits (no model code here).

:class:`PromptFormat` holds a chat template, the answer mode and the pixel statistics a checkpoint's
directory names; the adapters take one at construction (``Adapter.prompt_format``). Re-exported from
:mod:`prune_bench.adapters.base`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from prune_bench.errors import UserError

LETTERS = "ABCDEFGHIJ"

#: the user text of the LLaVA and Qwen chat templates that a benchmark's own prompt replaces
DEFAULT_USER_TEXT = "{question}\n{options}\nAnswer with the option's letter from the given choices directly."

LLAVA_CHAT_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{video}\n{question}\n"
    "{options}\nAnswer with the option's letter from the given choices directly.<|im_end|>\n"
    "<|im_start|>assistant\n"
)

QWEN_CHAT_TEMPLATE = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{video}{question}\n"
    "{options}\nAnswer with the option's letter from the given choices directly.<|im_end|>\n"
    "<|im_start|>assistant\n"
)
# OpenAI CLIP statistics, what Qwen2-VL's image and video processors normalise with.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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
            cfg = _read_json(pre)
            if "image_mean" in cfg:
                values["pixel_mean"] = tuple(cfg["image_mean"])
                values["pixel_std"] = tuple(cfg["image_std"])
        own = Path(path) / "prune_bench.json"
        if own.is_file():
            cfg = _read_json(own)
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


#: Qwen2-VL's own format: its chat template (the video right before the question) and CLIP statistics
QWEN_PROMPT_FORMAT = PromptFormat(template=QWEN_CHAT_TEMPLATE, pixel_mean=CLIP_MEAN, pixel_std=CLIP_STD)


def qwen_prompt_format(fmt: PromptFormat) -> PromptFormat:
    """A format read from a Qwen checkpoint's directory, with Qwen's chat template where the directory
    names no template and Qwen's CLIP statistics where it names no pixel statistics."""
    if fmt.template == LLAVA_CHAT_TEMPLATE:  # no prune_bench.json: Qwen's own chat format
        fmt = replace(fmt, template=QWEN_CHAT_TEMPLATE)
    if fmt.pixel_mean == PromptFormat.pixel_mean:  # no preprocessor_config.json: Qwen's CLIP stats
        fmt = replace(fmt, pixel_mean=CLIP_MEAN, pixel_std=CLIP_STD)
    return fmt


def _read_json(path: Path) -> dict[str, Any]:
    """A model directory's JSON settings file, or one line saying which file is damaged."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"'{path}' is not valid JSON ({exc}); restore it from the checkpoint") from None
    if not isinstance(value, dict):
        raise UserError(f"'{path}' must hold a JSON object, not {type(value).__name__}")
    return value
