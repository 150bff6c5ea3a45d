"""Time-series adapters: InfluxDB, QuestDB, SQLite, the worker's sinks, the point schema."""
