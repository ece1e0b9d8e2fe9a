"""What each HieraVid DPP stage sees at a real architecture's shape (random weights, no download).

    python scripts/hieravid-stages.py [--arch llava-onevision-7b] [--frames 32 64] [--keep 0.3] [--profile]

For every in-LLM stage: the segments, their sizes and budgets, the picks the greedy DPP returned, the
sequential steps it needed (its largest budget) and its time; then the run's achieved layer-averaged
retention. This is how a retention short of the budget is traced to a stage. ``--profile`` also
prints, per (frames, keep), the operators that took the most device time in a profiled third run
(torch.profiler; prefill and pruning together), to see what a stage spends outside the greedy picks;
``--trace FILE.json`` writes that run's Chrome trace, where each stage is a named range.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from prune_bench.core.plugins import registry
from prune_bench.session import Session
from prune_bench.strategies import hieravid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="llava-onevision-7b")
    ap.add_argument("--frames", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--keep", type=float, nargs="+", default=[0.3])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--profile", action="store_true", help="print the top operators of a profiled run")
    ap.add_argument(
        "--trace", help="with --profile: also write the run's Chrome trace here (one per frames/keep)"
    )
    args = ap.parse_args()
    reg = registry()
    archs = {name: (cls, make) for cls in reg.adapters.values() for name, make in cls.architectures.items()}
    cls, make = archs[args.arch]
    adapter = cls.from_config(make(), device=args.device)
    records: list[dict] = []
    original = hieravid.segment_dpp

    def traced(hidden, relevance, seg, counts, budgets):  # type: ignore[no-untyped-def]
        if hidden.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        chosen = original(hidden, relevance, seg, counts, budgets)
        if hidden.is_cuda:
            torch.cuda.synchronize()
        records.append(
            {
                "tokens": int(counts.sum()),
                "segments": int(counts.numel()),
                "sizes": counts.tolist(),
                "budgets": budgets.tolist(),
                "budget_total": int(budgets.sum()),
                "picked": int(chosen.sum()),
                "steps": int(budgets.max()),
                "dpp_ms": round(1000 * (time.perf_counter() - start), 2),
                "relevance_finite": bool(torch.isfinite(relevance).all()),
                "hidden_finite": bool(torch.isfinite(hidden).all()),
            }
        )
        return chosen

    hieravid.segment_dpp = traced
    for frames in args.frames:
        sample = adapter.encode_synthetic(frames, 64, capture_vision=True)
        for keep in args.keep:
            session = Session(adapter, "hieravid", keep=keep, num_frames=frames)
            for _ in range(2):  # the first run compiles and captures; the second is timed
                records.clear()
                result = session.answer(sample)
            print(
                json.dumps(
                    {
                        "frames": frames,
                        "keep": keep,
                        "retention": round(result.layer_average_retention, 4),
                        "input_retention": round(result.input_retention, 4),
                        "stages": records,
                        "stage_ms": {k: round(v, 2) for k, v in result.timings_ms.items() if "stage" in k},
                    }
                ),
                flush=True,
            )
            if args.profile:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if args.device.startswith("cuda"):
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                with torch.profiler.profile(activities=activities) as prof:
                    session.answer(sample)
                key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
                print(prof.key_averages().table(sort_by=key, row_limit=40), flush=True)
                if args.trace:
                    prof.export_chrome_trace(args.trace.replace(".json", f"-{frames}f-{keep}.json"))


if __name__ == "__main__":
    main()
