"""What ``compare``, ``sweep`` and ``ablate`` share: their options, the checks that run before any
model loads, and one resumable evaluation of strategy specs x budgets into a results store."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from prune_bench.adapters.base import resolve_model_path
from prune_bench.adapters.loading import load_adapter, model_identity, pick_device
from prune_bench.benchmarks.frame_cache import FrameCache
from prune_bench.benchmarks.headline import rule_of
from prune_bench.benchmarks.probe import unreadable_items
from prune_bench.benchmarks.published.scoring import SCORINGS, scoring_for
from prune_bench.cli.display import print_wide
from prune_bench.core.compose import check_keep, parse_value, spec_names
from prune_bench.core.plugins import Registry, registry
from prune_bench.core.strategy import BUDGET_UNITS, BudgetUnit
from prune_bench.errors import RunIncomplete, UserError
from prune_bench.report.stats import format_p
from prune_bench.runner import distributed
from prune_bench.runner.distributed import Ranks
from prune_bench.runner.evaluate import evaluate, one_line
from prune_bench.runner.failures import FailureLog
from prune_bench.runner.prefetch import default_workers
from prune_bench.runner.store import ResultStore
from prune_bench.runner.summary import SummaryRow, budget_warnings, repeated_frame_warnings, summarize
from prune_bench.session import Session

F = TypeVar("F", bound=Callable[..., Any])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class KeepOption(click.Option):
    """``--keep 0.1 0.2 0.3``: one option taking as many numbers as follow it (and repeatable).

    click options take a fixed number of values; this one also swallows every following argument that
    reads as a number, so ``--keep 0.1 0.2`` and ``--keep 0.1 --keep 0.2`` mean the same.
    """

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for opt in self.opts:
            parsed = parser._long_opt.get(opt) or parser._short_opt.get(opt)
            if parsed is None:
                continue
            single = parsed.process

            def process(value: Any, state: Any, single: Callable[[Any, Any], None] = single) -> None:
                single(value, state)
                while state.rargs and _is_number(state.rargs[0]):
                    single(state.rargs.pop(0), state)

            parsed.process = process


def evaluation_options(default_keeps: Sequence[float]) -> Callable[[F], F]:
    """The options of every command that evaluates strategies (``--keep`` defaults to ``default_keeps``)."""
    keeps_text = " ".join(f"{k:g}" for k in default_keeps)
    options = [
        click.option(
            "--keep",
            "keeps",
            cls=KeepOption,
            type=float,
            multiple=True,
            default=tuple(default_keeps),
            show_default=keeps_text,
            help="Visual-token retention(s) to match, in (0, 1]: --keep 0.1 0.2 0.3 (or --keep repeated).",
        ),
        click.option(
            "--budget-unit",
            type=click.Choice(BUDGET_UNITS),
            default="layer-average",
            show_default=True,
            help="What --keep measures: tokens entering the LLM, tokens averaged over LLM layers, or prefill FLOPs.",
        ),
        click.option(
            "--model", default=None, help="Model directory or hub id (default: the shipped small model)."
        ),
        click.option(
            "--benchmark", default="synthetic", show_default=True, help="Registered benchmark name."
        ),
        click.option(
            "--data-dir", type=click.Path(file_okay=False), default=None, help="Local copy of the benchmark."
        ),
        click.option("--frames", type=int, default=None, help="Frames per video (default: the model's own)."),
        click.option(
            "--fps",
            "sample_fps",
            type=float,
            default=None,
            help="Sample frames at this rate (at most --frames) instead of --frames uniformly.",
        ),
        click.option("--limit", type=int, default=None, help="Evaluate only the first N items."),
        click.option("--device", default=None, help="cpu or cuda (default: cuda if available)."),
        click.option(
            "--device-map",
            default=None,
            metavar="auto|FILE.json",
            help="Place the model's layers across the visible GPUs (accelerate's big-model placement), or as a "
            "JSON file of module -> device; for models larger than one GPU (needs accelerate).",
        ),
        click.option(
            "--mode",
            type=click.Choice(["drop", "mask"]),
            default="drop",
            show_default=True,
            help="drop removes tokens (real speed-up); mask hides them (the test oracle).",
        ),
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="STRATEGY.OPTION=VALUE",
            help="Override a strategy option.",
        ),
        click.option(
            "--out", type=click.Path(file_okay=False), default=None, help="Results directory (resumable)."
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--retry-failed",
            is_flag=True,
            help="Run again the items an earlier run recorded as failed (failures.jsonl); skipped otherwise.",
        ),
        click.option("--no-progress", is_flag=True, help="Hide progress bars."),
        click.option(
            "--scoring",
            type=click.Choice(SCORINGS),
            default=None,
            help="generate: greedy answers parsed as the benchmark's lmms-eval task parses them (the default "
            "on published benchmarks for models answering in letters); logits: the options' answer-token "
            "logits (the synthetic benchmark's, and option-word models' like the shipped one, default).",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=0),
            default=None,
            help="Processes decoding the next videos while the model runs (0: decode each in this "
            "process when its turn comes). Default: min(4, CPUs - 1) with the model on a GPU, 0 on the CPU.",
        ),
        click.option(
            "--frame-cache",
            type=click.Path(file_okay=False),
            envvar="PRUNE_BENCH_FRAME_CACHE",
            default=None,
            help="Keep decoded frames in this directory and reuse them in later runs (env "
            "PRUNE_BENCH_FRAME_CACHE; empty it with `prune-bench cache clear DIR`).",
        ),
        click.option(
            "--frame-cache-gb",
            type=float,
            envvar="PRUNE_BENCH_FRAME_CACHE_GB",
            default=20.0,
            show_default=True,
            help="Size bound of --frame-cache in GB; the least recently used frames are removed beyond it.",
        ),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


@dataclass(frozen=True)
class EvaluationSettings:
    """The values of :func:`evaluation_options`, as the command received them."""

    keeps: tuple[float, ...]
    budget_unit: BudgetUnit
    model: str | None
    benchmark: str
    data_dir: str | None
    frames: int | None
    limit: int | None
    device: str | None
    mode: str
    sets: tuple[str, ...]
    out: str | None
    seed: int
    no_progress: bool
    sample_fps: float | None = None
    retry_failed: bool = False
    workers: int | None = None
    frame_cache: str | None = None
    frame_cache_gb: float = 20.0
    scoring: str | None = None
    device_map: str | None = None


def parse_sets(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``--set fastv.layer=3`` -> ``{"fastv": {"layer": 3}}`` (values parsed as JSON when they can be)."""
    out: dict[str, dict[str, Any]] = {}
    for v in values:
        m = re.fullmatch(r"([\w-]+)\.(\w+)=(.*)", v)
        if not m:
            raise UserError(f"--set expects STRATEGY.OPTION=VALUE, got '{v}' (e.g. --set fastv.k=3)")
        name, key, raw = m.groups()
        out.setdefault(name, {})[key] = parse_value(raw)
    return out


