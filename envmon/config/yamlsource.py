"""YAML loading that remembers the line of every value, for error messages people can act on.

The text is composed into a node tree with PyYAML's safe loader and turned into plain
Python data by hand, so that every value's path (``("areas", 1, "instruments", 0)``) is
mapped to its 1-based line. The scalar rules are YAML 1.2's core schema rather than
PyYAML's YAML 1.1 ones: ``19:00`` stays a string (not the base-60 integer 1140), ``no``
and ``on`` stay strings (not booleans), ``010`` is ten and dates stay strings. Duplicate
keys are reported, not silently overwritten; ``<<`` merge keys work.

Hostile input is bounded, not trusted: aliases and merge keys are expanded for every use
(each use has its own path and line), so the values built are counted and a document that
expands beyond ``max(MIN_VALUE_BUDGET, VALUE_BUDGET_PER_NODE × its own nodes)`` is refused
(a "billion laughs" bomb of a few hundred bytes would otherwise build billions of values);
nesting deeper than ``MAX_DEPTH`` is a problem; integers must fit in 64 bits and a float
literal that overflows (``1e400``) is a problem, not ``inf``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

YamlPath = tuple[str | int, ...]
"""Where a value sits in the document: mapping keys and sequence indexes, outermost first."""

_TAG = "tag:yaml.org,2002:"
_BOOL, _INT, _FLOAT, _NULL, _STR = (_TAG + name for name in ("bool", "int", "float", "null", "str"))
_MAP, _SEQ, _MERGE, _TIMESTAMP = (_TAG + name for name in ("map", "seq", "merge", "timestamp"))
_IMPLICIT_REPLACED = {_BOOL, _INT, _FLOAT, _TIMESTAMP}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

#: Values any document may build, aliases and merge keys expanded (a large site: ~20,000).
MIN_VALUE_BUDGET: Final = 100_000
#: Values a document may build per node it holds, when that allows more than the minimum.
VALUE_BUDGET_PER_NODE: Final = 10
#: Deepest nesting of mappings and sequences read (a site file needs about a dozen levels).
MAX_DEPTH: Final = 64
#: Integers are 64-bit: larger ones are refused (they would overflow sizes and counters).
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
#: Characters of a refused scalar quoted in a problem (never the whole input).
_QUOTED: Final = 24


class _CoreSchemaLoader(yaml.SafeLoader):
    """Safe loader whose implicit scalar types follow the YAML 1.2 core schema."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's own class-level registry
        first: [(tag, rx) for tag, rx in resolvers if tag not in _IMPLICIT_REPLACED]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


def _construct_int(loader: yaml.SafeLoader, node: Node) -> int:
    """Construct a YAML 1.2 integer: decimal (leading zeros allowed), ``0x`` or ``0o``.

    Refuses (``ConstructorError``) one outside 64 bits, before converting many digits:
    Python refuses to convert more than 4,300 decimal digits at all.
    """
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    base = 10
    if digits[:2] in ("0x", "0X"):
        base, digits = 16, digits[2:]
    elif digits[:2] in ("0o", "0O"):
        base, digits = 8, digits[2:]
    significant = digits.lstrip("0") or digits[:1]
    try:
        # 64 bits take at most 22 octal, 20 decimal or 16 hexadecimal digits.
        value = sign * int(significant, base) if len(significant) <= 22 else None
    except ValueError:  # only behind an explicit tag (!!int x): the resolver checked the rest
        value = None
        significant = ""
    if not significant:
        raise yaml.constructor.ConstructorError(
            None, None, f"{_quote(text)!r} is not an integer", node.start_mark
        )
    if value is None or not INT_MIN <= value <= INT_MAX:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"integer {_quote(text)} is out of range: integers must fit in 64 bits "
            "(write a larger number as a float, such as 1e20)",
            node.start_mark,
        )
    return value


def _construct_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    """Construct a float; refuse a finite literal too large for one (``1e400``), not ``inf``."""
    try:
        value = float(loader.construct_yaml_float(node))
    except ValueError:  # only behind an explicit tag (!!float x)
        raise yaml.constructor.ConstructorError(
            None, None, f"{_quote(str(node.value))!r} is not a number", node.start_mark
        ) from None
    if math.isinf(value) and "inf" not in str(node.value).lower():
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"number {_quote(str(node.value))} is out of range (at most about 1.8e308)",
            node.start_mark,
        )
    return value


