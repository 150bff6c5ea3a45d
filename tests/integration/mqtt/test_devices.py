"""Simulated MQTT equipment → Mosquitto → collector, with the example site's bindings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from collectors.buffer import Outbox
from collectors.mqtt import MqttCollector
from collectors.pipeline import CollectorPipeline
from collectors.simulators.equipment import Simulation
from collectors.simulators.mqtt_devices import MqttDeviceSimulator
from collectors.simulators.scenario import FaultEvent, Scenario
from devservers.mosquitto import Mosquitto
from envmon.config import SiteConfig, load_site
from envmon.models import Quality
from envmon.testing import FakeClock, eventually

from .helpers import T0

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "site.yaml"
MQTT_KINDS = {"particle_counter", "incubator", "room_sensor"}


def retarget(site: SiteConfig, port: int) -> SiteConfig:
    """Point the example site's broker connection at the test broker, with its own session."""
    (connection,) = site.collectors.mqtt
    connection = connection.model_copy(
        update={"port": port, "client_id": f"envmon-{uuid.uuid4().hex[:8]}"}
    )
    return site.model_copy(
        update={"collectors": site.collectors.model_copy(update={"mqtt": (connection,)})}
    )


class Rig:
    """The example site's MQTT devices and its collector on one broker."""

    def __init__(self, broker: Mosquitto, workdir: Path, scenario: Scenario | None = None):
        self.site = retarget(load_site(EXAMPLE), broker.port)
        self.clock = FakeClock(T0)
        self.simulation = Simulation(self.site, start=T0, scenario=scenario, seed=3)
        self.devices = MqttDeviceSimulator(
            self.site,
            self.simulation,
            host=broker.host,
            port=broker.port,
            clock=self.clock,
            client_id=f"sim-{uuid.uuid4().hex[:8]}",
        )
        self.outbox = Outbox(workdir / "buffer.sqlite3")
        pipeline = CollectorPipeline(self.outbox, source="mqtt:site-broker")
        self.collector = MqttCollector(
            self.site.collectors.mqtt[0], self.site, pipeline, clock=self.clock
        )

    def readings(self) -> dict[str, tuple[float | None, str]]:
        """Return the buffered readings by sensor id: (value, quality)."""
        out = {}
        for _, message in self.outbox.peek(100_000):
            reading = orjson.loads(message.value)
            out[reading["sensor_id"]] = (reading["value"], reading["quality"])
        return out

    def expected(self) -> dict[str, tuple[float | None, Quality]]:
        """Return what the equipment model says every MQTT sensor reads at T0."""
        return {
            sensor_id: (value.value, value.quality)
            for instrument in self.simulation.instruments()
            if instrument.kind in MQTT_KINDS and instrument.connected(T0)
            for sensor_id, value in instrument.read(T0).items()
        }


@pytest.fixture
async def rig(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(mosquitto, tmp_path)
    await r.collector.start()
    await r.collector.wait_ready(10)
    await r.devices.start()
    yield r
    await r.devices.stop()
    await r.collector.stop()
    r.outbox.close()


class TestMqttDevices:
    """The simulators publish in the devices' native units; the collector gets the site's."""

    async def test_every_mqtt_sensor_reads_the_model_value(self, rig):
        """Counts per sample, ppm and °F come back as particles/m³, % and °C, as simulated."""
        sent = rig.devices.publish_once(T0)
        expected = rig.expected()
        await eventually(
            lambda: len(rig.readings()) == len(expected), what="every expected reading", timeout=10
        )
        got = rig.readings()
        assert sent == len({sid.split(".")[0] for sid in expected})
        assert set(got) == set(expected)
        for sensor_id, (value, _) in expected.items():
            assert value is not None
            if "particles" in sensor_id:
                # whole particles per sample: the simulated concentration rounded to a count
                instrument = rig.simulation.instrument(sensor_id.split(".")[0])
                volume = instrument.sample_volume_m3
                assert got[sensor_id][0] == pytest.approx(round(value * volume) / volume)
            else:
                assert got[sensor_id][0] == pytest.approx(value, abs=1e-3)
        assert rig.collector.counters.dead_lettered == 0


async def test_communication_loss_and_sensor_fault(mosquitto, tmp_path):
    """A device in communication loss publishes nothing; a failed sensor reads bad quality."""
    scenario = Scenario(
        events=(
            FaultEvent(at=0, instrument="pc-grade-b", fault="communication_loss", duration=600),
            FaultEvent(
                at=0, instrument="incubator-2", fault="sensor_fault", duration=600, channel="co2"
            ),
        )
    )
    r = Rig(mosquitto, tmp_path, scenario)
    await r.collector.start()
    await r.collector.wait_ready(10)
    await r.devices.start()
    try:
        r.devices.publish_once(T0)
        expected = r.expected()
        await eventually(
            lambda: len(r.readings()) == len(expected), what="every expected reading", timeout=10
        )
        got = r.readings()
    finally:
        await r.devices.stop()
        await r.collector.stop()
        r.outbox.close()
    assert not any(sensor_id.startswith("pc-grade-b.") for sensor_id in got)
    assert got["incubator-2.co2"] == (None, "bad")
    assert got["incubator-2.temperature"][1] == "good"
