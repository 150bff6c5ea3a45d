"""The OPC-UA collector's errors.

::

    OpcUaError
     ├── OpcUaSetupError   settings that retrying cannot fix (a missing password variable,
     │                     an unreadable certificate): raised by ``start``, else retried
     │                     at the longest back-off
     └── SessionLostError  the session is gone or unusable (internal: reconnect)
"""

from __future__ import annotations

from envmon.errors import EnvmonError


class OpcUaError(EnvmonError):
    """Base class of the OPC-UA collector's errors."""


class OpcUaSetupError(OpcUaError):
    """The connection's settings cannot be used as they are; retrying will not help."""


class SessionLostError(OpcUaError):
    """The session is gone (triggers a reconnect)."""


def describe(exc: BaseException) -> str:
    """Name an exception with its message, for logs and events."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
