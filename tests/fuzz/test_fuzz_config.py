"""Fuzzing the site loader and ``envmon check-config`` with hostile YAML: 1,600 files.

Seed ``SEED`` = 14 (issue 14): ``MUTANTS`` = 400 mutations of the example site
(``deploy/examples/site.yaml``: lines dropped, repeated or swapped, hostile tokens and
values spliced in, bytes flipped) and ``HOSTILE`` = 1,200 files built to hurt: alias and
merge-key bombs of random shape, deep nesting (flow and block), huge scalars and integers
(over Python's 4,300-digit limit), ``1e400``, tags such as ``!!python/object/apply``,
duplicate and complex keys, recursive aliases, several documents, control characters,
surrogate escapes, a byte-order mark, invalid UTF-8 and random bytes.

Invariants, for every file: loading never raises anything but ``ConfigError``; every issue
has a message of bounded length and a line (only an unreadable file has none); ``envmon
check-config`` exits 0 (printing the limits, or JSON that parses) or 2 (listing the issues
on stderr), never with a traceback; and no file builds more than the YAML layer's value
budget allows (its floor lowered to ``FUZZ_VALUE_BUDGET`` so that the bombs cost little).
A failure prints the seed and file number to reproduce it.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from envmon.commands import check_config
from envmon.config import ConfigError, load_site, yamlsource
from envmon.errors import ConfigIssue
from envmon.testing import site_yaml
from tests.unit.config.test_example_site import EXAMPLE

from . import hostile

SEED = 14
MUTANTS = 400
HOSTILE = 1_200
#: Longest issue message allowed: values are quoted cut short, never echoed whole.
MAX_MESSAGE_CHARS = 600
#: The value budget's floor during the fuzz: bombs stop sooner, the rule is the same (the
#: real floor is held in tests/unit/config/test_yamlsource.py).
FUZZ_VALUE_BUDGET = 5_000

_TOKENS = (
    "&a ",
    "*a",
    "*undefined",
    "<<: *a",
    "<<: [*a, *a]",
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!!binary AAAA",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!!timestamp 2026-01-01",
    "!custom x",
    "!!int x",
    "!!float .nan",
    "? [a, b]\n: c",
    "{",
    "[",
    "]",
    "}",
    ": ",
    "- ",
    "\t",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "'",
    '"',
    "#",
    "|",
    ">",
    "\\ud800",
    '"\\ud800"',
    '"\\x00"',
    "\x00",
    "\x07",
    "\ufeff",
    "\u2028",
    "1e400",
    "-1e400",
    ".inf",
    ".nan",
    "9" * 5_000,
    "0x" + "f" * 40,
    "1_000",
    "null",
    "~",
    "true",
    "19:00",
    "2026-13-45",
    "x" * 100_000,
)


def _mutant(rng: random.Random, lines: list[str]) -> bytes:
    """The example site, damaged in a few places."""
    lines = list(lines)
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        i = rng.randrange(len(lines))
        if roll < 0.2:
            del lines[i]
        elif roll < 0.35:
            lines.insert(i, lines[rng.randrange(len(lines))])  # repeat a line elsewhere
        elif roll < 0.45:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif roll < 0.85:
            at = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:at] + rng.choice(_TOKENS) + lines[i][at:]
        elif ":" in lines[i]:  # replace a value with a hostile one
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {rng.choice(_TOKENS)}"
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        at = rng.randrange(len(data))
        data = data[:at] + bytes([rng.randrange(256)]) + data[at + 1 :]  # a flipped byte
    return data


def _bomb(rng: random.Random) -> str:
    levels, width = rng.randint(3, 12), rng.randint(2, 12)
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        if rng.random() < 0.5:
            lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
        else:
            merges = ", ".join([f"*m{i - 1}"] * rng.randint(1, 3)) if i > 1 else ""
            fields = ", ".join(f"k{j}: *l{i - 1}" for j in range(width))
            lines.append(f"m{i}: &m{i} {{<<: [{merges or '*l0'}], {fields}}}" if i > 1 else "")
            lines.append(f"l{i}: &l{i} [*l{i - 1}, {{{fields}}}]")
    return "\n".join(line for line in lines if line) + "\n"


def _nested(rng: random.Random) -> str:
    depth = rng.choice([10, 63, 64, 65, 200, 999, 1_100])
    if rng.random() < 0.5:
        return "a: " + "[" * depth + "]" * depth + "\n"
    return "".join(" " * i + "k:\n" for i in range(depth)) + " " * depth + "k: 1\n"


def _hostile(rng: random.Random) -> bytes:
    """A small file built to hurt the loader."""
    kind = rng.randrange(9)
    if kind == 0:
        text = _bomb(rng)
    elif kind == 1:
        text = _nested(rng)
    elif kind == 2:  # duplicate keys, many of them
        text = "site: {name: x}\n" + "areas: []\n" * rng.randint(2, 300)
    elif kind == 3:  # recursive and undefined aliases, complex keys
        text = rng.choice(
            ["a: &a [*a]\n", "a: &a {b: *a}\n", "a: *nothing\n", "? [a]\n: 1\n", "&a a: *a\n"]
        )
    elif kind == 4:  # tokens strung together
        text = " ".join(rng.choice(_TOKENS) for _ in range(rng.randint(1, 12)))
    elif kind == 5:  # a scalar or key of any kind and size
        value = rng.choice(_TOKENS[35:]) if rng.random() < 0.5 else hostile.text(rng, 200)
        text = f"site:\n  name: {value}\n{value}: 1\n"
    elif kind == 6:
        return rng.randbytes(rng.randrange(2_000))
    elif kind == 7:  # valid text, invalid UTF-8 in the middle
        return b"site:\n  name: caf\xe9\n  timezone: \xff\xfe\n"
    else:  # the example's structure with values that are all wrong
        text = _wrong_values(rng)
    return text.encode("utf-8", "surrogatepass")


def _wrong_values(rng: random.Random) -> str:
    def value() -> str:
        return rng.choice(["1e400", "9" * 5_000, ".nan", "-1", "0", "[]", "{}", "x" * 5_000])

    site = f"site: {{name: {value()}, timezone: {value()}}}"
    areas = (
        f"- id: {value()}\n"
        f"  name: {value()}\n"
        f"  grade: {value()}\n"
        "  instruments:\n"
        "    - id: pc\n"
        f"      name: {value()}\n"
        "      kind: particle_counter\n"
        f"      sample_volume_m3: {value()}\n"
        "      channels:\n"
        "        - parameter: particles_0_5um\n"
        "          unit: particles/m3\n"
        f"          limits: {{alert_high: {value()}, action_high: {value()}, "
        f"consecutive: {value()}, delay: {value()}, bad_after: {value()}}}\n"
    )
    return site_yaml(areas, site=site)


def _check_file(path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Load one file and run check-config on it, holding the invariants; return the outcome."""
    issues: list[ConfigIssue] = []
    try:
        load_site(path)
    except ConfigError as exc:
        issues = exc.issues
        assert issues, where
    for issue in issues:
        assert issue.message, where
        assert len(issue.message) <= MAX_MESSAGE_CHARS, (where, issue.message[:300])
        assert issue.line is not None, (where, issue)
        assert issue.line >= 1, (where, issue)
    outcome = issues[0].message.split(":")[0][:40] if issues else "loaded"
    json_output = hash(where) % 2 == 0
    code = check_config.run(path, json_output=json_output)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, where
    if outcome == "loaded":
        assert code == check_config.EXIT_OK, (where, err[:500])
        if json_output:
            json.loads(out)
    else:
        assert code == check_config.EXIT_INVALID, where
        assert err.startswith(f"{path}: "), where
    return outcome