def check_inputs(
    specs: Sequence[str], settings: EvaluationSettings, reg: Registry
) -> dict[str, dict[str, Any]]:
    """Every mistake the user can make on the command line, found before any model loads; returns the
    ``--set`` options by strategy."""
    if not settings.keeps:
        raise UserError("--keep needs at least one value, e.g. --keep 0.1 0.2 0.3")
    for keep in settings.keeps:
        check_keep(keep)
    if settings.sample_fps is not None and not settings.sample_fps > 0:
        raise UserError(f"--fps must be a positive frame rate, got {settings.sample_fps:g} (e.g. --fps 1)")
    if settings.limit is not None and settings.limit < 1:
        raise UserError(f"--limit must be at least 1, got {settings.limit}")
    if settings.frames is not None and settings.frames < 1:
        raise UserError(f"--frames must be at least 1, got {settings.frames} (e.g. --frames 32)")
    if settings.data_dir is not None and settings.benchmark == "synthetic":
        raise UserError(
            "--data-dir is for published benchmarks (--benchmark videomme ...); the synthetic benchmark is "
            "generated, not read: drop --data-dir"
        )
    options = parse_sets(settings.sets)
    for spec in specs:
        for name in spec_names(spec):
            reg.strategy(name)  # unknown names fail before any model loads
    mounted = {n for spec in specs for n in spec_names(spec)}
    for name, opts in options.items():
        if name not in mounted:
            raise UserError(
                f"--set {name}.… names a strategy that is not being compared ({', '.join(sorted(mounted))})"
            )
        reg.strategy(name).make_config(**opts)  # an unknown or invalid option fails before any model loads
    if settings.model is not None:
        resolve_model_path(settings.model)  # a missing path fails before anything is built
    ResultStore.check_writable(settings.out or "results")  # a file, read-only or in use: before loading
    return options


