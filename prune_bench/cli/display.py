"""Terminal output shared by the commands."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

MAX_WIDTH = 250


def print_wide(console: Console, table: Table) -> None:
    """Print ``table`` as wide as its content needs (up to :data:`MAX_WIDTH` columns): a pipe, a log
    file or a narrow terminal would otherwise fold every cell into an ellipsis."""
    needed = Console(width=MAX_WIDTH).measure(table).maximum
    console.width = max(console.width, min(needed, MAX_WIDTH))
    console.print(table)
