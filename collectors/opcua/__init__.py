"""The OPC-UA collector, exported as ``OpcUaCollector``.

``mapping`` (data value → reading), ``security`` (identity, certificates, trust),
``wire`` (the asyncua client and session operations), ``collector`` (the supervisor),
``errors``.
"""

from collectors.opcua.collector import OpcUaCollector

__all__ = ["OpcUaCollector"]
