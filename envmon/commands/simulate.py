"""``envmon simulate``: run the site's simulated equipment against real brokers and servers.

The MQTT devices publish to the broker of the site's first MQTT connection (or
``--mqtt-host``/``--mqtt-port``) and the cold-store gateway serves OPC-UA on the endpoint
of the site's first OPC-UA connection (or ``--opcua-endpoint``): a test bench for the
collectors without real equipment.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from collectors.simulators.equipment import Simulation
from collectors.simulators.mqtt_devices import MqttDeviceSimulator
from collectors.simulators.opcua_server import EquipmentServer
from collectors.simulators.scenario import load_scenario
from envmon.config import load_site
from envmon.timeutil import ScaledClock, utcnow


@dataclass
class SimulateOptions:
    """What ``envmon simulate`` was asked to do."""

    config: Path
    scenario: Path | None = None
    speed: float = 1.0
    seed: int | None = None
    duration: float | None = None
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    opcua_endpoint: str | None = None
    mqtt: bool = True
    opcua: bool = True


async def run_simulate(options: SimulateOptions, console: Console) -> None:
    """Run the simulators until ``duration`` real seconds passed (or forever)."""
    site = load_site(options.config)
    instruments = {i.id for area in site.areas for i in area.instruments}
    scenario = (
        load_scenario(options.scenario, instruments=instruments) if options.scenario else None
    )
    start = utcnow().replace(microsecond=0)
    clock = ScaledClock(start, options.speed)
    simulation = Simulation(site, start=start, scenario=scenario, seed=options.seed)
    devices: MqttDeviceSimulator | None = None
    gateway: EquipmentServer | None = None
    if options.mqtt:
        broker = site.collectors.mqtt[0] if site.collectors.mqtt else None
        host = options.mqtt_host or (broker.host if broker else "127.0.0.1")
        port = options.mqtt_port or (broker.port if broker and broker.port else 1883)
        devices = MqttDeviceSimulator(site, simulation, host=host, port=port, clock=clock)
        await devices.start()
        console.print(f"MQTT devices publishing to {host}:{port}", markup=False)
    if options.opcua:
        kwargs = {"endpoint": options.opcua_endpoint} if options.opcua_endpoint else {}
        gateway = EquipmentServer.for_site(site, simulation, clock=clock, **kwargs)
        await gateway.start()
        console.print(f"OPC-UA gateway serving {gateway.endpoint}", markup=False)
    started = time.monotonic()
    try:
        while options.duration is None or time.monotonic() - started < options.duration:
            await asyncio.sleep(0.5)
    finally:
        if devices is not None:
            with contextlib.suppress(Exception):
                await devices.stop()
            console.print(f"published {devices.published:,} MQTT messages", markup=False)
        if gateway is not None:
            with contextlib.suppress(Exception):
                await gateway.stop()
