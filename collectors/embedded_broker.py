"""An MQTT broker inside the envmon process (amqtt), for ``envmon demo`` and small sites.

amqtt speaks MQTT 3.1.1 only; production sites use Mosquitto (``deploy/mosquitto``).
"""

from __future__ import annotations

import logging
from typing import Any

from amqtt.broker import Broker

logger = logging.getLogger(__name__)


class EmbeddedBroker:
    """A local amqtt broker on 127.0.0.1 that allows anonymous clients."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = Broker(config)

    async def start(self) -> None:
        """Start listening."""
        await self._broker.start()
        logger.info("embedded MQTT broker on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Disconnect everyone and stop."""
        await self._broker.shutdown()
