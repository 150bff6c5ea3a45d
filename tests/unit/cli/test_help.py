"""Every command's ``--help`` reads as plain help: metavars, never typer's type labels."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from envmon.cli import app

TYPE_LABEL = re.compile(r"<[a-z][a-z_ |,\[\]]*>")
BRACED_NAME = re.compile(r"\{[A-Za-z_]+\}")


def _command_paths() -> Iterator[tuple[str, ...]]:
    """Yield the path of every group and command of the ``envmon`` CLI."""
    root = typer.main.get_command(app)
    stack: list[tuple[tuple[str, ...], object]] = [((), root)]
    while stack:
        path, command = stack.pop()
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            stack.append(((*path, name), sub))


PATHS = sorted(_command_paths())


def test_the_walk_finds_the_commands() -> None:
    assert ("check-config",) in PATHS
    assert ("excursions", "list") in PATHS
    assert ("users", "add") in PATHS
    assert len(PATHS) > 25


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "envmon")
def test_help_has_no_type_labels(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Usage:" in text
    assert not TYPE_LABEL.findall(text), TYPE_LABEL.findall(text)
    assert not BRACED_NAME.findall(text), BRACED_NAME.findall(text)


def test_arguments_and_options_show_sensible_metavars() -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    check = runner.invoke(app, ["check-config", "--help"], env=env).output
    assert "Usage: envmon check-config [OPTIONS] FILE" in check
    add = runner.invoke(app, ["users", "add", "--help"], env=env).output
    assert "Usage: envmon users add [OPTIONS] USERNAME" in add
    assert re.search(r"--db\s+URL", add)
    assert re.search(r"--settings\s+FILE", add)
    assert re.search(r"--name\s+NAME", add)
    assert re.search(r"--password-stdin\s+Read", add)  # a flag: no metavar at all
