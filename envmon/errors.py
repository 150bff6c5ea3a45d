"""Exception hierarchy of the envmon kernel.

EnvmonError
 ├── ConfigError        an invalid site configuration (lists every issue with its YAML path)
 └── InputError         a bad line in an input file (names file and line)
"""

from __future__ import annotations

from dataclasses import dataclass


class EnvmonError(Exception):
    """Base class of every error envmon raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a configuration file, located by YAML path and line."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path or '<root>'}: {self.message}"


class ConfigError(EnvmonError):
    """A site configuration that cannot be used; ``issues`` lists every problem."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} error(s) in site configuration\n{lines}")


class InputError(EnvmonError):
    """A line of an input file that cannot be used, with its location."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        super().__init__(f"{source}:{line}: {reason}")
