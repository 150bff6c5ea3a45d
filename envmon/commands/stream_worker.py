"""``envmon stream worker``: one faust worker of the Kafka stream processor, with its metrics."""

from __future__ import annotations

import asyncio
import logging

import faust

from envmon.config import SiteConfig, load_site
from envmon.metrics import Describe, MetricSet, describe_outages, registry_of, serve_metrics
from envmon.outagelog import kafka_outage_log
from envmon.settings import Settings
from envmon.timeseries import SeriesWriter
from stream.kafka.app import StreamWorker, tune_gc
from stream.kafka.topics import ensure_topics
from stream.timeseries.sink import InfluxSink, NullSink, SqliteSink

logger = logging.getLogger(__name__)


def build_worker(settings: Settings, site: SiteConfig) -> StreamWorker:
    """Build the worker with the time-series store the settings name."""
    sink: SeriesWriter
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
