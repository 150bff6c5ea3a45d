"""The production pipeline on real servers, with counted traffic, for the fault matrix.

One ``Pipeline`` is one small site run the way production runs it: simulated equipment
(``tests/faults/equipment.py``: MQTT incubators publishing through Mosquitto with QoS 1,
an OPC-UA gateway serving two freezers and keeping their history), ``envmon collect``
with its durable buffer, Kafka, ``envmon stream worker`` writing to InfluxDB, and
``envmon excursions consume`` storing records in PostgreSQL — the equipment and every
envmon component each a process of its own, the envmon ones started with the command line
their systemd units use.

The equipment stamps sample ``k`` with ``t0 + k`` seconds and sends it at that wall time;
values follow a fixed script with excursions that open before a fault and close after it.
Everything the equipment handed over is counted (MQTT: acknowledged by the broker;
OPC-UA: written to the server), and what envmon should make of exactly those readings is
computed by ``envmon replay``. ``measure`` then compares that with what the
servers hold: the points in InfluxDB, the records in PostgreSQL and the alarm events on
Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from sqlalchemy import create_engine

from devservers.influxdb import InfluxDB
from devservers.kafka import KafkaBroker
from devservers.mosquitto import Mosquitto
from devservers.postgres import PostgresServer
from envmon.bus import ALARMS, ALL_TOPICS
from envmon.timeutil import format_ts, parse_ts
from excursions.migrate import upgrade
from excursions.queries import core_records
from stream.kafka.topics import create_topics
from tests.faults.equipment import FREEZERS, INCUBATORS, NAMESPACE, Sample, Script, read_log

PARTITIONS = 4
_MIGRATING = threading.Lock()
REPO = Path(__file__).resolve().parents[2]
#: How long a process may take to start under load.
START_S = 120
#: Longer than any fault of the matrix: a fault never makes a sensor stale by itself.
STALE_AFTER_S = 90


def site_yaml(prefix: str, mqtt_port: int, opcua_endpoint: str, buffer: Path, nodes: str) -> str:
    """Return the site of one pipeline: one room, four incubators, two freezers."""
    incubators = "\n".join(
        f"""      - id: {i}
        name: Incubator {i[-1]}
        kind: incubator
        channels:
          - parameter: temperature
            unit: degC
            limits: {{alert_high: 37.5, action_high: 38.0, alert_low: 36.0, action_low: 35.5,
                      deadband: 0.1}}"""
        for i in INCUBATORS
    )
    freezers = "\n".join(
        f"""      - id: {f}
        name: Freezer {f[-1]}
        kind: freezer
        channels:
          - parameter: temperature
            unit: degC
            limits: {{alert_high: -70.0, action_high: -65.0, deadband: 0.5}}"""
        for f in FREEZERS
    )
    return f"""
site:
  name: Fault matrix {prefix}
  timezone: UTC
defaults:
  all: {{stale_after: {STALE_AFTER_S}s, bad_after: 3}}
