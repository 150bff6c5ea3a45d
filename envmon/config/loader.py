"""Loading a site file: YAML with line numbers, schema validation, and site-wide checks.

Every problem becomes an ``envmon.errors.ConfigIssue`` naming the YAML path
(``areas[1].instruments[0].channels[2].limits.action_high``) and its line; all of them are
raised together in one ``ConfigError`` so a user fixes a file in one pass.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from envmon.config.mqtt import binding_problems
from envmon.config.resolve import resolve_site
from envmon.config.schema import SiteConfig
from envmon.config.yamlsource import (
    LocatedYaml,
    YamlPath,
    YamlSyntaxError,
    YamlTooLargeError,
    load_located,
    render_path,
)
from envmon.errors import ConfigError, ConfigIssue

_SCALARS = (str, int, float, bool, type(None))
_GOT_NOT_USEFUL = {"missing", "extra_forbidden", "value_error", "assertion_error"}
_GOT_CHARS = 60
#: Longest issue message shown: a value quoted in it is cut, never echoed whole.
MAX_MESSAGE_CHARS = 300


_M = TypeVar("_M", bound=BaseModel)


def load_site(path: Path | str) -> SiteConfig:
    """Read, validate and resolve a site configuration file; raise ``ConfigError`` if invalid."""
    source = str(path)
    try:
        text = _read_text(Path(path))
    except _UnreadableError as exc:
        raise ConfigError(source, [ConfigIssue("", exc.message, exc.line)]) from None
    return parse_site(text, source, base_dir=Path(path).parent)


class _UnreadableError(Exception):
    """A file that cannot be read as UTF-8 text (``line`` is where, when known)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _read_text(path: Path) -> str:
    """Read a UTF-8 text file; raise ``_UnreadableError`` saying why it cannot be."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _UnreadableError(f"cannot read the file: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise _UnreadableError(message, line) from None


def parse_site(text: str, source: str = "<string>", *, base_dir: Path | None = None) -> SiteConfig:
    """Validate and resolve a site configuration given as YAML text.

    Raises ``ConfigError`` listing every issue found: YAML structure (duplicate keys),
    schema violations, duplicate ids, and limits that conflict once defaults apply.
    ``alerting: FILE`` names a YAML file holding that section, relative to ``base_dir``
    (the site file's directory; the current directory when not given); its issues name
    that file and its lines.
    """
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        raise ConfigError(source, [_syntax_issue(exc)]) from None
    if located.data is None:
        issue = ConfigIssue("", "the file is empty; expected a mapping with 'site' and 'areas'", 1)
        raise ConfigError(source, [issue])

    issues = [
        ConfigIssue(render_path(p.path), p.message, p.line, p.column) for p in located.problems
    ]
    issues.extend(_duplicate_ids(located))
    located, included, render = _include_alerting(located, base_dir or Path(), issues)
    config: SiteConfig | None = None
    try:
        config = SiteConfig.model_validate(located.data)
    except ValidationError as exc:
        skip = _problem_paths(located)
        issues.extend(_validation_issues(exc, located, skip=skip, render=render))
    if config is not None:
        _, problems = resolve_site(config)
        issues.extend(
            ConfigIssue(problem.rendered_path, problem.message, *located.position_of(problem.path))
            for problem in [*problems, *binding_problems(config)]
        )
    if issues or config is None:
        ordered = sorted(
            map(_clipped, issues),
            key=lambda issue: (
                included is not None
                and (issue.path == included or issue.path.startswith(f"{included}: ")),
                issue.line if issue.line is not None else 0,
            ),
        )
        if included is not None:
            ordered = [_in_included(issue, included, base_dir or Path()) for issue in ordered]
        raise ConfigError(source, ordered)
    return config


def _in_included(issue: ConfigIssue, name: str, base_dir: Path) -> ConfigIssue:
    """Locate an issue of the included file in that file: its name, and the path in it."""
    if issue.path != name and not issue.path.startswith(f"{name}: "):
        return issue
    path = issue.path.removeprefix(name).removeprefix(": ")
    return dataclasses.replace(issue, path=path, file=str(base_dir / name))


def _include_alerting(
    located: LocatedYaml, base_dir: Path, issues: list[ConfigIssue]
) -> tuple[LocatedYaml, str | None, Callable[[YamlPath], str]]:
    """Read the file ``alerting: FILE`` names into the site's data, its lines kept apart.

    Returns the site with the section in place, the file's name as written (None when the
    section is inline) and how to render a path, so that an issue in the section names the
    file (``alerts.yaml: contacts[0].id``) and its line there. Problems reading the file are
    appended to ``issues``.
    """
    data = located.data
    name = data.get("alerting") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(name, str):
        return located, None, render_path
    where = ("alerting",)
    without = LocatedYaml(
        {key: value for key, value in data.items() if key != "alerting"},
        located.lines,
        located.problems,
    )
    try:
        included = load_located(_read_text(base_dir / name))
    except _UnreadableError as exc:
        line = located.line_of(where) if exc.line is None else exc.line
        issues.append(ConfigIssue(render_path(where), f"{name}: {exc.message}", line))
        return without, name, render_path
    except YamlSyntaxError as exc:
        issue = _syntax_issue(exc)
        issues.append(ConfigIssue(_in_file(name, _exc_path(exc)), issue.message, issue.line))
        return without, name, render_path
    if included.data is None:
        message = "the file is empty; expected the alerting section (contacts, policies, routes)"
        issues.append(ConfigIssue(name, message, 1))
        return without, name, render_path
    issues.extend(
        ConfigIssue(_in_file(name, p.path), p.message, p.line, p.column) for p in included.problems
    )
    merged = LocatedYaml(
        data={**data, "alerting": included.data},
        lines={**located.lines, **{(*where, *path): line for path, line in included.lines.items()}},
        problems=(
            *located.problems,
            *(dataclasses.replace(p, path=(*where, *p.path)) for p in included.problems),
        ),
        columns={
            **located.columns,
            **{(*where, *path): column for path, column in included.columns.items()},
        },
    )

    def render(path: YamlPath) -> str:
        return _in_file(name, path[1:]) if path[:1] == where else render_path(path)

    return merged, name, render


def _in_file(name: str, path: YamlPath) -> str:
    """Render a path in an included file: ``alerts.yaml: contacts[0].id``."""
    return f"{name}: {render_path(path)}" if path else name


def _exc_path(exc: YamlSyntaxError) -> YamlPath:
    """Return where a YAML refusal happened (a too-large expansion has a path)."""
    return exc.path if isinstance(exc, YamlTooLargeError) else ()


def parse_model(model: type[_M], text: str, source: str) -> _M:
    """Validate YAML text against any schema model, with every error located by path and line.

    The same error wording as the site configuration; used for other YAML inputs such as
    simulator scenarios.
    """
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        raise ConfigError(source, [_syntax_issue(exc)]) from None
    issues = [
        ConfigIssue(render_path(p.path), p.message, p.line, p.column) for p in located.problems
    ]
    result: _M | None = None
    try:
        result = model.model_validate(located.data)
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, located, model, skip=_problem_paths(located)))
    if issues or result is None:
        raise ConfigError(source, sorted(map(_clipped, issues), key=lambda i: i.line or 0))
    return result


def _clipped(issue: ConfigIssue) -> ConfigIssue:
    """Cut an issue whose message quotes a long value (validators say ``got {value!r}``)."""
    if len(issue.message) <= MAX_MESSAGE_CHARS:
        return issue
    cut = issue.message[:MAX_MESSAGE_CHARS]
    return dataclasses.replace(issue, message=f"{cut}… ({len(issue.message):,} characters)")


def _syntax_issue(exc: YamlSyntaxError) -> ConfigIssue:
    """Word YAML the loader refused as a whole: not YAML, or too large once expanded."""
    if isinstance(exc, YamlTooLargeError):
        return ConfigIssue(render_path(exc.path), exc.message, exc.line)
    return ConfigIssue("", f"invalid YAML: {exc.message}", exc.line, exc.column)


def _problem_paths(located: LocatedYaml) -> frozenset[YamlPath]:
    """Return the paths of YAML problems (their values fail validation only as a result)."""
    return frozenset(problem.path for problem in located.problems)


def _validation_issues(
    exc: ValidationError,
    located: LocatedYaml,
    root: type[BaseModel] | None = None,
    *,
    skip: frozenset[YamlPath] = frozenset(),
    render: Callable[[YamlPath], str] = render_path,
) -> list[ConfigIssue]:
    """Turn pydantic errors into issues located on the YAML that caused them.

    Errors at a path in ``skip`` are left out: a value the YAML layer refused (``1e400``,
    an integer over 64 bits) is reported once, by that problem.
    """
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        if _is_consequential(error):
            continue
        path = _data_path(error["loc"], located.data)
        if path in skip:
            continue
        issue = ConfigIssue(
            render(path), _message(error, root or SiteConfig), *located.position_of(path)
        )
        if issue not in issues:  # a shorthand (``iso_class: 10``) can fail twice alike
            issues.append(issue)
    return issues


def _is_consequential(error: ErrorDetails) -> bool:
    """Return True for an error that only repeats others (a list short of its bad items)."""
    if error["type"] != "too_short":
        return False
    value = error.get("input")
    minimum = error.get("ctx", {}).get("min_length", 0)
    return isinstance(value, list | tuple) and len(value) >= minimum


def _data_path(loc: tuple[int | str, ...], data: object) -> YamlPath:
    """Map a pydantic error location onto the path of the data it refers to.

    Parts that are not in the data (a missing key) end the path; parts below a scalar
    (pydantic's internal steps) are dropped, so the path always names something the user
    wrote or should have written.
    """
    path: list[str | int] = []
    current: object = data
    for part in loc:
        if isinstance(current, dict) and isinstance(part, str) and part != "[key]":
            path.append(part)
            if part not in current:
                break
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        else:
            break
    return tuple(path)


def _message(error: ErrorDetails, root: type[BaseModel]) -> str:
    """Word a pydantic error as a short instruction about the value at its path."""
    kind = error["type"]
    context = error.get("ctx", {})
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"], root)
    if kind in ("value_error", "assertion_error") and "error" in context:
        return str(context["error"])
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "must be a mapping of keys to values"
    elif kind in ("list_type", "tuple_type"):
        message = "must be a list"
    elif kind == "too_short":
        message = f"must have at least {context.get('min_length', 1)} item(s)"
    else:
        message = error["msg"]
        for prefix in ("Input should be ", "Value should be "):
            if message.startswith(prefix):
                message = "must be " + message.removeprefix(prefix)
    value = error.get("input")
    if kind not in _GOT_NOT_USEFUL and isinstance(value, _SCALARS):
        got = repr(value)
        if len(got) > _GOT_CHARS:  # quote a long value, never echo it whole
            got = f"{got[:_GOT_CHARS]}… ({len(got):,} characters)"
        message += f" (got {got})"
    if error["loc"] and error["loc"][-1] == "[key]":
        message = f"key {value!r}: {message}"
    return message


def _unknown_key(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    """Say a key is unknown, suggesting the closest allowed key."""
    key = str(loc[-1])
    allowed = _allowed_keys(loc[:-1], root)
    if not allowed:
        return f"unknown key {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; expected one of: {', '.join(allowed)}"


def _allowed_keys(loc: tuple[int | str, ...], root: type[BaseModel]) -> list[str]:
    """Return the keys the schema allows at ``loc`` (empty when it cannot tell)."""
    annotation: object = root
    for part in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {(info.alias or name): info for name, info in annotation.model_fields.items()}
            if not isinstance(part, str) or part not in fields:
                return []
            annotation = fields[part].annotation
        elif origin in (list, tuple) and isinstance(part, int):
            annotation = get_args(annotation)[0]
        elif origin is dict and isinstance(part, str):
            annotation = get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [info.alias or name for name, info in annotation.model_fields.items()]
    return []


def _unwrap(annotation: object) -> object:
    """Strip ``Annotated`` and ``None`` from a field annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _duplicate_ids(located: LocatedYaml) -> list[ConfigIssue]:
    """Find area, instrument and sensor ids used twice (sensor ids are site-wide keys)."""
    issues: list[ConfigIssue] = []
    seen: dict[tuple[str, str], YamlPath] = {}
    for kind, identifier, path in _ids(located.data):
        first = seen.setdefault((kind, identifier), path)
        if first is not path:
            issues.append(
                ConfigIssue(
                    render_path(path),
                    f"duplicate {kind} id {identifier!r} (first used at {render_path(first)}, "
                    f"line {located.line_of(first)})",
                    *located.position_of(path),
                )
            )
    return issues


def _ids(data: object) -> Iterator[tuple[str, str, YamlPath]]:
    """Yield (kind, id, path) of every area, instrument and sensor id in raw site data."""
    if not isinstance(data, dict) or not isinstance(data.get("areas"), list):
        return
    for a, area in enumerate(data["areas"]):
        if not isinstance(area, dict):
            continue
        if isinstance(area.get("id"), str):
            yield "area", area["id"], ("areas", a, "id")
        instruments = area.get("instruments")
        if not isinstance(instruments, list):
            continue
        for i, instrument in enumerate(instruments):
            if not isinstance(instrument, dict):
                continue
            instrument_id = instrument.get("id")
            if isinstance(instrument_id, str):
                yield "instrument", instrument_id, ("areas", a, "instruments", i, "id")
            channels = instrument.get("channels")
            if not isinstance(channels, list):
                continue
            for c, channel in enumerate(channels):
                if not isinstance(channel, dict):
                    continue
                channel_path: YamlPath = ("areas", a, "instruments", i, "channels", c)
                for key in ("sensor_id", "id", "parameter"):
                    if isinstance(channel.get(key), str):
                        break
                else:
                    continue
                if key == "sensor_id":
                    sensor_id = channel[key]
                elif isinstance(instrument_id, str):
                    sensor_id = f"{instrument_id}.{channel[key]}"
                else:
                    continue
                yield "sensor", sensor_id, (*channel_path, key)
