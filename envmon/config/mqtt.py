"""MQTT connection and binding schema (``collectors.mqtt[]``).

One entry is one broker connection: where it is, how envmon authenticates (a user whose
password is read from an environment variable — never from this file — and/or a TLS
client certificate), the persistent session that keeps messages while envmon is down, and
``bindings``: which topics feed which sensors and how their payloads read::

    - id: site-broker
      host: 127.0.0.1
      bindings:
        - topic: cgt/+area/+instrument/particles     # named wildcards
          sensor_id: "{instrument}.{channel}"        # filled from the topic and the channel
          expected_period: 3m                        # silent longer: resubscribe, then reconnect
          payload:
            format: json
            timestamp: {path: ts, format: iso8601}
            channels:
              particles_0_5um: {path: counts.0_5um, unit: counts}   # per sample volume
              particles_5_0um: {path: counts.5_0um, unit: counts}

Checks that need the whole site (sensor ids a template can produce, unit conversions,
sample volumes, overlapping topic patterns) are in ``binding_problems``, which the loader
runs after the schema has validated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import (
    BeforeValidator,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from envmon.config.base_collector import CollectorConfig
from envmon.config.resolve import ResolveProblem
from envmon.config.types import ConfigModel, Duration, PositiveDuration, PositiveInt, Slug, Text
from envmon.topics import CHANNEL, IdTemplate, TopicPattern
from envmon.units import UnitError, conversion, is_count, quantity

if TYPE_CHECKING:
    from envmon.config.schema import SiteConfig
    from envmon.config.yamlsource import YamlPath

DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883
DEFAULT_KEEPALIVE_S: Final = 30.0
DEFAULT_SESSION_EXPIRY_S: Final = 7 * 86_400.0
DEFAULT_RECEIVE_MAXIMUM: Final = 2_000
DEFAULT_MAX_PAYLOAD_BYTES: Final = 65_536
DEFAULT_COMMIT_MESSAGES: Final = 500
DEFAULT_COMMIT_DELAY_S: Final = 0.005
#: MQTT 5 session expiry: the largest value, 0xFFFFFFFF, means "never expires".
MAX_SESSION_EXPIRY_S: Final = 2**32 - 1

ProtocolVersion = Literal["3.1.1", "5"]
TimestampFormat = Literal["iso8601", "epoch_s", "epoch_ms"]
QualityName = Literal["good", "uncertain", "bad"]

_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_SEGMENT = re.compile(r"^[^.\s]+$")


def _protocol_text(value: object) -> object:
    """Let ``protocol: 5`` (a YAML number) mean ``"5"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return value


def _check_env_var(value: str) -> str:
    if not _ENV_VAR.match(value):
        raise ValueError(
            f"must be the NAME of an environment variable (letters, digits, '_'), got {value!r}"
        )
    return value


def _check_path(value: str) -> str:
    if not all(_PATH_SEGMENT.match(segment) for segment in value.split(".")):
        raise ValueError(
            "must be a dotted JSON field path such as 'counts.0_5um' or 'data.0.value' "
            f"(no empty segments or spaces), got {value!r}"
        )
    return value


def _check_topic(value: str) -> str:
    TopicPattern.parse(value)
    return value


def _received(value: object) -> object:
    """``timestamp: received`` is the default: the time envmon received the message."""
    if value == "received":
        return None
    if isinstance(value, str):
        raise ValueError(
            "must be 'received' or {path: <field>, format: iso8601 | epoch_s | epoch_ms}"
        )
    return value


JsonPath = Annotated[str, Strict(), Field(min_length=1)]
Port = Annotated[int, Strict(), Field(ge=1, le=65_535)]
QualityValue = str | bool | int


