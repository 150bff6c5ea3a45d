"""Servers for tests, benchmarks and development: real processes and receivers on 127.0.0.1.

Not part of the product: nothing under envmon, collectors, stream, alerts, excursions or
dashboards imports this package. ``versions`` holds the one pin of each server;
``fixtures`` builds the suite's pytest fixtures from the runners.
"""
