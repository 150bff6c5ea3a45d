"""``envmon collect``: the site's collectors as a service, publishing to Kafka.

Runs every enabled MQTT and OPC-UA collector of the site configuration into the durable
buffer (``collectors.buffer`` in the site file) and forwards the buffer to the bus the
settings name. Outside ``envmon demo`` the bus must be Kafka (``ENVMON_BUS=kafka``): the
in-process bus only connects components inside one process.

The collectors' own events (connected, disconnected, silent subscription, buffer full) are
logged and published to ``envmon.alarms``: through the buffer like readings, except
``buffer_full``, which cannot go through the full buffer and is published directly.
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
from envmon.commands.stream_worker import ensure_topics
from envmon.config import load_site
from envmon.models import SystemEvent, SystemEventKind
from envmon.settings import Settings, SettingsError
from stream.kafka_bus import KafkaBus

logger = logging.getLogger(__name__)

_RETRY_S: Final = 1.0
_READY_S: Final = 10.0


async def run_collect(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the collectors until ``stop`` is set (or SIGTERM / SIGINT)."""
    if settings.bus != "kafka":
        raise SettingsError(
            "ENVMON_BUS / bus: envmon collect publishes to Kafka; set bus: kafka "
            "(the in-process bus exists only inside envmon demo)"
        )
    site = load_site(settings.site)
    await ensure_topics(settings)  # readings wait behind an event to a missing topic
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    bus = KafkaBus(
        settings.kafka_bootstrap,
        client_id=f"{settings.kafka_client_id}-collect",
        topic_prefix=settings.topic_prefix,
    )
    direct: list[Message] = []  # events that cannot go through the buffer

    outbox: Outbox | None = None

    def on_event(event: SystemEvent) -> None:
        # Each collector and the buffer log their own events: published here, once.
        message = event_message(event)
        through_buffer = event.event is not SystemEventKind.BUFFER_FULL and outbox is not None
        if not (through_buffer and outbox is not None and outbox.put([message])):
            direct.append(message)
            loop.call_soon_threadsafe(wake.set)

    wake = asyncio.Event()
    buffer = site.collectors.buffer
    outbox = Outbox(buffer.path, max_messages=buffer.max_messages, on_event=on_event)

    def pipeline(source: str) -> CollectorPipeline:
        return CollectorPipeline(outbox, source=source)

    collectors: list[MqttCollector | OpcUaCollector] = [
        MqttCollector(c, site, pipeline(f"mqtt:{c.id}"), on_event=on_event)
        for c in site.collectors.mqtt
        if c.enabled
    ]
    collectors += [
        OpcUaCollector(c, site.sensors(), pipeline(f"opcua:{c.id}"), on_event=on_event)
        for c in site.collectors.opcua
        if c.enabled
    ]
    forwarder = asyncio.create_task(outbox.forward(bus), name="forward")
    publisher = asyncio.create_task(_publish_direct(bus, direct, wake), name="events")
    try:
        for collector in collectors:
            await collector.start()
        for collector in collectors:  # a broker that is down is retried meanwhile
            if isinstance(collector, MqttCollector):  # subscribed: nothing published is missed
                try:
                    await collector.wait_ready(_READY_S)
                except TimeoutError:
                    logger.warning(
                        "%s: not subscribed after %g s; retrying", collector.component, _READY_S
                    )
        logger.info(
            "collecting: %d collector(s), buffer %s, kafka %s",
            len(collectors),
            buffer.path,
            settings.kafka_bootstrap,
        )
        await stop.wait()
    finally:
        for collector in collectors:
            await collector.stop()
        for task in (forwarder, publisher):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.stop()
        outbox.close()  # what was not forwarded stays on disk for the next start


async def _publish_direct(bus: KafkaBus, queue: list[Message], wake: asyncio.Event) -> None:
    """Publish events that bypass the buffer, retrying while Kafka is unavailable."""
    while True:
        await wake.wait()
        wake.clear()
        while queue:
            batch = list(queue)
            try:
                await bus.publish(batch)
            except BusUnavailableError:  # keep the events and retry
                await asyncio.sleep(_RETRY_S)
                continue
            del queue[: len(batch)]
