"""``envmon collect``: the site's collectors as a service, publishing to a real Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collectors.simulators.equipment import Simulation
from collectors.simulators.opcua_server import EquipmentServer
from devservers.kafka import KafkaBroker
from devservers.mosquitto import Mosquitto, publish_all
from envmon.bus import ALARMS, READINGS
from envmon.cli import app as cli
from envmon.commands.collect import run_collect
from envmon.config import load_site
from envmon.models import SystemEvent, SystemEventKind
from envmon.netutil import free_port
from envmon.settings import Settings
from envmon.testing import eventually
from envmon.timeutil import utcnow
from tests.integration.mqtt.helpers import messages, seq_of, site_yaml

from .pipeline import example_site_file, read_topic, scrape
from .test_outages import read_readings

pytestmark = pytest.mark.timeout(120)


def test_collect_refuses_the_in_process_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside the demo the collectors need Kafka: said before anything starts."""
    monkeypatch.setenv("ENVMON_BUS", "memory")
    site = tmp_path / "site.yaml"
    site.write_text(site_yaml("t", 1883))
    result = CliRunner().invoke(cli, ["collect", "--site", str(site)])
    assert result.exit_code == 2
    assert "ENVMON_BUS" in result.output


async def test_mqtt_readings_reach_kafka(
    kafka: KafkaBroker,
    mosquitto: Mosquitto,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """Messages published to Mosquitto come out of envmon.readings, every one, in order."""
    prefix = topic_prefix
    site = tmp_path / "site.yaml"
    site.write_text(site_yaml(prefix, mosquitto.port))
    topic = f"{prefix}.{READINGS}"  # envmon collect creates its topics
    env = dict(os.environ)
    env.update(
        {
            "ENVMON_BUS": "kafka",
            "ENVMON_SITE": str(site),
            "ENVMON_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "ENVMON_TOPIC_PREFIX": f"{prefix}.",
        }
    )
    log = tmp_path / "collect.log"
    metrics_port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "envmon.cli", "collect", "--metrics-port", str(metrics_port)],
            env=env,
            cwd=tmp_path,  # the buffer's relative path lands here
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with asyncio.timeout(30):
            while b"collecting:" not in log.read_bytes():
                assert process.poll() is None, log.read_text()
                await asyncio.sleep(0.1)
        await asyncio.to_thread(
            publish_all, "127.0.0.1", mosquitto.port, messages(prefix, range(500))
        )
        got = await read_readings(kafka.bootstrap, topic, 500)
        metrics = await scrape(metrics_port)  # the counters the README lists, over HTTP
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    assert code == 0, log.read_text()
    seqs = sorted(seq_of(r) for r in got)
    assert seqs == list(range(500))
    collector = "mqtt:test"
    assert metrics[("envmon_collector_received_total", collector)] == 500
    assert metrics[("envmon_collector_readings_total", collector)] == 500
    for counter in ("dead_lettered", "refused", "reconnects", "resubscriptions"):
        assert metrics[(f"envmon_collector_{counter}_total", collector)] == 0
    assert metrics[("envmon_collector_connected", collector)] == 1
    assert metrics[("envmon_buffer_messages", "readings")] == 0
    assert metrics[("envmon_buffer_oldest_age_seconds", "readings")] == 0
    assert metrics[("envmon_bus_published_total", "readings")] == 500
    assert metrics[("envmon_bus_producer_replacements_total", "readings")] == 0


def _opcua_site(
    kafka: KafkaBroker,
    topic_prefix: str,
    tmp_path: Path,
    *,
    seed: int,
    tick: float,
    metrics_port: int = 0,
) -> tuple[EquipmentServer, Settings]:
    """The example site read over OPC-UA from simulated equipment, and collect's settings."""
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/envmon/"
    site_file = example_site_file(
        tmp_path / "site.yaml", buffer=tmp_path / "buffer.sqlite3", opcua_endpoint=endpoint
    )
    site = load_site(site_file)
    server = EquipmentServer.for_site(
        site, Simulation(site, start=utcnow(), seed=seed), endpoint=endpoint, tick=tick
    )
    return server, _collect_settings(kafka, topic_prefix, tmp_path, site_file, metrics_port)


def _collect_settings(
    kafka: KafkaBroker, topic_prefix: str, tmp_path: Path, site_file: Path, metrics_port: int = 0
) -> Settings:
    """``envmon collect``'s settings on the test's topics, data under ``tmp_path``."""
    return Settings(
        bus="kafka",
        site=site_file,
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=f"{topic_prefix}.",
        data_dir=tmp_path / "data",
        collect_metrics_port=metrics_port,
    )


