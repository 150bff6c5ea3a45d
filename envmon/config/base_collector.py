"""The settings every collector connection shares, extended by MQTT and OPC-UA."""

from __future__ import annotations

from typing import Self

from pydantic import model_validator

from envmon.config.types import ConfigModel, PositiveDuration, Slug


class ReconnectConfig(ConfigModel):
    """Exponential back-off between reconnection attempts."""

    initial: PositiveDuration = 1.0
    maximum: PositiveDuration = 60.0

    @model_validator(mode="after")
    def _maximum_not_below_initial(self) -> Self:
        if self.maximum < self.initial:
            raise ValueError(
                f"maximum ({self.maximum:g} s) is below initial ({self.initial:g} s): "
                "the back-off grows from initial up to maximum"
            )
        return self


class CollectorConfig(ConfigModel):
    """Base of a collector connection: id, enabled, reconnect back-off."""

    id: Slug
    enabled: bool = True
    reconnect: ReconnectConfig = ReconnectConfig()
