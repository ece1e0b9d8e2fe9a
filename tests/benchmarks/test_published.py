"""Published benchmarks from local copies laid out as lmms-eval lays them out, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from prune_bench.adapters.base import LLAVA_CHAT_TEMPLATE, PromptFormat
from prune_bench.benchmarks.published import PUBLISHED, MLVUDev, VideoMME, VideoMMESubtitles
from prune_bench.benchmarks.published.videomme import subtitle_text
from prune_bench.benchmarks.video import frame_indices, load_video, write_mp4
from prune_bench.cli.main import main
from prune_bench.errors import UserError
from prune_bench.session import item_prompt

pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402


def _video(path: Path, frames: int = 16, shade: int = 0) -> None:
    ramp = torch.arange(frames, dtype=torch.uint8).mul(12).add(shade)
    write_mp4(ramp[:, None, None, None].expand(frames, 32, 32, 3).contiguous(), path, fps=8)


def _parquet(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def make_mvbench(root: Path) -> list[tuple[str, int]]:
    """Three tasks: 3 options, 5 options, and a bounded star task in the full-length folder."""
    (root / "json").mkdir(parents=True)
    tasks = {
        "action_antonym": ("ssv2_video_mp4", ["walk", "run", "sit"], "run", {}),
        "fine_grained_pose": ("nturgbd_convert", ["a", "b", "c", "d", "e"], "e", {}),
        "object_interaction": ("star/Charades_v1_480", ["cup", "box"], "cup", {"start": 1.0, "end": 1.9}),
    }
    for t, (folder, cands, ans, bounds) in tasks.items():
        docs = [
            {
                "video": f"{t}{n}.mp4",
                "question": f"What happens {n}?",
                "candidates": cands,
                "answer": ans,
                **bounds,
            }
            for n in range(2)
        ]
        (root / "json" / f"{t}.json").write_text(json.dumps(docs))
        for n in range(2):
            _video(root / "video" / folder / f"{t}{n}.mp4")
    # round-robin over tasks, in lmms-eval's task order
    return [("action_antonym", 1), ("fine_grained_pose", 4), ("object_interaction", 0)]


def make_videomme(root: Path) -> list[tuple[str, int]]:
    rows = []
    for n, (dur, ans) in enumerate([("short", "B"), ("medium", "D"), ("long", "A"), ("short", "C")]):
        vid = f"v{n:03d}"
        rows.append(
            {
                "video_id": f"{n:03d}",
                "duration": dur,
                "domain": "Knowledge",
                "sub_category": "Astronomy",
                "url": "https://example.invalid",
                "videoID": vid,
                "question_id": f"{n:03d}-1",
                "task_type": "Counting Problem" if n % 2 else "OCR Problems",
                "question": f"How many stars {n}?",
                "options": ["A. one", "B. two", "C. three", "D. four"],
                "answer": ans,
            }
        )
        _video(root / "data" / f"{vid}.mp4", shade=n)
    _parquet(rows, root / "videomme" / "test-00000-of-00001.parquet")
    (root / "subtitle").mkdir()
    (root / "subtitle" / "v000.srt").write_text(
        '1\n00:00:00,000 --> 00:00:01,000\n<font color="white" size=".72c">look at the sky</font>\n\n'
        "2\n00:00:01,000 --> 00:00:02,000\nplain line lmms-eval drops\n"
    )
    return [("short", 1), ("medium", 3), ("long", 0)]


def make_egoschema(root: Path) -> list[tuple[str, int]]:
    rows = [
        {
            "question_idx": f"q{n}",
            "question": f"What is C doing {n}?",
            "video_idx": f"clip{n}",
            "option": [f"{c}. option {c}" for c in "ABCDE"],
            "answer": str(n + 1),
        }
        for n in range(3)
    ]
    for n in range(3):
        _video(root / "videos" / f"clip{n}.mp4")
    _parquet(rows, root / "Subset" / "test-00000-of-00001.parquet")
    return [("egoschema", 1), ("egoschema", 2), ("egoschema", 3)]


def make_nextqa(root: Path) -> list[tuple[str, int]]:
    rows = []
    for n, qtype in enumerate(["CW", "TN", "DC", "CH"]):
        rows.append(
            {
                "video": 4010069381 + n,
                "frame_count": 16,
                "width": 32,
                "height": 32,
                "question": f"why does the boy run {n}",
                "answer": n,
                "qid": n,
                "type": qtype,
                **{f"a{i}": f"answer {i}" for i in range(5)},
            }
        )
        _video(root / "NExTVideo" / f"{4010069381 + n}.mp4")
    _parquet(rows, root / "MC" / "test-00000-of-00001.parquet")
    return [("CW", 0), ("TN", 1), ("DC", 2)]


def make_mlvu(root: Path) -> list[tuple[str, int]]:
    rows = []
    for n, (task, ans) in enumerate([("plotQA", "C"), ("needle", "A"), ("count", "B")]):
        rows.append(
            {
                "video_name": f"{task}_{n}.mp4",
                "duration": 2.0,
                "question": f"What happens {n}?\n(A) x\n(B) y\n(C) z\n(D) w",
                "candidates": ["x", "y", "z", "w"],
                "answer": ans,
                "task_type": task,
            }
        )
        _video(root / f"{task}_{n}.mp4")
    _parquet(rows, root / "test-00000-of-00001.parquet")
    return [("plotQA", 2), ("needle", 0), ("count", 1)]


def make_longvideobench(root: Path) -> list[tuple[str, int]]:
    docs = []
    for n, (group, cands) in enumerate(
        [(15, ["a", "b", "c", "d"]), (600, list("abcde")), (3600, list("abcd"))]
    ):
        docs.append(
            {
                "video_id": f"lvb{n}",
                "question": f"Which one {n}?",
                "candidates": cands,
                "correct_choice": len(cands) - 1,
                "question_category": "TOS" if n else "S2E",
                "id": f"lvb{n}_0",
                "video_path": f"lvb{n}.mp4",
                "subtitle_path": f"lvb{n}_en.json",
                "duration_group": group,
                "starting_timestamp_for_subtitles": 0.0,
                "duration": 2.0,
            }
        )
        _video(root / "videos" / f"lvb{n}.mp4")
    (root / "lvb_val.json").write_text(json.dumps(docs))
    return [("15", 3), ("600", 4), ("3600", 3)]


MAKERS = {
    "mvbench": make_mvbench,
    "videomme": make_videomme,
    "videomme_w_subtitle": make_videomme,
    "egoschema_subset": make_egoschema,
    "nextqa_mc_test": make_nextqa,
    "mlvu_dev": make_mlvu,
    "longvideobench_val_v": make_longvideobench,
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[tuple[str, int]]]]:
    out = {}
    for name, make in MAKERS.items():
        root = tmp_path_factory.mktemp(name)
        out[name] = (root, make(root))
    return out


def _cli(*args: str) -> None:
    try:
        main(list(args))
    except SystemExit as exc:
        assert exc.code in (0, None), f"exit code {exc.code}"


def test_every_published_benchmark_is_registered() -> None:
    from prune_bench.core.plugins import registry

    assert set(PUBLISHED) <= set(registry().benchmarks)
    assert set(PUBLISHED) == set(MAKERS)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_compare_runs_end_to_end_on_a_local_copy(name: str, datasets, tmp_path: Path) -> None:
    root, expected = datasets[name]
    out = tmp_path / "out"
    _cli("compare", "none", "random", "--keep", "0.5", "--benchmark", name, "--data-dir", str(root),
         "--limit", "3", "--out", str(out), "--no-progress")  # fmt: skip
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {r["strategy"] for r in records} == {"none", "random"}
    for strategy in ("none", "random"):
        rows = [r for r in records if r["strategy"] == strategy]
        assert [(r["task"], r["answer"]) for r in rows] == expected
    for r in records:
        frames = r["frames"]
        assert len(frames["indices"]) == 32 and all(0 <= i < 16 for i in frames["indices"])
        assert frames["decoder"].split()[0] in {"decord", "av"} and len(frames["decoder"].split()) == 2
        assert r["prompt"] == "model"  # the shipped small model answers in its own format
    if name == "mvbench":  # the bounded star task samples only inside its start/end (1.0-1.9 s at 8 fps)
        bounded = next(r for r in records if r["task"] == "object_interaction")
        assert min(bounded["frames"]["indices"]) == 8 and max(bounded["frames"]["indices"]) == 15
    if name.startswith("videomme"):
        assert records[0]["groups"] == {"task_type": "OCR Problems", "domain": "Knowledge"}


def test_lmms_eval_prompts_of_each_benchmark(datasets) -> None:
    mv = PUBLISHED["mvbench"](data_dir=datasets["mvbench"][0]).items(1)[0]
    assert (
        mv.prompt
        == "Question:What happens 0?\nOption:\n(A) walk\n(B) run\n(C) sit\nOnly give the best option.\n"
    )
    vm = VideoMME(data_dir=datasets["videomme"][0]).items(1)[0]
    assert vm.options == ("one", "two", "three", "four")
    assert vm.prompt.startswith(
        "Select the best answer to the following multiple-choice question based on the video"
    )
    assert vm.prompt.endswith("How many stars 0?\nA. one\nB. two\nC. three\nD. four\n\n"
                              "Answer with the option's letter from the given choices directly.")  # fmt: skip
    subs = VideoMMESubtitles(data_dir=datasets["videomme"][0]).items(2)
    assert subs[0].prompt.startswith("This video's subtitles are listed below: \nlook at the sky\nSelect")
    assert subs[0].prompt.endswith("D. four\nThe best answer is:")
    assert "No subtitles available" in subs[1].prompt
    ego = PUBLISHED["egoschema_subset"](data_dir=datasets["egoschema_subset"][0]).items(1)[0]
    assert ego.options[0] == "option A" and ego.prompt.endswith(
        "E. option E\nAnswer with the option's letter from the given choices directly."
    )
    nq = PUBLISHED["nextqa_mc_test"](data_dir=datasets["nextqa_mc_test"][0]).items(1)[0]
    assert (
        nq.prompt == "why does the boy run 0\nA. answer 0\nB. answer 1\nC. answer 2\nD. answer 3\nE. answer 4"
    )
    ml = MLVUDev(data_dir=datasets["mlvu_dev"][0]).items(1)[0]
    assert ml.options == ("x", "y", "z", "w")
    assert ml.prompt.endswith("(D) w\nOnly give the best option.\nBest option: (")
    lvb = PUBLISHED["longvideobench_val_v"](data_dir=datasets["longvideobench_val_v"][0]).items(2)[1]
    assert lvb.prompt == (
        "Which one 1?\nA. a\nB. b\nC. c\nD. d\nE. e\nAnswer with the option's letter from the given choices directly.\n"
    )


def _asked(item, fmt: PromptFormat) -> tuple[str, str, str]:
    """(the text around the video as the model sees it, the question, which prompt)."""
    question, used, kind = item_prompt(item, fmt)
    text = used.template.format(video="<video>", question=question, options=used.render_options(item.options))
    return text, question, kind


def test_letter_models_are_asked_the_benchmarks_prompt_inside_their_chat_template(datasets) -> None:
    item = PUBLISHED["nextqa_mc_test"](data_dir=datasets["nextqa_mc_test"][0]).items(1)[0]
    fmt = PromptFormat()  # LLaVA-OneVision's chat template, letter answers
    text, _, used = _asked(item, fmt)
    assert used == "benchmark"
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<video>\n"
        + item.prompt
        + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert fmt.template == LLAVA_CHAT_TEMPLATE  # the model's own format is left as it was
    word = PromptFormat(template="Q: {question} {options}", answer_mode="option_word")
    _, question, used = _asked(item, word)
    assert used == "model" and question == item.question and len(item.options) == 5


def test_scores_follow_lmms_eval_rules(datasets) -> None:
    def rec(task: str, ok: bool, **groups: str) -> dict[str, Any]:
        return {"task": task, "correct": ok, "groups": groups}

    recs = [rec("plotQA", True), rec("plotQA", True), rec("plotQA", True), rec("count", False)]
    mlvu = MLVUDev(data_dir=datasets["mlvu_dev"][0])
    assert mlvu.score(recs).overall == pytest.approx(100.0 / 7)  # M-avg over all 7 types, as lmms-eval
    vm = VideoMME(data_dir=datasets["videomme"][0])
    recs = [rec("short", True, task_type="OCR", domain="K")] * 3 + [
        rec("long", False, task_type="OCR", domain="K")
    ]
    score = vm.score(recs)
    assert score.overall == pytest.approx(75.0)  # accuracy over all questions
    assert score.breakdown["task"] == {"long": 0.0, "short": 100.0}
    assert score.breakdown["task_type"] == {"OCR": 75.0}


def test_subtitles_at_sampled_frames_like_lmms_eval(tmp_path: Path) -> None:
    srt = tmp_path / "s.srt"
    srt.write_text(
        '1\n00:00:00,000 --> 00:00:00,500\n<font color="white" size=".72c">first</font>\n\n'
        '2\n00:00:05,000 --> 00:00:06,000\n<font color="white" size=".72c">late</font>\n'
    )
    assert subtitle_text(srt, total_frames=16, fps=8.0) == "first"  # the video ends at 2 s
    assert subtitle_text(srt, total_frames=80, fps=8.0) == "first\nlate"


def test_frame_sampling_by_rate_and_within_bounds(tmp_path: Path) -> None:
    assert frame_indices(16, 8.0, 4).tolist() == [0, 5, 10, 15]
    assert frame_indices(16, 8.0, 32, sample_fps=2.0).tolist() == [0, 4, 8, 12]
    assert frame_indices(16, 8.0, 2, sample_fps=2.0).tolist() == [0, 15]  # too many by rate: uniform
    assert frame_indices(16, 8.0, 3, start=1.0, end=1.5).tolist() == [8, 10, 12]
    path = tmp_path / "v.mp4"
    _video(path)
    for backend in ("av", "auto"):
        loaded = load_video(path, 32, backend, sample_fps=4.0, start=0.5)  # type: ignore[arg-type]
        assert loaded.indices == (4, 6, 8, 10, 12, 14)
        assert loaded.frames.shape[0] == 6 and loaded.decoder.startswith(loaded.backend + " ")


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load a model fails the test: dataset errors must come first."""
    from prune_bench.adapters.llava_onevision import LlavaOnevisionAdapter

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded before the dataset was checked")

    monkeypatch.setattr(LlavaOnevisionAdapter, "from_pretrained", classmethod(fail))


