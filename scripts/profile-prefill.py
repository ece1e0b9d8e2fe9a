#!/usr/bin/env python
"""Where a pruned prefill spends its time: one torch.profiler trace per (strategy, keep), summarised.

For each configuration the same synthetic sample (random weights at a named architecture's shape, as
``prune-bench speed`` builds it) is answered ``--warmup`` times untimed, then once under the profiler.
The summary groups the GPU kernels into attention / matmul / copy-and-index / elementwise / other,
lists the top kernels, and counts what makes the host wait (device-to-host copies, stream and device
synchronisations), so a slow row can be told from a fast one with the same token count.

``--gaps`` also exports each profile as a Chrome trace and finds where the GPU sat idle inside the
prefill (stretches over 20 us between kernels), blaming each on what the host was doing: waiting in a
synchronising call (``sync:aten::item in stage:...``) or launching late (``launch:aten::mm in prefill``).
``--hf-profile n1,n2`` profiles the HF language model's own forward at those lengths the same way, so a
pruned prefill can be set beside an unmodified model at the length it pruned to.

Usage (CUDA machine): python scripts/profile-prefill.py --arch qwen3-vl-8b --frames 32 --keep 0.3 \
    none random uniform --gaps --hf-profile 1139 --out reports/gpu/profile-qwen3-vl-8b.md
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from prune_bench.core.plugins import registry
from prune_bench.runner.speed import machine
from prune_bench.session import Session

CATEGORIES = (
    ("attention", re.compile(r"flash|fmha|attention|sdpa|softmax", re.I)),
    ("matmul", re.compile(r"gemm|cutlass|sm90|sm80|ampere|hopper|nvjet|matmul|cublas", re.I)),
    ("copy/index", re.compile(r"copy|index|gather|scatter|cat|memcpy|memset|nonzero|sort|topk", re.I)),
    ("elementwise", re.compile(r"elementwise|vectorized|reduce|norm|silu|mul|add|rotary", re.I)),
)
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaEventSynchronize")


def category(name: str) -> str:
    return next((c for c, pattern in CATEGORIES if pattern.search(name)), "other")


GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
GAP_US = 20.0  # idle stretches shorter than this are launch spacing, not waits


def idle_gaps(trace: dict, window: str = "prefill") -> dict:
    """Where the GPU sat idle inside the ``window`` range (a ``record_function`` name) of a Chrome trace.

    Every stretch of more than :data:`GAP_US` between the end of the GPU work so far and the next
    kernel is one gap. It is blamed on what the host did: ``sync:<op>`` when a synchronising runtime
    call (a stream or device synchronize, a blocking copy) ended inside the gap (the host waited for the
    GPU, then had to launch again: the name is the ATen op that made the call, e.g. ``aten::item``);
    otherwise ``launch:<op>``, the ATen op whose launch came late (the host was slower than the GPU),
    with the record_function range it sat in (a stage name, ``prefill``)."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X"]
    spans = [e for e in events if e.get("name") == window and e.get("cat") in ("user_annotation", "cpu_op")]
    if not spans:
        return {"idle_ms": 0.0, "busy_ms": 0.0, "span_ms": 0.0, "gaps": 0, "by_cause": {}}
    lo = min(e["ts"] for e in spans)
    hi = max(e["ts"] + e["dur"] for e in spans)
    runtime = {
        e["args"]["correlation"]: e
        for e in events
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})
    }
    host_ops = sorted((e for e in events if e.get("cat") == "cpu_op"), key=lambda e: e["ts"])
    ranges = [e for e in events if e.get("cat") == "user_annotation"]
    syncs = sorted(
        (e for e in events if e.get("cat") == "cuda_runtime" and e.get("name") in SYNCS),
        key=lambda e: e["ts"],
    )
    gpu = sorted((e for e in events if e.get("cat") in GPU_CATS), key=lambda e: e["ts"])

    starts = [e["ts"] for e in host_ops]

    def enclosing_op(ts: float) -> str:
        # the innermost ATen op running on the host at ``ts``: the latest-started one still running
        i = bisect.bisect_right(starts, ts) - 1
        for e in reversed(host_ops[max(0, i - 64) : i + 1]):
            if e["ts"] + e["dur"] >= ts:
                return str(e["name"])
        return "python"

    def enclosing_range(ts: float) -> str:
        inner = [e for e in ranges if e["ts"] <= ts <= e["ts"] + e["dur"] and e["name"] != window]
        return min(inner, key=lambda e: e["dur"])["name"] if inner else window

    end = None
    busy = idle = 0.0
    count = 0
    by_cause: dict[str, float] = defaultdict(float)
    for k in gpu:
        launch = runtime.get(k.get("args", {}).get("correlation"))
        host_ts = launch["ts"] if launch else k["ts"]
        if host_ts < lo or host_ts > hi:
            continue
        start, stop = k["ts"], k["ts"] + k["dur"]
        if end is not None and start - end > GAP_US:
            gap = start - end
            waited = [s for s in syncs if end <= s["ts"] + s["dur"] <= start]
            if waited:
                cause = "sync:" + enclosing_op(waited[-1]["ts"]) + " in " + enclosing_range(waited[-1]["ts"])
            else:
                cause = "launch:" + enclosing_op(host_ts) + " in " + enclosing_range(host_ts)
            by_cause[cause] += gap / 1000.0
            idle += gap / 1000.0
            count += 1
        busy += max(0.0, stop - max(start, end if end is not None else start)) / 1000.0
        end = stop if end is None else max(end, stop)
    return {
        "idle_ms": idle,
        "busy_ms": busy,
        "span_ms": (hi - lo) / 1000.0,
        "gaps": count,
        "by_cause": dict(sorted(by_cause.items(), key=lambda kv: -kv[1])),
    }


