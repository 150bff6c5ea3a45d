"""The settings every collector connection shares, extended by MQTT and OPC-UA."""

from __future__ import annotations

from envmon.config.types import ConfigModel, PositiveDuration, Slug


class ReconnectConfig(ConfigModel):
    """Exponential back-off between reconnection attempts."""

    initial: PositiveDuration = 1.0
    maximum: PositiveDuration = 60.0


class CollectorConfig(ConfigModel):
    """Base of a collector connection: id, enabled, reconnect back-off."""

    id: Slug
    enabled: bool = True
    reconnect: ReconnectConfig = ReconnectConfig()