def _error_line(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "none", "--no-progress", *args])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_no_data_dir_is_one_line(no_model, capsys) -> None:
    line = _error_line(capsys, "--benchmark", "mvbench")
    assert "pass --data-dir DIR with DIR/json/<task>.json" in line


def test_missing_data_dir_is_one_line(no_model, capsys, tmp_path: Path) -> None:
    line = _error_line(capsys, "--benchmark", "videomme", "--data-dir", str(tmp_path / "nope"))
    assert f"'{tmp_path / 'nope'}' does not exist" in line and "videomme/test-00000-of-00001.parquet" in line


def test_missing_annotation_is_one_line(no_model, capsys, tmp_path: Path) -> None:
    (tmp_path / "NExTVideo").mkdir()
    line = _error_line(capsys, "--benchmark", "nextqa_mc_test", "--data-dir", str(tmp_path))
    assert "the MC question file not found" in line and "MC/test-*.parquet" in line


@pytest.mark.parametrize(
    ("name", "remove", "message"),
    [
        ("videomme", "data", "the video folder data/ not found at"),
        ("videomme_w_subtitle", "subtitle", "the subtitle folder subtitle/ not found at"),
        ("mvbench", "video/nturgbd_convert", "videos of task 'fine_grained_pose' not found"),
        ("egoschema_subset", "videos/clip1.mp4", "1 of 3 questions' videos are missing, e.g."),
        ("longvideobench_val_v", "videos", "the video folder videos/ not found at"),
        ("mlvu_dev", "count_2.mp4", "1 of 3 questions' videos are missing"),
    ],
)
def test_partial_copy_is_one_line(
    no_model, capsys, tmp_path: Path, name: str, remove: str, message: str
) -> None:
    import shutil

    MAKERS[name](tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    line = _error_line(capsys, "--benchmark", name, "--data-dir", str(tmp_path))
    assert message in line and str(tmp_path) in line


def test_egoschema_full_set_without_answers_is_refused(tmp_path: Path) -> None:
    make_egoschema(tmp_path)
    table = pq.read_table(tmp_path / "Subset" / "test-00000-of-00001.parquet").to_pylist()
    _parquet([{**r, "answer": None} for r in table], tmp_path / "Subset" / "test-00000-of-00001.parquet")
    with pytest.raises(UserError, match="only the 500-question Subset has public answers"):
        PUBLISHED["egoschema_subset"](data_dir=tmp_path)


def test_compare_by_frame_rate_prints_the_lmms_eval_score(datasets, tmp_path: Path, capsys) -> None:
    root, _ = datasets["videomme"]
    out = tmp_path / "out"
    _cli("compare", "random", "--keep", "0.5", "--benchmark", "videomme", "--data-dir", str(root),
         "--limit", "2", "--fps", "2", "--out", str(out), "--no-progress")  # fmt: skip
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4
    for r in records:  # 2 s clips at 8 fps, sampled at 2 fps: every 4th frame, far fewer than --frames
        assert r["frames"]["sampling"] == "2 fps, at most 32" and r["frames"]["indices"] == [0, 4, 8, 12]
    text = capsys.readouterr().out
    assert "videomme score as lmms-eval computes it" in text and "random keep=0.5" in text


def test_fps_must_be_positive(no_model, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "random", "--fps", "0", "--no-progress"])
    assert exc.value.code == 2 and "--fps must be a positive" in capsys.readouterr().err


