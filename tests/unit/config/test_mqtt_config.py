"""The MQTT section of the site configuration (envmon.config.mqtt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envmon.config import ConfigError, load_site, parse_site
from tests.unit.collectors.sites import INC_1, PC_1, instrument, mqtt_site

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "site.yaml"

PC_WITHOUT_VOLUME = instrument(
    "pc-2",
    "Particle counter without a sample volume",
    "particle_counter",
    {"particles_0_5um": "particles/m3"},
)


def site(mqtt: str, extra_instruments: str = "") -> str:
    """Return a site file whose collectors.mqtt list is ``mqtt`` (a YAML list, dedented)."""
    extra = (extra_instruments,) if extra_instruments else ()
    return mqtt_site(PC_1, INC_1, *extra, mqtt=mqtt)


def issues(mqtt: str, extra_instruments: str = "") -> list[str]:
    """Return the issues of a site file with this MQTT section (empty when valid)."""
    try:
        parse_site(site(mqtt, extra_instruments))
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    return []


PARTICLES = """
- id: broker
  bindings:
    - topic: cgt/+area/+instrument/particles
      sensor_id: "{instrument}.{channel}"
      expected_period: 3m
      payload:
        timestamp: {path: ts, format: iso8601}
        channels:
          particles_0_5um: {path: counts.0_5um, unit: counts}
