"""lmms-eval's answer parsing for the published tasks, re-implemented from its task code.

Followed: lmms-eval commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3 (2026-08-06),
``lmms_eval/tasks/_task_utils/mcq_extract.py`` (Video-MME, MLVU), ``tasks/mvbench/utils.py``
(``mcq_acc``), ``tasks/egoschema/utils.py`` and ``tasks/nextqa/utils.py`` (two variants of MMMU's
``parse_multi_choice_response``) and ``tasks/longvideobench/utils.py``. Each function reads a
free-form response the way that task's ``process_results`` does, quirks included, because the
quirks move scores (a response ``"Because ..."`` reads as ``B`` in several of them).

Three parsers fall back to a random letter when nothing matches (``random.choice`` in lmms-eval, from
the process-wide generator, so its draw depends on everything that ran before and no re-implementation
can reproduce it). Here the draw comes from the ``rng`` the caller passes (one seeded per item), so a
re-run gives the same letter, and the result says the letter was guessed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

LMMS_EVAL_COMMIT = "75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3"


@dataclass(frozen=True)
class Parsed:
    """What a parser read from a response: the letter (``""`` when none, as lmms-eval's
    ``pred_answer``) and whether it was drawn at random because nothing matched."""

    letter: str
    guessed: bool = False


# ------------------------------------------------------------------ mcq_extract (Video-MME, MLVU)
#: phrases after which the first choice letter is the answer (lmms-eval's list, multilingual)
ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is",
    "best option is", "the choice is", "choice is", "the correct choice is", "correct choice is",
    "i choose", "i select", "i pick", "my answer is", "my choice is",
    "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)  # fmt: skip
# A letter found in a more telling form wins; within a form, the later occurrence wins.
_START, _END, _PHRASE, _PAREN, _PERIOD, _COLON, _RIGHT_PAREN, _SPACE, _ANYWHERE = 10, 9, 7, 6, 5, 4, 3, 2, 0
_FORMS = (("({})", _PAREN), ("{}.", _PERIOD), ("{}:", _COLON), ("{})", _RIGHT_PAREN), ("{} ", _SPACE))


def extract_mcq_answer(response: str, choices: Sequence[str] = "ABCDEFGH") -> str:
    """The choice letter a response gives, ``""`` if none (lmms-eval's ``extract_mcq_answer``).

    Punctuation is stripped from the ends one character kind at a time (``, . ! ? ; : ' "``, in that
    order, as lmms-eval does), then every form of every letter is a candidate and the best form wins:
    the response starting or ending with a lone letter, a letter after an answer phrase (the first
    uppercase occurrence after it, even inside a word), ``(A)``, ``A.``, ``A:``, ``A)``, ``A ``; a
    letter anywhere counts only when no form matched (``"Dog"`` reads as ``D``).
    """
    if not response.strip():
        return ""
    text = response.strip()
    for mark in (",", ".", "!", "?", ";", ":", "'", '"'):
        text = text.strip(mark)
    text = f" {text} "
    found: list[tuple[int, int, str]] = []  # (form rank, position, letter)
    for form, rank in _FORMS:
        found += [(rank, text.rfind(form.format(c)), c) for c in choices if form.format(c) in text]
    lower = text.lower()
    for phrase in ANSWER_PHRASES:
        at = lower.find(phrase)
        if at >= 0:
            after = at + len(phrase)
            found += [(_PHRASE, text.find(c, after), c) for c in choices if text.find(c, after) >= 0]
    bare = text.strip()
    for c in choices:
        if bare.startswith(c) and (len(bare) == 1 or not bare[1].isalpha()):
            found.append((_START, 0, c))
        if bare.endswith(c) and (len(bare) == 1 or not bare[-2].isalpha()):
            found.append((_END, len(text) - 1, c))
    if not found:
        found = [(_ANYWHERE, text.rfind(c), c) for c in choices if c in text]
    if not found:
        return ""
    return max(found, key=lambda f: (f[0], f[1]))[2]


# ---------------------------------------------------------------------------- MVBench (mcq_acc)
_MVBENCH_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")  # fmt: skip
_NUMBER_COMMA = re.compile(r"(\d)(,)(\d)")
# lmms-eval's pattern opens with a lookahead where a lookbehind was meant, so it drops every period
# not followed by a digit; and it passes re.UNICODE as sub()'s third argument, the count: 32 at most.
_MVBENCH_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_MVBENCH_PERIOD_COUNT = int(re.UNICODE)
_LETTER_DOT = re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE)
_LONE_LETTER = re.compile(r"\b([A-E])\b", re.IGNORECASE)


def _mvbench_punctuation(text: str) -> str:
    out = text
    for mark in _MVBENCH_PUNCT:
        # the test reads the original text, the replacement the running one (as lmms-eval does)
        glued = f"{mark} " in text or f" {mark}" in text or _NUMBER_COMMA.search(text) is not None
        out = out.replace(mark, "" if glued else " ")
    return _MVBENCH_PERIOD.sub("", out, count=_MVBENCH_PERIOD_COUNT)


def mvbench_normalise(answer: str) -> str:
    """A response (or the right letter) as MVBench's ``mcq_acc`` compares it: ``"B. run"`` -> ``B``;
    otherwise punctuation dropped, lowercased, and the first lone letter A-E in any case (so
    ``"a man runs"`` reads as ``A``), else the cleaned lowercase text itself."""
    m = _LETTER_DOT.match(answer.strip())
    if m:
        return m.group(1).upper()
    text = _mvbench_punctuation(answer.replace("\n", " ").replace("\t", " ").strip())
    text = text.strip("'").strip('"').strip(")").strip("(").strip().lower()
    lone = _LONE_LETTER.search(text)
    return lone.group(1).upper() if lone else text


# ----------------------------------------------------------- MMMU-style parsers (EgoSchema, NExT-QA)
def _mmmu_text(response: str) -> str:
    text = response
    for mark in (",", ".", "!", "?", ";", ":", "'"):
        text = text.strip(mark)
    return f" {text} "  # spaces so that "A " matches a final letter


def _by_content(text: str, answers: dict[str, str]) -> list[str]:
    """Letters whose option text appears in a response longer than five words."""
    if len(text.split()) <= 5:
        return []
    return [c for c, ans in answers.items() if ans.lower() in text.lower()]


def parse_egoschema(response: str, options: Sequence[str], rng: random.Random) -> Parsed:
    """EgoSchema's parser: ``(A)``, ``A `` and ``A.`` are all candidates; among several, the one whose
    last occurrence comes FIRST wins. ``options`` are the five option strings as the dataset gives them
    (with their ``"A. "`` prefix, which lmms-eval matches content against)."""
    letters = "ABCDE"
    answers = {c: str(o).strip() for c, o in zip(letters, options, strict=False)}
    text = _mmmu_text(response)
    tokens = [f"({c})" for c in letters if f"({c})" in text]
    tokens += [f"{c} " for c in letters if f"{c} " in text]
    tokens += [f"{c}." for c in letters if f"{c}." in text]
    if tokens:
        first = min(tokens, key=text.rfind)  # min keeps the first of equal positions, as argmin
        return Parsed(first.replace("(", "").replace(")", "").replace(".", "").strip())
    by_content = _by_content(text, answers)
    if by_content:
        return Parsed(min(by_content, key=lambda c: text.lower().rfind(answers[c].lower())))
    return Parsed(rng.choice(letters), guessed=True)


def parse_nextqa(response: str, options: Sequence[str], rng: random.Random) -> Parsed:
    """NExT-QA's parser: ``(A)`` candidates if any, else ``A `` ones, else ``A.`` ones; among several,
    the LAST occurrence wins (of ``(A)``, or of `` A `` with spaces on both sides)."""
    letters = "ABCDE"
    answers = {c: str(o).strip() for c, o in zip(letters, options, strict=False)}
    text = _mmmu_text(response)
    bracketed = [c for c in letters if f"({c})" in text]
    found = bracketed or [c for c in letters if f"{c} " in text] or [c for c in letters if f"{c}." in text]
    if found:
        form = "({})" if bracketed else " {} "
        return Parsed(max(found, key=lambda c: text.rfind(form.format(c))))  # the first of equal ones
    by_content = _by_content(text, answers)
    if by_content:
        return Parsed(max(by_content, key=lambda c: text.lower().rfind(answers[c].lower())))
    return Parsed(rng.choice(letters), guessed=True)


# ------------------------------------------------------------------------------ LongVideoBench
_LVB_PREFIXES = (
    "The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
    "The correct option is", "Best answer:", "Best option:",
)  # fmt: skip
_ANY_LETTER = re.compile(r"[ABCDE]")


def parse_longvideobench(response: str, num_options: int, rng: random.Random) -> Parsed:
    """LongVideoBench's parser: the answer phrases removed (case-sensitive), then the first uppercase
    A-E anywhere, even inside a word; none: a random one of the item's letters."""
    text = response.strip()
    for prefix in _LVB_PREFIXES:
        text = text.replace(prefix, "")
    m = _ANY_LETTER.search(text)
    if m is None:
        return Parsed(rng.choice("ABCDE"[:num_options]), guessed=True)
    return Parsed(m.group(0))
