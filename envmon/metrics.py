"""The Prometheus metrics endpoint of envmon's services (prometheus-client).

``envmon collect``, ``envmon stream worker`` and ``envmon excursions consume`` each serve
``http://HOST:PORT/metrics`` (``metrics_host``, 127.0.0.1 by default, and the service's
own port setting; 0 turns it off). Nothing is counted twice: the services keep their
counters where they always did (a collector's ``CollectorCounters``, a buffer's
``BufferStats``, the bus's and the worker's attributes), and a ``MetricSet`` reads them
when Prometheus scrapes, so the hot paths pay nothing for the endpoint. The names and
what to alert on are listed in docs/operations.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from envmon.outagelog import OutageLog
from envmon.settings import SettingsError

PREFIX: Final = "envmon_"


class MetricSet:
    """Metric families built at scrape time: ``counter`` and ``gauge`` add one sample each."""

    def __init__(self) -> None:
        self._families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

    def counter(self, name: str, doc: str, value: float, **labels: str) -> None:
        """Add a sample of the counter ``envmon_<name>_total``."""
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = CounterMetricFamily(
                PREFIX + name, doc, labels=list(labels)
            )
        family.add_metric(list(labels.values()), value)

    def gauge(self, name: str, doc: str, value: float | None, **labels: str) -> None:
        """Add a sample of the gauge ``envmon_<name>`` (None: no sample, e.g. never yet)."""
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = GaugeMetricFamily(
                PREFIX + name, doc, labels=list(labels)
            )
        if value is not None:
            family.add_metric(list(labels.values()), value)

    def timestamp(self, name: str, doc: str, when: datetime | None, **labels: str) -> None:
        """Add a time as a gauge in Unix seconds (``time() - envmon_…`` is its age)."""
        self.gauge(name, doc, None if when is None else when.timestamp(), **labels)

    def families(self) -> list[Metric]:
        """Return what was added."""
        return list(self._families.values())


Describe = Callable[[MetricSet], None]


class _Describer:
    """A prometheus-client collector that asks ``describe`` for its samples at each scrape."""

    def __init__(self, describe: Describe) -> None:
        self._describe = describe

    def collect(self) -> Iterable[Metric]:
        metrics = MetricSet()
        self._describe(metrics)
        return metrics.families()


def registry_of(*describers: Describe) -> CollectorRegistry:
    """Return a registry of the given describers and the process's own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    for describe in describers:
        registry.register(_Describer(describe))
    return registry


def describe_outages(outage_log: OutageLog) -> Describe:
    """Describe what the Kafka outage log saw (see ``envmon.outagelog``)."""

    def describe(m: MetricSet) -> None:
        m.counter(
            "kafka_outages",
            "Kafka outages seen (connection errors after quiet)",
            outage_log.outages,
        )
        m.gauge(
            "kafka_outage",
            "1 during a Kafka outage (connection errors)",
            float(outage_log.in_outage),
        )
        m.counter(
            "kafka_log_suppressed",
            "Kafka client warnings and errors held back by the outage log",
            outage_log.suppressed,
        )

    return describe


class MetricsServer:
    """Serves a registry at ``http://host:port/metrics`` from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, setting: str) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.setting = setting
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen; raise ``SettingsError`` naming the setting if the address cannot be used."""
        try:
            server, thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as exc:
            raise SettingsError(
                f"{self.setting}: cannot serve metrics on {self.host}:{self.port}: "
                f"{exc.strerror or exc} (0 turns the endpoint off)"
            ) from None
        self._server, self._thread = server, thread

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@contextmanager
def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, *, setting: str
) -> Iterator[MetricsServer | None]:
    """Serve ``registry`` while the block runs (nothing if ``port`` is 0)."""
    if port == 0:
        yield None
        return
    server = MetricsServer(registry, host, port, setting)
    server.start()
    try:
        yield server
    finally:
        server.stop()
