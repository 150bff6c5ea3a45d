"""The MQTT collector's errors.

::

MqttError                    (envmon.errors.EnvmonError)
├── MqttConnectError        TCP/TLS failure, refused CONNACK, or no CONNACK in time
├── MqttSubscribeError      a SUBACK refused a subscription
└── MqttConnectionLost      the connection dropped (``reason`` says why)
"""

from __future__ import annotations

from envmon.errors import EnvmonError


class MqttError(EnvmonError):
    """Base class of MQTT failures."""


class MqttConnectError(MqttError):
    """Connecting failed: network, TLS, a refused CONNACK, or no CONNACK in time."""


class MqttSubscribeError(MqttError):
    """The broker refused a subscription."""


class MqttConnectionLost(MqttError):  # noqa: N818 - an event that ends the connection, not a bug
    """The connection dropped."""
