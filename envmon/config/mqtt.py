"""MQTT connection and binding schema (``collectors.mqtt[]``)."""

from __future__ import annotations

from envmon.config.base_collector import CollectorConfig
from envmon.config.types import Text


class MqttCollectorConfig(CollectorConfig):
    """One MQTT broker connection and the topic bindings read from it."""

    host: Text = "127.0.0.1"
