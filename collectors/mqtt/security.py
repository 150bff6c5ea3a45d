"""What a connection presents to the broker: the TLS context and the password."""

from __future__ import annotations

import os
import ssl

from collectors.mqtt.errors import MqttConnectError
from envmon.config.mqtt import MqttCollectorConfig


def tls_context(config: MqttCollectorConfig) -> ssl.SSLContext | None:
    """Build the TLS context of a connection (None without TLS)."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure:
        context.check_hostname = False
    return context


def resolve_password(config: MqttCollectorConfig) -> str | None:
    """Read the password from the environment variable the configuration names."""
    if config.password_env is None:
        return None
    password = os.environ.get(config.password_env)
    if password is None:
        raise MqttConnectError(
            f"environment variable {config.password_env} (password of {config.username!r}) "
            "is not set"
        )
    return password