def print_table(rows: list[SummaryRow], title: str, console: Console) -> None:
    """The comparison, compact enough for a terminal; ``prune-bench table`` has every column."""
    tasks = sorted({t for r in rows for t in r.accuracy})
    full = next((r for r in rows if r.strategy == "none"), None)
    table = Table(title=title, pad_edge=False)
    headers = (
        "strategy",
        "keep",
        "n",
        *tasks,  # full names: MVBench's start alike (action_antonym, action_count, ...)
        "avg",
        "95% CI",
        "p vs none",
        "%full",
        "ret",
        "FLOPs",
        "FLOPs*",
        "prune ms",
    )
    table.add_column(headers[0], overflow="fold")  # beyond 250 columns a long variant name folds
    for col in headers[1:]:
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        rel = f"{100 * r.average / full.average:.1f}" if full and full.average else "-"
        ci = f"{r.average_ci[0]:.1f}-{r.average_ci[1]:.1f}" if r.average_ci else "-"
        p = "" if r.strategy == "none" else format_p(r.vs_none.p if r.vs_none else None)
        table.add_row(
            escape(r.strategy),  # 'hieravid[segment_level=false]' is not rich markup
            f"{r.keep:g}",
            str(r.items),
            *(f"{r.accuracy.get(t, float('nan')):.0f}" for t in tasks),
            f"{r.average:.1f}",
            ci,
            p,
            rel,
            f"{r.retention['layer_average']:.3f}",
            f"{r.flops_ratio['exact']:.3f}",
            f"{r.flops_ratio['paper']:.3f}",
            f"{r.pruning_ms:.1f}",
        )
    print_wide(console, table)
    fewest = min((r.items for r in rows), default=0)
    if 0 < fewest < 100:
        console.print(
            f"note: a row holds as few as {fewest} items, so its interval is wide; differences inside "
            "the intervals are noise (run more items, e.g. without --limit)",
            markup=False,
            style="yellow",
        )
    console.print(
        f"n = items behind the row; accuracy in % per task; avg = the benchmark's headline number "
        f"({_rule_text(rows)}), with its 95% bootstrap interval "
        f"({_resampling(rows)}) and the exact McNemar p against 'none' on the same items; %full = avg "
        "relative to 'none'; ret = visual tokens "
        "kept, averaged over LLM layers; FLOPs = LLM prefill FLOPs relative to 'none', exact (GQA-aware, "
        "causal), FLOPs* = the papers' convention 4nd^2 + 2n^2d + 2ndm; prune ms = median selection time. "
        "`prune-bench table DIR` prints every column (input and decode retention too) as markdown, LaTeX "
        "or CSV; `prune-bench plot DIR` draws the figures."
    )


def _rule_text(rows: Sequence[SummaryRow]) -> str:
    return rows[0].headline_rule if rows else "mean of task accuracies"


def _resampling(rows: Sequence[SummaryRow]) -> str:
    if rows and rows[0].rule.over == "items":
        return "items resampled"
    return "items resampled within tasks"


#: What one results directory holds one of: mixing them would blend rows in every table.
IDENTITY_KEYS = ("model_digest", "benchmark", "frames", "data_dir", "fps")


def refuse_mixing(out_dir: Path, context: dict[str, Any]) -> None:
    """One results directory holds one model, one benchmark (and its data), one frame count: a run
    that would add another is one error line naming a directory to use instead."""
    runs = ResultStore(out_dir, read_only=True).manifests()  # damage is the writer's to report
    for run in runs:
        if "model_digest" not in run:
            continue  # written before model identities were recorded
        differs = [k for k in IDENTITY_KEYS if run.get(k) != context.get(k)]
        if differs:
            what = ", ".join(f"{k} {run.get(k)!r} there, {context.get(k)!r} here" for k in differs)
            raise UserError(
                f"{out_dir} holds results of another run ({what}); one directory holds one model, "
                f"benchmark and frame count: pass --out {out_dir}-{context['model_digest'][:8]}-"
                f"{context['frames']}f (or another new directory)"
            )


