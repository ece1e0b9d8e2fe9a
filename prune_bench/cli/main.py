"""The ``prune-bench`` command: a click group whose subcommands come from plugins."""

from __future__ import annotations

import signal
import sys
import threading
import warnings

import click

from prune_bench.core.plugins import registry
from prune_bench.core.strategy import BudgetWarning
from prune_bench.errors import RunIncomplete, UserError
from prune_bench.runner.store import StoreError


class PluginGroup(click.Group):
    """Subcommands are whatever the registered plugins contribute through ``register_commands``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(registry().commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return registry().commands.get(name)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prune-bench")
def cli() -> None:
    """Compare visual-token pruning strategies on video LLMs."""


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run ends the way Ctrl-C ends it (nothing lost)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point: a user mistake is one line on stderr and exit code 2, never a traceback."""
    warnings.simplefilter("always", BudgetWarning)
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        cli.main(args=argv, prog_name="prune-bench", standalone_mode=False)
    except click.exceptions.Abort as exc:
        terminated = isinstance(exc.__cause__, Terminated)
        click.echo("terminated" if terminated else "aborted", err=True)
        sys.exit(143 if terminated else 130)
    except click.UsageError as exc:  # one line, like every other mistake, with where to read more
        where = exc.ctx.command_path if exc.ctx is not None else "prune-bench"
        click.secho(f"error: {exc.format_message()} (see `{where} --help`)", fg="red", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (UserError, StoreError) as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except RunIncomplete as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
