"""The README's main job on the shipped model: ``prune-bench compare hieravid fastv --keep 0.3``.

Issue target: under 2 minutes on a 2-core CPU (all 300 held-out items, three configurations).
Run with ``python -m pytest benchmarks/test_default_compare.py --benchmark-only --benchmark-enable``.
"""

from __future__ import annotations

import subprocess
import sys


def test_default_compare_wall_time(benchmark, tmp_path):
    def run() -> None:
        out = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "prune_bench",
                "compare",
                "hieravid",
                "fastv",
                "--keep",
                "0.3",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--no-progress",
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )

    benchmark.pedantic(run, rounds=1, iterations=1)
