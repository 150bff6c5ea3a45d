"""MQTT topic patterns with named wildcards, and sensor id templates filled from their matches.

A pattern is an MQTT topic filter whose wildcards may carry a name::

    cgt/+area/+instrument/particles     # '+name' matches one level
    plant/#rest                          # '#name' matches all remaining levels (last only)

``TopicPattern.filter`` is the plain MQTT filter to subscribe to (``cgt/+/+/particles``);
``TopicPattern.match`` returns the named segments of a topic, which an ``IdTemplate`` such
as ``"{instrument}.{channel}"`` turns into a sensor id. Both are pure and validate on
construction; errors are ``ValueError`` worded for a configuration issue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

NAME_PATTERN: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The template name filled with the payload channel, never with a topic segment.
CHANNEL: Final = "channel"
_MAX_TOPIC_BYTES: Final = 65_535
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")


class LevelKind(Enum):
    """What one level of a pattern matches."""

    LITERAL = "literal"
    SINGLE = "single"  # '+': exactly one level
    MULTI = "multi"  # '#': the rest of the topic, zero or more levels


@dataclass(frozen=True, slots=True)
class Level:
    """One level of a topic pattern: a literal, or a (possibly named) wildcard."""

    kind: LevelKind
    text: str = ""  # the literal, or the wildcard's name ("" when unnamed)


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A topic filter with named wildcards; ``parse`` builds one from its text."""

    text: str
    levels: tuple[Level, ...]
    filter: str
    names: tuple[str, ...]
    multi_names: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        """Parse ``text``; raise ``ValueError`` when it is not a valid pattern."""
        if not text:
            raise ValueError("must not be empty")
        if "\x00" in text or len(text.encode("utf-8")) > _MAX_TOPIC_BYTES:
            raise ValueError("must be at most 65,535 bytes and contain no NUL character")
        parts = text.split("/")
        levels: list[Level] = []
        names: list[str] = []
        multi: set[str] = set()
        for index, part in enumerate(parts):
            head, name = part[:1], part[1:]
            if head in ("+", "#"):
                if name and not NAME_PATTERN.match(name):
                    raise ValueError(
                        f"wildcard name {name!r} in level {index + 1} must be letters, digits "
                        "and '_' (starting with a letter or '_')"
                    )
                if name == CHANNEL:
                    raise ValueError(
                        f"'{CHANNEL}' is reserved for the payload channel in sensor_id; "
                        "name the wildcard differently"
                    )
                if name in names:
                    raise ValueError(f"wildcard name {name!r} is used twice")
                if head == "#" and index != len(parts) - 1:
                    raise ValueError("a '#' wildcard must be the last level")
                if name:
                    names.append(name)
                    if head == "#":
                        multi.add(name)
                kind = LevelKind.SINGLE if head == "+" else LevelKind.MULTI
                levels.append(Level(kind, name))
            elif "+" in part or "#" in part:
                raise ValueError(
                    f"level {index + 1} ({part!r}): a wildcard must fill a whole level, "
                    "e.g. 'site/+room/temperature'"
                )
            else:
                levels.append(Level(LevelKind.LITERAL, part))
        mqtt_filter = "/".join(
            level.text
            if level.kind is LevelKind.LITERAL
            else ("+" if level.kind is LevelKind.SINGLE else "#")
            for level in levels
        )
        return cls(text, tuple(levels), mqtt_filter, tuple(names), frozenset(multi))

    @property
    def is_literal(self) -> bool:
        """True when the pattern has no wildcard (it names one topic)."""
        return all(level.kind is LevelKind.LITERAL for level in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """Return the named segments of ``topic``, or None when it does not match.

        As in MQTT, a wildcard in the first level does not match a topic starting with
        ``$``, and ``a/#`` also matches ``a``.
        """
        parts = topic.split("/")
        levels = self.levels
        if topic.startswith("$") and levels[0].kind is not LevelKind.LITERAL:
            return None
        values: dict[str, str] = {}
        for index, level in enumerate(levels):
            if level.kind is LevelKind.MULTI:
                if level.text:
                    values[level.text] = "/".join(parts[index:])
                return values
            if index >= len(parts):
                return None
            if level.kind is LevelKind.LITERAL:
                if parts[index] != level.text:
                    return None
            elif level.text:
                values[level.text] = parts[index]
        return values if len(parts) == len(levels) else None

    def overlaps(self, other: TopicPattern) -> bool:
        """Return True when some topic matches both patterns."""
        a, b = self.levels, other.levels
        for index in range(max(len(a), len(b)) + 1):
            la = a[index] if index < len(a) else None
            lb = b[index] if index < len(b) else None
            if la is None and lb is None:
                return True
            if (la is not None and la.kind is LevelKind.MULTI) or (
                lb is not None and lb.kind is LevelKind.MULTI
            ):
                return True
            if la is None or lb is None:
                return False
            if la.kind is LevelKind.LITERAL and lb.kind is LevelKind.LITERAL and la.text != lb.text:
                return False
        return True  # pragma: no cover - the loop always returns

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class IdTemplate:
    """A sensor id template such as ``"{instrument}.{channel}"``; ``parse`` builds one."""

    text: str
    parts: tuple[str, ...]  # literal, name, literal, name, …, literal (odd length)
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> IdTemplate:
        """Parse ``text``; raise ``ValueError`` when a placeholder is not ``{name}``."""
        if not text:
            raise ValueError("must not be empty")
        parts: list[str] = []
        position = 0
        for placeholder in _PLACEHOLDER.finditer(text):
            name = placeholder.group(1)
            if not NAME_PATTERN.match(name):
                raise ValueError(
                    f"placeholder {{{name}}} must name a wildcard of the topic pattern "
                    f"or '{CHANNEL}'"
                )
            parts.extend((text[position : placeholder.start()], name))
            position = placeholder.end()
        parts.append(text[position:])
        literals = parts[::2]
        if any("{" in literal or "}" in literal for literal in literals):
            raise ValueError("braces must enclose a name, as in '{instrument}.{channel}'")
        return cls(text, tuple(parts), frozenset(parts[1::2]))

    @property
    def is_fixed(self) -> bool:
        """True when the template takes no topic segment (at most ``{channel}``)."""
        return self.names <= {CHANNEL}

    def render(self, values: Mapping[str, str]) -> str:
        """Fill the placeholders from ``values`` (every name must be present)."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        out = [parts[0]]
        for index in range(1, len(parts), 2):
            out.append(values[parts[index]])
            out.append(parts[index + 1])
        return "".join(out)

    def regex(self, channels: Iterable[str], multi_names: Iterable[str] = ()) -> re.Pattern[str]:
        """Return a regex matching every id the template can produce for these channels.

        A single-level segment is any text without ``/``; a multi-level one any text.
        """
        multi = set(multi_names)
        options = "|".join(re.escape(channel) for channel in channels) or "(?!)"
        pieces = []
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                pieces.append(re.escape(part))
            elif part == CHANNEL:
                pieces.append(f"(?:{options})")
            else:
                pieces.append(".+" if part in multi else "[^/]+")
        return re.compile("".join(pieces) + r"\Z")
