#!/usr/bin/env python
"""Bounded fault trials of the results store: kill ``prune-bench compare`` at random moments
(SIGKILL or SIGTERM) or damage a finished store, re-run the same command, and count what was lost,
what was computed again and what ended up twice.

Every run is ``prune-bench compare STRATEGIES --limit N --frames F --device cpu`` on the shipped model,
so a trial takes seconds. A clean run first gives the reference: its duration sets the window in
which kills land, and its records are what every trial must end with.

    python scripts/fault-trials.py --trials 6                 # about a minute on 2 CPU cores
    python scripts/fault-trials.py --trials 20 --json trials.json

Per trial kind:

* ``sigkill`` / ``sigterm``: the run is stopped at a random time in the reference run's window (a
  second stop hits the first re-run half of the time), then the command is run to the end.
  ``lost`` = finished records (whole lines on disk after a stop) missing at the end; ``recomputed``
  = finished records computed again; ``torn`` = stops that left a partial last line (SIGKILL only
  can: SIGTERM ends the run between records, with the one line ``terminated`` and exit code 143).
* ``damage``: 1-3 lines of a finished store are damaged (not JSON, not UTF-8, not an object, no
  config_hash, cut short, blank), sometimes the torn tail of a kill and a damaged manifest.json too.
  ``prune-bench table`` must leave the directory byte for byte as it was and warn in one line; the
  re-run must move exactly the damaged lines to results.damaged.jsonl (one warning line) and compute
  exactly their items again. ``recomputed`` counts items computed again beyond the damaged ones.

``duplicates`` counts (config, item) pairs present twice at the end; ``mismatched`` counts final
records whose answer differs from the reference run. All four should be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prune_bench.runner.store import ResultStore

Key = tuple[str, str]


@dataclass
class Trial:
    n: int
    kind: str
    stops: list[str] = field(default_factory=list)  # "SIGKILL@2.31s: 7 records, torn", ...
    damaged: int = 0
    lost: int = 0
    recomputed: int = 0
    duplicates: int = 0
    missing: int = 0
    mismatched: int = 0
    torn: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.recomputed
            or self.duplicates
            or self.missing
            or self.mismatched
            or self.problems
        )


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def cmd(self, out: Path) -> list[str]:
        a = self.args
        return [
            sys.executable, "-m", "prune_bench", "compare", *a.strategies, "--keep", str(a.keep),
            "--limit", str(a.limit), "--frames", str(a.frames), "--device", "cpu", "--no-progress",
            "--out", str(out),
        ]  # fmt: skip

    def run(self, out: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(out), capture_output=True, text=True, timeout=self.args.timeout)

    def start(self, out: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.cmd(out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def table(self, out: Path) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "prune_bench", "table", str(out)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.timeout)


def records(out: Path) -> list[dict]:
    return list(ResultStore(out, read_only=True).records())


def keys(recs: list[dict]) -> list[Key]:
    return [(r["config_hash"], r["item_id"]) for r in recs]


def answers(recs: list[dict]) -> dict[Key, tuple]:
    return {
        (r["config_hash"], r["item_id"]): (r["choice"], r["correct"], r["visual_per_layer"]) for r in recs
    }


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def finish(
    trial: Trial, out: Path, runner: Runner, reference: dict[Key, tuple], finished: set[Key]
) -> list[dict]:
    """Run the command to its end and count lost / missing / duplicated / mismatched records."""
    done = runner.run(out)
    if done.returncode != 0:
        trial.problems.append(f"re-run exit {done.returncode}: {done.stderr.strip()[-200:]}")
    after = records(out)
    ks = keys(after)
    trial.duplicates = len(ks) - len(set(ks))
    trial.lost = len(finished - set(ks))
    trial.missing = len(set(reference) - set(ks))
    final = answers(after)
    trial.mismatched = sum(1 for k, v in reference.items() if k in final and final[k] != v)
    return after


def kill_trial(trial: Trial, out: Path, runner: Runner, rng: random.Random, window: tuple[float, float],
               reference: dict[Key, tuple]) -> None:  # fmt: skip
    sig = signal.SIGKILL if trial.kind == "sigkill" else signal.SIGTERM
    finished: list[Key] = []
    for _attempt in range(2 if rng.random() < 0.5 else 1):
        delay = rng.uniform(*window)
        proc = runner.start(out)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=runner.args.timeout)
        raw = (out / "results.jsonl").read_bytes() if (out / "results.jsonl").exists() else b""
        torn = bool(raw) and not raw.endswith(b"\n")
        trial.torn += torn
        now = keys(records(out)) if out.exists() else []
        note = f"{sig.name}@{delay:.2f}s: {len(now)} records" + (", torn" if torn else "")
        if proc.returncode == 0:
            note += " (had finished)"
        elif sig == signal.SIGTERM:
            if proc.returncode != 143 or err.strip() != "terminated":
                trial.problems.append(f"SIGTERM gave exit {proc.returncode}, stderr {err.strip()[-200:]!r}")
            if torn:
                trial.problems.append("SIGTERM left a torn line")
        trial.stops.append(note)
        new = now[len(finished) :]
        trial.recomputed += len(set(new) & set(finished))  # finished before this stop, computed again
        finished = now
    end = finish(trial, out, runner, reference, set(finished))
    trial.recomputed += len(set(keys(end)[len(finished) :]) & set(finished))


DAMAGE = {
    "not JSON": lambda line: b"#" + line,
    "not UTF-8": lambda line: line[:20] + b"\xff\xfe" + line[20:],
    "not an object": lambda line: b"[" + line.rstrip(b"\n") + b"]\n",
    "no config_hash": lambda line: (
        json.dumps({k: v for k, v in json.loads(line).items() if k != "config_hash"}).encode() + b"\n"
    ),
    "cut short": lambda line: line[: len(line) // 2] + b"\n",
    "blank": lambda line: b"\n",
}
MANIFEST_DAMAGE = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "empty": lambda raw: b"",
    "not a list": lambda raw: b'{"runs": 1}',
}


def damage_trial(trial: Trial, out: Path, runner: Runner, rng: random.Random, clean: Path,
                 reference: dict[Key, tuple]) -> None:  # fmt: skip
    shutil.copytree(clean, out)
    lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    picked = sorted(rng.sample(range(len(lines)), k=min(len(lines), rng.randint(1, 3))))
    damaged_keys: set[Key] = set()
    for i in picked:
        kind = rng.choice(list(DAMAGE))
        damaged_keys.add(keys([json.loads(lines[i])])[0])
        lines[i] = DAMAGE[kind](lines[i])
        trial.stops.append(f"line {i + 1}: {kind}")
    torn = rng.random() < 0.4 and len(picked) < len(lines)
    if torn:  # the last record as a killed run leaves it
        last = max(set(range(len(lines))) - set(picked))
        damaged_keys.add(keys([json.loads(lines[last])])[0])
        lines.append(lines.pop(last)[:-7])
        trial.stops.append(f"record of line {last + 1}: a torn last line")
    (out / "results.jsonl").write_bytes(b"".join(lines))
    manifest = rng.random() < 0.3
    if manifest:
        kind = rng.choice(list(MANIFEST_DAMAGE))
        path = out / "manifest.json"
        path.write_bytes(MANIFEST_DAMAGE[kind](path.read_bytes()))
        trial.stops.append(f"manifest.json: {kind}")
    trial.damaged = len(damaged_keys)

    before = snapshot(out)
    shown = runner.table(out)
    if snapshot(out) != before:
        trial.problems.append("`table` changed the store directory")
    if shown.returncode != 0 or len(warning_lines(shown.stderr)) != 1 + manifest:
        trial.problems.append(
            f"`table`: exit {shown.returncode}, {len(warning_lines(shown.stderr))} warning lines"
        )

    survived = set(keys(records(out)))
    done = runner.run(out)
    if done.returncode != 0:
        trial.problems.append(f"re-run exit {done.returncode}: {done.stderr.strip()[-200:]}")
    if len(warning_lines(done.stderr)) != 1 + manifest:
        trial.problems.append(
            f"re-run gave {len(warning_lines(done.stderr))} warning lines: {done.stderr[-300:]!r}"
        )
    sidecar = out / "results.damaged.jsonl"
    moved = len(sidecar.read_text().splitlines()) if sidecar.exists() else 0
    if moved != len(picked) + torn + manifest:
        trial.problems.append(
            f"{moved} entries in results.damaged.jsonl, expected {len(picked) + torn + manifest}"
        )
    after = records(out)
    appended = set(keys(after)[len(survived) :])
    trial.recomputed = len(appended - damaged_keys)
    ks = keys(after)
    trial.duplicates = len(ks) - len(set(ks))
    trial.lost = len(survived - set(ks))
    trial.missing = len(set(reference) - set(ks))
    final = answers(after)
    trial.mismatched = sum(1 for k, v in reference.items() if k in final and final[k] != v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--kinds", nargs="+", default=["sigkill", "sigterm", "damage"],
                    choices=["sigkill", "sigterm", "damage"])  # fmt: skip
    ap.add_argument("--strategies", nargs="+", default=["fastv", "random"])
    ap.add_argument("--keep", type=float, default=0.3)
    ap.add_argument("--limit", type=int, default=12, help="items per run")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=300, help="seconds for one prune-bench command")
    ap.add_argument("--budget", type=float, default=150, help="start no trial after this many seconds")
    ap.add_argument("--json", type=Path, default=None, help="also write the trials here")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the stores here (default: a temp dir)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    runner = Runner(args)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fault-trials-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    clean = work / "clean"
    shutil.rmtree(clean, ignore_errors=True)
    t0 = time.monotonic()
    proc = runner.start(clean)
    first = None
    while proc.poll() is None:
        if first is None and (clean / "results.jsonl").exists():
            first = time.monotonic() - t0
        time.sleep(0.01)
    duration = time.monotonic() - t0
    if proc.returncode != 0:
        print(
            f"the reference run failed (exit {proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
        )
        return 1
    if proc.stderr:
        proc.stderr.close()
    reference = answers(records(clean))
    window = ((first or duration) * 0.8, duration)
    print(
        f"reference: {len(reference)} records in {duration:.1f}s (first after {first or 0:.1f}s); "
        f"stops land in {window[0]:.1f}-{window[1]:.1f}s"
    )

    trials: list[Trial] = []
    for n in range(args.trials):
        if time.monotonic() - start > args.budget:
            print(f"budget of {args.budget:.0f}s spent: {n} of {args.trials} trials run")
            break
        trial = Trial(n + 1, args.kinds[n % len(args.kinds)])
        out = work / f"trial-{n + 1}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.monotonic()
        if trial.kind == "damage":
            damage_trial(trial, out, runner, rng, clean, reference)
        else:
            kill_trial(trial, out, runner, rng, window, reference)
        trial.seconds = time.monotonic() - t
        trials.append(trial)
        status = "ok" if trial.ok else "FAILED " + "; ".join(trial.problems)
        print(
            f"trial {trial.n} {trial.kind}: {'; '.join(trial.stops)} -> lost {trial.lost}, recomputed "
            f"{trial.recomputed}, duplicates {trial.duplicates}, missing {trial.missing}, mismatched "
            f"{trial.mismatched} ({trial.seconds:.1f}s) {status}"
        )

    total = {
        k: sum(getattr(t, k) for t in trials)
        for k in ("lost", "recomputed", "duplicates", "missing", "mismatched", "torn")
    }
    print(
        f"\n{len(trials)} trials ({', '.join(f'{sum(t.kind == k for t in trials)} {k}' for k in args.kinds)}), "
        f"{time.monotonic() - start:.0f}s: items lost {total['lost']}, items recomputed {total['recomputed']}, "
        f"duplicates {total['duplicates']}, missing {total['missing']}, mismatched {total['mismatched']}; "
        f"torn lines left by kills {total['torn']}; failed trials {sum(not t.ok for t in trials)}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "reference": {"records": len(reference), "seconds": duration},
                    "totals": {**total, "trials": len(trials), "failed": sum(not t.ok for t in trials)},
                    "trials": [asdict(t) | {"ok": t.ok} for t in trials],
                },
                indent=2,
            )
        )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(t.ok for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