class TlsConfig(ConfigModel):
    """TLS to the broker: the CA to trust, and envmon's client certificate if required."""

    ca_file: Text | None = None
    cert_file: Text | None = None
    key_file: Text | None = None
    insecure: bool = False  # skip the host name check (never in production)

    @model_validator(mode="after")
    def _key_with_cert(self) -> TlsConfig:
        if (self.key_file is None) != (self.cert_file is None):
            raise ValueError("cert_file and key_file go together (the client certificate)")
        return self


class TimestampConfig(ConfigModel):
    """Where a reading's time comes from: a payload field in one of three formats."""

    path: JsonPath
    format: TimestampFormat = "iso8601"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)


class QualityConfig(ConfigModel):
    """Reading quality from a payload field: which values mean good, uncertain and bad.

    Values are compared as text (``0`` and ``"0"`` are the same); a missing field or a value
    in none of the lists gives ``otherwise``.
    """

    path: JsonPath
    good: tuple[QualityValue, ...] = ()
    uncertain: tuple[QualityValue, ...] = ()
    bad: tuple[QualityValue, ...] = ()
    otherwise: QualityName = "uncertain"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _check_path(value)

    @model_validator(mode="after")
    def _disjoint(self) -> QualityConfig:
        seen: dict[str, str] = {}
        for name in ("good", "uncertain", "bad"):
            for item in getattr(self, name):
                other = seen.setdefault(str(item), name)
                if other != name:
                    raise ValueError(f"{item!r} is listed under both {other} and {name}")
        return self

    def lookup(self) -> dict[str, QualityName]:
        """Return value text → quality."""
        table: dict[str, QualityName] = {}
        for name in ("bad", "uncertain", "good"):
            for item in getattr(self, name):
                table[str(item)] = name
        return table


class ChannelMapping(ConfigModel):
    """One channel of a payload: where its value is, its unit, whether it is a counter."""

    path: JsonPath | None = None  # default: the channel's name
    unit: Text | None = None  # the unit the device sends; default: the sensor's own unit
    cumulative: bool = False  # a counter since the device started: readings are differences
    quality: QualityConfig | None = None  # overrides the payload's quality mapping

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return None if value is None else _check_path(value)

    @field_validator("cumulative")
    @classmethod
    def _counter_unit(cls, value: bool, info: ValidationInfo) -> bool:
        unit = info.data.get("unit")
        if value and unit is not None and quantity(unit) is not None and not is_count(unit):
            raise ValueError(f"a cumulative counter must count (counts, particles/…), not {unit!r}")
        return value


class PayloadConfig(ConfigModel):
    """How a message's payload becomes readings: JSON fields or one plain number."""

    format: Literal["json", "number"] = "json"
    timestamp: Annotated[TimestampConfig | None, BeforeValidator(_received)] = None
    quality: QualityConfig | None = None
    channels: dict[Slug, ChannelMapping] = Field(default_factory=dict, validate_default=True)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_needs_json(
        cls, value: TimestampConfig | None, info: ValidationInfo
    ) -> TimestampConfig | None:
        if value is not None and info.data.get("format") == "number":
            raise ValueError("a plain number payload has no fields: use 'received'")
        return value

    @field_validator("quality")
    @classmethod
    def _quality_needs_json(
        cls, value: QualityConfig | None, info: ValidationInfo
    ) -> QualityConfig | None:
        if value is not None and info.data.get("format") == "number":
            raise ValueError("a plain number payload has no quality field")
        return value

    @field_validator("channels")
    @classmethod
    def _channels_fit_format(
        cls, value: dict[str, ChannelMapping], info: ValidationInfo
    ) -> dict[str, ChannelMapping]:
        fmt = info.data.get("format")
        if fmt == "json" and not value:
            raise ValueError("a JSON payload needs at least one channel: {name: {path: …}}")
        if fmt == "number":
            if len(value) > 1:
                raise ValueError("a plain number payload carries one channel")
            for name, channel in value.items():
                if channel.path is not None or channel.quality is not None:
                    raise ValueError(
                        f"channel {name!r}: a plain number payload has no fields (no path or "
                        "quality)"
                    )
        return value

    def channel_items(self) -> list[tuple[str, ChannelMapping]]:
        """Return (name, mapping) of every channel; a bare number payload has one, ``value``."""
        if self.format == "number" and not self.channels:
            return [("value", ChannelMapping())]
        return list(self.channels.items())