areas:
  - id: lab
    name: Laboratory
    instruments:
{incubators}
{freezers}
collectors:
  buffer: {{path: {buffer}, max_messages: 100000}}
  mqtt:
    - id: site-broker
      host: 127.0.0.1
      port: {mqtt_port}
      client_id: envmon-{prefix}
      session_expiry: 1h
      reconnect: {{initial: 0.2, maximum: 1}}
      bindings:
        - topic: {prefix}/+instrument/data
          sensor_id: "{{instrument}}.temperature"
          payload:
            timestamp: {{path: ts, format: iso8601}}
            channels: {{temperature: {{path: t}}}}
  opcua:
    - id: cold-store
      endpoint: {opcua_endpoint}
      subscription: {{publishing_interval: 0.5, keepalive_count: 10, lifetime_count: 30}}
      watchdog: {{silence_timeout: 15, health_check: 5}}
      history: {{backfill: true}}
      reconnect: {{initial: 0.2, maximum: 1}}
      node_defaults: {{sampling_interval: 0, queue_size: 100}}
      nodes:
{nodes}
"""


def node_lines() -> str:
    """Return the OPC-UA node bindings of the freezers (by namespace URI, not index)."""
    return "\n".join(
        f'        - {{sensor_id: {f}.temperature, node_id: "nsu={NAMESPACE};s={f}"}}'
        for f in FREEZERS
    )


@dataclass
class Service:
    """One process of the pipeline (envmon's started like its systemd unit starts it)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    module: str = "envmon.cli"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        """Start the process (its output appended to its log)."""
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts} ===\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.argv],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        """Return whether the process runs."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing flushed."""
        if self.process is not None and self.alive():
            self.process.kill()
            self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait; SIGKILL after ``timeout``. Return the exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        return self.process.returncode

    def tail(self, chars: int = 4000) -> str:
        """Return the end of the log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Servers:
    """The real servers one pipeline runs on."""

    kafka: KafkaBroker
    mosquitto: Mosquitto
    influxdb: InfluxDB
    postgres: PostgresServer


@dataclass
class Outcome:
    """What went in and what the servers hold after a row."""

    readings_in: int
    readings_stored: int
    lost: list[str]
    duplicates: int
    unexpected_points: int
    alarms_expected: int
    alarms_raised: int
    alarms_missing: list[str]
    alarms_unexpected: list[str]
    records_expected: int
    records_stored: int
    records_wrong: list[str]
    system_alarms: list[str]
    bus_repeats: int
    log_lines: dict[str, int] = field(default_factory=dict)


def free_endpoint() -> str:
    """Return an OPC-UA endpoint on a free loopback port."""
    from envmon.netutil import free_port

    return f"opc.tcp://127.0.0.1:{free_port('127.0.0.1')}/fault-matrix/"


class Pipeline:
    """One site through every envmon process, on the given servers (module docstring)."""

    def __init__(self, servers: Servers, workdir: Path, script: Script) -> None:
        self.servers = servers
        self.workdir = workdir
        self.script = script
        self.prefix = f"f{uuid.uuid4().hex[:10]}"
        self.database = f"fm_{self.prefix}"
        self.t0 = dt.datetime.now(dt.UTC)
        self.endpoint = free_endpoint()
        self.gateway: Service | None = None
        self.devices: Service | None = None
        self.t0_file = workdir / "t0"
        self.site_path = workdir / "site.yaml"
        self.records_url = ""
        self.collect: Service | None = None
        self.workers: list[Service] = []
        self.consumer: Service | None = None
        self.buffer_path = workdir / "buffer" / "buffer.sqlite3"

    # ---------------------------------------------------------------- set-up

    def env(self, data_dir: Path) -> dict[str, str]:
        """Return the environment of an envmon process of this pipeline."""
        influx = self.servers.influxdb
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVMON_")}
        env.update(
            ENVMON_SITE=str(self.site_path),
            ENVMON_BUS="kafka",
            ENVMON_KAFKA_BOOTSTRAP=self.servers.kafka.bootstrap,
            ENVMON_KAFKA_PARTITIONS=str(PARTITIONS),
            ENVMON_APP_ID=self.prefix,
            ENVMON_TOPIC_PREFIX=f"{self.prefix}.",
            ENVMON_DATA_DIR=str(data_dir),
            ENVMON_TIMESERIES="influx",
            ENVMON_INFLUX_URL=influx.url,
            ENVMON_INFLUX_TOKEN="unused",
            ENVMON_INFLUX_ORG=influx.org,
            ENVMON_INFLUX_BUCKET=influx.bucket,
            ENVMON_RECORDS_DB=self.records_url,
            ENVMON_KAFKA_SESSION_TIMEOUT_S="6",
            ENVMON_COLLECT_METRICS_PORT="0",
            ENVMON_WORKER_METRICS_PORT="0",
            ENVMON_RECORDS_METRICS_PORT="0",
        )
        return env

    async def start(self, *, t0_delay_s: float = 3.0) -> None:
        """Start every process and the equipment; sample 0 is due ``t0_delay_s`` after."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.buffer_path.parent.mkdir(parents=True, exist_ok=True)
        self.gateway = self.equipment(
            "gateway",
            [
                "opcua",
                "--endpoint",
                self.endpoint,
                "--t0-file",
                str(self.t0_file),
                "--history",
                str(self.workdir / "gateway-history.sqlite"),
            ],
        )
        self.gateway.start()
        await self.wait_listening(self.endpoint, self.gateway)
        self.site_path.write_text(
            site_yaml(
                self.prefix,
                self.servers.mosquitto.port,
                self.endpoint,
                self.buffer_path,
                node_lines(),
            ),
            encoding="utf-8",
        )
        await asyncio.to_thread(self._create_database)
        await create_topics(
            self.servers.kafka.bootstrap,
            {f"{self.prefix}.{t}": PARTITIONS for t in ALL_TOPICS},
        )
        self.consumer = self._service("records", ["excursions", "consume"], self.workdir / "c")
        self.workers = [self.worker_service(1)]
        self.collect = self._service("collect", ["collect"], self.workdir / "collect")
        for service in (self.consumer, *self.workers, self.collect):
            service.start()
        await self.wait_log(self.collect, "collecting:", START_S)
        await self.wait_log(self.collect, "opcua:cold-store: connected", START_S)
        # The equipment's schedule starts once the collector is subscribed, on whole seconds.
        self.t0 = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=t0_delay_s)).replace(
            microsecond=0
        )
        self.t0_file.write_text(format_ts(self.t0), encoding="utf-8")
        self.devices = self.equipment(
            "devices",
            [
                "mqtt",
                "--port",
                str(self.servers.mosquitto.port),
                "--prefix",
                self.prefix,
                "--t0",
                format_ts(self.t0),
            ],
        )
        self.devices.start()

    async def wait_listening(self, endpoint: str, service: Service) -> None:
        """Wait until the OPC-UA gateway accepts connections (a collector then finds it up)."""
        url = urllib.parse.urlparse(endpoint)
        deadline = time.monotonic() + START_S
        while True:
            try:
                _, writer = await asyncio.open_connection(url.hostname, url.port)
            except OSError:
                if not service.alive() or time.monotonic() > deadline:
                    raise AssertionError(
                        f"{service.name} does not listen:\n{service.tail()}"
                    ) from None
                await asyncio.sleep(0.2)
                continue
            writer.close()
            await writer.wait_closed()
            return

    def equipment(self, name: str, argv: list[str]) -> Service:
        """Return an equipment process of this pipeline (not started)."""
        log = self.workdir / f"{name}.jsonl"
        return Service(
            name,
            [*argv, "--script", self.script.to_json(), "--log", str(log)],
            {**os.environ, "PYTHONPATH": str(REPO)},
            self.workdir,
            self.workdir / f"{name}.log",
            module="tests.faults.equipment",
        )

    async def restart_gateway(self, down_s: float) -> None:
        """Stop the OPC-UA gateway, keep it down ``down_s`` seconds, start it again."""
        assert self.gateway is not None
        await asyncio.to_thread(self.gateway.terminate, 30)
        await asyncio.sleep(down_s)
        self.gateway.start()
        await self.wait_listening(self.endpoint, self.gateway)

    def worker_service(self, n: int) -> Service:
        """Return the service of stream worker number ``n`` (not started)."""
        return self._service(
            f"worker-{n}", ["stream", "worker", "--loglevel", "info"], self.workdir / f"w{n}"
        )

    def _service(self, name: str, argv: list[str], data_dir: Path) -> Service:
        data_dir.mkdir(parents=True, exist_ok=True)
        return Service(name, argv, self.env(data_dir), self.workdir, self.workdir / f"{name}.log")

    def _create_database(self) -> None:
        self.records_url = self.servers.postgres.create_database(self.database)
        engine = create_engine(self.records_url)
        try:
            with _MIGRATING:  # Alembic's context is global: one migration at a time per process
                upgrade(engine)
        finally:
            engine.dispose()

    async def wait_log(self, service: Service, text: str, timeout: float) -> None:
        """Wait until ``text`` appears in the service's log."""
        deadline = time.monotonic() + timeout
        while text.encode() not in service.log.read_bytes():
            if not service.alive():
                raise AssertionError(f"{service.name} exited:\n{service.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{service.name}: no {text!r} in {timeout} s\n{service.tail()}"
                )
            await asyncio.sleep(0.2)

    def at(self, k: float) -> float:
        """Return the seconds from now until sample ``k`` is due."""
        return (self.t0 + dt.timedelta(seconds=k) - dt.datetime.now(dt.UTC)).total_seconds()

    async def until_sample(self, k: float) -> None:
        """Sleep until sample ``k`` is due."""
        await asyncio.sleep(max(0.0, self.at(k)))

    async def finish_equipment(self) -> None:
        """Wait until the equipment sent its last sample (the gateway keeps serving)."""
        await self.until_sample(self.script.samples + 1)
        assert self.devices is not None
        await asyncio.to_thread(self.devices.terminate, 30)

    # ---------------------------------------------------------------- measurement

    def readings_in(self) -> list[Sample]:
        """Return every reading the equipment handed over."""
        return [
            *read_log(self.workdir / "devices.jsonl"),
            *read_log(self.workdir / "gateway.jsonl"),
        ]

    def stored_points(self) -> list[tuple[str, int, float]]:
        """Return (sensor, µs, value) of every point of this site in InfluxDB."""
        influx = self.servers.influxdb
        slug = f"fault-matrix-{self.prefix}"
        query = f'SELECT "value", "sensor" FROM "reading" WHERE "site" = \'{slug}\''
        body = urllib.parse.urlencode({"q": query, "db": influx.database, "epoch": "u"}).encode()
        request = urllib.request.Request(f"{influx.url}/query", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        points: list[tuple[str, int, float]] = []
        for result in answer.get("results", []):
            for series in result.get("series", []):
                columns = series["columns"]
                for row in series["values"]:
                    item = dict(zip(columns, row, strict=True))
                    points.append((item["sensor"], int(item["time"]), float(item["value"])))
        return points

    async def wait_stored(self, deadline: dt.datetime) -> None:
        """Wait until every reading that went in is in InfluxDB (or ``deadline`` passed)."""
        wanted = {(s.sensor_id, _us(s.ts)) for s in self.readings_in()}
        while dt.datetime.now(dt.UTC) < deadline:
            stored = {(s, t) for s, t, _ in await asyncio.to_thread(self.stored_points)}
            if wanted <= stored:
                return
            await asyncio.sleep(1.0)

    async def expected(
        self, bus: list[dict[str, Any]] | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Return what ``envmon replay`` makes of the readings that went in (alarms, records).

        With the proofs of life the OPC-UA collector sent on the readings topic (``bus``,
        read now if not given): the equipment's readings do not determine them, yet the
        core takes them into account (a proof holds the last value until its time: an
        excursion's integral and time beyond the limit change when one falls inside it).
        """
        proofs = [
            (parse_ts(m["ts"]), m["sensor_id"], {"kind": m["kind"]})
            for m in (bus if bus is not None else await self.read_topic("envmon.readings"))
            if m.get("kind") == "proof_of_life"
        ]
        # envmon replay in a process of its own, like the other components: typer's test
        # runner swaps sys.stdout for the whole process, which rows running at once break.
        data, events = self._replay_input(proofs), self.workdir / "expected.jsonl"
        replay = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "envmon.cli", "replay", "--config", str(self.site_path)),
            *("--input", str(data), "--output", str(events)),
            cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await replay.communicate()
        assert replay.returncode == 0, output.decode(errors="replace")[-2000:]
        expected = [json.loads(line) for line in events.read_text().splitlines()]
        return (
            [e for e in expected if e["kind"] == "alarm"],
            [e for e in expected if e["kind"] != "alarm"],
        )

    def _replay_input(self, proofs: list[tuple[dt.datetime, str, dict[str, Any]]]) -> Path:
        """Write the readings that went in and the proofs, in time order, as JSON lines."""
        readings = {(s.ts, s.sensor_id): {"value": s.value} for s in self.readings_in()}
        lines = sorted(
            [*((ts, sid, v) for (ts, sid), v in readings.items()), *proofs],
            key=lambda line: (line[0], line[1], "kind" in line[2]),  # a proof after a reading
        )
        data = self.workdir / "expected-input.jsonl"  # a device's resend is one reading
        data.write_bytes(
            b"".join(
                orjson.dumps({"sensor_id": sid, "ts": format_ts(ts), **fields}) + b"\n"
                for ts, sid, fields in lines
            )
        )
        return data

    async def read_topic(self, name: str) -> list[dict[str, Any]]:
        """Read a whole topic of this pipeline from the start, until it is idle."""
        consumer = AIOKafkaConsumer(
            f"{self.prefix}.{name}",
            bootstrap_servers=self.servers.kafka.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        out: list[dict[str, Any]] = []
        try:
            await consumer.start()
            quiet_since = time.monotonic()
            deadline = quiet_since + 60
            while time.monotonic() < deadline and time.monotonic() - quiet_since < 2.0:
                batches = await consumer.getmany(timeout_ms=300)
                for records in batches.values():
                    out += [orjson.loads(r.value) for r in records]
                if batches:
                    quiet_since = time.monotonic()
        finally:
            await consumer.stop()
        return out

    def stored_records(self) -> list[dict[str, Any]]:
        """Return the core records the record consumer stored in PostgreSQL."""
        engine = create_engine(self.records_url)
        try:
            return [
                *core_records(engine, "excursion"),
                *core_records(engine, "data_gap"),
            ]
        finally:
            engine.dispose()

    async def wait_records(self, expected: list[dict[str, Any]], deadline: dt.datetime) -> None:
        """Wait until the record store holds the expected records in their final form."""
        while dt.datetime.now(dt.UTC) < deadline:
            held = await asyncio.to_thread(self.stored_records)
            if all(r in held for r in expected):
                return
            await asyncio.sleep(1.0)

    async def measure(self, *, settle_s: float = 60) -> Outcome:
        """Compare what went in with what the servers hold.

        Waits until ``settle_s`` after the last sample for the last readings and records,
        then stops every envmon process (well before ``STALE_AFTER_S`` of silence after the
        equipment stopped, which would rightly make every sensor stale) and counts.
        """
        assert settle_s < STALE_AFTER_S - 15
        _, records_expected = await self.expected()
        settled = self.t0 + dt.timedelta(seconds=self.script.samples + settle_s)
        await self.wait_stored(settled)
        await self.wait_records(records_expected, settled)
        for service in self.services():
            await asyncio.to_thread(service.terminate, 60)
        readings_topic = await self.read_topic("envmon.readings")
        alarms_expected, records_expected = await self.expected(readings_topic)  # every proof
        samples = self.readings_in()
        wanted = {(s.sensor_id, _us(s.ts)): s.value for s in samples}
        points = await asyncio.to_thread(self.stored_points)
        stored_keys = [(s, t) for s, t, _ in points]
        lost = sorted(
            f"{sensor} {format_ts(dt.datetime.fromtimestamp(us / 1e6, dt.UTC))}"
            for sensor, us in set(wanted) - set(stored_keys)
        )
        duplicates = len(stored_keys) - len(set(stored_keys))
        unexpected = len(set(stored_keys) - set(wanted))

        events = await self.read_topic(ALARMS)
        raised = [e for e in events if e.get("kind") == "alarm"]
        system = [e for e in events if e.get("kind") == "system"]
        want_alarms = {_canonical(e) for e in alarms_expected}
        got_alarms = {_canonical(e) for e in raised}
        keys = [(r["sensor_id"], r["ts"]) for r in readings_topic]

        held = await asyncio.to_thread(self.stored_records)
        by_id: dict[str, list[dict[str, Any]]] = {}
        for record in held:
            by_id.setdefault(record["id"], []).append(record)
        records_wrong = []
        for record in records_expected:
            got = by_id.get(record["id"], [])
            if not got:
                records_wrong.append(f"missing {record['kind']} {record['sensor_id']}")
            elif got[0] != record:
                fields = _differences(record, got[0])
                records_wrong.append(f"differs {record['kind']} {record['sensor_id']} ({fields})")
        extra = set(by_id) - {r["id"] for r in records_expected}
        records_wrong += [
            f"unexpected {by_id[i][0]['kind']} {by_id[i][0]['sensor_id']}" for i in extra
        ]
        return Outcome(
            readings_in=len(wanted),
            readings_stored=len(set(stored_keys) & set(wanted)),
            lost=lost,
            duplicates=duplicates,
            unexpected_points=unexpected,
            alarms_expected=len(want_alarms),
            alarms_raised=len(got_alarms),
            alarms_missing=sorted(
                _describe(e) for e in alarms_expected if _canonical(e) not in got_alarms
            ),
            alarms_unexpected=sorted(
                _describe(e) for e in raised if _canonical(e) not in want_alarms
            ),
            records_expected=len(records_expected),
            records_stored=sum(
                1 for r in records_expected if r["id"] in by_id and by_id[r["id"]][0] == r
            ),
            records_wrong=records_wrong,
            system_alarms=sorted({f"{e['event']}" for e in system if e.get("alarm")}),
            bus_repeats=len(keys) - len(set(keys)),
            log_lines={
                s.name: len(s.log.read_text(errors="replace").splitlines()) for s in self.services()
            },
        )

    def services(self) -> list[Service]:
        """Return every envmon process of this pipeline."""
        return [s for s in (self.collect, *self.workers, self.consumer) if s is not None]

    async def stop(self) -> None:
        """Stop the equipment and every process; drop the database."""
        for service in (self.devices, self.gateway, *self.services()):
            if service is not None:
                await asyncio.to_thread(service.terminate, 60)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.servers.postgres.drop_database, self.database)


def _us(ts: dt.datetime) -> int:
    return int(ts.timestamp()) * 1_000_000 + ts.microsecond


def _canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True)


def _differences(expected: dict[str, Any], stored: dict[str, Any]) -> str:
    """Name the fields of a record that differ: expected value, then the stored one."""
    keys = sorted(set(expected) | set(stored))
    return "; ".join(
        f"{k}: {expected.get(k)!r} ≠ {stored.get(k)!r}"
        for k in keys
        if expected.get(k) != stored.get(k)
    )[:400]


def _describe(event: dict[str, Any]) -> str:
    return f"{event.get('event', event.get('kind'))} {event.get('sensor_id')} {event.get('ts')}"