class TestCollectorEvents:
    async def test_one_opcua_disconnect_is_one_message_on_alarms(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """An OPC-UA server going away is published once on envmon.alarms, not twice."""
        server, settings = _opcua_site(kafka, topic_prefix, tmp_path, seed=1, tick=0.2)
        alarms_topic = settings.topic(ALARMS)

        async def events() -> list[SystemEvent]:
            values = await read_topic(kafka.bootstrap, alarms_topic, idle_s=0.5)
            return [SystemEvent.model_validate_json(v) for v in values]

        async def seen(kind: SystemEventKind) -> bool:
            return any(e.event is kind for e in await events())

        await server.start()
        stop = asyncio.Event()
        collect = asyncio.create_task(run_collect(settings, stop=stop))
        try:
            await eventually(
                lambda: seen(SystemEventKind.CONNECTED), what="connected on the topic", timeout=30
            )
            await server.stop()
            await eventually(
                lambda: seen(SystemEventKind.DISCONNECTED), what="disconnected", timeout=30
            )
            await asyncio.sleep(3)  # reconnection attempts fail meanwhile: no more events
        finally:
            stop.set()
            await collect
            await server.stop()
        kinds = [e.event for e in await events()]
        assert kinds.count(SystemEventKind.CONNECTED) == 1, kinds
        assert kinds.count(SystemEventKind.DISCONNECTED) == 1, kinds

    async def test_events_do_not_wait_behind_stuck_readings(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """With the readings' producer stuck, a disconnection still reaches envmon.alarms."""
        metrics_port = free_port()
        server, settings = _opcua_site(
            kafka, topic_prefix, tmp_path, seed=2, tick=0.05, metrics_port=metrics_port
        )

        async def kinds() -> list[SystemEventKind]:
            values = await read_topic(kafka.bootstrap, settings.topic(ALARMS), idle_s=0.5)
            return [SystemEvent.model_validate_json(v).event for v in values]

        await server.start()
        stop = asyncio.Event()
        collect = asyncio.create_task(run_collect(settings, stop=stop))
        try:
            await eventually(
                lambda: _contains(kinds(), SystemEventKind.CONNECTED),
                what="connected on the topic",
                timeout=30,
            )
            # Readings can no longer be published: their topic is gone (no auto-creation).
            await kafka.delete_topics([settings.topic(READINGS)])

            async def readings_stuck() -> bool:
                metrics = await scrape(metrics_port)
                return metrics[("envmon_buffer_messages", "readings")] >= 500

            await eventually(readings_stuck, what="readings piling up in the buffer", timeout=60)
            await server.stop()
            await eventually(
                lambda: _contains(kinds(), SystemEventKind.DISCONNECTED),
                what="disconnected on the topic, ahead of the stuck readings",
                timeout=20,
            )
            metrics = await scrape(metrics_port)
            assert metrics[("envmon_buffer_messages", "readings")] >= 500
            assert metrics[("envmon_buffer_messages", "events")] == 0
        finally:
            stop.set()
            await collect
            await server.stop()


async def _contains(values, wanted) -> bool:
    return wanted in await values


class TestFailStop:
    async def test_a_failed_task_stops_the_collector_instead_of_leaving_it_stuck(
        self,
        kafka: KafkaBroker,
        topic_prefix: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A forwarder that dies (a defect) ends the service (exit 70), named in the log.

        Before, the task's exception surfaced only at shutdown ("Task exception was never
        retrieved"), and the collector went on collecting into a buffer nobody forwarded.
        """
        from collectors.buffer import Outbox
        from envmon.commands.collect import CollectFailedError

        site_file = example_site_file(tmp_path / "site.yaml", buffer=tmp_path / "b.sqlite3")
        settings = _collect_settings(kafka, topic_prefix, tmp_path, site_file)
        forward = Outbox.forward

        async def broken_forward(self: Outbox, bus, **kwargs) -> None:
            if self.name == "buffer":
                await asyncio.sleep(0.5)
                raise RuntimeError("a defect in the forwarder")
            await forward(self, bus, **kwargs)

        monkeypatch.setattr(Outbox, "forward", broken_forward)
        with pytest.raises(CollectFailedError, match="a defect in the forwarder"):
            async with asyncio.timeout(60):
                await run_collect(settings, stop=asyncio.Event())
        assert "task forward failed" in caplog.text
