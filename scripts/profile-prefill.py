#!/usr/bin/env python
"""Where a pruned prefill spends its time: one torch.profiler trace per (strategy, keep), summarised.

For each configuration the same synthetic sample (random weights at a named architecture's shape, as
``prune-bench speed`` builds it) is answered ``--warmup`` times untimed, then once under the profiler.
The summary groups the GPU kernels into attention / matmul / copy-and-index / elementwise / other,
lists the top kernels, and counts what makes the host wait (device-to-host copies, stream and device
synchronisations), so a slow row can be told from a fast one with the same token count.

Usage (CUDA machine): python scripts/profile-prefill.py --arch qwen3-vl-8b --frames 32 --keep 0.3 \
    none random uniform --out reports/gpu/profile-qwen3-vl-8b.md
"""

from __future__ import annotations

import argparse
import re
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


def profile_one(session: Session, sample, warmup: int) -> dict:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        session.answer(sample, max_new_tokens=1)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        result = session.answer(sample, max_new_tokens=1)
        if cuda:
            torch.cuda.synchronize()
    kernels: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    syncs: dict[str, int] = defaultdict(int)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.name] += event.device_time / 1000.0  # us -> ms
            counts[event.name] += 1
        elif event.name in SYNCS:
            syncs[event.name] += 1
    by_cat: dict[str, float] = defaultdict(float)
    for name, ms in kernels.items():
        by_cat[category(name)] += ms
    return {
        "timings": result.timings_ms,
        "tokens": [c.attn_tokens for c in result.counts],
        "kernels": kernels,
        "counts": counts,
        "by_cat": by_cat,
        "syncs": syncs,
    }


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
    for spec in args.strategies:
        keep = 1.0 if spec == "none" else args.keep
        session = Session(adapter, spec, keep=keep, num_frames=args.frames, registry_=reg)
        p = profile_one(session, sample, args.warmup)
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
