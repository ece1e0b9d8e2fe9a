#!/usr/bin/env python
"""Evaluation throughput with and without frames decoded ahead (issue 23): items/s, the fraction of
wall time the model was busy, the time spent waiting for frames.

Generates a local copy of MVBench (lmms-eval's layout, one task: json/action_antonym.json and
video/ssv2_video_mp4/*.mp4) whose videos are minutes long (default 4 min at 30 fps, 320x240, H.264
with x264's default 250-frame keyframe interval, smooth moving content plus mild noise so that decoding
costs what it costs on real footage of that size), then runs

    prune-bench compare STRATEGY --benchmark mvbench --data-dir DIR --frames 32 --workers W --out OUT_W

for each W of --workers (a fresh results directory each, so every item is decoded and run) and prints
each run's throughput as its manifest records it. Extra arguments after ``--`` go to compare
(``-- --model PATH --device cuda``). The unpruned reference ('none') runs beside the strategy, as
compare always does, so each item is two prefills on one decode.

    python scripts/throughput-bench.py --items 8 --workers 0 1
    python scripts/throughput-bench.py --items 48 --workers 0 4 8 -- --model ~/llava-onevision-7b --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

TASK, FOLDER = "action_antonym", "ssv2_video_mp4"


def write_long_video(path: Path, seconds: float, fps: int, width: int, height: int, seed: int) -> Path:
    """A smooth moving scene (gradient background, a drifting square) plus mild noise, streamed to
    H.264 frame by frame (a minutes-long video never sits in memory)."""
    import av

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp.mp4")
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for t in range(round(seconds * fps)):
            phase = t / fps
            frame = np.empty((height, width, 3), dtype=np.uint8)
            frame[..., 0] = (xs + 40 * phase + seed * 17) % 256
            frame[..., 1] = (ys + 25 * phase) % 256
            frame[..., 2] = (xs + ys) // 4 % 256
            cx = int((np.sin(phase / 7 + seed) * 0.4 + 0.5) * (width - 40))
            cy = int((np.cos(phase / 5 + seed) * 0.4 + 0.5) * (height - 40))
            frame[cy : cy + 40, cx : cx + 40] = (255, 255, 255)
            noisy = np.clip(frame.astype(np.int16) + rng.integers(-6, 7, frame.shape), 0, 255)
            for packet in stream.encode(av.VideoFrame.from_ndarray(noisy.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def make_mvbench(root: Path, items: int, seconds: float, fps: int, width: int, height: int) -> Path:
    folder = root / "video" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    (root / "json").mkdir(parents=True, exist_ok=True)
    docs = [
        {"video": f"clip{i:03d}.mp4", "question": f"What happens in clip {i}?",
         "candidates": ["walking", "running", "sitting"], "answer": "running"}
        for i in range(items)
    ]  # fmt: skip
    (root / "json" / f"{TASK}.json").write_text(json.dumps(docs))
    jobs = [(folder / d["video"], seconds, fps, width, height, i) for i, d in enumerate(docs)]
    todo = [j for j in jobs if not j[0].exists()]
    with ProcessPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1)) as pool:
        futures = [pool.submit(write_long_video, *j) for j in todo]
        for f in tqdm(futures, desc=f"writing {len(todo)} videos of {seconds / 60:g} min", unit="video"):
            f.result()
    return root


def run_compare(data: Path, out: Path, workers: int, args: argparse.Namespace, extra: list[str]) -> dict:
    command = [
        sys.executable, "-m", "prune_bench", "compare", args.strategy, "--keep", str(args.keep),
        "--benchmark", "mvbench", "--data-dir", str(data), "--frames", str(args.frames),
        "--limit", str(args.items), "--workers", str(workers), "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    total = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())[-1]
    return {**manifest["throughput"], "command_s": round(total, 1), "device": manifest.get("device")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=8, help="questions (one video each)")
    parser.add_argument("--minutes", type=float, default=4.0, help="length of each video")
    parser.add_argument("--fps", type=int, default=30, help="frame rate of the videos")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the videos")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video")
    parser.add_argument("--strategy", default="fastv")
    parser.add_argument("--keep", type=float, default=0.3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="the --workers to compare")
    parser.add_argument("--data", type=Path, default=Path("throughput-data"), help="where the videos go")
    parser.add_argument("--out", type=Path, default=Path("throughput-results"))
    parser.add_argument("--only-generate", action="store_true", help="write the videos, run nothing")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    width, height = (int(v) for v in args.size.split("x"))
    data = make_mvbench(args.data, args.items, args.minutes * 60, args.fps, width, height)
    if args.only_generate:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = [
        (w, run_compare(data, args.out / f"{stamp}-{n}-w{w}", w, args, extra))
        for n, w in enumerate(args.workers)
    ]
    print(
        f"\nmachine: {platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})"
    )
    print(
        f"videos: {args.items} x {args.minutes:g} min, {args.size} at {args.fps} fps; {args.frames} frames each"
    )
    print(
        f"{'workers':>7}  {'items/s':>8}  {'busy':>6}  {'wait s':>7}  {'first s':>7}  {'wall s':>7}  device"
    )
    for w, r in rows:
        print(
            f"{w:>7}  {r['items_per_s']:>8.3f}  {100 * r['model_busy_fraction']:>5.1f}%  "
            f"{r['frame_wait_s']:>7.1f}  {r['first_frames_s']:>7.1f}  {r['wall_s']:>7.1f}  {r['device']}"
        )
    print("wait s: time waiting for frames in all; first s: of it, for the first item's (workers starting)")


if __name__ == "__main__":
    main()
