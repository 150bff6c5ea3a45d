"""Terminal rendering shared by the commands: tables that fit the width, never squeezed.

A table is printed as a table when it fits the console's width with every cell whole
(text may wrap between words). One that does not is printed stacked: one block per row,
a ``label: value`` line per column. A value is never folded mid-token, so a "2,816"
never reads as "2,81" and "6".
"""

from __future__ import annotations

import os

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from envmon.errors import ConfigError

#: Width when the output is not a terminal and ``COLUMNS`` is not set.
DEFAULT_WIDTH = 80


def output_console(*, stderr: bool = False) -> Console:
    """Return a console for command output: the terminal's width, else ``COLUMNS`` or 80.

    Output that is not a terminal (a pipe, a file) gets ``COLUMNS`` when set, else
    ``DEFAULT_WIDTH``, never the width of whatever terminal the other streams are on.
    """
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal:
        return console
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() and int(columns) > 0 else DEFAULT_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)


def print_tables(*tables: Table, stderr: bool = False, console: Console | None = None) -> None:
    """Print each table within the console's width: as a table if it fits, else stacked.

    ``console`` defaults to ``output_console(stderr=stderr)``.
    """
    console = console if console is not None else output_console(stderr=stderr)
    for table in tables:
        console.print(table if fits(table, console) else stacked(table))


def fits(table: Table, console: Console) -> bool:
    """Return True when ``table`` fits ``console``'s width with no cell cut mid-word."""
    unbounded = console.options.update_width(1_000_000)
    needed = Measurement.get(console, unbounded, table)
    return needed.minimum <= console.width


def stacked(table: Table) -> RenderableType:
    """Return ``table`` as blocks, one per row: its title, then ``label: value`` lines.

    Labels are the column headers on one line; empty cells are left out. Values keep
    their own text and wrap between words, never inside one.
    """
    columns = table.columns
    labels = [_one_line(column.header) for column in columns]
    cells = [list(column.cells) for column in columns]
    blocks = Table.grid(padding=(0, 1))
    blocks.add_column(no_wrap=True, style="bold")
    blocks.add_column(overflow="fold")
    for row in range(table.row_count):
        if row:
            blocks.add_row("", "")
        for label, column_cells in zip(labels, cells, strict=True):
            value = column_cells[row] if row < len(column_cells) else ""
            if _is_empty(value):
                continue
            blocks.add_row(f"{label}:", value)
    if table.title is None:
        return blocks
    return Group(Text(str(table.title), style="italic", justify="left"), blocks)


def _one_line(header: RenderableType) -> str:
    """Return a column header on one line; a header hyphenated over two lines joins up."""
    text = header.plain if isinstance(header, Text) else str(header)
    return " ".join(text.replace("-\n", "").split())


def _is_empty(value: RenderableType) -> bool:
    if isinstance(value, Text):
        return not value.plain.strip()
    return isinstance(value, str) and not value.strip()


def print_config_error(error: ConfigError, *, console: Console | None = None) -> None:
    """Print a configuration error to stderr: the headline, then one issue per line.

    Every command that loads a site or settings file reports through this one function,
    each issue as ``file:line:column: path: message``; lines are never wrapped, so an
    editor or ``grep`` can follow them.
    """
    console = console if console is not None else Console(stderr=True, highlight=False)
    for line in error.lines():
        console.print(line, markup=False, soft_wrap=True)
