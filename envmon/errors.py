"""Exception hierarchy of the envmon kernel.

EnvmonError
 ├── ConfigError        an invalid site configuration (lists every issue with its YAML path)
 └── InputError         a bad line in an input file (names file and line)
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass


class EnvmonError(Exception):
    """Base class of every error envmon raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a configuration file, located by YAML path, line and column.

    ``file`` names the file the line is in when that is not the error's source (a file
    the site includes). ``also`` lists further paths with the very same problem: a value
    written once under an anchor and used again through aliases.
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    file: str | None = None
    also: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path or '<root>'}: {self.message}"

    def render(self, source: str) -> str:
        """Return the issue as ``file:line:column: path: message`` (parts known only)."""
        where = self.file or source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.also:
            text += f" (also at {', '.join(self.also)}: the same value, through an alias)"
        return text


def merge_repeats(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Report a problem once: issues with one message at one place become one issue.

    A value under a YAML anchor used through aliases fails once per use, each time at
    the anchor's line and column under the same key; the first use keeps the issue, the
    others go to ``also``. Issues without a line are never merged, nor ones naming
    different keys (two keys missing from one mapping are two problems).
    """
    merged: list[ConfigIssue] = []
    first: dict[tuple[str | None, int, int | None, str, str], int] = {}
    for issue in issues:
        if issue.line is None:
            merged.append(issue)
            continue
        key = (issue.file, issue.line, issue.column, issue.message, _last_key(issue.path))
        index = first.get(key)
        if index is None:
            first[key] = len(merged)
            merged.append(issue)
        elif issue.path != merged[index].path and issue.path not in merged[index].also:
            kept = merged[index]
            merged[index] = dataclasses.replace(kept, also=(*kept.also, issue.path, *issue.also))
    return merged


def _last_key(path: str) -> str:
    """Return the last mapping key of a rendered path (``a[1].limits.delay`` → ``delay``)."""
    return re.sub(r"(\[\d+\])+$", "", path).rsplit(".", 1)[-1]


class ConfigError(EnvmonError):
    """A site configuration that cannot be used; ``issues`` lists every problem once."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = merge_repeats(issues)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """Return the report: a headline, then one ``file:line:column: path: message`` each."""
        count = len(self.issues)
        head = f"{self.source}: {count} error{'s' if count != 1 else ''} in the configuration"
        return [head, *(issue.render(self.source) for issue in self.issues)]


class InputError(EnvmonError):
    """A line of an input file that cannot be used, with its location."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        super().__init__(f"{source}:{line}: {reason}")
