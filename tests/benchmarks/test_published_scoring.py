"""Published benchmarks scored as lmms-eval scores them: its parsers on tricky responses, its headline
rules, and the same answers through ``prune-bench compare`` and through the lmms-eval model class."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from lmms_eval_standin import imported_against_lmms_eval  # tests/, lmms-eval when installed
from test_published import MAKERS  # the local copies in lmms-eval's layout (tests/benchmarks)

from prune_bench.benchmarks.base import VideoQAItem
from prune_bench.benchmarks.published import PUBLISHED, MLVUDev, MVBench, VideoMME
from prune_bench.benchmarks.published.parsing import (
    extract_mcq_answer,
    mvbench_normalise,
    parse_egoschema,
    parse_longvideobench,
    parse_nextqa,
)
from prune_bench.benchmarks.published.scoring import scoring_for
from prune_bench.cli.main import main
from prune_bench.errors import UserError
from prune_bench.report.data import load_records, report_rows

pytest.importorskip("pyarrow.parquet")


# ------------------------------------------------------------------------------------ parsers
@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("B", "B"),
        ("(C) three", "C"),  # starts with a lone letter: the strongest form
        ("The answer is B. But A. was close", "A"),  # every capital after the phrase counts: the last wins
        ("I think the best answer is D", "D"),  # ends with a lone letter
        ("Answer: C.", "C"),  # trailing punctuation stripped; 'C' ends the text
        ("Because it rains", "B"),  # no form matches: any letter anywhere, even inside a word
        ("Dog", "D"),
        ("none of them", ""),
        ("   ", ""),
        ("A) cat (B) dog", "A"),  # the start form wins over the later bracketed B
        ("the option with (B) and then (D) stands", "D"),  # within one form, the later occurrence
        ('"B"', "B"),  # quotes stripped last, then 'B' alone
        ("E", ""),  # only A-D are choices on Video-MME and MLVU
    ],
)
def test_extract_mcq_answer_reads_responses_like_lmms_eval(response: str, letter: str) -> None:
    assert extract_mcq_answer(response, "ABCD") == letter


def test_extract_mcq_answer_phrase_takes_the_first_capital_after_it_even_inside_a_word() -> None:
    # "the answer is Because" -> the phrase form finds 'B' at 'Because' and outranks the period form 'A.'
    assert extract_mcq_answer("x A. the answer is Because", "ABCD") == "B"
    assert extract_mcq_answer("my answer is: see C and D", "ABCD") == "D"  # the end form outranks the phrase


@pytest.mark.parametrize(
    ("response", "normalised"),
    [
        ("B. run", "B"),
        ("b. run", "B"),  # case-insensitive letter-dot
        ("(C)", "C"),
        ("a man runs", "A"),  # the article reads as option A, as in lmms-eval
        ("run", "run"),  # no letter: the cleaned lowercase text, never equal to a letter
        ("Run!", "run"),
        ("", ""),
        ("Answer: E", "E"),
    ],
)
def test_mvbench_normalise_is_mcq_acc(response: str, normalised: str) -> None:
    assert mvbench_normalise(response) == normalised


def test_mvbench_drops_at_most_32_periods_as_lmms_eval_passes_re_unicode_as_the_count() -> None:
    text = "." * 40 + "x"
    assert mvbench_normalise(text) == "." * 8 + "x"
    assert mvbench_normalise("3.5 and 2.") == "3.5 and 2"


EGO_OPTIONS = ["A. he cooks", "B. he reads a book", "C. he runs", "D. he sleeps", "E. he swims"]


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("C", "C"),
        ("(D) he sleeps", "D"),
        ("B. he reads", "B"),
        ("A or maybe B.", "A"),  # several: the one whose last occurrence comes first
        ("I am quite sure that b. he reads a book here", "B"),  # > 5 words: the option text as given
    ],
)
def test_egoschema_parser(response: str, letter: str) -> None:
    got = parse_egoschema(response, EGO_OPTIONS, random.Random(0))
    assert got.letter == letter and not got.guessed


def test_unparseable_answers_are_guessed_from_the_given_generator() -> None:
    one, two = (parse_egoschema("no idea", EGO_OPTIONS, random.Random(7)) for _ in range(2))
    assert one.guessed and one == two and one.letter in "ABCDE"
    # a short answer naming an option's text is not matched by content (five words or fewer)
    assert parse_egoschema("he reads a book", EGO_OPTIONS, random.Random(1)).guessed
    lvb = parse_longvideobench("the first one", 4, random.Random(3))
    assert lvb.guessed and lvb.letter in "ABCD"


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("(B) then (A)", "A"),  # brackets: the LAST one, unlike EgoSchema
        ("A or B maybe", "B"),  # spaced letters: the last ' X '
        ("C.", "C"),
        ("I would say that the boy was answer 3 here", "D"),  # content: 'answer 3' is option D
    ],
)
def test_nextqa_parser(response: str, letter: str) -> None:
    options = ["answer 0", "answer 1", "answer 2", "answer 3", "answer 4"]
    got = parse_nextqa(response, options, random.Random(0))
    assert got.letter == letter and not got.guessed


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("The best answer is C", "C"),
        ("The answer D", "D"),
        ("Because of B", "B"),  # the first capital A-E, inside a word too
        ("the answer is c", None),  # lowercase: guessed
    ],
)
def test_longvideobench_parser(response: str, letter: str | None) -> None:
    got = parse_longvideobench(response, 4, random.Random(0))
    assert (letter is None) == got.guessed and (letter is None or got.letter == letter)


# ------------------------------------------------------------------------ judge and headline rules
def _item(task: str = "t", answer: int = 1, options: int = 3, **meta: Any) -> VideoQAItem:
    return VideoQAItem(
        "i0", task, "q", tuple(f"o{n}" for n in range(options)), answer, None, "v.mp4", meta=meta
    )


def test_judge_strips_and_maps_the_letter_to_an_option_of_the_item() -> None:
    bench = object.__new__(VideoMME)
    assert bench.judge(_item(), "  B  ").choice == 1
    assert bench.judge(_item(options=3), "D").choice is None  # a letter past the item's options
    assert bench.judge(_item(), "nothing").letter == "" and bench.judge(_item(), "nothing").choice is None
    mv = object.__new__(MVBench)
    assert mv.judge(_item(), "run").choice is None and mv.judge(_item(), "run").letter == "run"


def _rec(task: str, correct: bool, response: str | None = "A") -> dict[str, Any]:
    return {"task": task, "correct": correct, "response": response, "groups": {}}


def test_mvbench_leaves_empty_answers_out_and_averages_tasks() -> None:
    mv = object.__new__(MVBench)
    recs = [_rec("action_count", True), _rec("action_count", False, ""), _rec("state_change", False)]
    score = mv.score(recs)
    assert score.breakdown["task"] == {"action_count": 100.0, "state_change": 0.0}
    assert score.overall == pytest.approx(50.0) and score.items == 2
    # a task with only empty answers scores 0 and still counts in the mean
    assert mv.score([*recs, _rec("object_shuffle", True, " ")]).overall == pytest.approx(100.0 / 3)
    # option-logit records have no response: every one counts
    assert mv.score([_rec("action_count", False, None)]).items == 1


def test_mlvu_divides_by_all_seven_task_types_as_lmms_eval() -> None:
    ml = object.__new__(MLVUDev)
    recs = [_rec("plotQA", True)] * 3 + [_rec("count", False)]
    assert ml.score(recs).overall == pytest.approx(100.0 / 7)


def test_generate_scoring_is_refused_on_the_synthetic_benchmark() -> None:
    from prune_bench.benchmarks.synthetic import SyntheticVideoQA

    synthetic = SyntheticVideoQA(num_items=2)
    assert scoring_for(synthetic, None) is None
    with pytest.raises(UserError, match="--scoring generate parses answers as a published benchmark"):
        scoring_for(synthetic, "generate")


def test_scoring_generate_on_synthetic_is_one_line_before_the_model_loads(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["compare", "none", "--scoring", "generate", "--no-progress", "--limit", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "has no such task" in err[0]


# ------------------------------------------------------------------------------------- parity
def _letter_model_dir(root: Path) -> Path:
    """A tiny random Qwen2-VL checkpoint whose word-level vocabulary is full of answer-like words
    (``B``, ``(C)``, ``D.``, ``The``, ``answer`` ...), so greedy text gives letters in varied forms."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, Qwen2VLForConditionalGeneration

    from prune_bench.adapters.qwen2_vl import tiny_qwen2_vl_config

    torch.manual_seed(0)
    config = tiny_qwen2_vl_config(num_layers=4)
    # large random weights: greedy text that depends on the question (at 0.02 every item reads alike)
    config.initializer_range = config.text_config.initializer_range = 1.0
    Qwen2VLForConditionalGeneration(config).save_pretrained(str(root))
    forms = ("{}", "({})", "{}.", "{})", "{}:")
    words = ["[UNK]", "[PAD]", *(f.format(c) for c in "ABCDE" for f in forms)]
    words += ["The", "answer", "is", "best", "option", "Because", "Dog", "a", "man", "runs", "none", "?"]
    words += [str(n) for n in range(10)]  # the test questions differ by their number: so do the answers
    shapes = ("{c}{n}", "({c}{n})", "{c}.{n}", "w{n}")  # letters in every form, and plain words
    words += [
        shapes[n % 4].format(c="ABCDE"[n // 4 % 5], n=n)
        for n in range(config.text_config.vocab_size - len(words))
    ]
    core = Tokenizer(WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        str(root)
    )
    return root


@pytest.fixture(scope="module")
def letter_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _letter_model_dir(tmp_path_factory.mktemp("letter-model"))


@pytest.fixture(scope="module")
def lmms_module():
    """The lmms-eval model module against lmms-eval's interface (the stand-in where it is absent)."""
    with imported_against_lmms_eval() as module:
        yield module


def _local_copy(name: str, root: Path) -> Path:
    MAKERS[name](root)
    if name == "mvbench":  # lmms-eval has no full-length fallback with start/end bounds: leave it out
        (root / "json" / "object_interaction.json").unlink()
        shutil.rmtree(root / "video" / "star")
    return root


def _lmms_eval_answers(lmms_module, bench, model_dir: Path, strategy: str, log: Path) -> list[str]:
    """lmms-eval's loop over a task, as its evaluator runs it: one ``generate_until`` request per
    document with the task's prompt and gen_kwargs, the document looked up in ``task_dict``."""
    from lmms_eval.api.instance import Instance

    lmm = lmms_module.PruneBenchLMM(
        pretrained=str(model_dir),
        strategy=strategy,
        keep="0.5",
        frames="4",
        device="cpu",
        pruning_log=str(log),
    )
    docs = dict(enumerate(bench.items()))
    lmm.task_dict = {bench.name: {"test": docs}}
    requests = [
        Instance(
            request_type="generate_until",
            arguments=(
                doc.prompt,
                bench.generation.as_kwargs(),
                lambda d: [d.video_path],
                n,
                bench.name,
                "test",
            ),
            idx=0,
            metadata={"task": bench.name, "doc_id": n, "repeats": 1},
        )
        for n, doc in docs.items()
    ]
    return [getattr(out, "text", out) for out in lmm.generate_until(requests)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["videomme", "mvbench", "egoschema_subset", "mlvu_dev", "longvideobench_val_v"]
)
def test_compare_and_the_lmms_eval_model_give_the_same_answers_and_headline(
    name: str, letter_model: Path, lmms_module, tmp_path: Path
) -> None:
    root = _local_copy(name, tmp_path / name)
    out = tmp_path / "out"
    try:
        main(["compare", "fastv", "--keep", "0.5", "--model", str(letter_model), "--benchmark", name,
              "--data-dir", str(root), "--frames", "4", "--device", "cpu", "--out", str(out), "--no-progress",
              "--workers", "0"])  # fmt: skip
    except SystemExit as exc:
        assert exc.code in (0, None)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    bench = PUBLISHED[name](data_dir=root)
    items = bench.items()
    assert {r["scoring"] for r in records} == {"generate"} and all(
        r["prompt"] == "benchmark" for r in records
    )
    for strategy in ("none", "fastv"):
        ours = {r["item_id"]: r for r in records if r["strategy"] == strategy}
        log = tmp_path / f"{strategy}.jsonl"
        texts = _lmms_eval_answers(lmms_module, bench, letter_model, strategy, log)
        judged = [bench.judge(item, text) for item, text in zip(items, texts, strict=True)]
        assert [ours[i.item_id]["response"] for i in items] == texts
        assert [ours[i.item_id]["parsed"] for i in items] == [j.letter for j in judged]
        assert [ours[i.item_id]["choice"] for i in items] == [j.choice for j in judged]
        theirs = [
            {"task": i.task, "correct": j.choice == i.answer, "response": t, "groups": i.groups}
            for i, j, t in zip(items, judged, texts, strict=True)
        ]
        assert bench.score(list(ours.values())).overall == pytest.approx(bench.score(theirs).overall)
        # ... and `table`/`report`/`plot` show that same number as the row's average
        (row,) = [r for r in report_rows(load_records(out)) if r.strategy == strategy]
        assert row.average == pytest.approx(bench.score(theirs).overall)
        # the sidecar carries what pruning achieved, one line per request, joinable on (task, doc_id)
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(x["task"], x["doc_id"]) for x in lines] == [(name, n) for n in range(len(items))]
        for line, item in zip(lines, items, strict=True):
            assert line["retention"] == pytest.approx(ours[item.item_id]["retention"])
            assert line["flops"] == pytest.approx(ours[item.item_id]["flops"])
    # the answers differ from item to item and some name a letter: a parity worth testing
    assert len({r["response"] for r in records if r["strategy"] == "none"}) > 1
    assert any(r["parsed"] for r in records)


def test_logit_and_generate_scoring_are_separate_rows_of_one_directory(
    letter_model: Path, tmp_path: Path
) -> None:
    root = _local_copy("videomme", tmp_path / "vm")
    out = tmp_path / "out"
    args = ["compare", "none", "--model", str(letter_model), "--benchmark", "videomme", "--data-dir", str(root),
            "--frames", "4", "--device", "cpu", "--out", str(out), "--no-progress", "--limit", "2",
            "--workers", "0"]  # fmt: skip
    for extra in ([], ["--scoring", "logits"]):
        try:
            main(args + extra)
        except SystemExit as exc:
            assert exc.code in (0, None)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_scoring = {s: {r["config_hash"] for r in records if r["scoring"] == s} for s in ("generate", "logits")}
    assert all(len(h) == 1 for h in by_scoring.values()) and not by_scoring["generate"] & by_scoring["logits"]
    assert all("response" not in r for r in records if r["scoring"] == "logits")
    from prune_bench.runner.summary import summarize

    rows = summarize(records)
    assert sorted((r.strategy, r.scoring) for r in rows) == [
        ("none [generate]", "generate"),
        ("none [logits]", "logits"),
    ]


def test_the_shipped_option_word_model_defaults_to_logits_and_is_warned_when_forced_to_generate(
    tmp_path: Path, capsys
) -> None:
    root = _local_copy("egoschema_subset", tmp_path / "ego")
    base = ["compare", "none", "--benchmark", "egoschema_subset", "--data-dir", str(root), "--limit", "1",
            "--frames", "4", "--no-progress", "--workers", "0"]  # fmt: skip
    for extra, out in (([], "default"), (["--scoring", "generate"], "forced")):
        try:
            main([*base, *extra, "--out", str(tmp_path / out)])
        except SystemExit as exc:
            assert exc.code in (0, None)
    text = capsys.readouterr().out
    (default,) = [json.loads(x) for x in (tmp_path / "default" / "results.jsonl").read_text().splitlines()]
    (forced,) = [json.loads(x) for x in (tmp_path / "forced" / "results.jsonl").read_text().splitlines()]
    assert default["scoring"] == "logits" and default["prompt"] == "model"
    assert forced["scoring"] == "generate" and isinstance(forced["response"], str)
    assert "none keep=1 (option logits)" in text and "none keep=1 (generated and parsed)" in text
    assert "asked in the model's own format" in text