def _tiny_qwen2_vl_dir(root: Path) -> Path:
    """A saved Qwen2-VL checkpoint (random weights, tiny) with a word-level tokenizer that knows the
    option letters, so ``--model DIR`` loads it the way it loads a real one."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, Qwen2VLForConditionalGeneration

    from prune_bench.adapters.qwen2_vl import tiny_qwen2_vl_config

    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(tiny_qwen2_vl_config(num_layers=4))
    model.save_pretrained(str(root))
    words = ["[UNK]", "[PAD]", *"ABCDE", "answer", "the", "question", "video", "option", "best", "letter"]
    core = Tokenizer(WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        str(root)
    )
    return root


def test_compare_hieravid_fastv_on_a_qwen2_vl_dir_and_mvbench(datasets, tmp_path: Path) -> None:
    # the command: a local Qwen2-VL checkpoint on a local MVBench copy, letter answers
    model_dir = _tiny_qwen2_vl_dir(tmp_path / "qwen2-vl")
    root, expected = datasets["mvbench"]
    out = tmp_path / "out"
    _cli("compare", "hieravid", "fastv", "--keep", "0.3", "--model", str(model_dir), "--benchmark", "mvbench",
         "--data-dir", str(root), "--limit", "2", "--frames", "8", "--device", "cpu", "--out", str(out),
         "--no-progress")  # fmt: skip
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["strategy"] for r in records} == {"none", "hieravid", "fastv"} and len(records) == 6
    for r in records:
        assert r["prompt"] != "model" and len(r["frames"]["indices"]) == 8
    pruned = [r for r in records if r["strategy"] != "none"]
    assert all(r["retention"]["layer_average"] < 0.6 for r in pruned)
    assert [(r["task"], r["answer"]) for r in records if r["strategy"] == "none"] == expected[:2]


def test_a_corrupt_video_in_the_middle_is_that_items_failure_and_the_run_finishes(tmp_path: Path) -> None:
    """Issue 'Results you can trust': the item is recorded as failed with its one-line reason, the others
    run, the run exits 1 with one line, and a re-run skips it unless --retry-failed."""
    import shutil

    root = tmp_path / "egoschema"
    expected = MAKERS["egoschema_subset"](root)
    (root / "videos" / "clip1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    out = tmp_path / "out"
    args = ["compare", "none", "--benchmark", "egoschema_subset", "--data-dir", str(root), "--limit", "3",
            "--out", str(out), "--no-progress", "--frames", "4"]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 1
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["item_id"] for r in records) == sorted(
        i.item_id
        for i in PUBLISHED["egoschema_subset"](data_dir=root).items(3)
        if "clip1" not in str(i.video_path)
    )
    failed = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(failed) == 1 and failed[0]["error"] and "\n" not in failed[0]["error"]
    # the re-run skips it (and says so again); fixed and retried, it runs and the log empties
    with pytest.raises(SystemExit) as again:
        main(args)
    assert again.value.code == 1 and len((out / "results.jsonl").read_text().splitlines()) == 2
    shutil.copy(root / "videos" / "clip0.mp4", root / "videos" / "clip1.mp4")
    _cli(*args, "--retry-failed")
    assert (
        len((out / "results.jsonl").read_text().splitlines()) == 3 and not (out / "failures.jsonl").exists()
    )
    assert len(expected) == 3


def test_an_annotation_missing_a_field_is_one_line_before_the_model_loads(tmp_path: Path, capsys) -> None:
    root = tmp_path / "lvb"
    MAKERS["longvideobench_val_v"](root)
    docs = json.loads((root / "lvb_val.json").read_text())
    for doc in docs:
        doc.pop("question")
    (root / "lvb_val.json").write_text(json.dumps(docs))
    with pytest.raises(SystemExit) as stop:
        main(["compare", "none", "--benchmark", "longvideobench_val_v", "--data-dir", str(root),
              "--out", str(tmp_path / "out"), "--no-progress"])  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "an annotation lacks the field 'question'" in err[0], err
    assert not (tmp_path / "out" / "results.jsonl").exists()