def _quote(text: str) -> str:
    """Quote a scalar in a problem, cut short if long."""
    if len(text) <= _QUOTED:
        return text
    return f"{text[:_QUOTED]}… ({len(text):,} characters)"


_CoreSchemaLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreSchemaLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?[0-9][0-9_]*|0[xX][0-9a-fA-F_]+|0[oO][0-7_]+)$"),
    list("-+0123456789"),
)
_CoreSchemaLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CoreSchemaLoader.add_constructor(_INT, _construct_int)
_CoreSchemaLoader.add_constructor(_FLOAT, _construct_float)

_FastLoader: type[yaml.SafeLoader] = _CoreSchemaLoader
if yaml.__with_libyaml__:
    # libyaml's parser composes large files much faster (docs/architecture.md, site
    # configuration); resolution and construction stay the same Python.

    class _CCoreSchemaLoader(yaml.CSafeLoader):
        """The core-schema loader on libyaml's parser."""

        yaml_implicit_resolvers = _CoreSchemaLoader.yaml_implicit_resolvers
        yaml_constructors = _CoreSchemaLoader.yaml_constructors

    _FastLoader = _CCoreSchemaLoader  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """Something wrong in the YAML itself (not its content), with where it is."""

    path: YamlPath
    message: str
    line: int | None
    column: int | None = None


class YamlSyntaxError(Exception):
    """The text is not well-formed YAML; ``line`` and ``column`` are 1-based when known."""

    def __init__(self, message: str, line: int | None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"line {line}: {message}" if line is not None else message)


class YamlTooLargeError(YamlSyntaxError):
    """Well-formed YAML refused for its size once expanded (an alias or merge-key bomb).

    ``path`` is where the expansion that crossed the limit was used.
    """

    def __init__(self, message: str, line: int | None, path: YamlPath) -> None:
        super().__init__(message, line)
        self.path = path


@dataclass(frozen=True, slots=True)
class LocatedYaml:
    """Plain data from a YAML document, the line (and column) of every path, and problems.

    Lines and columns are 1-based. A value reached through an alias has the position of
    the anchored value it repeats.
    """

    data: object
    lines: Mapping[YamlPath, int]
    problems: tuple[YamlProblem, ...] = ()
    columns: Mapping[YamlPath, int] = field(default_factory=dict)

    def line_of(self, path: YamlPath) -> int | None:
        """Return the line of ``path``, or of its nearest parent that exists."""
        return self.position_of(path)[0]

    def position_of(self, path: YamlPath) -> tuple[int | None, int | None]:
        """Return (line, column) of ``path``, or of its nearest parent that exists."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line, self.columns.get(path[:end])
        return None, None


def load_located(text: str) -> LocatedYaml:
    """Parse one YAML document into data plus a path → line map.

    Raises ``YamlSyntaxError`` for text that is not YAML (or holds several documents).
    Duplicate keys, unsupported tags and recursive aliases are returned as ``problems``;
    for a duplicate key the first value is kept.
    """
    loader = _FastLoader(text)
    try:
        root = loader.get_single_node()
        builder = _Builder(loader, _budget(root))
        data = None if root is None else builder.build(root, ())
    except RecursionError:  # PyYAML's pure-Python composer, without libyaml's depth limit
        raise YamlSyntaxError("the document is nested too deeply", None) from None
    except yaml.reader.ReaderError as exc:  # a character YAML refuses (NUL, most controls)
        char: object = exc.character  # libyaml gives the code, PyYAML the character
        code = ord(char) if isinstance(char, str) and len(char) == 1 else char
        what = f"character #x{code:04x}" if isinstance(code, int) else "character"
        at_line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise YamlSyntaxError(f"unacceptable {what}: {exc.reason}", at_line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        line = None if mark is None else mark.line + 1
        column = None if mark is None else mark.column + 1
        raise YamlSyntaxError(message or "invalid YAML", line, column) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), None) from exc
    finally:
        loader.dispose()
    if root is None:
        return LocatedYaml(data=None, lines={(): 1})
    return LocatedYaml(
        data=data, lines=builder.lines, problems=tuple(builder.problems), columns=builder.columns
    )


def _budget(root: Node | None) -> int:
    """Return how many values a document may build: a multiple of its own nodes, or more."""
    seen: set[int] = set()
    stack: list[Node] = [] if root is None else [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, value in node.value:
                stack += (key, value)
        elif isinstance(node, SequenceNode):
            stack += node.value
    return max(MIN_VALUE_BUDGET, VALUE_BUDGET_PER_NODE * len(seen))


def render_path(path: YamlPath) -> str:
    """Render a path the way people read it: ``areas[1].instruments[0].limits.delay``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{part!r}]")
    return "".join(out)


