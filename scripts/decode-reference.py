#!/usr/bin/env python
"""Our decode ms/token next to Hugging Face's own static-cache decode step, measured in the same run.

The speed issue's decode targets (32 frames, 7B shape): unpruned decode <= 1.2 x the CUDA-graph
static-cache step of the same model at the same KV length, and ``random`` at keep 0.3 at least 15%
faster than unpruned. This script measures both sides in one process on one model:

* ours: ``Session(adapter, spec, keep=..., num_frames=...)`` answering the synthetic sample
  (``adapter.encode_synthetic(frames, 64)``) with ``--decode-tokens`` new tokens, timed by
  :func:`prune_bench.runner.speed.measure_session` (the ``decode ms/tok`` column of ``prune-bench speed``:
  the decode loop's time over ``decode_tokens - 1`` steps, median of ``--repeats`` after ``--warmup``),
  with the decode path ``PRUNE_BENCH_DECODE`` selects (CUDA graphs by default on a GPU); its KV length is
  the tokens the last layer's cache kept after prefill;
* the reference: the HF language model over a ``transformers.StaticCache`` of ``kv_len + decode_tokens``
  entries, prefilled with ``kv_len`` random embeddings, then one token a step, captured as a CUDA graph
  and replayed ``--decode-tokens`` times, median per step (prune_bench/runner/decode_reference.py; the step
  includes the embedding, every layer, the final norm and the LM head); and the same step eagerly.
  Each row's reference runs at that row's KV length.

Before timing, one reference step's logits are compared with the HF model's own uncached forward over
the same prefix (max |diff| in the output): the reference is a real decode step, not only a timing.

Usage (CUDA machine, about 2 minutes on an H200):
    python scripts/decode-reference.py --arch llava-onevision-7b --frames 32 --decode-tokens 32 \
        --out reports/gpu/decode-reference
CPU: a dry run on a tiny architecture (eager steps only, no graph):
    python scripts/decode-reference.py --arch tiny-llava-onevision --frames 2 --decode-tokens 4 \
        --warmup 0 --repeats 1 --out /tmp/decode-reference
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from prune_bench.adapters.graph_decode import decode_path
from prune_bench.core.plugins import registry
from prune_bench.runner.decode_reference import step_matches_forward, time_hf_static_step
from prune_bench.runner.speed import machine, measure_session
from prune_bench.session import Session

ROOT = Path(__file__).resolve().parents[1]
#: the issue's targets: unpruned ours / HF graph step at most this, and random at keep 0.3 at least this
#: much less time a token than unpruned
MAX_RATIO = 1.2
MIN_SAVING = 0.15


def git_commit() -> str:
    """HEAD of the checkout the script runs from (``+dirty`` when tracked package or script files differ
    from it); ``PRUNE_BENCH_COMMIT`` where there is no git checkout (a copied tree)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "prune_bench", "scripts"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("PRUNE_BENCH_COMMIT", "unknown")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    reg = registry()
    archs = {name: (cls, make) for cls in reg.adapters.values() for name, make in cls.architectures.items()}
    if args.arch not in archs:
        raise SystemExit(f"unknown architecture '{args.arch}' (known: {', '.join(sorted(archs))})")
    adapter_cls, make_config = archs[args.arch]
    device = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: a dry run, eager steps only
    adapter = adapter_cls.from_config(make_config(), device=device)  # type: ignore[attr-defined]
    graph = adapter.device.type == "cuda"
    sample = adapter.encode_synthetic(args.frames, 64, capture_vision=True)
    specs = ["none", *[s for s in args.strategies if s != "none"]]
    rows: list[dict[str, Any]] = []
    for spec in specs:
        keep = 1.0 if spec == "none" else args.keep
        session = Session(adapter, spec, keep=keep, num_frames=args.frames, registry_=reg)
        kv_len = session.answer(sample, max_new_tokens=1).counts[-1].attn_tokens
        ours = measure_session(
            session, sample, decode_tokens=args.decode_tokens, warmup=args.warmup, repeats=args.repeats
        )
        step, forward = step_matches_forward(adapter, kv_len, seed=args.seed)
        eager = time_hf_static_step(
            adapter, kv_len, args.decode_tokens, graph=False, warmup=args.hf_warmup, seed=args.seed
        )
        replayed = (
            time_hf_static_step(
                adapter, kv_len, args.decode_tokens, graph=True, warmup=args.hf_warmup, seed=args.seed
            )
            if graph
            else None
        )
        row = {
            "strategy": spec,
            "keep": keep,
            "kv_len": kv_len,
            "ours_ms_per_token": ours.decode_ms_per_token,
            "hf_graph_ms_per_step": replayed.median_ms if replayed else None,
            "hf_eager_ms_per_step": eager.median_ms,
            "ratio_ours_hf_graph": ours.decode_ms_per_token / replayed.median_ms if replayed else None,
            "step_vs_forward_max_abs": float((step - forward).abs().max()),
            "logits_max_abs": float(forward.abs().max()),
            "graph_vs_eager_max_abs": float((replayed.first_logits - eager.first_logits).abs().max())
            if replayed
            else None,
        }
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        if graph:
            torch.cuda.empty_cache()
    base = rows[0]["ours_ms_per_token"]
    for row in rows:
        row["ours_vs_unpruned"] = row["ours_ms_per_token"] / base if base else None
    return {
        "arch": args.arch,
        "frames": args.frames,
        "decode_tokens": args.decode_tokens,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "hf_warmup": args.hf_warmup,
        "decode_path": decode_path(adapter.device),
        "machine": machine(adapter),
        "commit": git_commit(),
        "command": " ".join(
            [*(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PRUNE_BENCH_")), "python"]
            + sys.argv
        ),
        "rows": rows,
        "checks": checks(rows, args.keep),
    }


def checks(rows: list[dict[str, Any]], keep: float) -> dict[str, Any]:
    """The issue's two targets, where this run measured what they need (None otherwise)."""
    none = rows[0]
    ratio = none["ratio_ours_hf_graph"]
    rnd = next((r for r in rows if r["strategy"] == "random" and r["keep"] == keep), None)
    saving = 1.0 - rnd["ours_vs_unpruned"] if rnd and rnd["ours_vs_unpruned"] is not None else None
    return {
        "unpruned_ratio": ratio,
        "unpruned_ratio_ok": ratio <= MAX_RATIO if ratio is not None else None,
        "random_saving": saving,
        "random_saving_ok": saving >= MIN_SAVING if saving is not None else None,
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    c = result["checks"]
    lines = [
        f"# Decode: ours vs HF static-cache step, {result['arch']}, {result['frames']} frames",
        "",
        f"{m['device']}, {m['dtype']}, {m['attention']}, torch {m['torch']}, transformers {m['transformers']}, "
        f"CUDA {m['cuda']}; commit {result['commit']}; our decode path: {result['decode_path']}.",
        "",
        f"Ours: `prune-bench speed`'s decode ms/token (measure_session: {result['decode_tokens']} new tokens, "
        f"median of {result['repeats']} after {result['warmup']} warm-ups). HF: its language model over a "
        f"`StaticCache` of KV length + {result['decode_tokens']} entries after a prefill of KV length random "
        f"embeddings, one token a step (embedding, layers, final norm, LM head), median of "
        f"{result['decode_tokens']} steps after {result['hf_warmup']} warm-ups, as a CUDA graph and eagerly. "
        "KV length: the tokens the last layer's cache kept after our prefill; each row's HF step runs at it.",
        "",
        "| arch | strategy | keep | KV length | ours ms/tok | HF static graph ms/step | HF eager ms/step | "
        "ours / HF graph | ours / unpruned |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {result['arch']} | {r['strategy']} | {r['keep']:g} | {r['kv_len']} | {fmt(r['ours_ms_per_token'])} | "
            f"{fmt(r['hf_graph_ms_per_step'])} | {fmt(r['hf_eager_ms_per_step'])} | "
            f"{fmt(r['ratio_ours_hf_graph'])} | {fmt(r['ours_vs_unpruned'])} |"
        )
    worst = max(r["step_vs_forward_max_abs"] for r in result["rows"])
    graph_diff = [
        r["graph_vs_eager_max_abs"] for r in result["rows"] if r["graph_vs_eager_max_abs"] is not None
    ]
    lines += [
        "",
        f"Reference check: one static-cache step's logits vs the HF model's own uncached forward over the same "
        f"prefix, max |diff| {worst:.3g} (logits up to {max(r['logits_max_abs'] for r in result['rows']):.3g})"
        + (f"; graph replay vs eager step, max |diff| {max(graph_diff):.3g}" if graph_diff else "")
        + ".",
        "",
        f"Targets: unpruned ours / HF graph <= {MAX_RATIO}: {fmt(c['unpruned_ratio'])} "
        f"({'met' if c['unpruned_ratio_ok'] else 'not met' if c['unpruned_ratio_ok'] is not None else 'not measured'}); "
        f"random keep 0.3 at least {MIN_SAVING:.0%} less time a token than unpruned: "
        + (
            f"{c['random_saving']:.1%} less ({'met' if c['random_saving_ok'] else 'not met'})"
            if c["random_saving"] is not None
            else "not measured"
        )
        + ".",
        "",
        f"Command: `{result['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strategies", nargs="*", default=["none", "random"], help="default: none random")
    parser.add_argument("--arch", default="llava-onevision-7b")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--keep", type=float, default=0.3, help="keep of every strategy but none")
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2, help="untimed answers before ours is timed")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hf-warmup", type=int, default=3, help="untimed HF steps before capture / timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="directory for decode-reference.md and .json")
    args = parser.parse_args(argv)
    if args.decode_tokens < 2:
        parser.error("--decode-tokens must be at least 2 (the first token comes from the prefill)")
    result = measure(args)
    text = markdown(result)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "decode-reference.md").write_text(text)
        (args.out / "decode-reference.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
