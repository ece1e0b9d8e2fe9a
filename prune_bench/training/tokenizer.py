"""The default model's word-level tokenizer: one id per word of the synthetic benchmark."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prune_bench.benchmarks.synthetic.vocab import all_words

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "<image>", "<video>")
_WORD = re.compile(r"\w+|[^\w\s]+")  # what the Whitespace pre-tokenizer splits into


def vocabulary(template: str) -> list[str]:
    """Special tokens, then every word of ``template`` (placeholders removed), of the benchmark and of
    the training-only questions."""
    from prune_bench.training.data import TRAINING_QUESTIONS

    texts = (template, *TRAINING_QUESTIONS)
    words = set(all_words()).union(*(_WORD.findall(re.sub(r"\{\w+\}", " ", t).lower()) for t in texts))
    return [*SPECIAL_TOKENS, *sorted(words)]


def build_tokenizer(template: str) -> Any:
    """A ``PreTrainedTokenizerFast`` over a ``tokenizers`` WordLevel model (lower-cased, split on
    whitespace and punctuation); unknown words become ``[UNK]``."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary(template))}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")


def save_tokenizer(tokenizer: Any, out_dir: str | Path) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` (loadable with ``AutoTokenizer``)."""
    tokenizer.save_pretrained(str(out_dir))