class _Budget:
    """Counts the values each YAML builder makes against the budget it was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.budget = 0
        self.calls = 0
        self.most = 0.0  # the highest share of its budget a builder used
        build, init = yamlsource._Builder.build, yamlsource._Builder.__init__

        def counted_init(builder: yamlsource._Builder, loader: Any, budget: int) -> None:
            self.check()
            self.budget, self.calls = budget, 0
            init(builder, loader, budget)

        def counted_build(builder: yamlsource._Builder, node: Any, path: Any) -> object:
            self.calls += 1
            return build(builder, node, path)

        monkeypatch.setattr(yamlsource._Builder, "__init__", counted_init)
        monkeypatch.setattr(yamlsource._Builder, "build", counted_build)

    def check(self) -> None:
        """The last builder stopped at its budget (one value past it is the one refused)."""
        assert self.calls <= self.budget + 1, (self.calls, self.budget)
        if self.budget:
            self.most = max(self.most, self.calls / self.budget)


def test_hostile_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every mutated or hostile file loads or is refused with located issues, within budget."""
    rng = random.Random(SEED)
    example = EXAMPLE.read_text(encoding="utf-8").splitlines()
    monkeypatch.setattr(yamlsource, "MIN_VALUE_BUDGET", FUZZ_VALUE_BUDGET)
    budget = _Budget(monkeypatch)
    outcomes: Counter[str] = Counter()
    path = tmp_path / "site.yaml"
    for number in range(MUTANTS + HOSTILE):
        data = _mutant(rng, example) if number < MUTANTS else _hostile(rng)
        path.write_bytes(data)
        where = f"seed {SEED}, file {number}: {data[:120]!r}"
        outcomes[_check_file(path, where, capsys)] += 1
        budget.check()
    assert outcomes["loaded"] > 20, outcomes
    assert budget.most > 0.99, budget.most  # some bombs reached the budget
    for expected in ("invalid YAML", "aliases and merge keys expand the document to too many"):
        assert any(key.startswith(expected[:40]) for key in outcomes), (expected, outcomes)
