"""Equipment collectors (MQTT, OPC-UA): readings into the durable buffer; simulators."""
