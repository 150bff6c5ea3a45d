"""Kafka adapters: the bus, the producer, the topics, and the stream worker."""
