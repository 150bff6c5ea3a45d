"""Equipment collectors (MQTT, OPC-UA) and simulators — built in issue 3."""
