#!/usr/bin/env python
"""reports/reliability.md: the bounded fault trials (kills and damaged stores, scripts/fault-trials.py)
and a catalogue of bad inputs, each run as a user would run it, on the shipped model on the CPU.

    python scripts/reliability-report.py                       # about 10 minutes on 2 CPU cores
    python scripts/reliability-report.py --trials 6 --out /tmp/reliability.md

A bad input passes when it ends with the exit code it should (2 for a mistake, 1 for a run that could
not evaluate some items, 0 where the command goes on with a warning), with exactly one non-empty line
on stderr (for exit 0: at most one warning line), and no traceback. Every case is also a test in
tests/ (tests/cli/test_errors.py, tests/adapters/test_hub.py, tests/runner/test_video_checks.py,
tests/runner/test_store.py, tests/benchmarks/test_published.py); this catalogue is what the report counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prune_bench.testing import CHECKPOINT_DAMAGES

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Case:
    name: str
    args: list[str]
    expect: int = 2
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None


def _model_copy(tmp: Path, damage: str) -> Path:
    from prune_bench.adapters.loading import DEFAULT_MODEL_DIR
    from prune_bench.testing import damaged_checkpoint

    model = tmp / f"model-{damage.replace(' ', '-')}"
    return model if model.exists() else damaged_checkpoint(DEFAULT_MODEL_DIR, model, damage)


def _egoschema(tmp: Path, name: str, frames: tuple[int, ...] = (16, 16, 16)) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prune_bench.benchmarks.video import write_mp4

    root = tmp / name
    if root.exists():
        return root
    (root / "videos").mkdir(parents=True)
    (root / "Subset").mkdir()
    for n, count in enumerate(frames):
        ramp = np.arange(count, dtype=np.uint8)[:, None, None, None] * 12
        write_mp4(np.broadcast_to(ramp, (count, 32, 32, 3)).copy(), root / "videos" / f"clip{n}.mp4", fps=8)
    rows = [
        {"question_idx": f"q{n}", "question": f"What is C doing {n}?", "video_idx": f"clip{n}",
         "option": [f"{c}. option {c}" for c in "ABCDE"], "answer": str(n % 5)}
        for n in range(len(frames))
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), root / "Subset" / "test-00000-of-00001.parquet")
    return root


def _store(tmp: Path, name: str, damage: str) -> Path:
    out = tmp / name
    if (out / "results.jsonl").exists():
        return out
    subprocess.run(
        [sys.executable, "-m", "prune_bench", "compare", "random", "--limit", "2", "--frames", "2",
         "--device", "cpu", "--no-progress", "--out", str(out)],
        capture_output=True, check=True, timeout=600,
    )  # fmt: skip
    results = out / "results.jsonl"
    if damage == "line":
        results.write_text(results.read_text() + "this is not json\n")
    elif damage == "manifest":
        (out / "manifest.json").write_text('{"runs": [')
    return out


def catalogue(tmp: Path) -> list[Case]:
    ego_bad = str(tmp / "ego-bad")
    ego_short = str(tmp / "ego-short")
    compare = ["compare", "random", "--frames", "2", "--limit", "1", "--device", "cpu", "--no-progress"]

    def out(name: str) -> list[str]:
        return ["--out", str(tmp / "out" / name)]

    def broken_videos(t: Path) -> None:
        root = _egoschema(t, "ego-bad")
        (root / "videos" / "clip1.mp4").write_bytes(b"")

    def readonly(t: Path) -> None:
        d = t / "readonly"
        d.mkdir(exist_ok=True)
        d.chmod(stat.S_IRUSR | stat.S_IXUSR)

    def a_file(t: Path) -> None:
        (t / "a-file").write_text("x")

    def missing_field(t: Path) -> None:
        import pyarrow.parquet as pq

        root = _egoschema(t, "ego-nofield")
        table = pq.read_table(root / "Subset" / "test-00000-of-00001.parquet").drop(["question"])
        pq.write_table(table, root / "Subset" / "test-00000-of-00001.parquet")

    cases = [
        Case("unknown strategy", ["compare", "hieravd"]),
        Case("--keep 0", ["compare", "random", "--keep", "0"]),
        Case("--keep 1.5", ["compare", "random", "--keep", "1.5"]),
        Case("--keep -0.2", ["compare", "random", "--keep", "-0.2"]),
        Case("--keep without a value", ["sweep", "random", "--keep"]),
        Case("an option that does not exist", ["compare", "random", "--set", "random.kep=0.2"]),
        Case("--set of a strategy not compared", ["compare", "random", "--set", "fastv.k=2"]),
        Case("--set without =VALUE", ["compare", "random", "--set", "fastv"]),
        Case("a knob the budget sets (random)", [*compare, "--set", "random.keep=0.5", *out("k1")]),
        Case("a knob the budget sets (fastv)", ["compare", "fastv", "--set", "fastv.keep=0.2", "--limit", "1"]),
        Case("an invalid option value", ["compare", "fastv", "--set", "fastv.k=-4"]),
        Case("empty strategy in a combination", ["compare", "random+"]),
        Case("the same strategy twice", ["compare", "fastv+fastv"]),
        Case("a layer out of range", ["compare", "random[layer=99]", "--frames", "2", "--limit", "1", *out("l99")]),
        Case("--frames -3", ["compare", "random", "--frames", "-3", *out("f-3")]),
        Case("--frames 0", ["compare", "random", "--frames", "0"]),
        Case("--frames 100000", ["compare", "random", "--frames", "100000", "--limit", "1", *out("f1e5")]),
        Case("--limit 0", ["compare", "random", "--limit", "0"]),
        Case("--fps 0", ["compare", "random", "--fps", "0"]),
        Case("--device tpu0", ["compare", "random", "--device", "tpu0"]),
        Case("--device cuda without a GPU", ["compare", "random", "--device", "cuda"]),
        Case("--budget-unit bogus", ["compare", "random", "--budget-unit", "bogus"]),
        Case("--mode bogus", ["compare", "random", "--mode", "bogus"]),
        Case("an unknown flag", ["compare", "random", "--kep", "0.3"]),
        Case("an unknown command", ["comprae", "random"]),
        Case("--seed not a number", ["compare", "random", "--seed", "abc"]),
        Case("unknown benchmark", ["compare", "random", "--benchmark", "synthetc"]),
        Case("--data-dir for the synthetic benchmark", ["compare", "random", "--data-dir", str(tmp)]),
        Case("a published benchmark without --data-dir", ["compare", "random", "--benchmark", "videomme"]),
        Case("--data-dir that does not exist", ["compare", "random", "--benchmark", "videomme", "--data-dir", str(tmp / "nope")]),
        Case("an annotation missing a field", ["compare", "random", "--benchmark", "egoschema_subset", "--data-dir", str(tmp / "ego-nofield")], setup=missing_field),
        Case("--model path that does not exist", ["compare", "random", "--model", "/no/such/model"]),
        Case("--model folder without config.json", ["compare", "random", "--model", str(tmp)]),
        *[
            Case(f"a checkpoint: {d}", [*compare, "--model", str(tmp / f"model-{d.replace(' ', '-')}"),
                 *out(f"m-{d.replace(' ', '-')}")], setup=lambda t, d=d: _model_copy(t, d) and None)
            for d in CHECKPOINT_DAMAGES
        ],  # fmt: skip
        Case("a hub id while offline", [*compare, "--model", "someorg/somemodel", *out("hub")],
             env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp / "hub")}),
        Case("--out is a file", [*compare, "--out", str(tmp / "a-file")], setup=a_file),
        # root writes through read-only permissions, so the case means nothing when run as root
        *([] if os.geteuid() == 0 else [
            Case("--out is read-only", [*compare, "--out", str(tmp / "readonly")], setup=readonly)
        ]),
        Case("list --options of an unknown strategy", ["list", "--options", "fastw"]),
        Case("table of a directory that does not exist", ["table", str(tmp / "nope")]),
        Case("table of an empty directory", ["table", str(tmp)]),
        Case("table of a store with a damaged line", ["table", str(tmp / "store-line")], expect=0,
             setup=lambda t: _store(t, "store-line", "line") and None),
        Case("compare into a store with a damaged manifest", [*compare, "--out", str(tmp / "store-manifest")], expect=0,
             setup=lambda t: _store(t, "store-manifest", "manifest") and None),
        Case("plot of a directory that does not exist", ["plot", str(tmp / "nope"), "--out", str(tmp / "fig")]),
        Case("speed of an unknown architecture", ["speed", "random", "--arch", "llava-onevision-8b"]),
        Case("train-default without --out", ["train-default"]),
        Case("an unreadable video in the benchmark", ["compare", "none", "--benchmark", "egoschema_subset", "--data-dir", ego_bad,
             "--frames", "4", "--device", "cpu", "--no-progress", *out("vid")], expect=1, setup=broken_videos),
        Case("a video shorter than --frames", ["compare", "none", "--benchmark", "egoschema_subset", "--data-dir", ego_short,
             "--frames", "6", "--device", "cpu", "--no-progress", *out("short")], expect=0,
             setup=lambda t: _egoschema(t, "ego-short", (16, 3)) and None),
    ]  # fmt: skip
    return cases


def run_case(case: Case, tmp: Path, timeout: float) -> dict[str, object]:
    if case.setup is not None:
        case.setup(tmp)
    env = {**os.environ, **case.env}
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "prune_bench", *case.args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    traceback = "Traceback" in proc.stderr
    ok = proc.returncode == case.expect and len(lines) <= 1 and not traceback
    if case.expect != 0:
        ok = ok and len(lines) == 1
    shown = lines[:1] or [x for x in proc.stdout.splitlines() if x.startswith("warning")][:1]
    return {
        "case": case.name,
        "command": "prune-bench " + " ".join(case.args).replace(str(tmp), "$TMP"),
        "expected": case.expect,
        "exit": proc.returncode,
        "stderr_lines": len(lines),
        "traceback": traceback,
        "ok": ok,
        "line": (shown[0] if shown else "").replace(str(tmp), "$TMP")[:240],
        "seconds": round(time.monotonic() - t, 1),
    }


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=18, help="fault trials (kills and damage)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "reliability.md")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="reliability-"))
    started = time.monotonic()
    results = []
    try:
        for case in catalogue(tmp):
            r = run_case(case, tmp, args.timeout)
            results.append(r)
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['case']}: exit {r['exit']}, {r['line']}", flush=True)
        trials_json = tmp / "trials.json"
        trials_cmd = [sys.executable, str(ROOT / "scripts" / "fault-trials.py"), "--trials", str(args.trials),
                      "--budget", "1e9", "--json", str(trials_json)]  # fmt: skip
        subprocess.run(trials_cmd, cwd=tmp, timeout=args.timeout * 10)
        trials = json.loads(trials_json.read_text()) if trials_json.exists() else None
    finally:
        for p in tmp.rglob("*"):  # the read-only case's folder
            if p.is_dir():
                p.chmod(stat.S_IRWXU)
        shutil.rmtree(tmp, ignore_errors=True)
    ok = sum(r["ok"] for r in results)
    tracebacks = sum(bool(r["traceback"]) for r in results)
    lines = [
        "# Reliability: faults and bad inputs",
        "",
        f"Regenerated by `python scripts/reliability-report.py --trials {args.trials}` on "
        f"{platform.node() or 'this machine'} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}), commit {_commit()}, "
        f"{time.strftime('%Y-%m-%d')}; {time.monotonic() - started:.0f} s. CPU only, the shipped model.",
        "",
        "## Kills and damaged stores (scripts/fault-trials.py)",
        "",
    ]
    if trials is None:
        lines.append("The fault trials did not finish (see the script's output).")
    else:
        t = trials["totals"]
        lines += [
            "| trials | items lost | items recomputed | duplicates | missing | mismatched | torn lines left by kills | failed trials |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {t['trials']} | {t['lost']} | {t['recomputed']} | {t['duplicates']} | {t['missing']} | "
            f"{t['mismatched']} | {t['torn']} | {t['failed']} |",
            "",
            f"Each trial: `prune-bench compare {' '.join(trials['settings']['strategies'])} --limit "
            f"{trials['settings']['limit']} --frames {trials['settings']['frames']}` stopped by SIGKILL or "
            "SIGTERM at a random moment (sometimes twice) and re-run to the end, or a finished store damaged "
            "(lines not JSON, not UTF-8, not objects, without config hash, cut short; a torn tail; a damaged "
            "manifest), read by `table` (which must not change a byte) and re-run. Torn lines are expected "
            "after SIGKILL and repaired on the next run, with one warning.",
            "",
        ]
    lines += [
        "## Bad inputs",
        "",
        f"{len(results)} bad inputs tried: {ok} ended as they should with one line, {tracebacks} with a "
        f"traceback, {len(results) - ok} not as expected."
        + (" (A read-only --out was not tried: this ran as root, which writes through permissions; "
           "tests/runner/test_store.py covers it as a normal user would meet it.)" if os.geteuid() == 0 else ""),
        "",
        "| case | exit (expected) | stderr lines | what the user sees |",
        "|---|---:|---:|---|",
    ]
    for r in results:
        mark = "" if r["ok"] else " **(not as expected)**"
        line = str(r["line"]).replace("|", "\\|")
        lines.append(f"| {r['case']}{mark} | {r['exit']} ({r['expected']}) | {r['stderr_lines']} | {line} |")
    lines.append("")
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0 if ok == len(results) and (trials is None or not trials["totals"]["failed"]) else 1


if __name__ == "__main__":
    sys.exit(main())
