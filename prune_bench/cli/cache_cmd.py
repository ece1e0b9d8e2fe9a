"""``prune-bench cache``: what the decoded-frame cache (``--frame-cache``) holds, and emptying it."""

from __future__ import annotations

from pathlib import Path

import click

from prune_bench.benchmarks.frame_cache import CACHE_ENV, FrameCache
from prune_bench.errors import UserError


def _cache(directory: Path | None) -> FrameCache:
    if directory is None:
        raise UserError(f"name the frame cache: prune-bench cache clear DIR (or set {CACHE_ENV})")
    if not directory.is_dir():
        raise UserError(
            f"frame cache '{directory}' does not exist; pass the directory given as --frame-cache"
        )
    return FrameCache(directory, max_bytes=0)


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


directory_argument = click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), envvar=CACHE_ENV, required=False
)


@click.group("cache")
def cache() -> None:
    """The decoded-frame cache that compare / sweep / ablate keep with --frame-cache DIR."""


@cache.command("info")
@directory_argument
def info(directory: Path | None) -> None:
    """How many entries DIRECTORY (default: $PRUNE_BENCH_FRAME_CACHE) holds, and their size."""
    usage = _cache(directory).usage()
    click.echo(f"{directory}: {usage.entries} decoded video(s), {_gb(usage.bytes)}")


@cache.command("clear")
@directory_argument
def clear(directory: Path | None) -> None:
    """Remove every decoded video from DIRECTORY (default: $PRUNE_BENCH_FRAME_CACHE); other files stay."""
    removed = _cache(directory).clear()
    click.echo(f"{directory}: removed {removed.entries} decoded video(s), {_gb(removed.bytes)}")
