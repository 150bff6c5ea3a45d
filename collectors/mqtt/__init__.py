"""The MQTT collector, exported as ``MqttCollector``.

``mapping`` (payload → readings), ``security`` (TLS, password), ``wire`` (the paho
connection), ``collector`` (the supervisor), ``errors``.
"""

from collectors.mqtt.collector import MqttCollector

__all__ = ["MqttCollector"]