RANGES = re.compile(r"^(prefill|pruning|stage:.*)$")  # record_function ranges, not kernels


def traced(run, gaps: bool, wrap: bool = False):  # type: ignore[no-untyped-def]
    """``run()`` once under the profiler; the profile, ``run``'s result and, with ``gaps``,
    :func:`idle_gaps` over the ``prefill`` range (the run's own clock range, or ours with ``wrap``)."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        if wrap:
            with torch.profiler.record_function("prefill"):
                out = run()
        else:
            out = run()
        if cuda:
            torch.cuda.synchronize()
    idle = None
    if gaps:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.json"
            prof.export_chrome_trace(str(path))
            idle = idle_gaps(json.loads(path.read_text()))
    return prof, out, idle


def kernel_summary(prof) -> dict:  # type: ignore[no-untyped-def]
    """GPU time and launches per kernel name, by category, and the host waits, of one profile."""
    kernels: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    syncs: dict[str, int] = defaultdict(int)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA and not RANGES.match(event.name):
            kernels[event.name] += event.device_time / 1000.0  # us -> ms
            counts[event.name] += 1
        elif event.name in SYNCS:
            syncs[event.name] += 1
    by_cat: dict[str, float] = defaultdict(float)
    for name, ms in kernels.items():
        by_cat[category(name)] += ms
    return {"kernels": kernels, "counts": counts, "by_cat": by_cat, "syncs": syncs}


def profile_one(session: Session, sample, warmup: int, gaps: bool = False) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        session.answer(sample, max_new_tokens=1)
    prof, result, idle = traced(lambda: session.answer(sample, max_new_tokens=1), gaps)
    return {
        "idle": idle,
        "timings": result.timings_ms,
        "tokens": [c.attn_tokens for c in result.counts],
        **kernel_summary(prof),
    }


def hf_forward(adapter, n: int):  # type: ignore[no-untyped-def]
    """A closure running the HF language model's own forward over ``n`` random embeddings."""
    lm = adapter.model.model.language_model
    hidden = adapter.config.text_config.hidden_size
    embeds = torch.randn(1, n, hidden, device=adapter.device, dtype=adapter.model.dtype) * 0.02
    pos = torch.arange(n, device=adapter.device)[None]
    position = pos.expand(3, 1, n) if "qwen" in type(adapter.model).__name__.lower() else pos

    @torch.no_grad()
    def forward():  # type: ignore[no-untyped-def]
        return lm(inputs_embeds=embeds, position_ids=position, use_cache=True)

    return forward


