"""Topic patterns with named wildcards and sensor id templates (envmon.topics)."""

from __future__ import annotations

import pytest

from envmon.topics import IdTemplate, TopicPattern


class TestTopicPattern:
    """Parsing, subscription filters, matching and overlap of topic patterns."""

    def test_named_wildcards_become_a_plain_filter(self):
        """'+name' and '#name' subscribe as '+' and '#'."""
        pattern = TopicPattern.parse("cgt/+room/+instrument/telemetry")
        assert pattern.filter == "cgt/+/+/telemetry"
        assert pattern.names == ("room", "instrument")
        assert TopicPattern.parse("plant/#rest").filter == "plant/#"

    def test_match_returns_the_named_segments(self):
        """A matching topic yields its named segments; unnamed wildcards yield nothing."""
        pattern = TopicPattern.parse("cgt/+room/+/+instrument")
        assert pattern.match("cgt/grade-b/x/pc-1") == {"room": "grade-b", "instrument": "pc-1"}

    def test_non_matching_topics(self):
        """Other literals, fewer or more levels do not match."""
        pattern = TopicPattern.parse("cgt/+room/telemetry")
        assert pattern.match("cgt/b/status") is None
        assert pattern.match("cgt/b") is None
        assert pattern.match("cgt/b/telemetry/x") is None

    def test_multi_level_wildcard_takes_the_rest(self):
        """'#name' matches all remaining levels, and zero levels as in MQTT."""
        pattern = TopicPattern.parse("plant/#rest")
        assert pattern.match("plant/a/b/c") == {"rest": "a/b/c"}
        assert pattern.match("plant") == {"rest": ""}

    def test_dollar_topics_are_not_matched_by_a_leading_wildcard(self):
        """As in MQTT, '+/…' and '#' do not match '$SYS/…'."""
        assert TopicPattern.parse("#all").match("$SYS/broker/uptime") is None
        assert TopicPattern.parse("$SYS/#x").match("$SYS/broker") == {"x": "broker"}

    def test_literal_pattern(self):
        """A pattern without wildcards names one topic."""
        pattern = TopicPattern.parse("lab/fridge-1/temperature")
        assert pattern.is_literal
        assert pattern.match("lab/fridge-1/temperature") == {}

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "must not be empty"),
            ("a/#x/b", "must be the last level"),
            ("a/b+c", "must fill a whole level"),
            ("a/+1x", "wildcard name"),
            ("a/+x/+x", "used twice"),
            ("a/+channel", "reserved"),
        ],
    )
    def test_invalid_patterns(self, text, message):
        """Misplaced wildcards, bad or duplicate names and the reserved name are refused."""
        with pytest.raises(ValueError, match=message):
            TopicPattern.parse(text)

    @pytest.mark.parametrize(
        ("a", "b", "overlap"),
        [
            ("cgt/+/+/particles", "cgt/+/+/incubator", False),
            ("cgt/+/+/particles", "cgt/room/+/particles", True),
            ("cgt/#", "cgt/a/b", True),
            ("cgt/#", "cgt", True),
            ("cgt/+", "cgt/a/b", False),
            ("a/b", "a/b", True),
            ("a/+/c", "a/b/+", True),
        ],
    )
    def test_overlaps(self, a, b, overlap):
        """Two patterns overlap exactly when some topic matches both."""
        pa, pb = TopicPattern.parse(a), TopicPattern.parse(b)
        assert pa.overlaps(pb) is overlap
        assert pb.overlaps(pa) is overlap


class TestIdTemplate:
    """Sensor id templates filled from topic segments and the channel."""

    def test_render(self):
        """Placeholders are replaced by their values."""
        template = IdTemplate.parse("{instrument}.{channel}")
        assert template.render({"instrument": "pc-1", "channel": "particles_0_5um"}) == (
            "pc-1.particles_0_5um"
        )
        assert template.names == {"instrument", "channel"}

    def test_fixed_template(self):
        """A template without topic segments (at most {channel}) is fixed."""
        assert IdTemplate.parse("fridge-1.temperature").is_fixed
        assert IdTemplate.parse("fridge-1.{channel}").is_fixed
        assert not IdTemplate.parse("{room}.t").is_fixed

    @pytest.mark.parametrize("text", ["{}", "{1x}", "a{b", "a}b", "{a.b}", ""])
    def test_invalid_templates(self, text):
        """Empty or non-name placeholders and stray braces are refused."""
        with pytest.raises(ValueError, match=r"\S"):
            IdTemplate.parse(text)

    def test_regex_matches_what_the_template_can_produce(self):
        """The regex of a template matches exactly the ids it can render."""
        regex = IdTemplate.parse("{instrument}.{channel}").regex(["co2", "temperature"])
        assert regex.match("incubator-1.co2")
        assert regex.match("incubator-1.temperature")
        assert not regex.match("incubator-1.humidity")
        assert not regex.match("a/b.co2")  # a single-level segment holds no '/'

    def test_regex_of_a_multi_level_segment(self):
        """A '#' segment may contain '/'."""
        regex = IdTemplate.parse("{path}").regex([], multi_names=["path"])
        assert regex.match("a/b/c")
