"""How an answer is scored: lmms-eval's generate-and-parse, or the options' logits.

``generate`` (the default for published benchmarks, for every model that answers in letters) is
what lmms-eval does: greedy decoding with the
task's ``generation_kwargs`` (:class:`Generation`), the text cut at the first ``until`` string, then
the task's own parser (:mod:`.parsing`) reads a letter from it; the item is right when that letter is
the right option's. Each record carries the response, the parsed letter and, where the parser drew a
letter at random because nothing matched, ``"guessed": true``.

``logits`` (``--scoring logits``; the only scoring of the shipped synthetic benchmark, whose answers are
option words with no lmms-eval task behind them, and the default for a model that answers in option
words, like the shipped small model, whose text has no letter to parse) compares the logits of the options' answer tokens at
the answer position: one prefill, no decoding, never an unparseable answer; prune-bench's own rule,
which published tables do not use.

Both go through :class:`~prune_bench.session.Session` (``answer`` / ``generate``): one prefill and one
decode loop. The scoring is part of a configuration's identity (the run context's ``"scoring"``), so
rows scored the two ways never merge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from prune_bench.errors import UserError

if TYPE_CHECKING:
    from prune_bench.adapters.base import AnswerResult, PromptFormat
    from prune_bench.benchmarks.base import VideoQAItem
    from prune_bench.benchmarks.published.common import PublishedBenchmark
    from prune_bench.session import EncodedItem, Session

Scoring = Literal["generate", "logits"]
SCORINGS: tuple[Scoring, ...] = ("generate", "logits")
#: lmms-eval's TaskConfig stops generation at the few-shot delimiter when a task names no ``until``
DEFAULT_UNTIL = ("\n\n",)
#: the cap lmms-eval's Hugging Face video models (llava_onevision, llava_vid) set when a task names none
DEFAULT_MAX_NEW_TOKENS = 1024

#: (session, encoded item, item) -> (the run's result with its choice, the record's scoring fields)
ScoreFn = Callable[["Session", "EncodedItem", "VideoQAItem"], "tuple[AnswerResult, dict[str, Any]]"]


@dataclass(frozen=True)
class Generation:
    """A task's ``generation_kwargs`` as lmms-eval hands them to the model (always greedy:
    ``temperature: 0, do_sample: false``)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    until: tuple[str, ...] = DEFAULT_UNTIL

    def as_kwargs(self) -> dict[str, Any]:
        """The ``gen_kwargs`` of lmms-eval's requests for this task."""
        return {"max_new_tokens": self.max_new_tokens, "until": list(self.until), "do_sample": False}


def score_by_logits(
    session: Session, encoded: EncodedItem, item: VideoQAItem
) -> tuple[AnswerResult, dict[str, Any]]:
    """The option with the largest answer-token logit."""
    return session.answer(encoded.sample, item_id=item.item_id), {"scoring": "logits"}


@dataclass(frozen=True)
class GenerateAndParse:
    """Generate as the benchmark's lmms-eval task does and parse the text with its parser."""

    benchmark: PublishedBenchmark

    def __call__(
        self, session: Session, encoded: EncodedItem, item: VideoQAItem
    ) -> tuple[AnswerResult, dict[str, Any]]:
        gen = self.benchmark.generation
        text, result = session.generate(encoded.sample, gen.max_new_tokens, gen.until, item_id=item.item_id)
        judged = self.benchmark.judge(item, text)
        fields: dict[str, Any] = {"scoring": "generate", "response": text, "parsed": judged.letter}
        if judged.guessed:
            fields["guessed"] = True
        return replace(result, choice=judged.choice), fields


def scoring_for(
    benchmark: Any, scoring: Scoring | None, prompt_format: PromptFormat | None = None
) -> ScoreFn | None:
    """The score function of ``--scoring`` on ``benchmark`` (None: option logits, the runner's default).

    ``scoring`` None picks the default: generate-and-parse on a published benchmark for a model that
    takes its lettered prompt (``prompt_format`` None: not known yet, assumed), option logits otherwise:
    on the synthetic benchmark, and for a model that answers in option words in its own format (the
    shipped small model), whose text lmms-eval's letter parsing cannot read. Called with no
    ``prompt_format`` before the model loads, it refuses a scoring the benchmark cannot take.
    """
    from prune_bench.benchmarks.published.common import PublishedBenchmark

    published = isinstance(benchmark, PublishedBenchmark)
    if scoring is None:
        letters = prompt_format is None or prompt_format.with_benchmark_prompt() is not None
        scoring = "generate" if published and letters else "logits"
    if scoring not in SCORINGS:
        raise UserError(f"--scoring must be one of {', '.join(SCORINGS)}, got '{scoring}'")
    if scoring == "logits":
        return None
    if not published:
        raise UserError(
            f"--scoring generate parses answers as a published benchmark's lmms-eval task does; "
            f"'{getattr(benchmark, 'name', benchmark)}' has no such task and is scored by option logits: "
            "drop --scoring (or pass --scoring logits)"
        )
    return GenerateAndParse(benchmark)