@torch.no_grad()
def hf_prefill_at(adapter, lengths: list[int], repeats: int = 5) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """The HF language model's own forward over ``n`` random embeddings, for each ``n`` (median ms):
    what the hardware gives at that sequence length, whatever pruned the sequence to it."""
    lm = adapter.model.model.language_model
    hidden = adapter.config.text_config.hidden_size
    mrope = "qwen" in type(adapter.model).__name__.lower()
    out = {}
    for n in lengths:
        embeds = torch.randn(1, n, hidden, device=adapter.device, dtype=adapter.model.dtype) * 0.02
        pos = torch.arange(n, device=adapter.device)[None]
        position = pos.expand(3, 1, n) if mrope else pos
        times = []
        for i in range(repeats + 2):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            lm(inputs_embeds=embeds, position_ids=position, use_cache=True)
            end.record()
            torch.cuda.synchronize()
            if i >= 2:
                times.append(start.elapsed_time(end))
        out[n] = sorted(times)[len(times) // 2]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strategies", nargs="+")
    parser.add_argument("--arch", default="llava-onevision-7b")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--keep", type=float, default=0.3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--hf-lengths", default="", help="comma-separated sequence lengths to time HF's LM forward at (CUDA)"
    )
    parser.add_argument(
        "--gaps",
        action="store_true",
        help="also trace where the GPU sat idle in each prefill and what the host was doing then",
    )
    parser.add_argument(
        "--hf-profile",
        default="",
        help="comma-separated sequence lengths to profile HF's LM forward at, as the strategies are "
        "(the same columns and, with --gaps, the idle gaps): what an unmodified model costs at the "
        "length a strategy pruned to",
    )
    args = parser.parse_args()
    reg = registry()
    archs = {name: (cls, make) for cls in reg.adapters.values() for name, make in cls.architectures.items()}
    adapter_cls, make_config = archs[args.arch]
    device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: a dry run of the script
    adapter = adapter_cls.from_config(make_config(), device=device)  # type: ignore[attr-defined]
    sample = adapter.encode_synthetic(args.frames, 64, capture_vision=True)
    info = machine(adapter)
    lines = [
        f"# Prefill profile: {args.arch}, {args.frames} frames, keep {args.keep:g}",
        "",
        f"{info['device']}, {info['dtype']}, {info['attention']}, torch {info['torch']}, "
        f"transformers {info['transformers']}. One profiled answer (1 new token) after {args.warmup} warm-ups; "
        "GPU kernel time in ms by category; host waits counted from the CUDA runtime calls.",
        "",
        "| strategy | prefill ms (clock) | pruning ms | LM tokens (first/last layer) | attention | matmul | "
        "copy/index | elementwise | other | kernels | D2H copies+syncs |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    details = []
    rows: list[tuple[str, dict]] = []
    for spec in args.strategies:
        keep = 1.0 if spec == "none" else args.keep
        session = Session(adapter, spec, keep=keep, num_frames=args.frames, registry_=reg)
        p = profile_one(session, sample, args.warmup, args.gaps)
        rows.append((spec, p))
    for n in [int(n) for n in args.hf_profile.split(",") if n]:
        forward = hf_forward(adapter, n)
        for _ in range(args.warmup):
            forward()
        prof, _, idle = traced(forward, args.gaps, wrap=True)
        times = [max(e.device_time, e.cpu_time) / 1000.0 for e in prof.events() if e.name == "prefill"]
        rows.append(
            (
                f"HF forward, n={n}",
                {
                    "idle": idle,
                    "timings": {"prefill": max(times, default=0.0)},
                    "tokens": [n],
                    **kernel_summary(prof),
                },
            )
        )
    for spec, p in rows:
        cat = p["by_cat"]
        lines.append(
            f"| {spec} | {p['timings'].get('prefill', 0):.1f} | {p['timings'].get('pruning', 0):.1f} | "
            f"{p['tokens'][0]}/{p['tokens'][-1]} | {cat['attention']:.1f} | {cat['matmul']:.1f} | "
            f"{cat['copy/index']:.1f} | {cat['elementwise']:.1f} | {cat['other']:.1f} | "
            f"{sum(p['counts'].values())} | {sum(p['syncs'].values())} |"
        )
        details += ["", f"## {spec}", "", "| kernel | calls | ms |", "|---|---:|---:|"]
        top = sorted(p["kernels"].items(), key=lambda kv: -kv[1])[: args.top]
        details += [f"| `{name[:110]}` | {p['counts'][name]} | {ms:.2f} |" for name, ms in top]
        details += ["", "host waits: " + ", ".join(f"{k} {v}" for k, v in sorted(p["syncs"].items()))]
        if p["idle"] is not None:
            g = p["idle"]
            details += [
                "",
                f"GPU idle inside the prefill: {g['idle_ms']:.1f} ms in {g['gaps']} gaps over {GAP_US:g} us "
                f"(busy {g['busy_ms']:.1f} ms of {g['span_ms']:.1f} ms on the host's clock); by cause:",
                "",
                "| cause | idle ms |",
                "|---|---:|",
            ]
            details += [f"| `{c[:100]}` | {ms:.2f} |" for c, ms in list(g["by_cause"].items())[: args.top]]
        print(lines[-1], flush=True)
    if args.hf_lengths and torch.cuda.is_available():
        at = hf_prefill_at(adapter, [int(n) for n in args.hf_lengths.split(",")])
        lines += ["", "HF language-model forward at sequence length n (random embeddings, median of 5):", ""]
        lines += ["| n | ms | ms per 1k tokens |", "|---:|---:|---:|"]
        lines += [f"| {n} | {ms:.1f} | {1000 * ms / n:.2f} |" for n, ms in at.items()]
        print("\n".join(lines[-len(at) - 2 :]), flush=True)
    text = "\n".join(lines + details) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
