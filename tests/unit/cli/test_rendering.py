"""Tables fit the console: a table when it fits, else one block per row; values stay whole."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from envmon.rendering import DEFAULT_WIDTH, output_console, print_tables

VALUES = ["2,816", "352,000", "1,059,223", "−57.4", "pc-grade-b.particles_0_5um"]


def _wide_table() -> Table:
    """A table whose natural width is about 200 columns, with numbers that must not fold."""
    table = Table(title="Resolved limits")
    headers = ("Sensor id", "Area", "Alert\nhigh", "Action\nhigh", "Dead-\nband", "Instrument")
    for header in (*headers, "Note"):
        table.add_column(header, no_wrap=header != "Note", justify="right")
    table.add_row(VALUES[4], "grade-b-room", "2,816", "352,000", "100", "pc-grade-b", "x " * 40)
    table.add_row("incubator-1.co2", "grade-c-prep", "−57.4", "1,059,223", "—", "incubator-1", "")
    return table


def _render(width: int, *tables: Table) -> list[str]:
    out = io.StringIO()
    console = Console(width=width, file=out, highlight=False, color_system=None)
    print_tables(*tables, console=console)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 200])
def test_every_line_fits_and_every_value_is_whole(width: int) -> None:
    lines = _render(width, _wide_table())
    assert lines
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    for value in VALUES:
        assert value in text, value


def test_a_table_too_wide_is_stacked() -> None:
    lines = _render(80, _wide_table())
    assert lines[0].startswith("Resolved limits")
    stripped = [line.rstrip() for line in lines]
    assert "Sensor id:   pc-grade-b.particles_0_5um" in stripped
    assert "Alert high:  2,816" in stripped
    assert "Deadband:    100" in stripped  # a hyphenated header joins up
    assert not any(line.startswith("Note:") for line in stripped[10:])  # empty cell left out
    assert not any("┃" in line for line in lines)


def test_a_table_that_fits_stays_a_table() -> None:
    table = Table()
    table.add_column("area")
    table.add_column("alert", justify="right")
    table.add_row("grade-c-prep", "1,234")
    lines = _render(80, table)
    assert any("┃ area" in line for line in lines)
    assert any("1,234" in line for line in lines)


def test_piped_output_is_80_columns_unless_columns_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert output_console().width == DEFAULT_WIDTH
    monkeypatch.setenv("COLUMNS", "132")
    assert output_console().width == 132
