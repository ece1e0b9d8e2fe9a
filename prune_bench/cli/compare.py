"""``prune-bench compare``: strategies side by side on one model and benchmark."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from prune_bench.adapters.base import resolve_model_path
from prune_bench.cli.model import load_adapter, pick_device
from prune_bench.core.compose import build_strategy, check_keep, parse_value, spec_names
from prune_bench.core.plugins import registry
from prune_bench.core.strategy import BUDGET_UNITS
from prune_bench.errors import UserError
from prune_bench.runner.evaluate import RunConfig, evaluate
from prune_bench.runner.store import ResultStore
from prune_bench.runner.summary import SummaryRow, summarize


def parse_sets(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--set fastv.layer=3`` -> ``{"fastv": {"layer": 3}}`` (values parsed as JSON when they can be)."""
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        m = re.fullmatch(r"([\w-]+)\.(\w+)=(.*)", v)
        if not m:
            raise UserError(f"--set expects STRATEGY.OPTION=VALUE, got '{v}' (e.g. --set fastv.layer=3)")
        name, key, raw = m.groups()
        out.setdefault(name, {})[key] = parse_value(raw)
    return out


def print_table(rows: list[SummaryRow], title: str, console: Console) -> None:
    """The comparison, compact enough for a terminal; ``prune-bench report`` has every column."""
    tasks = sorted({t for r in rows for t in r.accuracy})
    full = next((r for r in rows if r.strategy == "none"), None)
    table = Table(title=title, pad_edge=False)
    headers = (
        "strategy",
        "keep",
        *(t[:6] for t in tasks),
        "avg",
        "%full",
        "ret",
        "FLOPs",
        "FLOPs*",
        "prune ms",
    )
    for col in headers:
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for r in rows:
        rel = f"{100 * r.average / full.average:.1f}" if full and full.average else "-"
        table.add_row(
            r.strategy,
            f"{r.keep:g}",
            *(f"{r.accuracy.get(t, float('nan')):.0f}" for t in tasks),
            f"{r.average:.1f}",
            rel,
            f"{r.retention['layer_average']:.3f}",
            f"{r.flops_ratio['exact']:.3f}",
            f"{r.flops_ratio['paper']:.3f}",
            f"{r.pruning_ms:.1f}",
        )
    console.print(table)
    console.print(
        "accuracy in % per task; avg = mean over tasks; %full = avg relative to 'none'; ret = visual tokens "
        "kept, averaged over LLM layers; FLOPs = LLM prefill FLOPs relative to 'none', exact (GQA-aware, "
        "causal), FLOPs* = the papers' convention 4nd^2 + 2n^2d + 2ndm; prune ms = median selection time. "
        "`prune-bench report DIR` prints every column (input and decode retention too) as markdown, LaTeX or CSV."
    )


@click.command("compare")
@click.argument("strategies", nargs=-1, required=True)
@click.option(
    "--keep",
    "keeps",
    type=float,
    multiple=True,
    default=(0.3,),
    show_default=True,
    help="Visual-token retention to match; repeat for a sweep (--keep 0.1 --keep 0.3).",
)
@click.option(
    "--budget-unit",
    type=click.Choice(BUDGET_UNITS),
    default="layer-average",
    show_default=True,
    help="What --keep measures: tokens entering the LLM, tokens averaged over LLM layers, or prefill FLOPs.",
)
@click.option("--model", default=None, help="Model directory or hub id (default: the shipped small model).")
@click.option("--benchmark", default="synthetic", show_default=True, help="Registered benchmark name.")
@click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None, help="Local copy of the benchmark."
)
@click.option("--frames", type=int, default=None, help="Frames per video (default: the model's own).")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N items.")
@click.option("--device", default=None, help="cpu or cuda (default: cuda if available).")
@click.option(
    "--mode",
    type=click.Choice(["drop", "mask"]),
    default="drop",
    show_default=True,
    help="drop removes tokens (real speed-up); mask hides them (the test oracle).",
)
@click.option(
    "--set", "sets", multiple=True, metavar="STRATEGY.OPTION=VALUE", help="Override a strategy option."
)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Results directory (resumable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def compare(
    strategies: tuple[str, ...],
    keeps: tuple[float, ...],
    budget_unit: str,
    model: str | None,
    benchmark: str,
    data_dir: str | None,
    frames: int | None,
    limit: int | None,
    device: str | None,
    mode: str,
    sets: tuple[str, ...],
    out: str | None,
    seed: int,
    no_progress: bool,
) -> None:
    """Compare STRATEGIES at one budget (or several, with --keep repeated).

    A strategy is NAME, NAME[option=value,...] (an ablation, e.g. 'hieravid[segment_level=false]'), or
    A+B to mount the stages of several together. The unpruned model ('none') is always the reference row.
    """
    for keep in keeps:
        check_keep(keep)
    reg = registry()
    options = parse_sets(sets)
    for spec in strategies:
        for name in spec_names(spec):
            reg.strategy(name)  # unknown names fail before any model loads
    mounted = {n for spec in strategies for n in spec_names(spec)}
    for name, opts in options.items():
        if name not in mounted:
            raise UserError(
                f"--set {name}.… names a strategy that is not being compared ({', '.join(sorted(mounted))})"
            )
        reg.strategy(name).make_config(**opts)  # an unknown or invalid option fails before any model loads
    if model is not None:
        resolve_model_path(model)  # a missing path fails before anything is built
    bench_options: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
    bench = reg.benchmark(benchmark)(**bench_options)
    device = pick_device(device)
    console = Console(width=max(Console().width, 120))
    adapter, model_label = load_adapter(model, device)
    num_frames = frames or adapter.prompt_format.num_frames
    info = adapter.model_info(num_frames)
    specs = ["none", *[s for s in strategies if s != "none"]]
    configs = [
        RunConfig(build_strategy(s, k, budget_unit, info, reg, options), k, budget_unit, mode)  # type: ignore[arg-type]
        for s in specs
        for k in ([1.0] if s == "none" else keeps)
    ]
    items = list(bench.items(limit))
    model_tag = "default" if model is None else Path(model).name
    out_dir = Path(out or Path("results") / f"{bench.name}-{model_tag}-{num_frames}f")
    store = ResultStore(out_dir)
    context = {
        "model": model_label,
        "benchmark": bench.name,
        "frames": num_frames,
        "device": device,
        "seed": seed,
        "items": len(items),
    }
    console.print(
        f"model: {model_label} on {device}; benchmark: {bench.name} ({len(items)} items, {num_frames} frames)"
    )
    evaluate(
        adapter,
        items,
        configs,
        store,
        context,
        num_frames=num_frames,
        seed=seed,
        show_progress=not no_progress,
    )
    hashes = {c.hash(context) for c in configs}
    title = f"{bench.name}: keep={', '.join(f'{k:g}' for k in keeps)} ({budget_unit})"
    print_table(summarize(store.records(), hashes), title, console)
    console.print(f"results: {out_dir / 'results.jsonl'}")