class MqttBindingConfig(ConfigModel):
    """A topic pattern, the sensor ids its messages feed, and how to read the payload."""

    topic: Text
    sensor_id: Text
    expected_period: PositiveDuration | None = None
    sample_volume_m3: Annotated[float, Strict(), Field(gt=0)] | None = None
    payload: PayloadConfig

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        return _check_topic(value)

    @field_validator("sensor_id")
    @classmethod
    def _template(cls, value: str, info: ValidationInfo) -> str:
        template = IdTemplate.parse(value)
        topic = info.data.get("topic")
        if topic is None:
            return value
        pattern = TopicPattern.parse(topic)
        unknown = sorted(template.names - set(pattern.names) - {CHANNEL})
        if unknown:
            defined = ", ".join(f"{{{n}}}" for n in (*pattern.names, CHANNEL))
            raise ValueError(
                f"{', '.join('{' + n + '}' for n in unknown)} is not a wildcard of topic "
                f"{topic!r}; usable: {defined}"
            )
        return value

    @field_validator("payload")
    @classmethod
    def _channel_in_template(cls, value: PayloadConfig, info: ValidationInfo) -> PayloadConfig:
        template_text = info.data.get("sensor_id")
        if template_text is None:
            return value
        template = IdTemplate.parse(template_text)
        if len(value.channel_items()) > 1 and CHANNEL not in template.names:
            raise ValueError(
                f"with several channels, sensor_id ({template_text!r}) must contain "
                "{channel}, or every channel would feed the same sensor"
            )
        return value

    @property
    def pattern(self) -> TopicPattern:
        """The parsed topic pattern."""
        return TopicPattern.parse(self.topic)

    @property
    def template(self) -> IdTemplate:
        """The parsed sensor id template."""
        return IdTemplate.parse(self.sensor_id)


class CommitConfig(ConfigModel):
    """Group commit: messages are acknowledged in batches once durably buffered."""

    max_messages: PositiveInt = DEFAULT_COMMIT_MESSAGES
    max_delay: Annotated[Duration, Field(le=1.0)] = DEFAULT_COMMIT_DELAY_S


