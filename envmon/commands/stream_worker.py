"""``envmon stream worker``: one faust worker of the Kafka stream processor, with its metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import faust

from envmon.bus import ALL_TOPICS, AUDIT, AUDIT_TOPIC_CONFIG
from envmon.config import SiteConfig, load_site
from envmon.metrics import Describe, MetricSet, describe_outages, registry_of, serve_metrics
from envmon.models import DeadLetter, Reading, SystemEvent
from envmon.outagelog import kafka_outage_log
from envmon.settings import Settings
from stream.influx import InfluxWriter
from stream.kafka_broker import create_topics
from stream.tscontext import ContextPoint
from stream.tscontext import to_line as context_line
from stream.tsschema import LineEncoder
from stream.worker import (
    NullSink,
    SqliteSink,
    StreamWorker,
    TimeSeriesSink,
    changelog_topic,
    tune_gc,
)

logger = logging.getLogger(__name__)


def site_id(site: SiteConfig) -> str:
    """Return the site's id for the time series: its name as a lowercase slug."""
    return site.site_id


class InfluxSink:
    """Readings as line protocol (``stream.tsschema``) through the InfluxDB writer."""

    def __init__(self, settings: Settings, site: SiteConfig) -> None:
        self.specs = {spec.sensor_id: spec for spec in site.sensors()}
        self.site_id = site_id(site)
        self.encoder = LineEncoder(self.specs, site=self.site_id)
        self.encoder.prepare()
        #: The reading's line, called for every reading the worker evaluates.
        self.encode: Callable[[Reading, int, int], str] = self.encoder.encode
        #: A context point's line (limits, status, alarms, records: ``stream.tscontext``).
        self.encode_context: Callable[[ContextPoint], str] = context_line
        self.worker: StreamWorker | None = None
        self.writer = InfluxWriter(
            settings.influx_url,
            settings.influx_token.get_secret_value(),
            settings.influx_org,
            settings.influx_bucket,
            dead_letter=self._dead_letter,
            on_event=self._event,
            timeout_s=settings.influx_timeout_s,
        )

    async def _dead_letter(self, letter: DeadLetter) -> None:
        if self.worker is None:
            raise RuntimeError("InfluxSink used before it was attached to a worker")
        await self.worker.dead_letter(letter)

    async def _event(self, event: SystemEvent) -> None:
        if self.worker is not None:
            await self.worker.system_event(event)

    async def write(self, points: Sequence[str]) -> None:
        """Write the lines; returns once each is stored or dead-lettered."""
        if points:
            await self.writer.write(points)

    async def start(self) -> None:
        """Make the HTTP client before the first readings wait for it."""
        self.writer.open()

    @property
    def unavailable(self) -> bool:
        """True from the first failed write of an outage until a write succeeds."""
        return self.writer.unavailable

    async def close(self) -> None:
        """Close the writer's HTTP client."""
        await self.writer.close()


def build_worker(settings: Settings, site: SiteConfig) -> StreamWorker:
    """Build the worker with the time-series store the settings name."""
    sink: TimeSeriesSink
    influx: InfluxSink | None = None
    if settings.timeseries == "influx":
        sink = influx = InfluxSink(settings, site)
    elif settings.timeseries == "sqlite":
        sink = SqliteSink(settings.data_dir / "timeseries.sqlite3")
    else:
        sink = NullSink()
    worker = StreamWorker(settings, site.sensors(), sink, site=site.site_id)
    if influx is not None:
        influx.worker = worker
    return worker


async def ensure_topics(settings: Settings) -> None:
    """Create envmon's topics and the state table's changelog if they do not exist.

    The changelog too, before faust starts: when faust creates it itself on a fresh
    cluster, the group's first assignment can be computed from metadata that does not list
    the new topic yet. faust then assigns no partition at all and never asks again, and
    the worker reads nothing (seen in the fault matrix about one start in ten).
    """
    await create_topics(
        settings.kafka_bootstrap,
        {settings.topic(name): settings.kafka_partitions for name in ALL_TOPICS},
        replication=settings.kafka_replication,
        exist_ok=True,
    )
    await create_topics(
        settings.kafka_bootstrap,
        {changelog_topic(settings.app_id): settings.kafka_partitions},
        replication=settings.kafka_replication,
        config={"cleanup.policy": "compact"},
        exist_ok=True,
    )
    await ensure_audit_topic(settings)


async def ensure_audit_topic(settings: Settings) -> None:
    """Create the audit checkpoints' topic if it does not exist: one partition, kept for ever."""
    await create_topics(
        settings.kafka_bootstrap,
        {settings.topic(AUDIT): 1},
        replication=settings.kafka_replication,
        config=AUDIT_TOPIC_CONFIG,
        exist_ok=True,
    )


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Create the topics, then run one worker until SIGTERM / Ctrl-C (faust's Worker).

    aiokafka's connection errors are summarised per outage (``envmon.outagelog``) and the
    worker's counters served to Prometheus (``worker_metrics_port``) while it runs.
    """
    site = load_site(settings.site)
    with kafka_outage_log() as outage_log:
        asyncio.run(ensure_topics(settings))
        worker = build_worker(settings, site)
        registry = registry_of(describe_worker(worker), describe_outages(outage_log))
        with serve_metrics(
            registry,
            settings.metrics_host,
            settings.worker_metrics_port,
            setting="ENVMON_WORKER_METRICS_PORT / --metrics-port",
        ):
            tune_gc()
            faust_worker(worker.app, loglevel).execute_from_commandline()


def describe_worker(worker: StreamWorker) -> Describe:
    """Describe what the worker handled, how far behind it is and its last stored write."""

    def describe(m: MetricSet) -> None:
        m.counter("worker_readings", "readings handled and committed", worker.readings)
        m.counter("worker_rejected", "messages sent to the dead letter", worker.rejected)
        m.counter("worker_batches", "batches evaluated", worker.batches)
        m.counter("worker_checkpoints", "checkpoints committed", worker.checkpoints)
        m.counter(
            "worker_stale_batches", "batches dropped unhandled at a rebalance", worker.stale_batches
        )
        m.counter(
            "worker_offset_gaps", "holes in a partition's offsets sought back", worker.offsets.gaps
        )
        lag = dict(worker.lag)
        m.gauge("worker_partitions", "readings partitions read by this worker", len(lag))
        for partition, behind in sorted(lag.items()):
            m.gauge(
                "worker_lag",
                "readings in Kafka not yet evaluated (measured every 5 s)",
                behind,
                partition=str(partition),
            )
        m.timestamp(
            "worker_last_timeseries_write_timestamp_seconds",
            "when a time-series write last completed (Unix time)",
            worker.last_series_write,
        )
        m.gauge(
            "worker_timeseries_unavailable",
            "1 while time-series writes fail and are retried",
            float(worker.sink.unavailable),
        )

    return describe


def faust_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """Return faust's Worker for ``app`` without its terminal spinner.

    At WARN and above the spinner sets the root logger to DEBUG for good, so the level
    asked for would not be the level in force (why that matters: "No terminal spinner" in
    docs/architecture.md).
    """
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker
