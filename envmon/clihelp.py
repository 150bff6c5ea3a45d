"""Command-line help without typer's type labels.

typer (0.29) shows every parameter's Python type in its help (``<bool>``, ``<str>``,
``<path>``) and wraps required arguments in braces in the usage line (``{file}``), with
no setting to turn that off. ``EnvmonTyper`` builds its commands and groups from the
classes here, which show a metavar instead: the one a parameter declares (``FILE``,
``URL``, ``NAME``), else its name in capitals; flags show none. Parsing is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandFunctionType


class PlainArgument(TyperArgument):
    """An argument shown by its metavar alone: ``FILE`` (``[FILE]`` when optional)."""

    def display_type_rich(self, ctx: Any) -> str | None:  # noqa: ANN401 - typer's Context
        """Show no type: the metavar names what to give."""
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:  # noqa: ANN401 - typer's Context
        """Return the usage piece: ``FILE``, ``[FILE]``, ``FILE...``."""
        name = self.display_name_raw
        piece = name if self.required else f"[{name}]"
        return [f"{piece}..." if self.nargs != 1 else piece]


def plain(param: object) -> None:
    """Give a parameter a metavar instead of a type label (in place; idempotent)."""
    if isinstance(param, TyperArgument):
        if param.metavar is None:
            param.metavar = (param.name or "value").upper()
        # typer builds its parameters itself, with no hook for the class: re-class this one.
        param.__class__ = PlainArgument
    elif isinstance(param, TyperOption) and param.metavar is None:
        param.metavar = "" if param.is_flag or param.count else (param.name or "value").upper()


class _Plain:
    """What ``PlainCommand`` and ``PlainGroup`` share: their parameters shown plainly."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - typer's own
        super().__init__(*args, **kwargs)
        for param in self.params:
            plain(param)

    def get_help_option(self, ctx: Any) -> TyperOption | None:  # noqa: ANN401
        """Return ``--help`` shown as the flag it is."""
        option: TyperOption | None = super().get_help_option(ctx)  # type: ignore[misc]
        plain(option)
        return option


class PlainCommand(_Plain, TyperCommand):
    """A command whose help shows metavars, never type labels."""


class PlainGroup(_Plain, TyperGroup):
    """A command group whose help shows metavars, never type labels."""


class EnvmonTyper(typer.Typer):
    """A ``typer.Typer`` whose commands and groups use the plain help classes above."""

    def __init__(self, **kwargs: Any) -> None:  # noqa: ANN401 - typer.Typer's options
        kwargs.setdefault("cls", PlainGroup)
        super().__init__(**kwargs)

    def command(
        self,
        name: str | None = None,
        **kwargs: Any,  # noqa: ANN401 - typer.Typer.command's options
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        """Register a command (as ``typer.Typer.command``) built as a ``PlainCommand``."""
        kwargs.setdefault("cls", PlainCommand)
        return super().command(name, **kwargs)
