"""What the published benchmarks share: the local copy, annotation files, options, lmms-eval's scores.

Each benchmark reads a local copy laid out as lmms-eval lays it out (the Hugging Face metadata files
of the dataset repo plus the unpacked video folder of its cache directory), so one download serves
both tools. Each also carries its lmms-eval task's ``generation_kwargs`` (``generation``), its answer
parser (``parse``, over :mod:`.parsing`) and its headline rule (``score``), as lmms-eval commit
75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3 has them. A benchmark checks its annotation files, video folders and every question's video when it is
built (when the command starts, before any model loads) and says in one line what is missing, where
it looked and how to fix it.
"""

from __future__ import annotations

import csv
import json
import random
import re
import string
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prune_bench.benchmarks.base import Benchmark, VideoQAItem
from prune_bench.benchmarks.headline import ALL_QUESTIONS, HeadlineRule
from prune_bench.benchmarks.published.parsing import Parsed
from prune_bench.benchmarks.published.scoring import Generation
from prune_bench.errors import UserError

LETTERS = string.ascii_uppercase
VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv", ".webm", ".avi")
README_SECTION = "README, 'Published benchmarks from local copies'"
_LETTERED = re.compile(r"^\(?([A-J])[.)]\s*(.*)$", re.DOTALL)


def read_annotations(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.json`` (list, or dict of rows), ``.jsonl``, ``.csv`` or ``.parquet`` file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise UserError(
                    f"reading '{path}' needs pyarrow; pip install 'prune-bench[parquet]' (or pyarrow)"
                ) from None
            return pq.read_table(path).to_pylist()
        text = path.read_text(encoding="utf-8")
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if suffix == ".csv":
            return list(csv.DictReader(text.splitlines()))
        data = json.loads(text)
    except UserError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UserError(f"could not read annotation file '{path}' ({first}); re-download it") from None
    if isinstance(data, dict):
        return [{"key": k, **v} if isinstance(v, dict) else {"key": k, "value": v} for k, v in data.items()]
    return list(data)


def find_annotation(root: Path, patterns: Sequence[str]) -> Path | None:
    """The first file under ``root`` matching one of ``patterns`` (globs, tried in order)."""
    for pattern in patterns:
        hits = sorted(root.glob(pattern))
        if hits:
            return hits[0]
    return None


def find_video(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name`` with one of the suffixes lmms-eval tries; the expected path if none."""
    if (folder / name).is_file():
        return folder / name
    stem = next((name[: -len(s)] for s in VIDEO_SUFFIXES if name.endswith(s)), name)
    for suffix in VIDEO_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return folder / (name if stem != name else f"{name}.mp4")


def split_lettered(option: str) -> str:
    """``"A. text"`` / ``"(A) text"`` -> ``"text"``; other strings unchanged."""
    m = _LETTERED.match(option.strip())
    return m.group(2).strip() if m else option.strip()


def lettered(options: Sequence[str], style: str = "{letter}. {option}") -> list[str]:
    return [style.format(letter=LETTERS[i], option=o) for i, o in enumerate(options)]


def letter_index(answer: Any, num_options: int, where: str) -> int:
    """An answer given as a letter (``"C"``) or an index (``2``, ``"2"``) -> its index."""
    text = str(answer).strip()
    if text.isdigit() and int(text) < num_options:
        return int(text)
    if len(text) == 1 and text.upper() in LETTERS[:num_options]:
        return LETTERS.index(text.upper())
    raise UserError(f"{where}: answer {answer!r} is not one of its {num_options} options; check the file")


@dataclass
class PublishedScore:
    """lmms-eval's headline number for one (strategy, keep) row, and its breakdowns, in %."""

    overall: float
    items: int
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Judged:
    """A generated response as the task's ``process_results`` reads it: the parsed letter (``""``: none),
    the option it names (None: no option, or one past the item's), whether the letter was guessed."""

    letter: str
    choice: int | None
    guessed: bool = False


def accuracy(records: Sequence[dict[str, Any]]) -> float:
    return 100.0 * sum(bool(r["correct"]) for r in records) / len(records) if records else 0.0


class PublishedBenchmark(Benchmark):
    """A benchmark read from a local copy in lmms-eval's layout.

    Subclasses set ``name``, ``tasks``, ``layout`` (the expected layout, one line, for messages),
    ``score_rule``, ``generation`` and implement :meth:`load` and :meth:`parse`.
    """

    #: the expected directory layout, as one line for error messages
    layout: ClassVar[str]
    #: lmms-eval's headline number (accuracy over all questions unless the task aggregates otherwise)
    headline: ClassVar[HeadlineRule] = ALL_QUESTIONS
    #: further breakdowns the records carry in ``groups`` (besides ``task``)
    group_keys: ClassVar[tuple[str, ...]] = ()
    #: the task's ``generation_kwargs`` (max_new_tokens; ``until`` as lmms-eval's TaskConfig fills it)
    generation: ClassVar[Generation] = Generation(max_new_tokens=16)

    def __init__(self, data_dir: str | Path | None = None) -> None:
        if data_dir is None:
            raise UserError(
                f"benchmark '{self.name}' reads a local copy: pass --data-dir DIR with {self.layout} "
                f"(see {README_SECTION})"
            )
        self.root = Path(data_dir).expanduser()
        if not self.root.is_dir():
            raise UserError(
                f"{self.name}: data directory '{self.root}' does not exist; pass --data-dir DIR with "
                f"{self.layout}"
            )
        self._items = self.load()
        if not self._items:
            raise UserError(f"{self.name}: no questions found under '{self.root}'; expected {self.layout}")
        # Checked here, when the command builds the benchmark, so a partial copy fails before any
        # model loads (a few thousand stat calls).
        missing = [i for i in self._items if i.video_path is None or not Path(i.video_path).is_file()]
        if missing:
            raise UserError(
                f"{self.name}: {len(missing)} of {len(self._items)} questions' videos are missing, e.g. "
                f"'{missing[0].video_path}'; copy the videos there ({self.layout})"
            )

    @abstractmethod
    def load(self) -> list[VideoQAItem]:
        """Every item, in a fixed order, from the annotation files (videos are checked later)."""

    def require(self, path: Path, what: str) -> Path:
        """``path`` if it exists, else a one-line error naming what is missing and where."""
        if not path.exists():
            raise UserError(
                f"{self.name}: {what} not found at '{path}'; expected {self.layout} (see {README_SECTION})"
            )
        return path

    def annotation(self, patterns: Sequence[str], what: str) -> Path:
        found = find_annotation(self.root, patterns)
        if found is None:
            raise UserError(
                f"{self.name}: {what} not found in '{self.root}' (looked for {', '.join(patterns)}); "
                f"expected {self.layout} (see {README_SECTION})"
            )
        return found

    def items(self, limit: int | None = None) -> list[VideoQAItem]:
        chosen = self._items if limit is None else self._items[:limit]
        return [self.finish(i) for i in chosen]

    def finish(self, item: VideoQAItem) -> VideoQAItem:
        """Last touches that need the video itself (Video-MME's subtitles); unchanged by default."""
        return item

    def __len__(self) -> int:
        return len(self._items)

    # ------------------------------------------------------------------------------ answers
    @abstractmethod
    def parse(self, item: VideoQAItem, response: str, rng: random.Random) -> Parsed:
        """The letter the task's ``process_results`` reads from a (stripped) response; ``rng`` draws
        the letter of a parser that guesses when nothing matches."""

    def judge(self, item: VideoQAItem, response: str) -> Judged:
        """A generated response, read as lmms-eval reads it (stripped first, as its Task does); the
        guess of an unreadable one is drawn from a generator seeded by the item, the same every run."""
        parsed = self.parse(item, response.strip(), random.Random(f"{self.name}/{item.item_id}"))
        letter = parsed.letter
        index = LETTERS.index(letter) if len(letter) == 1 and letter in LETTERS else None
        choice = index if index is not None and index < len(item.options) else None
        return Judged(letter, choice, parsed.guessed)

    # ------------------------------------------------------------------------------ scores
    def score(self, records: Iterable[dict[str, Any]]) -> PublishedScore:
        """lmms-eval's number for one row's records (:attr:`headline`), with the per-task and per-group
        breakdowns."""
        every = list(records)
        recs = [r for r in every if self.headline.counts(r)]
        by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in every:  # a task whose every answer is empty still counts, at 0 (as lmms-eval's)
            by["task"].setdefault(r["task"], [])
        for r in recs:
            by["task"][r["task"]].append(r)
            for key in self.group_keys:
                by[key][r.get("groups", {}).get(key, "?")].append(r)
        breakdown = {k: {name: accuracy(rs) for name, rs in sorted(v.items())} for k, v in by.items()}
        outcomes = {task: [bool(r["correct"]) for r in rs] for task, rs in by["task"].items()}
        return PublishedScore(self.headline.score(outcomes) if recs else 0.0, len(recs), breakdown)

    def score_lines(self, records: Iterable[dict[str, Any]], hashes: set[str]) -> list[str]:
        """One line per (strategy, keep, scoring): lmms-eval's headline number and its breakdowns, and
        a warning where generated answers were asked in a model's own format (no letters to parse)."""
        rows: dict[tuple[str, float, str], list[dict[str, Any]]] = defaultdict(list)
        own_format = 0
        for r in records:
            if r["config_hash"] in hashes:
                scoring = r.get("scoring", "logits")
                rows[(r["strategy"], r["keep"], scoring)].append(r)
                own_format += scoring == "generate" and r.get("prompt") == "model"
        lines = [f"{self.name} score as lmms-eval computes it ({self.headline.text}), %:"]
        for (strategy, keep, scoring), recs in sorted(
            rows.items(), key=lambda kv: (kv[0][0] != "none", kv[0])
        ):
            s = self.score(recs)
            how = "generated and parsed" if scoring == "generate" else "option logits"
            parts = [f"  {strategy} keep={keep:g} ({how}): {s.overall:.1f} ({s.items} items)"]
            guessed = sum(bool(r.get("guessed")) for r in recs)
            if guessed:
                parts[0] += f", {guessed} unparseable answers guessed at random as lmms-eval does"
            for key in self.group_keys:
                parts.append(f"{key}: " + ", ".join(f"{n} {a:.0f}" for n, a in s.breakdown[key].items()))
            lines.append("; ".join(parts))
        if own_format:
            lines.append(
                f"  warning: {own_format} generated answers were asked in the model's own format (it cannot "
                "take the benchmark's lettered prompt), so lmms-eval's letter parsing has little to read; "
                "--scoring logits compares its options directly"
            )
        return lines
