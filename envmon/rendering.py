"""Terminal rendering shared by the commands: tables that are never squeezed."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_tables(*tables: Table, stderr: bool = False) -> None:
    """Print tables at their natural width.

    Never squeeze: a folded "2,816" reads as "2,81" and "6". Wider than the terminal, the
    lines wrap (or ``| less -S`` scrolls) but every value stays whole; output that is not
    a terminal gets the width it needs.
    """
    console = Console(stderr=stderr, highlight=False)
    unbounded = console.options.update_width(10_000)
    needed = max(console.measure(table, options=unbounded).maximum for table in tables)
    if not console.is_terminal or needed > console.width:
        console = Console(stderr=stderr, highlight=False, width=needed)
    for table in tables:
        console.print(table)