"""


class TestMqttConnection:
    """Connection settings: defaults, session, credentials, TLS."""

    def test_a_reconnect_maximum_below_its_initial_wait_is_refused(self):
        """The back-off grows from initial to maximum: the other way round is a typo."""
        found = issues(
            PARTICLES.replace(
                "- id: broker", "- id: broker\n  reconnect: {initial: 10s, maximum: 2s}"
            )
        )
        assert len(found) == 1
        assert "collectors.mqtt[0].reconnect" in found[0]
        assert "maximum (2 s) is below initial (10 s)" in found[0]

    def test_defaults(self):
        """MQTT 5, QoS 1, a persistent session with a fixed client id derived from the id."""
        config = parse_site(site(PARTICLES)).collectors.mqtt[0]
        assert config.protocol == "5"
        assert config.qos == 1
        assert config.clean_start is False
        assert config.session_expiry == 7 * 86_400
        assert config.effective_client_id == "envmon-broker"
        assert config.effective_port == 1883

    def test_protocol_written_as_a_number(self):
        """``protocol: 5`` (a YAML number) means MQTT 5; 3.1.1 is accepted too."""
        five = parse_site(site(PARTICLES.replace("- id: broker", "- id: broker\n  protocol: 5")))
        assert five.collectors.mqtt[0].protocol == "5"
        old = PARTICLES.replace("- id: broker", '- id: broker\n  protocol: "3.1.1"')
        assert parse_site(site(old)).collectors.mqtt[0].protocol == "3.1.1"
        assert any(
            "protocol" in i
            for i in issues(PARTICLES.replace("- id: broker", "- id: broker\n  protocol: 4"))
        )

    def test_tls_port_default(self):
        """With TLS the default port is 8883."""
        text = PARTICLES.replace("- id: broker", "- id: broker\n  tls: {ca_file: ca.crt}")
        assert parse_site(site(text)).collectors.mqtt[0].effective_port == 8883

    def test_password_is_an_environment_variable_name(self):
        """password_env names a variable (never a secret) and needs a username."""
        good = PARTICLES.replace(
            "- id: broker", "- id: broker\n  username: envmon\n  password_env: ENVMON_MQTT_PASSWORD"
        )
        assert parse_site(site(good)).collectors.mqtt[0].password_env == "ENVMON_MQTT_PASSWORD"
        secret = PARTICLES.replace(
            "- id: broker", "- id: broker\n  username: envmon\n  password_env: 's3cr3t!'"
        )
        assert any("NAME of an environment variable" in i for i in issues(secret))
        alone = PARTICLES.replace("- id: broker", "- id: broker\n  password_env: PW")
        assert any("needs a username" in i for i in issues(alone))

    def test_client_certificate_needs_its_key(self):
        """cert_file and key_file come together."""
        text = PARTICLES.replace("- id: broker", "- id: broker\n  tls: {cert_file: c.crt}")
        assert any("go together" in i for i in issues(text))

    def test_unknown_key_is_refused_with_its_line(self):
        """A typo is an error naming the YAML path and line, with a suggestion."""
        text = PARTICLES.replace("- id: broker", "- id: broker\n  keepalvie: 30")
        (issue,) = issues(text)
        assert "collectors.mqtt[0].keepalvie" in issue
        assert "did you mean 'keepalive'" in issue
        assert issue.startswith("line ")


class TestMqttBinding:
    """Topic patterns, sensor id templates and payload mappings of bindings."""

    def test_template_may_only_use_wildcards_of_the_pattern(self):
        """A placeholder the topic does not define is refused, naming those it does."""
        text = PARTICLES.replace('"{instrument}.{channel}"', '"{room}.{channel}"')
        (issue,) = issues(text)
        assert "bindings[0].sensor_id" in issue
        assert "{room} is not a wildcard" in issue
        assert "{area}, {instrument}, {channel}" in issue

    def test_several_channels_need_the_channel_placeholder(self):
        """Without {channel} every channel would feed the same sensor."""
        text = PARTICLES.replace('"{instrument}.{channel}"', '"{instrument}.particles_0_5um"')
        text = text.replace(
            "particles_0_5um: {path: counts.0_5um, unit: counts}",
            "particles_0_5um: {path: a, unit: counts}\n          particles_5_0um: {path: b}",
        )
        assert any("must contain {channel}" in i for i in issues(text))

    def test_invalid_topic_pattern(self):
        """A misplaced wildcard is reported on the topic."""
        text = PARTICLES.replace("cgt/+area/+instrument/particles", "cgt/#x/particles")
        assert any("bindings[0].topic" in i and "last level" in i for i in issues(text))

    def test_timestamp_received_is_the_default(self):
        """``timestamp: received`` (or nothing) stamps readings with the receive time."""
        text = PARTICLES.replace("timestamp: {path: ts, format: iso8601}", "timestamp: received")
        binding = parse_site(site(text)).collectors.mqtt[0].bindings[0]
        assert binding.payload.timestamp is None
        bad = PARTICLES.replace("timestamp: {path: ts, format: iso8601}", "timestamp: sent")
        assert any("must be 'received'" in i for i in issues(bad))

    def test_number_payload(self):
        """A plain-number payload has one channel and no fields."""
        text = """
        - id: broker
          bindings:
            - topic: lab/+instrument/+parameter
              sensor_id: "{instrument}.{parameter}"
              payload: {format: number}
        """
        binding = parse_site(site(text)).collectors.mqtt[0].bindings[0]
        assert [name for name, _ in binding.payload.channel_items()] == ["value"]
        with_path = text.replace("{format: number}", "{format: number, channels: {t: {path: x}}}")
        assert any("no fields" in i for i in issues(with_path))

    def test_json_payload_needs_channels(self):
        """A JSON payload without channels maps nothing and is refused."""
        text = PARTICLES.replace(
            "        channels:\n          particles_0_5um: {path: counts.0_5um, unit: counts}\n", ""
        )
        assert any("at least one channel" in i for i in issues(text))

    def test_quality_values_are_listed_once(self):
        """A status value cannot mean two qualities."""
        text = PARTICLES.replace(
            "timestamp: {path: ts, format: iso8601}",
            "timestamp: {path: ts, format: iso8601}\n"
            "        quality: {path: s, good: [ok], bad: [ok]}",
        )
        assert any("listed under both good and bad" in i for i in issues(text))

    def test_cumulative_temperature_is_refused(self):
        """Only counts can be cumulative counters."""
        text = PARTICLES.replace("unit: counts}", "unit: degF, cumulative: true}")
        assert any("must count" in i for i in issues(text))


class TestBindingsAgainstTheSite:
    """Checks that need the site's sensors: ids, units, sample volumes, overlaps."""

    def test_valid_binding(self):
        """A binding whose template produces site sensors with convertible units loads."""
        assert issues(PARTICLES) == []

    def test_fixed_sensor_id_must_exist(self):
        """A fixed sensor_id naming no sensor of the site is an error with its line."""
        text = """
        - id: broker
          bindings:
            - topic: lab/fridge
              sensor_id: fridge-9.temperature
              payload: {format: number}
        """
        (issue,) = issues(text)
        assert "bindings[0].sensor_id" in issue
        assert "'fridge-9.temperature', which is not in this site" in issue

    def test_channel_that_feeds_no_sensor(self):
        """A channel name (typo) whose ids match no sensor is reported on the channel."""
        text = PARTICLES.replace("particles_0_5um: {path", "particles_0_5: {path")
        (issue,) = issues(text)
        assert "payload.channels.particles_0_5" in issue
        assert "can produce no sensor id" in issue

    def test_unit_must_convert_to_the_sensor_unit(self):
        """A device unit that cannot become the channel's unit is refused at load."""
        text = PARTICLES.replace("unit: counts}", "unit: degF}")
        (issue,) = issues(text)
        assert "payload.channels.particles_0_5um.unit" in issue
        assert "cannot convert 'degF' to 'particles/m3'" in issue

    def test_counts_need_a_sample_volume(self):
        """Counts per sample need the instrument's (or the binding's) sample volume."""
        assert any("sample volume" in i for i in issues(PARTICLES, PC_WITHOUT_VOLUME))
        text = PARTICLES.replace("cgt/+area/+instrument/particles", "cgt/+area/pc-2/particles")
        text = text.replace('"{instrument}.{channel}"', '"pc-2.{channel}"')
        fixed = text.replace(
            "expected_period: 3m", "expected_period: 3m\n      sample_volume_m3: 0.1"
        )
        assert issues(fixed, PC_WITHOUT_VOLUME) == []

    def test_overlapping_topics_are_refused(self):
        """Two bindings that could both match a message are an error."""
        text = PARTICLES + (
            "    - topic: cgt/+area/+instrument/+kind\n"
            '      sensor_id: "{instrument}.temperature"\n'
            "      payload: {format: number}\n"
        )
        assert any("bindings[1].topic" in i and "overlaps" in i for i in issues(text))

    def test_example_site(self):
        """The shipped example site's MQTT section is valid and binds its MQTT equipment."""
        example = load_site(EXAMPLE)
        (broker,) = example.collectors.mqtt
        assert broker.qos == 1
        assert not broker.clean_start
        assert {binding.pattern.filter for binding in broker.bindings} >= {
            "cgt/+/+/particles",
            "cgt/+/+/incubator",
        }


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_protocol_versions(protocol):
    """Both protocol versions are accepted."""
    text = PARTICLES.replace("- id: broker", f'- id: broker\n  protocol: "{protocol}"')
    assert parse_site(site(text)).collectors.mqtt[0].protocol == protocol
