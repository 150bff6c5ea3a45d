"""``envmon demo``: the whole pipeline in one process on the embedded defaults.

An embedded MQTT broker (amqtt), the example site's simulated equipment (MQTT particle
counters and incubators, an OPC-UA cold-store gateway), both collectors, the durable
buffer, the in-process bus, the evaluation core, SQLite for readings and excursion records,
and a live terminal view. Simulated time runs ``speed`` times faster than real time, so a
ten-minute alarm delay passes in seconds; the scenario scripts the faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.live import Live

from collectors.buffer import Outbox
from collectors.embedded_broker import EmbeddedBroker
from collectors.mqtt import MqttCollector
from collectors.opcua import OpcUaCollector
from collectors.pipeline import CollectorPipeline
from collectors.simulators.equipment import Simulation
from collectors.simulators.mqtt_devices import MqttDeviceSimulator
from collectors.simulators.opcua_server import EquipmentServer
from collectors.simulators.scenario import load_scenario
from envmon.bus import ALARMS, InMemoryBus
from envmon.commands.demo_view import render
from envmon.config import SiteConfig, load_site
from envmon.models import AlarmEvent, SystemEvent
from envmon.netutil import free_port
from envmon.timeutil import ScaledClock, utcnow
from excursions.store import SqliteExcursionStore, consume_excursions
from stream.embedded import StreamProcessor
from stream.timeseries import SqliteTimeSeries

logger = logging.getLogger(__name__)

DEFAULT_SITE: Final = Path("deploy/examples/site.yaml")
DEFAULT_SCENARIO: Final = Path("deploy/examples/demo-scenario.yaml")
DEFAULT_SPEED: Final = 30.0
REFRESH_PER_S: Final = 4
_ALARM_OR_SYSTEM = TypeAdapter(AlarmEvent | SystemEvent)


@dataclass
class DemoOptions:
    """What ``envmon demo`` was asked to do."""

    config: Path = DEFAULT_SITE
    scenario: Path | None = DEFAULT_SCENARIO
    speed: float = DEFAULT_SPEED
    duration: float | None = None
    summary: Path | None = None
    workdir: Path | None = None
    seed: int | None = None
    live: bool = True


@dataclass
class DemoRecorder:
    """Everything the demo saw, for the live view and the summary."""

    alarms: list[AlarmEvent] = field(default_factory=list)
    system: list[SystemEvent] = field(default_factory=list)
    recent: deque[AlarmEvent | SystemEvent] = field(default_factory=lambda: deque(maxlen=50))

    total: int = 0

    def add(self, event: AlarmEvent | SystemEvent) -> None:
        """Record one alarm or system event."""
        self.total += 1
        (self.alarms if isinstance(event, AlarmEvent) else self.system).append(event)  # type: ignore[arg-type]
        self.recent.append(event)


def retarget(site: SiteConfig, *, mqtt_port: int, opcua_port: int, workdir: Path) -> SiteConfig:
    """Point the site's collectors at the demo's own broker, gateway and buffer."""
    collectors = site.collectors
    mqtt = tuple(
        c.model_copy(update={"host": "127.0.0.1", "port": mqtt_port, "protocol": "3.1.1"})
        for c in collectors.mqtt
    )
    opcua = tuple(
        c.model_copy(update={"endpoint": f"opc.tcp://127.0.0.1:{opcua_port}/envmon/"})
        for c in collectors.opcua
    )
    buffer = collectors.buffer.model_copy(update={"path": str(workdir / "buffer.sqlite3")})
    return site.model_copy(
        update={
            "collectors": collectors.model_copy(
                update={"mqtt": mqtt, "opcua": opcua, "buffer": buffer}
            )
        }
    )


async def run_demo(options: DemoOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the demo until ``duration`` real seconds passed (or forever); return the summary."""
    console = console or Console()
    site = load_site(options.config)
    instruments = {i.id for area in site.areas for i in area.instruments}
    scenario = (
        load_scenario(options.scenario, instruments=instruments) if options.scenario else None
    )
    async with _workdir(options.workdir) as workdir:
        mqtt_port, opcua_port = free_port(), free_port()
        site = retarget(site, mqtt_port=mqtt_port, opcua_port=opcua_port, workdir=workdir)
        start = utcnow().replace(second=0, microsecond=0)
        clock = ScaledClock(start, options.speed)
        simulation = Simulation(site, start=start, scenario=scenario, seed=options.seed)
        recorder = DemoRecorder()
        bus = InMemoryBus()
        outbox = Outbox(
            site.collectors.buffer.path,
            max_messages=site.collectors.buffer.max_messages,
            on_event=recorder.add,
            clock=clock,
        )
        timeseries = SqliteTimeSeries(workdir / "readings.sqlite3")
        records = SqliteExcursionStore(workdir / "excursions.sqlite3")
        processor = StreamProcessor(bus, site.sensors(), store=timeseries, clock=clock, tick_s=0.25)
        broker = EmbeddedBroker(mqtt_port)
        gateway = (
            EquipmentServer.for_site(
                site, simulation, clock=clock, endpoint=site.collectors.opcua[0].endpoint
            )
            if site.collectors.opcua
            else None
        )
        devices = MqttDeviceSimulator(
            site, simulation, host="127.0.0.1", port=mqtt_port, clock=clock
        )

        def pipeline(source: str) -> CollectorPipeline:
            return CollectorPipeline(outbox, source=source, clock=clock)

        collectors: list[MqttCollector | OpcUaCollector] = [
            MqttCollector(c, site, pipeline(f"mqtt:{c.id}"), clock=clock, on_event=recorder.add)
            for c in site.collectors.mqtt
            if c.enabled
        ]
        collectors += [
            OpcUaCollector(
                c, site.sensors(), pipeline(f"opcua:{c.id}"), clock=clock, on_event=recorder.add
            )
            for c in site.collectors.opcua
            if c.enabled
        ]
        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        try:
            await broker.start()
            if gateway is not None:
                await gateway.start()
            await processor.start()
            tasks = [
                asyncio.create_task(outbox.forward(bus), name="forward"),
                asyncio.create_task(consume_excursions(bus, records), name="records"),
                asyncio.create_task(_listen_alarms(bus, recorder.add), name="alarms"),
            ]
            for collector in collectors:
                await collector.start()
            await devices.start()

            def screen() -> Any:  # noqa: ANN401 - a rich renderable
                return render(
                    site,
                    now=clock(),
                    speed=options.speed,
                    states={
                        s: processor.evaluator.state_of(s) for s in processor.evaluator.sensor_ids
                    },
                    last=processor.last,
                    recent=recorder.recent,
                    counters={c.pipeline.source: c.counters.as_dict() for c in collectors},
                    excursions=records.count(),
                    buffered=len(outbox),
                )

            await _run_for(options, started, screen, console, recorder)
        finally:
            with contextlib.suppress(Exception):
                await devices.stop()
            for collector in collectors:
                with contextlib.suppress(Exception):
                    await collector.stop()
            with contextlib.suppress(Exception):
                await outbox.drain(bus, timeout=10)
            await asyncio.sleep(0.5)  # let the processor and consumers take the last messages
            await processor.stop()
            for task in tasks:
                task.cancel()
            if gateway is not None:
                with contextlib.suppress(Exception):
                    await gateway.stop()
            with contextlib.suppress(Exception):
                await broker.stop()
        summary = _summary(
            options, started, recorder, records, processor, collectors, outbox, timeseries
        )
        outbox.close()
        timeseries.close()
        records.close()
    if options.summary is not None:
        options.summary.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


