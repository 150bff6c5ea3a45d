"""The ``collectors:`` section of the site configuration: connections and bindings.

``CollectorConfig`` is the base every protocol's connection extends (``mqtt.py``,
``opcua.py``): an id, reconnect back-off and the silence watchdog. ``BufferConfig`` sizes
the durable store-and-forward buffer between the collectors and the bus.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, model_validator

from envmon.config.mqtt import MqttCollectorConfig
from envmon.config.opcua import OpcUaCollectorConfig
from envmon.config.types import ConfigModel, PositiveInt, Text

DEFAULT_BUFFER_PATH: Final = "var/buffer.sqlite3"
DEFAULT_BUFFER_MAX_MESSAGES: Final = 1_000_000


class BufferConfig(ConfigModel):
    """The store-and-forward buffer: where it lives and how much it may hold."""

    path: Text = DEFAULT_BUFFER_PATH
    max_messages: PositiveInt = DEFAULT_BUFFER_MAX_MESSAGES


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
