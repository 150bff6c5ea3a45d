"""The OPC-UA equipment simulator serves the example site's cold store to the real collector."""

from __future__ import annotations

from pathlib import Path

from asyncua import Client

from collectors.simulators.equipment import Simulation
from collectors.simulators.opcua_server import EquipmentServer, unece_unit_id
from collectors.simulators.scenario import FaultEvent, Scenario
from envmon.config import load_site
from envmon.models import Quality
from envmon.testing import eventually
from envmon.timeutil import utcnow

from .helpers import FAST, readings

SITE = load_site(Path(__file__).parents[3] / "deploy" / "examples" / "site.yaml")
COLD_STORE = {
    "ult-freezer-1.temperature",
    "ult-freezer-2.temperature",
    "freezer-20-1.temperature",
    "fridge-1.temperature",
    "fridge-2.temperature",
    "ln2-dewar-1.temperature",
    "ln2-dewar-1.level",
}


def simulator(endpoint: str, *events: FaultEvent) -> EquipmentServer:
    """The example site's gateway simulator on ``endpoint``, ticking every 0.2 s."""
    simulation = Simulation(SITE, start=utcnow(), scenario=Scenario(events=events), seed=3)
    return EquipmentServer.for_site(SITE, simulation, endpoint=endpoint, tick=0.2)


def site_collector_config(endpoint: str):
    """The example site's OPC-UA connection, pointed at ``endpoint`` with fast timings."""
    connection = SITE.collectors.opcua[0]
    data = connection.model_dump(mode="python")
    data.update(FAST, endpoint=endpoint, node_defaults=connection.node_defaults.model_dump())
    return type(connection).model_validate(data)


class TestEquipmentServer:
    async def test_address_space_has_units_ranges_and_the_cold_store(self, endpoint):
        """ColdStore/<instrument>/<channel> variables carry EngineeringUnits and EURange."""
        server = simulator(endpoint)
        await server.start()
        try:
            assert {p.sensor_id for p in server.points} == COLD_STORE
            async with Client(endpoint) as client:
                ns = await client.get_namespace_index("urn:envmon:simulator")
                fridge = await client.nodes.objects.get_child(
                    [f"{ns}:ColdStore", f"{ns}:fridge-1", f"{ns}:temperature"]
                )
                assert fridge.nodeid.to_string() == f"ns={ns};s=ColdStore.fridge-1.temperature"
                units = await (await fridge.get_child(f"{ns}:EngineeringUnits")).read_value()
                assert units.UnitId == unece_unit_id("CEL")
                assert units.DisplayName.Text == "°C"
                eu_range = await (await fridge.get_child(f"{ns}:EURange")).read_value()
                assert eu_range.Low < 2.0
                assert eu_range.High > 8.0
                minus20 = client.get_node(server.node_id_of("freezer-20-1.temperature"))
                units = await (await minus20.get_child(f"{ns}:EngineeringUnits")).read_value()
                assert units.DisplayName.Text == "°F"  # as the example site says it reports
                value = await minus20.read_data_value()
                assert -10 < value.Value.Value < 0  # about −20 °C in °F
                assert value.SourceTimestamp is not None
        finally:
            await server.stop()

    async def test_example_site_connection_collects_every_cold_store_channel(
        self, endpoint, outbox, make_collector
    ):
        """The example site's own node list reads all seven channels, °F converted back to °C."""
        server = simulator(endpoint)
        await server.start()
        try:
            collector = make_collector(site_collector_config(endpoint), SITE.sensors())
            await collector.start()
            await collector.wait_connected(10)
            await eventually(
                lambda: {r.sensor_id for r in readings(outbox)} == COLD_STORE,
                what="every channel",
                timeout=10,
            )
            latest = {r.sensor_id: r for r in readings(outbox)}
            minus20 = latest["freezer-20-1.temperature"]
            assert minus20.unit == "degC"
            assert -25 < minus20.value < -15
            assert -90 < latest["ult-freezer-1.temperature"].value < -60
            assert all(r.quality is Quality.GOOD for r in latest.values())
        finally:
            await server.stop()

    async def test_scripted_faults_reach_the_collector(self, endpoint, outbox, make_collector):
        """A sensor fault reads BadSensorFailure; a lost instrument says so once, then rests."""
        server = simulator(
            endpoint,
            FaultEvent(at=0, instrument="fridge-1", fault="sensor_fault", duration=3600),
            FaultEvent(at=0, instrument="fridge-2", fault="communication_loss", duration=3600),
        )
        await server.start()
        try:
            collector = make_collector(site_collector_config(endpoint), SITE.sensors())
            await collector.start()
            await collector.wait_connected(10)
            await eventually(
                lambda: (
                    sum(r.sensor_id == "ult-freezer-1.temperature" for r in readings(outbox)) >= 5
                ),
                what="five ticks",
                timeout=10,
            )
            fridge1 = [r for r in readings(outbox) if r.sensor_id == "fridge-1.temperature"]
            assert fridge1
            assert all(r.quality is Quality.BAD and r.value is None for r in fridge1)
            fridge2 = [r for r in readings(outbox) if r.sensor_id == "fridge-2.temperature"]
            assert len(fridge2) == 1  # the status the gateway set when it lost the fridge
            assert fridge2[0].quality is Quality.BAD
        finally:
            await server.stop()