class _Builder:
    """Turns composed nodes into Python data, recording lines and problems on the way."""

    def __init__(self, loader: yaml.SafeLoader, budget: int) -> None:
        self.loader = loader
        self.lines: dict[YamlPath, int] = {}
        self.columns: dict[YamlPath, int] = {}
        self.problems: list[YamlProblem] = []
        self._active: set[int] = set()
        self._built: set[int] = set()  # nodes built once: building one again is an alias
        self._budget = budget
        self._alias: YamlPath | None = None  # the outermost alias being expanded

    def build(self, node: Node, path: YamlPath) -> object:
        """Build the value of ``node`` found at ``path``."""
        if path not in self.lines:
            self.lines[path] = node.start_mark.line + 1
            self.columns[path] = node.start_mark.column + 1
        self._budget -= 1
        if self._budget < 0:
            raise self._too_large(path)
        if id(node) in self._active:
            self._problem(path, "recursive alias", node)
            return None
        if len(self._active) >= MAX_DEPTH and not isinstance(node, ScalarNode):
            self._problem(path, f"nested deeper than {MAX_DEPTH} levels", node)
            return None
        outermost = self._alias is None and id(node) in self._built
        if outermost:
            self._alias = path
        self._built.add(id(node))
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    self._problem(path, f"unsupported YAML tag {node.tag!r}", node)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, ScalarNode)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))
            if outermost:
                self._alias = None

    def _too_large(self, path: YamlPath) -> YamlTooLargeError:
        """Say where a document grew too large: the alias (or merge) being expanded."""
        where = path if self._alias is None else self._alias
        # The line of the alias's use: a mapping value's is its key's; a list item's alias
        # keeps no line of its own (the composer drops it), so its list's is named.
        use = where[:-1] if where and isinstance(where[-1], int) else where
        line = None
        for end in range(len(use), -1, -1):
            line = self.lines.get(use[:end])
            if line is not None:
                break
        return YamlTooLargeError(
            "aliases and merge keys expand the document to too many values (refused as a "
            "YAML bomb; repeat fewer or smaller anchors)",
            line,
            where,
        )

    def _mapping(self, node: MappingNode, path: YamlPath) -> dict[str, object]:
        if node.tag != _MAP:
            self._problem(path, f"unsupported YAML tag {node.tag!r}", node)
        result: dict[str, object] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(path, "mapping keys must be plain scalars", key_node)
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self._problem(
                    (*path, key),
                    f"duplicate key {key!r} (first defined at line {first_line[key]})",
                    key_node,
                )
                continue
            first_line[key] = line
            if (*path, key) not in self.lines:
                self.lines[(*path, key)] = line
                self.columns[(*path, key)] = key_node.start_mark.column + 1
            result[key] = self.build(value_node, (*path, key))
        for merge_node in merges:
            sources = merge_node.value if isinstance(merge_node, SequenceNode) else [merge_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self._problem(path, "a '<<' merge key needs a mapping to merge", source)
                    continue
                merged = self.build(source, path)
                assert isinstance(merged, dict)
                for key, value in merged.items():
                    result.setdefault(key, value)
        return result

    def _scalar(self, node: ScalarNode, path: YamlPath) -> object:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            problem = exc.problem or f"cannot read YAML tag {node.tag!r}"
        except (ValueError, KeyError, AttributeError):  # PyYAML's own !!bool x, !!timestamp x
            problem = f"{_quote(str(node.value))!r} is not a valid {node.tag.rsplit(':', 1)[-1]}"
        # PyYAML leaves a node that failed marked as "in construction": the next alias of it
        # would fail as "unconstructable recursive node" instead of with this reason.
        self.loader.recursive_objects.pop(node, None)
        self._problem(path, problem, node)
        return node.value

    def _problem(self, path: YamlPath, message: str, node: Node) -> None:
        mark = node.start_mark
        self.problems.append(YamlProblem(path, message, mark.line + 1, mark.column + 1))
