"""Tests of YAML loading with line numbers."""

from __future__ import annotations

import tracemalloc

import pytest
from yaml.nodes import Node

from envmon.config import yamlsource
from envmon.config.yamlsource import (
    LocatedYaml,
    YamlPath,
    YamlSyntaxError,
    YamlTooLargeError,
    load_located,
    render_path,
)

DOC = """\
site:
  name: Test
areas:
  - id: a
    instruments:
      - id: i
        channels:
          - parameter: temperature
            limits:
              action_high: 8
"""


class TestLoadLocated:
    """``load_located`` builds plain data and a path → line map."""

    def test_builds_plain_data(self):
        """Mappings become dicts and sequences lists, with scalars typed."""
        located = load_located(DOC)
        assert located.data == {
            "site": {"name": "Test"},
            "areas": [
                {
                    "id": "a",
                    "instruments": [
                        {
                            "id": "i",
                            "channels": [
                                {"parameter": "temperature", "limits": {"action_high": 8}}
                            ],
                        }
                    ],
                }
            ],
        }

    def test_maps_every_path_to_its_line(self):
        """Each key and list item is mapped to the 1-based line where it is written."""
        lines = load_located(DOC).lines
        assert lines[("site", "name")] == 2
        assert lines[("areas",)] == 3
        assert lines[("areas", 0)] == 4
        assert lines[("areas", 0, "instruments", 0, "channels", 0)] == 8
        assert lines[("areas", 0, "instruments", 0, "channels", 0, "limits")] == 9
        assert lines[("areas", 0, "instruments", 0, "channels", 0, "limits", "action_high")] == 10

    def test_line_of_missing_path_falls_back_to_parent(self):
        """A path that is not in the file gets the line of its nearest existing parent."""
        located = load_located(DOC)
        assert located.line_of(("areas", 0, "instruments", 0, "name")) == 6
        assert located.line_of(("nothing", "here")) == 1

    def test_duplicate_keys_are_problems(self):
        """A key written twice in one mapping is reported with both lines; the first wins."""
        located = load_located("a: 1\nb: 2\na: 3\n")
        assert located.data == {"a": 1, "b": 2}
        [problem] = located.problems
        assert problem.path == ("a",)
        assert problem.line == 3
        assert "duplicate key 'a'" in problem.message
        assert "line 1" in problem.message

    def test_duplicate_keys_nested(self):
        """Duplicates are found at any depth and located there."""
        located = load_located("x:\n  - y: 1\n    z: 2\n    y: 3\n")
        [problem] = located.problems
        assert problem.path == ("x", 0, "y")
        assert problem.line == 4

    def test_same_key_in_sibling_mappings_is_fine(self):
        """Equal keys in different mappings are not duplicates."""
        assert load_located("- {id: a}\n- {id: b}\n").problems == ()

    def test_syntax_error_has_line(self):
        """Malformed YAML raises ``YamlSyntaxError`` with the line of the problem."""
        with pytest.raises(YamlSyntaxError) as caught:
            load_located("a: 1\nb: [1, 2\nc: 3\n")
        assert caught.value.line is not None
        assert caught.value.line >= 2

    def test_bad_indentation_is_syntax_error(self):
        """A mapping value followed by a stray key is a syntax error on that line."""
        with pytest.raises(YamlSyntaxError) as caught:
            load_located("a:\n  b: 1\n c: 2\n")
        assert caught.value.line == 3

    def test_several_documents_refused(self):
        """A site file holds exactly one YAML document."""
        with pytest.raises(YamlSyntaxError):
            load_located("a: 1\n---\nb: 2\n")

    def test_empty_document(self):
        """An empty text gives ``None`` data."""
        assert load_located("").data is None
        assert load_located("# only a comment\n").data is None

    def test_times_of_day_stay_strings(self):
        """``19:00`` is text, not YAML 1.1's base-60 integer 1140."""
        assert load_located("to: 19:00\nfrom: 7:30\n").data == {"to": "19:00", "from": "7:30"}

    def test_yes_no_on_off_stay_strings(self):
        """Only true/false are booleans (YAML 1.2), so ``no`` or ``on`` are not."""
        data = load_located("a: no\nb: on\nc: true\nd: False\n").data
        assert data == {"a": "no", "b": "on", "c": True, "d": False}

    def test_numbers(self):
        """Integers (with underscores, leading zeros decimal, hex, octal) and floats parse."""
        data = load_located("[3_520_000, 010, 0x1F, 0o17, -4, 1.5, -80.0, 1e5, .5, .inf]").data
        assert data == [3_520_000, 10, 31, 15, -4, 1.5, -80.0, 100000.0, 0.5, float("inf")]

    def test_dates_stay_strings(self):
        """Dates are not turned into ``datetime.date``."""
        assert load_located("d: 2024-03-31\n").data == {"d": "2024-03-31"}

    def test_null(self):
        """``null``, ``~`` and empty values are None."""
        assert load_located("a: null\nb: ~\nc:\n").data == {"a": None, "b": None, "c": None}

    def test_merge_keys(self):
        """``<<`` merges an anchored mapping without overriding explicit keys."""
        located = load_located("base: &b\n  x: 1\n  y: 2\nother:\n  <<: *b\n  y: 3\n")
        assert located.data == {"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}}
        assert located.lines[("other", "y")] == 6
        assert located.lines[("other", "x")] == 2

    def test_aliases(self):
        """An alias repeats the anchored value."""
        assert load_located("a: &v [1, 2]\nb: *v\n").data == {"a": [1, 2], "b": [1, 2]}

    def test_unsafe_tags_are_problems(self):
        """Python object tags are refused, not executed."""
        located = load_located("a: !!python/object:os.system echo\n")
        assert located.problems

    def test_non_scalar_keys_are_problems(self):
        """A complex mapping key is reported."""
        located = load_located("? [a, b]\n: 1\n")
        assert "plain scalars" in located.problems[0].message

    def test_result_is_frozen(self):
        """``LocatedYaml`` values cannot be changed after loading."""
        located = load_located("a: 1\n")
        assert isinstance(located, LocatedYaml)
        with pytest.raises(AttributeError):
            located.data = None  # type: ignore[misc]


class TestRenderPath:
    """``render_path`` writes paths the way people read them."""

    def test_keys_and_indexes(self):
        """Keys are dotted and indexes bracketed."""
        path = ("areas", 1, "instruments", 0, "channels", 2, "limits", "action_high")
        assert render_path(path) == "areas[1].instruments[0].channels[2].limits.action_high"

    def test_root(self):
        """The empty path renders as an empty string."""
        assert render_path(()) == ""

    def test_odd_keys_are_quoted(self):
        """Keys that are not identifiers are shown quoted in brackets."""
        assert render_path(("binding", "node.id")) == "binding['node.id']"


BILLION_LAUGHS = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)
"""The classic "billion laughs": 9 levels of 9 aliases each, 9⁹ strings once expanded."""