def benchmark_items(factory: Any, options: dict[str, Any], limit: int | None) -> tuple[Any, list[Any]]:
    """The benchmark and its items, read before any model loads; an annotation that lacks a field is
    one line naming the field."""
    try:
        bench = factory(**options)
        return bench, list(bench.items(limit))
    except KeyError as exc:
        name = getattr(factory, "name", None) or getattr(factory, "__name__", "the benchmark")
        raise UserError(
            f"{name}: an annotation lacks the field {exc}; check the annotation files of --data-dir "
            "against the layout in the README (Published benchmarks)"
        ) from None


def check_frames_fit(adapter: Any, num_frames: int) -> None:
    """The video of ``num_frames`` frames must fit the model's context (positions it was trained for)."""
    text = adapter.config.text_config
    limit = getattr(text, "max_position_embeddings", None)
    tokens = adapter.video_token_count(num_frames)
    if limit and tokens >= limit:
        most = next((f for f in range(num_frames, 0, -1) if adapter.video_token_count(f) < limit), 1)
        raise UserError(
            f"--frames {num_frames} makes {tokens} video tokens, more than this model's context of {limit} "
            f"positions; use --frames {most} or fewer"
        )


def run_evaluation(specs: Sequence[str], settings: EvaluationSettings, reg: Registry | None = None) -> Path:
    """Evaluate ``specs`` (plus the unpruned ``none``) at every keep into the results store, resuming
    what it already holds; prints the summary table and returns the results directory.

    Call :func:`check_inputs` first when the specs came from the user (this calls it again, cheaply).
    """
    reg = reg or registry()
    options = check_inputs(specs, settings, reg)
    bench_options: dict[str, Any] = {"data_dir": settings.data_dir} if settings.data_dir else {}
    bench, items = benchmark_items(reg.benchmark(settings.benchmark), bench_options, settings.limit)
    scoring_for(bench, settings.scoring)  # type: ignore[arg-type]  # one the benchmark cannot take: now
    frame_cache = FrameCache.open(settings.frame_cache, settings.frame_cache_gb) if settings.frame_cache else None
    ranks = Ranks.from_env()
    distributed.init(ranks)  # torchrun: join the job before anything heavy
    device = ranks.device(pick_device(settings.device))
    workers = default_workers(device) if settings.workers is None else settings.workers
    console = Console(width=max(Console().width, 120), quiet=not ranks.is_main)
    unreadable = unreadable_items(ranks.items(items), show_progress=not settings.no_progress)
    if unreadable:  # found before the model loads; recorded as those items' failures, the rest run
        console.print(
            f"warning: {len(unreadable)} item(s) have a video that cannot be read (first: "
            f"{unreadable[0]['error']}); they are recorded as failed and skipped",
            markup=False,
            style="yellow",
        )
    adapter, model_label = load_adapter(settings.model, device, settings.device_map)
    num_frames = settings.frames if settings.frames is not None else adapter.prompt_format.num_frames
    check_frames_fit(adapter, num_frames)
    score = scoring_for(bench, settings.scoring, adapter.prompt_format)  # type: ignore[arg-type]
    ordered = ["none", *dict.fromkeys(s for s in specs if s != "none")]
    unit = settings.budget_unit
    sessions = [
        Session(
            adapter, s, keep=k, unit=unit, mode=settings.mode, seed=settings.seed,  # type: ignore[arg-type]
            options=options, num_frames=num_frames, registry_=reg,
        )
        for s in ordered
        for k in ([1.0] if s == "none" else settings.keeps)
    ]
    identity = model_identity(settings.model)
    model_tag = "default" if settings.model is None else f"{Path(settings.model).name}-{identity['digest'][:8]}"
    out_dir = Path(settings.out or Path("results") / f"{bench.name}-{model_tag}-{num_frames}f")
    # A configuration's identity: the model itself, the benchmark's data, the frames. Not the item count
    # (a larger --limit reuses every finished record), not the device, not the seed (a session adds it
    # where a stage draws random numbers).
    context: dict[str, Any] = {
        "model": model_label,
        "model_digest": identity["digest"],
        "benchmark": bench.name,
        "frames": num_frames,
    }
    if settings.data_dir is not None:
        context["data_dir"] = str(Path(settings.data_dir).resolve())
    if settings.sample_fps is not None:  # only then, so earlier runs keep their config hashes
        context["fps"] = settings.sample_fps
    if score is not None:  # generated and parsed: never the same row as option-logit scoring
        context["scoring"] = "generate"
    refuse_mixing(out_dir, context)
    store = ResultStore(out_dir, shard=ranks.shard)
    failures_file = FailureLog(out_dir)
    skip = frozenset() if settings.retry_failed else failures_file.earlier_ids()
    skip |= {f["item_id"] for f in unreadable}
    where = f"{device}" if not ranks.distributed else f"{ranks.world} ranks ({device} on rank 0)"
    console.print(
        f"model: {model_label} on {where}; benchmark: {bench.name} ({len(items)} items, {num_frames} frames)"
    )
    hashes = {s.hash(context) for s in sessions}
    done, job = None, None
    if ranks.distributed:
        done = distributed.done_everywhere(out_dir)
        if ranks.is_main:
            before = sum(done(h, i.item_id) for i in items for h in hashes)
            poll = distributed.ProgressPoll(out_dir)
            at_start = distributed.count_everywhere(out_dir)
            job = (len(items) * len(hashes), lambda: before + poll() - at_start)
    status: dict[str, Any] = {"rank": ranks.rank, "error": None, "failures": list(unreadable)}
    try:
        run = evaluate(
            sessions,
            ranks.items(items),
            store,
            context,
            show_progress=not settings.no_progress and ranks.is_main,
            sample_fps=settings.sample_fps,
            run_info={
                "device": device, "items": len(items), "seed": settings.seed, "model_identity": identity,
                "ranks": ranks.world,
            },  # fmt: skip
            done=done,
            write_manifest=ranks.is_main,
            job_progress=job,
            skip=skip,
            workers=workers,
            frame_cache=frame_cache,
            score=score,
        )
        status["failures"] += run.failures
        throughput = run.throughput
    except Exception as exc:  # a data-parallel rank reports its error instead of leaving others waiting
        if not ranks.distributed:
            raise
        status["error"] = one_line(exc)
    finally:
        store.close()
    statuses = distributed.finish(ranks, status)
    added = distributed.merge_shards(out_dir) if ranks.distributed and ranks.is_main else 0
    distributed.shutdown(ranks)  # every rank together, once rank 0 has merged
    if not ranks.is_main:  # rank 0 writes the failures and prints the summary
        if status["error"]:
            raise RunIncomplete(f"rank {ranks.rank} stopped: {status['error']}")
        return out_dir
    failures = failures_file.write([f for s in statuses for f in s["failures"]], retried=settings.retry_failed)
    if ranks.distributed:
        console.print(f"merged {added} records from {ranks.world} ranks into {out_dir / 'results.jsonl'}")
        broken = [s for s in statuses if s["error"]]
        if broken:
            raise RunIncomplete(
                "; ".join(f"rank {s['rank']} stopped: {s['error']}" for s in broken)
                + " (finished records are kept; re-run the same command to finish)"
            )
    store = ResultStore(out_dir, read_only=True)
    title = f"{bench.name}: keep={', '.join(f'{k:g}' for k in settings.keeps)} ({unit})"
    rows = summarize(store.records(), hashes, rule=rule_of(bench))
    print_table(rows, title, console)
    for line in budget_warnings(rows) + repeated_frame_warnings(store.records(), hashes, num_frames):
        console.print(line, markup=False, style="yellow")
    score_lines = getattr(bench, "score_lines", None)  # published benchmarks: lmms-eval's own number
    if score_lines is not None:
        for line in score_lines(store.records(), hashes):
            console.print(line, markup=False)
    console.print(throughput.line(), markup=False, soft_wrap=True)
    console.print(f"results: {out_dir / 'results.jsonl'}")
    if failures:
        first = failures[0]
        raise RunIncomplete(
            f"{len(failures)} item(s) could not be evaluated (first: {first['item_id']}: {first['error']}); "
            f"each is listed in {failures_file.path}; fix them and re-run with --retry-failed"
        )
    return out_dir
