"""``prune-bench speed``: prefill, TTFT, decode and memory of strategies at a real model's shape."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import click
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from prune_bench.adapters.loading import pick_device
from prune_bench.adapters.placement import parse_device_map
from prune_bench.cli.compare import parse_sets
from prune_bench.cli.display import print_wide
from prune_bench.core.compose import check_keep, spec_names
from prune_bench.core.plugins import registry
from prune_bench.core.strategy import BUDGET_UNITS
from prune_bench.errors import UserError
from prune_bench.runner.speed import (
    SpeedRow,
    finish,
    hf_lm_prefill_ms,
    machine,
    measure_session,
    random_adapter_on_device_map,
    rows_from_json,
    time_vision,
)
from prune_bench.runner.speed_input import DEFAULT_SCENES, FEATURES, INPUTS, default_features, input_frames
from prune_bench.session import Session

COLUMNS = (
    ("strategy", "strategy"),
    ("keep", "keep"),
    ("frames", "frames"),
    ("ret. layer-avg", "retention_layer_average"),
    ("segments", "segments"),
    ("vision ms", "vision_ms"),
    ("pruning ms", "pruning_ms"),
    ("LM prefill ms", "lm_prefill_ms"),
    ("TTFT ms", "ttft_ms"),
    ("decode ms/tok", "decode_ms_per_token"),
    ("peak GiB", "peak_mem_gib"),
    ("KV MiB", "kv_cache_mib"),
    ("overhead", "overhead"),
    ("speed-up", "speedup"),
    ("FLOPs-ideal", "ideal_speedup"),
    ("achieved/ideal", "efficiency"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown(rows: list[SpeedRow], meta: dict[str, Any]) -> str:
    lines = [
        f"# Speed: {meta['arch']} (random weights)",
        "",
        f"Machine: {meta['machine']['device']}, {meta['machine']['dtype']}, attention {meta['machine']['attention']}, "
        f"torch {meta['machine']['torch']}, transformers {meta['machine']['transformers']}, CUDA {meta['machine']['cuda']}.",
        f"Command: `{meta['command']}`",
        f"Medians of {meta['repeats']} runs after {meta['warmup']} warm-up runs; {meta['decode_tokens']} decoded tokens; "
        f"{meta['text_tokens']} text tokens around the video.",
        *([f"Input: {meta['input_description']}."] if "input_description" in meta else []),
        "",
    ]
    for frames, hf in meta["hf_lm_prefill_ms"].items():
        ours = next(
            (r.lm_prefill_ms for r in rows if r.strategy == "none" and str(r.frames) == str(frames)), None
        )
        if ours is not None:
            lines.append(
                f"- {frames} frames, unpruned: HF language-model forward {hf:.1f} ms; prune-bench prefill {ours:.1f} ms "
                f"({100 * (ours / hf - 1):+.1f}%)."
            )
    lines += ["", "| " + " | ".join(c for c, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        d = r.as_dict()
        lines.append("| " + " | ".join(_fmt(d[k]) for _, k in COLUMNS) + " |")
    lines += [
        "",
        "overhead = pruning time / the pruned model's LM prefill time (stages excluded); speed-up = unpruned LM prefill / this LM prefill (pruning "
        "excluded); FLOPs-ideal = ratio of exact LLM prefill FLOPs (GQA-aware, causal); achieved/ideal = their ratio; "
        "segments = the temporal segments or windows the strategy formed on this video (- where it forms none).",
    ]
    staged = [r for r in rows if r.stage_ms]
    if staged:
        lines += ["", "Pruning time per stage (ms, medians):", ""]
        lines += [
            f"- {r.strategy} keep={r.keep:g}, {r.frames} frames: "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in r.stage_ms.items())
            for r in staged
        ]
    return "\n".join(lines) + "\n"


def write_outputs(
    path: Path, rows: list[SpeedRow], meta: dict[str, Any], failures: list[dict[str, Any]], plots: bool = True
) -> None:
    """speed.json, speed.md and the figures; rewritten after every configuration so a cut run keeps its rows."""
    from prune_bench.report.speed_plots import write_speed_plots

    path.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": [r.as_dict() for r in rows], "failures": failures}
    (path / "speed.json").write_text(json.dumps(payload, indent=1))
    text = markdown(rows, meta)
    if failures:
        text += "\nFailed configurations:\n" + "".join(
            f"- {f['strategy']} keep={f['keep']:g} at {f['frames']} frames: {f['error']}\n" for f in failures
        )
    (path / "speed.md").write_text(text)
    if plots:
        write_speed_plots(rows, path, meta)


def describe_input(source: str, video: str | None, scenes: int, features: str) -> str:
    """One line saying which video the stages saw, and whether their features were centred."""
    what = {
        "scenes": f"rendered clip of {scenes} scene{'s' if scenes > 1 else ''} with hard cuts (seed 0)",
        "noise": "independent uniform random pixels every frame",
    }.get(source, f"video file {video}")
    how = {
        "centred": "random-weight tower's tokens centred (their mean over the video removed, norms kept)",
        "tower": "random-weight tower's tokens as they are",
    }[features]
    return f"{source if video is None else 'video'}: {what}; features: {how}"


@click.command("speed")
@click.argument("strategies", nargs=-1)
@click.option(
    "--render",
    "render",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Only redraw speed.md and the figures next to an existing speed.json.",
)
@click.option(
    "--input",
    "input_name",
    type=click.Choice(INPUTS),
    default=None,
    help="The video: 'scenes' (default), a clip rendered with hard cuts between --scenes scenes; 'noise', "
    "independent random pixels, the single-segment worst case at a real shape.",
)
@click.option(
    "--video",
    type=click.Path(dir_okay=False),
    default=None,
    help="Measure on this video file instead, decoded at each --frames count by the project's decoder.",
)
@click.option(
    "--scenes",
    type=int,
    default=DEFAULT_SCENES,
    show_default=True,
    help="Scenes of --input scenes (1: no cut).",
)
@click.option(
    "--features",
    type=click.Choice(FEATURES),
    default=None,
    help="What the stages get: the tower's tokens 'centred' (their mean over the video removed: random "
    "weights map every token near one direction, which hides the scenes) or as the 'tower' gives them. "
    "Default: centred for scenes and --video, tower for noise.",
)
@click.option(
    "--arch", default="llava-onevision-7b", show_default=True, help="Named architecture (random weights)."
)
@click.option("--frames", "frame_counts", type=int, multiple=True, default=(32,), show_default=True)
@click.option("--keep", "keeps", type=float, multiple=True, default=(0.3,), show_default=True)
@click.option("--budget-unit", type=click.Choice(BUDGET_UNITS), default="layer-average", show_default=True)
@click.option(
    "--text-tokens", type=int, default=64, show_default=True, help="Prompt text tokens around the video."
)
@click.option("--decode-tokens", type=int, default=16, show_default=True)
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--warmup", type=int, default=2, show_default=True)
@click.option("--device", default=None, help="cuda (default when available) or cpu.")
@click.option(
    "--device-map",
    default=None,
    metavar="auto|FILE.json",
    help="Spread the model over the visible GPUs (accelerate's balanced placement) or as a JSON file of "
    "module -> device: for shapes larger than one GPU, e.g. --arch llava-onevision-72b (needs accelerate).",
)
@click.option(
    "--dtype",
    type=click.Choice(["bfloat16", "float16", "float32"]),
    default=None,
    help="Default: bfloat16 on CUDA, float32 on CPU.",
)
@click.option("--set", "sets", multiple=True, metavar="STRATEGY.OPTION=VALUE")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Write speed.json and speed.md here."
)
def speed(
    strategies: tuple[str, ...],
    arch: str,
    frame_counts: tuple[int, ...],
    keeps: tuple[float, ...],
    budget_unit: str,
    text_tokens: int,
    decode_tokens: int,
    repeats: int,
    warmup: int,
    device: str | None,
    device_map: str | None,
    dtype: str | None,
    sets: tuple[str, ...],
    out: str | None,
    render: str | None,
    input_name: str | None,
    video: str | None,
    scenes: int,
    features: str | None,
) -> None:
    """Time STRATEGIES at a real architecture's shape with random weights (no download).

    The unpruned model ('none') is always measured as the reference. The video is a rendered clip of
    scenes (default), noise or your own file (--video), through the model's random-weight tower.
    """
    if render:
        payload = json.loads(Path(render).read_text())
        write_outputs(
            Path(render).parent, rows_from_json(payload), payload["meta"], payload.get("failures", [])
        )
        return
    if not strategies:
        raise UserError("name at least one strategy, e.g. prune-bench speed hieravid fastv --keep 0.3")
    if video is not None and input_name is not None:
        raise UserError("pass --input or --video, not both (--video measures on your file)")
    if scenes < 1:
        raise UserError(f"--scenes must be at least 1, got {scenes}")
    source = video if video is not None else input_name or "scenes"
    features = features or default_features(source)
    reg = registry()
    for k in keeps:
        check_keep(k)
    for spec in strategies:
        for name in spec_names(spec):
            reg.strategy(name)
    options = parse_sets(sets)
    archs = {name: (cls, make) for cls in reg.adapters.values() for name, make in cls.architectures.items()}
    if arch not in archs:
        close = difflib.get_close_matches(arch, list(archs), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown architecture '{arch}'{hint} (known: {', '.join(sorted(archs))})")
    if device_map is not None and device is not None:
        raise UserError("pass --device or --device-map, not both (the map names every module's device)")
    placement = parse_device_map(device_map)
    device = pick_device(device)
    torch_dtype = getattr(torch, dtype) if dtype else None
    adapter_cls, make_config = archs[arch]
    console = Console()
    if placement is None:
        console.print(f"building {arch} with random weights on {device} ...")
        adapter = adapter_cls.from_config(make_config(), device=device, dtype=torch_dtype)  # type: ignore[attr-defined]
    else:
        console.print(f"building {arch} with random weights, placed by --device-map {device_map} ...")
        adapter = random_adapter_on_device_map(adapter_cls, make_config(), placement, torch_dtype)
    info_machine = machine(adapter)
    console.print(f"machine: {info_machine['device']} ({info_machine['dtype']}, {info_machine['attention']})")
    specs = ["none", *[s for s in strategies if s != "none"]]
    rows: list[SpeedRow] = []
    failures: list[dict[str, Any]] = []
    hf: dict[str, float] = {}

    def meta() -> dict[str, Any]:
        import sys

        return {
            "arch": arch,
            "machine": info_machine,
            "repeats": repeats,
            "warmup": warmup,
            "decode_tokens": decode_tokens,
            "text_tokens": text_tokens,
            "budget_unit": budget_unit,
            "input": "video" if video is not None else source,
            "input_description": describe_input(source, video, scenes, features),
            "features": features,
            "hf_lm_prefill_ms": hf,
            "command": " ".join(
                [
                    *(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("PRUNE_BENCH_")),
                    "prune-bench",
                ]
                + sys.argv[1:]
            ),
        }

    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("measuring", total=len(frame_counts) * (1 + (len(specs) - 1) * len(keeps)))
        for frames in frame_counts:
            clip = input_frames(source, frames, max(adapter.frame_size), scenes=scenes)
            sample = time_vision(adapter, clip, text_tokens, features=features, capture=True)
            del clip
            hf[str(frames)] = hf_lm_prefill_ms(adapter, sample, warmup=warmup, repeats=repeats)
            for spec in specs:
                for keep in [1.0] if spec == "none" else keeps:
                    session = Session(
                        adapter,
                        spec,
                        keep=keep,
                        unit=budget_unit,  # type: ignore[arg-type]
                        options=options,
                        num_frames=frames,
                        registry_=reg,
                    )
                    try:
                        rows.append(
                            measure_session(
                                session,
                                sample,
                                decode_tokens=decode_tokens,
                                warmup=warmup,
                                repeats=repeats,
                            )
                        )
                    except (RuntimeError, ValueError) as exc:  # CUDA out-of-memory is a RuntimeError
                        # One failing configuration must not lose the others' measurements.
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        console.print(f"[red]error:[/red] {spec} at keep={keep:g}, {frames} frames: {first}")
                        failures.append({"strategy": spec, "keep": keep, "frames": frames, "error": first})
                        if torch.cuda.is_available():
                            torch.cuda.empty_cache()
                    progress.advance(bar)
                    if out:
                        write_outputs(Path(out), finish(list(rows)), meta(), failures, plots=False)
            del sample
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    finish(rows)
    table = Table(title=f"{arch} on {info_machine['device']}, input {meta()['input_description']}")
    for col, _ in COLUMNS:
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
    for r in rows:
        d = r.as_dict()
        table.add_row(*(_fmt(d[k]) for _, k in COLUMNS))
    print_wide(console, table)
    for count, ms in hf.items():
        console.print(f"HF language-model forward, unpruned, {count} frames: {ms:.1f} ms")
    if out:
        write_outputs(Path(out), rows, meta(), failures)
        console.print(f"wrote {Path(out) / 'speed.md'}, speed.json and plots")
