"""``envmon collect``: the site's collectors as a service, publishing to Kafka.

Runs every enabled MQTT and OPC-UA collector of the site configuration into the durable
buffer (``collectors.buffer`` in the site file) and forwards the buffer to the bus the
settings name. Outside ``envmon demo`` the bus must be Kafka (``ENVMON_BUS=kafka``): the
in-process bus only connects components inside one process.

The collectors' and the buffer's own events (connected, disconnected, silent
subscription, buffer full or stalled) go to ``envmon.alarms`` through a small durable
buffer of their own (``BufferConfig.events_path``) and a producer of their own: they are
not lost while Kafka is down, and they never wait behind thousands of buffered readings or
a readings producer that is stuck. Should that buffer itself refuse (its disk is full — the
very alarm that must go out), an event is kept in memory (bounded) and published directly.
A task of the service that fails (a defect) stops it with exit status 70 and the traceback
in the log, rather than leaving a collector that no longer forwards: systemd restarts it,
and what was buffered is forwarded by the next start. Counters and buffer ages are served
to Prometheus (``collect_metrics_port``); aiokafka's connection errors are summarised per
outage (``envmon.outagelog``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Final

from collectors.buffer import Outbox
from collectors.mqtt import MqttCollector
from collectors.opcua import OpcUaCollector
from collectors.pipeline import CollectorPipeline, event_message
from envmon.bus import BusUnavailableError, Message
from envmon.config import load_site
from envmon.metrics import Describe, MetricSet, describe_outages, registry_of, serve_metrics
from envmon.models import SystemEvent
from envmon.outagelog import kafka_outage_log
from envmon.settings import Settings, SettingsError
from stream.kafka.bus import KafkaBus
from stream.kafka.topics import ensure_topics

logger = logging.getLogger(__name__)

_READY_S: Final = 10.0
#: Bound of the events' buffer: a flapping connection during a week of Kafka outage.
EVENTS_MAX_MESSAGES: Final = 100_000
#: Events kept in memory while the events' buffer refuses them (its disk is full).
EVENTS_IN_MEMORY: Final = 10_000
#: Exit status of a collector stopped by a failed task (as the stream worker's fatal error).
EXIT_FATAL: Final = 70
_DIRECT_RETRY_S: Final = 1.0


class CollectFailedError(RuntimeError):
    """A task of ``envmon collect`` failed: the service stops (exit status 70)."""


Collector = MqttCollector | OpcUaCollector


async def run_collect(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the collectors until ``stop`` is set (or SIGTERM / SIGINT)."""
    if settings.bus != "kafka":
        raise SettingsError(
            "ENVMON_BUS / bus: envmon collect publishes to Kafka; set bus: kafka "
            "(the in-process bus exists only inside envmon demo)"
        )
    site = load_site(settings.site)
    with kafka_outage_log() as outage_log:
        await ensure_topics(settings)  # readings wait behind an event to a missing topic
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        client_id = f"{settings.kafka_client_id}-collect"
        bus = KafkaBus(
            settings.kafka_bootstrap, client_id=client_id, topic_prefix=settings.topic_prefix
        )
        events_bus = KafkaBus(
            settings.kafka_bootstrap,
            client_id=f"{client_id}-events",
            topic_prefix=settings.topic_prefix,
        )
        buffer = site.collectors.buffer
        # The events' own buffer says what happens to it in the log only (and the metrics).
        events = Outbox(
            buffer.events_path,
            max_messages=EVENTS_MAX_MESSAGES,
            name="event buffer",
            stall_alarm_after=buffer.stall_alarm_after,
        )

        direct: list[Message] = []  # events the events' buffer refused, in order
        direct_wake = asyncio.Event()

        def on_event(event: SystemEvent) -> None:
            # Each collector and the buffer log their own events: published here, once.
            # A full events buffer logs its refusal itself (buffer_full). Called from the
            # loop and from the buffer's worker threads alike.
            message = event_message(event)
            if events.put([message]):
                return
            if len(direct) >= EVENTS_IN_MEMORY:
                logger.error("%s: lost (no room for events anywhere): %s", event.component, event)
                return
            direct.append(message)
            loop.call_soon_threadsafe(direct_wake.set)

        outbox = Outbox(
            buffer.path,
            max_messages=buffer.max_messages,
            on_event=on_event,
            stall_alarm_after=buffer.stall_alarm_after,
        )

        def pipeline(source: str) -> CollectorPipeline:
            return CollectorPipeline(outbox, source=source)

        collectors: list[Collector] = [
            MqttCollector(c, site, pipeline(f"mqtt:{c.id}"), on_event=on_event)
            for c in site.collectors.mqtt
            if c.enabled
        ]
        collectors += [
            OpcUaCollector(c, site.sensors(), pipeline(f"opcua:{c.id}"), on_event=on_event)
            for c in site.collectors.opcua
            if c.enabled
        ]
        registry = registry_of(
            describe_collect(collectors, {"readings": outbox, "events": events}),
            describe_buses({"readings": bus, "events": events_bus}),
            describe_outages(outage_log),
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            with serve_metrics(
                registry,
                settings.metrics_host,
                settings.collect_metrics_port,
                setting="ENVMON_COLLECT_METRICS_PORT / --metrics-port",
            ) as server:
                tasks = [
                    asyncio.create_task(events.forward(events_bus), name="events"),
                    asyncio.create_task(outbox.forward(bus), name="forward"),
                    asyncio.create_task(
                        _publish_direct(events_bus, direct, direct_wake), name="events-direct"
                    ),
                ]
                failed: list[BaseException] = []

                def supervise(task: asyncio.Task[None]) -> None:
                    if task.cancelled() or task.exception() is None:
                        return
                    exc = task.exception()
                    assert exc is not None
                    logger.critical(
                        "task %s failed; stopping (exit %d)",
                        task.get_name(),
                        EXIT_FATAL,
                        exc_info=exc,
                    )
                    failed.append(exc)
                    stop.set()

                for task in tasks:
                    task.add_done_callback(supervise)
                for collector in collectors:
                    await collector.start()
                for collector in collectors:  # a broker that is down is retried meanwhile
                    if isinstance(collector, MqttCollector):  # subscribed: nothing is missed
                        try:
                            await collector.wait_ready(_READY_S)
                        except TimeoutError:
                            logger.warning(
                                "%s: not subscribed after %g s; retrying",
                                collector.component,
                                _READY_S,
                            )
                logger.info(
                    "collecting: %d collector(s), buffer %s, kafka %s, metrics %s",
                    len(collectors),
                    buffer.path,
                    settings.kafka_bootstrap,
                    server.url if server is not None else "off",
                )
                await stop.wait()
                if failed:
                    raise CollectFailedError(f"a task failed: {failed[0]!r}") from failed[0]
        finally:
            for collector in collectors:
                await collector.stop()
            for task in tasks:
                task.cancel()
            # A failed task's exception was logged by ``supervise``; the others end cancelled.
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(bus.stop(), events_bus.stop())
            outbox.close()  # what was not forwarded stays on disk for the next start
            events.close()


def describe_collect(collectors: list[Collector], buffers: dict[str, Outbox]) -> Describe:
    """Describe each collector's counters and each buffer's depth, age and counts."""

    def describe(m: MetricSet) -> None:
        for collector in collectors:
            name = collector.component
            counters = collector.counters
            for field, doc in (
                ("received", "protocol messages / data-change notifications seen"),
                ("readings", "readings accepted into the buffer"),
                ("dead_lettered", "payloads sent to the dead letter"),
                ("refused", "readings a full buffer refused"),
                ("dropped", "readings lost: refused longer than they could be held (OPC-UA)"),
                ("proofs_of_life", "proofs of life of unchanged values (OPC-UA)"),
                ("backfilled", "readings read back from the server's history after a gap"),
                ("reconnects", "reconnections after a loss"),
                ("resubscriptions", "subscriptions re-created"),
            ):
                m.counter(f"collector_{field}", doc, getattr(counters, field), collector=name)
            m.gauge(
                "collector_connected",
                "1 while connected (and subscribed)",
                float(collector.connected),
                collector=name,
            )
        for name, box in buffers.items():
            stats = box.stats
            m.gauge("buffer_messages", "messages waiting for the bus", len(box), buffer=name)
            m.gauge(
                "buffer_oldest_age_seconds",
                "how long the oldest message waiting has waited",
                box.oldest_age(),
                buffer=name,
            )
            m.gauge("buffer_capacity", "most messages it holds", box.max_messages, buffer=name)
            m.gauge("buffer_full", "1 while it refuses messages", float(box.full), buffer=name)
            m.gauge(
                "buffer_stalled",
                "1 from buffer_stalled to buffer_flowing",
                float(box.stalled),
                buffer=name,
            )
            m.counter("buffer_accepted", "messages stored", stats.accepted, buffer=name)
            m.counter("buffer_forwarded", "messages the bus took", stats.forwarded, buffer=name)
            m.counter("buffer_refused", "messages refused (full)", stats.refused, buffer=name)
            m.counter(
                "buffer_publish_failures",
                "failed attempts to publish a batch",
                stats.publish_failures,
                buffer=name,
            )

    return describe


def describe_buses(buses: dict[str, KafkaBus]) -> Describe:
    """Describe each Kafka producer: publish successes, failures and replacements."""

    def describe(m: MetricSet) -> None:
        for name, bus in buses.items():
            m.counter("bus_published", "messages Kafka acknowledged", bus.published, bus=name)
            m.counter("bus_publish_failures", "failed publish attempts", bus.failures, bus=name)
            m.counter(
                "bus_producer_replacements",
                "producers replaced by a new one (new producer id)",
                bus.replacements,
                bus=name,
            )
            m.gauge(
                "bus_failing",
                "1 from a failed publish to the next success",
                float(bus.failing),
                bus=name,
            )
            m.timestamp(
                "bus_last_publish_timestamp_seconds",
                "when a publish last succeeded (Unix time)",
                bus.last_published_at,
                bus=name,
            )

    return describe


async def _publish_direct(bus: KafkaBus, queue: list[Message], wake: asyncio.Event) -> None:
    """Publish the events the events' buffer refused, in order, retrying while Kafka is down."""
    while True:
        await wake.wait()
        wake.clear()
        while queue:
            batch = list(queue)
            try:
                await bus.publish(batch)
            except BusUnavailableError:
                await asyncio.sleep(_DIRECT_RETRY_S)
                continue
            del queue[: len(batch)]
