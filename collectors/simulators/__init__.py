"""Simulated equipment for demos, tests and benchmarks: value model, scenarios, protocols."""
