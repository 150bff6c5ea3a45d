"""OPC-UA connection and node binding schema (``collectors.opcua[]``)."""

from __future__ import annotations

from envmon.config.base_collector import CollectorConfig
from envmon.config.types import Text


class OpcUaCollectorConfig(CollectorConfig):
    """One OPC-UA server connection and the nodes read from it."""

    endpoint: Text