MERGE_BOMB = "".join(
    [
        "m0: &m0 {k0: 1, k1: 2}\n",
        *(
            f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], x{i}: *m{i - 1}, y{i}: *m{i - 1}}}\n"
            for i in range(1, 12)
        ),
    ]
)
"""Merge keys and aliases that each take the level below three times: 3¹¹ mappings."""


class CountingBuilds:
    """Counts the values the YAML builder makes (the structural measure of expansion)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        build = yamlsource._Builder.build

        def counted(builder: yamlsource._Builder, node: Node, path: YamlPath) -> object:
            self.calls += 1
            return build(builder, node, path)

        monkeypatch.setattr(yamlsource._Builder, "build", counted)


class TestHostileYaml:
    """Bombs, deep nesting and huge numbers are refused with a reason, bounded (issue 14)."""

    @pytest.mark.parametrize(
        ("text", "line", "path"),
        [(BILLION_LAUGHS, 6, ("f", 0)), (MERGE_BOMB, 9, ("m8", "x8"))],
        ids=["billion-laughs", "merge-keys"],
    )
    def test_alias_bombs_are_refused_within_the_budget(self, monkeypatch, text, line, path):
        """The expansion stops at the value budget, naming where the alias is used."""
        builds = CountingBuilds(monkeypatch)
        with pytest.raises(YamlTooLargeError) as caught:
            load_located(text)
        assert builds.calls == yamlsource.MIN_VALUE_BUDGET + 1  # the value that crossed it
        assert (caught.value.line, caught.value.path) == (line, path)
        assert "too many values" in caught.value.message

    def test_alias_bomb_memory_is_bounded(self):
        """Refusing a bomb takes a few tens of MB at most (it took 5-6 GB before)."""
        tracemalloc.start()
        try:
            with pytest.raises(YamlTooLargeError):
                load_located(BILLION_LAUGHS)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 50_000_000

    def test_anchors_used_many_times_within_the_budget_load(self):
        """A large site repeating an instrument template 2,000 times is not a bomb."""
        template = "base: &base {" + ", ".join(f"k{i}: {i}" for i in range(30)) + "}\n"
        uses = "".join(f"  - {{<<: *base, id: i{i}}}\n" for i in range(2_000))
        located = load_located(template + "items:\n" + uses)
        items = located.data["items"]  # type: ignore[index]
        assert len(items) == 2_000
        assert items[1_999] == {"id": "i1999", **{f"k{i}": i for i in range(30)}}
        assert located.lines[("items", 1_999, "k29")] == 1  # lines from the anchor

    def test_deep_nesting_is_a_problem(self):
        """Nesting past MAX_DEPTH is reported at its line and not descended into."""
        depth = 500  # libyaml itself refuses beyond 1,000; Python's recursion ended ~300
        located = load_located("x:\n  " + "[" * depth + "]" * depth + "\n")
        (problem,) = located.problems
        assert problem.message == f"nested deeper than {yamlsource.MAX_DEPTH} levels"
        assert problem.line == 2

    def test_deep_nesting_without_libyaml(self, monkeypatch):
        """PyYAML's pure-Python composer recurses: too deep is a syntax error, not a crash."""
        monkeypatch.setattr(yamlsource, "_FastLoader", yamlsource._CoreSchemaLoader)
        with pytest.raises(YamlSyntaxError, match="nested too deeply"):
            load_located("[" * 600 + "]" * 600)

    @pytest.mark.parametrize(
        "text",
        [
            "1" * 5_000,  # Python converts at most 4,300 decimal digits
            str(2**63),
            str(-(2**63) - 1),
            "0x1" + "0" * 16,
            "0o2" + "0" * 21,
        ],
    )
    def test_integers_beyond_64_bits_are_problems(self, text):
        """An integer that does not fit in 64 bits is a problem naming it, cut short."""
        located = load_located(f"a:\n  n: {text}\n")
        (problem,) = located.problems
        assert (problem.path, problem.line) == (("a", "n"), 2)
        assert problem.message.startswith(f"integer {text[:24]}")
        assert "out of range: integers must fit in 64 bits" in problem.message
        assert len(problem.message) < 200

    def test_64_bit_integers_and_leading_zeros_read(self):
        """The 64-bit range reads exactly, however many leading zeros a number has."""
        data = load_located(f"[{2**63 - 1}, {-(2**63)}, {'0' * 5_000}7, 0x{'0' * 40}ff]").data
        assert data == [2**63 - 1, -(2**63), 7, 255]

    @pytest.mark.parametrize("text", ["1e400", "-1e400", "1.5e309"])
    def test_float_literals_that_overflow_are_problems(self, text):
        """``1e400`` is not silently infinity."""
        (problem,) = load_located(f"limit: {text}\n").problems
        assert problem.message == f"number {text} is out of range (at most about 1.8e308)"

    def test_explicit_infinity_is_still_read(self):
        """``.inf`` reads as infinity here; the schema decides (limits refuse it)."""
        assert load_located("x: -.inf\n").data == {"x": float("-inf")}

    def test_an_aliased_scalar_that_fails_fails_alike_at_every_use(self):
        """Each use of a refused anchored value gives the same reason, not PyYAML's
        "unconstructable recursive node" for the second."""
        located = load_located("a: &big 1e400\nb: *big\nc: {<<: {d: *big}}\n")
        assert [(p.path, p.message) for p in located.problems] == [
            (("a",), "number 1e400 is out of range (at most about 1.8e308)"),
            (("b",), "number 1e400 is out of range (at most about 1.8e308)"),
            (("c", "d"), "number 1e400 is out of range (at most about 1.8e308)"),
        ]

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("!!int x", "'x' is not an integer"),
            ("!!int 0x", "'0x' is not an integer"),
            ("!!float x", "'x' is not a number"),
            ("!!bool x", "'x' is not a valid bool"),
            ("!!timestamp x", "'x' is not a valid timestamp"),
        ],
    )
    def test_explicit_tags_on_the_wrong_text_are_problems(self, text, message):
        """An explicit tag on text it cannot read is a problem, not a ValueError or KeyError."""
        (problem,) = load_located(f"a: {text}\n").problems
        assert (problem.path, problem.message, problem.line) == (("a",), message, 1)
