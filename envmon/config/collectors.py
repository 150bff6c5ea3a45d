"""The ``collectors:`` section of the site configuration: connections and bindings.

``CollectorConfig`` is the base every protocol's connection extends (``mqtt.py``,
``opcua.py``): an id, reconnect back-off and the silence watchdog. ``BufferConfig`` sizes
the durable store-and-forward buffer between the collectors and the bus.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Final

from pydantic import Field, model_validator

from envmon.config.mqtt import MqttCollectorConfig
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.config.types import ConfigModel, PositiveDuration, PositiveInt, Text

DEFAULT_BUFFER_PATH: Final = "var/buffer.sqlite3"
DEFAULT_BUFFER_MAX_MESSAGES: Final = 1_000_000
#: Longer than a broker restart or a leader election, shorter than a channel's stale_after.
DEFAULT_STALL_ALARM_AFTER_S: Final = 120.0
_MEMORY: Final = ":memory:"


class BufferConfig(ConfigModel):
    """The store-and-forward buffer: where it lives, how much it may hold, when it is stuck.

    ``stall_alarm_after``: a ``buffer_stalled`` alarm is raised once the oldest buffered
    message has waited longer than this for the bus (``buffer_flowing`` when it is back
    under). The collectors' own events wait in a small buffer of their own beside it
    (``events_path``), so that they never queue behind readings.
    """

    path: Text = DEFAULT_BUFFER_PATH
    max_messages: PositiveInt = DEFAULT_BUFFER_MAX_MESSAGES
    stall_alarm_after: PositiveDuration = DEFAULT_STALL_ALARM_AFTER_S

    @property
    def events_path(self) -> str:
        """Return where the collectors' events wait: ``<stem>.events<suffix>`` beside ``path``."""
        if self.path == _MEMORY:
            return _MEMORY
        path = PurePath(self.path)
        return str(path.with_name(f"{path.stem}.events{path.suffix}"))


class CollectorsConfig(ConfigModel):
    """Every MQTT broker and OPC-UA server envmon reads from, and the buffer."""

    buffer: BufferConfig = BufferConfig()
    mqtt: Annotated[tuple[MqttCollectorConfig, ...], Field()] = ()
    opcua: Annotated[tuple[OpcUaCollectorConfig, ...], Field()] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> CollectorsConfig:
        seen: set[str] = set()
        for conn in (*self.mqtt, *self.opcua):
            if conn.id in seen:
                raise ValueError(f"duplicate collector id {conn.id!r}")
            seen.add(conn.id)
        return self