async def _run_for(
    options: DemoOptions,
    started: float,
    screen: Callable[[], Any],
    console: Console,
    recorder: DemoRecorder,
) -> None:
    deadline = None if options.duration is None else started + options.duration
    if not options.live:
        printed = 0
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if options.summary is None:  # plain output: one line per alarm as it happens
                printed = _print_new(console, recorder, printed)
        return
    with Live(screen(), console=console, refresh_per_second=REFRESH_PER_S, screen=False) as live:
        while deadline is None or time.monotonic() < deadline:
            await asyncio.sleep(1 / REFRESH_PER_S)
            live.update(screen())


def _print_new(console: Console, recorder: DemoRecorder, printed: int) -> int:
    events = list(recorder.recent)
    new = recorder.total - printed
    for event in events[len(events) - min(new, len(events)) :]:
        if isinstance(event, AlarmEvent):
            level = f" {event.level.value}" if event.level else ""
            value = "" if event.value is None else f" value {event.value:,.4g}"
            line = f"{event.ts:%H:%M:%S} {event.event.value}{level} {event.sensor_id}{value}"
        else:
            line = f"{event.ts:%H:%M:%S} {event.event.value} {event.component} {event.detail}"
        console.print(line, markup=False, highlight=False)
    return recorder.total


async def _listen_alarms(bus: InMemoryBus, add: Callable[[AlarmEvent | SystemEvent], None]) -> None:
    async for message in bus.subscribe(ALARMS, "demo"):
        with contextlib.suppress(ValidationError):
            add(_ALARM_OR_SYSTEM.validate_json(message.value))


@contextlib.asynccontextmanager
async def _workdir(path: Path | None) -> AsyncIterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="envmon-demo-") as tmp:
        yield Path(tmp)


def _summary(
    options: DemoOptions,
    started: float,
    recorder: DemoRecorder,
    records: SqliteExcursionStore,
    processor: StreamProcessor,
    collectors: list[MqttCollector | OpcUaCollector],
    outbox: Outbox,
    timeseries: SqliteTimeSeries,
) -> dict[str, Any]:
    return {
        "duration_s": round(time.monotonic() - started, 1),
        "speed": options.speed,
        "alarms": [json.loads(a.model_dump_json()) for a in recorder.alarms],
        "system_events": [json.loads(e.model_dump_json()) for e in recorder.system],
        "excursions": [json.loads(r.model_dump_json()) for r in records.excursions()],
        "data_gaps": [json.loads(g.model_dump_json()) for g in records.data_gaps()],
        "collectors": {c.pipeline.source: c.counters.as_dict() for c in collectors},
        "buffer": {"pending": len(outbox), **vars(outbox.stats)},
        "stream": {
            "readings": processor.readings,
            "rejected": processor.rejected,
            "stored": timeseries.count(),
        },
    }
