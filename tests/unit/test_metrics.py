"""The services' Prometheus endpoint: samples read at scrape time, served over HTTP."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from envmon.metrics import MetricSet, registry_of, serve_metrics
from envmon.netutil import free_port
from envmon.settings import SettingsError


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class TestEndpoint:
    def test_serves_the_values_of_the_moment(self) -> None:
        """Each scrape reads the live counters: nothing is copied on the hot path."""
        counters = {"readings": 0}

        def describe(m: MetricSet) -> None:
            m.counter("collector_readings", "readings", counters["readings"], collector="c1")
            m.gauge("buffer_messages", "waiting", 7, buffer="readings")
            m.timestamp("bus_last_publish_timestamp_seconds", "last", None, bus="readings")
            m.timestamp(
                "worker_last_timeseries_write_timestamp_seconds",
                "last",
                datetime(2026, 1, 5, tzinfo=UTC),
            )

        with serve_metrics(registry_of(describe), "127.0.0.1", free_port(), setting="X") as s:
            assert s is not None
            assert s.url.startswith("http://127.0.0.1:")
            counters["readings"] = 42
            got = scrape(s.url)
        assert got[("envmon_collector_readings_total", (("collector", "c1"),))] == 42
        assert got[("envmon_buffer_messages", (("buffer", "readings"),))] == 7
        assert got[("envmon_worker_last_timeseries_write_timestamp_seconds", ())] == (
            datetime(2026, 1, 5, tzinfo=UTC).timestamp()
        )
        # never published yet: no sample rather than a misleading 0 (the epoch)
        assert not any(name.startswith("envmon_bus_last") for name, _ in got)
        assert any(name == "process_cpu_seconds_total" for name, _ in got)

    def test_port_zero_is_off(self) -> None:
        """0 turns the endpoint off."""
        with serve_metrics(registry_of(), "127.0.0.1", 0, setting="X") as server:
            assert server is None

    def test_a_taken_port_is_refused_naming_the_setting(self) -> None:
        """A port in use stops the service at start with the setting to change."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with (
                pytest.raises(SettingsError, match=r"ENVMON_COLLECT_METRICS_PORT.*0 turns"),
                serve_metrics(
                    registry_of(), "127.0.0.1", port, setting="ENVMON_COLLECT_METRICS_PORT"
                ),
            ):
                pass

    def test_stopped_means_closed(self) -> None:
        """After the block nothing listens on the port any more."""
        port = free_port()
        with serve_metrics(registry_of(), "127.0.0.1", port, setting="X"):
            pass
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