class MqttCollectorConfig(CollectorConfig):
    """One MQTT broker connection and the topic bindings read from it."""

    host: Text = "127.0.0.1"
    port: Port | None = None  # default 1883, or 8883 with TLS
    protocol: Annotated[ProtocolVersion, BeforeValidator(_protocol_text)] = "5"
    client_id: Annotated[Text, Field(max_length=65_535)] | None = None  # default envmon-<id>
    clean_start: bool = False  # True forgets the session: messages sent while down are lost
    session_expiry: Annotated[Duration, Field(le=MAX_SESSION_EXPIRY_S)] = DEFAULT_SESSION_EXPIRY_S
    keepalive: Annotated[PositiveDuration, Field(le=65_535)] = DEFAULT_KEEPALIVE_S
    username: Text | None = None
    password_env: Annotated[str, Strict(), Field(min_length=1)] | None = None
    tls: TlsConfig | None = None
    qos: Literal[0, 1] = 1
    receive_maximum: Annotated[int, Strict(), Field(ge=1, le=65_535)] = DEFAULT_RECEIVE_MAXIMUM
    max_payload_bytes: PositiveInt = DEFAULT_MAX_PAYLOAD_BYTES
    commit: CommitConfig = CommitConfig()
    bindings: Annotated[tuple[MqttBindingConfig, ...], Field(min_length=1)]

    @field_validator("password_env")
    @classmethod
    def _password_env(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        _check_env_var(value)
        if info.data.get("username") is None:
            raise ValueError("a password needs a username")
        return value

    @property
    def effective_client_id(self) -> str:
        """The fixed client id of the persistent session."""
        return self.client_id or f"envmon-{self.id}"

    @property
    def effective_port(self) -> int:
        """The port to connect to (1883, or 8883 with TLS, unless given)."""
        if self.port is not None:
            return self.port
        return DEFAULT_TLS_PORT if self.tls is not None else DEFAULT_PORT


# -- checks against the whole site ------------------------------------------------------------


def binding_problems(site: SiteConfig) -> list[ResolveProblem]:
    """Check every MQTT binding against the site's sensors; return the problems found.

    - a template's topic segments and channels must be able to produce at least one sensor
      of the site, and a fixed template (no topic segment) must name existing sensors;
    - each channel's unit must convert to the unit of every sensor it can feed (counts per
      sample need a sample volume from the binding or the instrument);
    - two bindings of one connection must not match the same topic.
    """
    sensors = {
        (channel.sensor_id or f"{instrument.id}.{channel.channel_id}"): (
            channel.unit,
            instrument.sample_volume_m3,
        )
        for area in site.areas
        for instrument in area.instruments
        for channel in instrument.channels
    }
    problems: list[ResolveProblem] = []
    for c, connection in enumerate(site.collectors.mqtt):
        base: YamlPath = ("collectors", "mqtt", c, "bindings")
        patterns = [binding.pattern for binding in connection.bindings]
        for b, binding in enumerate(connection.bindings):
            for earlier in range(b):
                if patterns[b].overlaps(patterns[earlier]):
                    problems.append(
                        ResolveProblem(
                            (*base, b, "topic"),
                            f"overlaps the topic of bindings[{earlier}] "
                            f"({connection.bindings[earlier].topic!r}): a message could match "
                            "both; make the patterns disjoint",
                        )
                    )
                    break
            problems.extend(_binding_sensor_problems(binding, (*base, b), sensors))
    return problems


def _binding_sensor_problems(
    binding: MqttBindingConfig,
    path: YamlPath,
    sensors: dict[str, tuple[str, float | None]],
) -> Iterator[ResolveProblem]:
    template, pattern = binding.template, binding.pattern
    explicit = bool(binding.payload.channels)
    for name, mapping in binding.payload.channel_items():
        channel_path: YamlPath = (*path, "payload", "channels", name) if explicit else path
        if template.is_fixed:
            sensor_id = template.render({CHANNEL: name})
            fed = [sensor_id] if sensor_id in sensors else []
            if not fed:
                yield ResolveProblem(
                    (*path, "sensor_id"),
                    f"channel {name!r} feeds sensor {sensor_id!r}, which is not in this site",
                )
                continue
        else:
            regex = template.regex([name], pattern.multi_names)
            fed = [sensor_id for sensor_id in sensors if regex.match(sensor_id)]
            if not fed:
                yield ResolveProblem(
                    channel_path if explicit else (*path, "sensor_id"),
                    f"{binding.sensor_id!r} can produce no sensor id of this site for "
                    f"channel {name!r}",
                )
                continue
        if mapping.unit is None:
            continue
        for sensor_id in fed:
            target, volume = sensors[sensor_id]
            try:
                conversion(
                    mapping.unit, target, sample_volume_m3=binding.sample_volume_m3 or volume
                )
            except UnitError as exc:
                yield ResolveProblem((*channel_path, "unit"), f"for sensor {sensor_id!r}: {exc}")
                break


__all__ = [
    "DEFAULT_PORT",
    "ChannelMapping",
    "CommitConfig",
    "MqttBindingConfig",
    "MqttCollectorConfig",
    "PayloadConfig",
    "QualityConfig",
    "TimestampConfig",
    "TlsConfig",
    "binding_problems",
]
