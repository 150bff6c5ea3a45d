"""Simulated equipment of the fault matrix, each kind in a process of its own.

``python -m tests.faults.equipment mqtt …`` publishes the incubators through Mosquitto;
``python -m tests.faults.equipment opcua …`` serves the freezers over OPC-UA. Sample ``k``
is stamped ``t0 + k`` seconds and sent at that wall time, with values from a fixed script
(``value_at``). Every sample handed over — acknowledged by the broker, or written to the
server — is appended to a JSON-lines log, which is what the matrix counts as "readings in".
Running outside the test process keeps the equipment's timing independent of the test's
event loop, and lets a fault stop or restart the gateway like the real thing.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from devservers.mosquitto import MosquittoError, publish_all
from envmon.timeutil import format_ts, parse_ts
from tests.integration.opcua.helpers import PointsServer

#: MQTT incubators (temperature, °C) and OPC-UA freezers (temperature, °C).
INCUBATORS = ("inc-0", "inc-1", "inc-2", "inc-3")
FREEZERS = ("frz-0", "frz-1")
NAMESPACE = "urn:envmon:fault-matrix"


@dataclass(frozen=True)
class Script:
    """When (in samples, one a second) the scripted excursions run."""

    inc_action: tuple[int, int]
    inc_alert: tuple[int, int]
    frz_action: tuple[int, int]
    samples: int

    def to_json(self) -> str:
        """Return the script as JSON (for the equipment's command line)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Script:
        """Read a script written by ``to_json``."""
        data = json.loads(text)
        return cls(
            inc_action=tuple(data["inc_action"]),
            inc_alert=tuple(data["inc_alert"]),
            frz_action=tuple(data["frz_action"]),
            samples=int(data["samples"]),
        )


def value_at(instrument: str, k: int, script: Script) -> float:
    """Return the value instrument ``instrument`` reports as its sample ``k``."""
    wobble = ((k * 7 + len(instrument) * 3 + int(instrument[-1])) % 5) * 0.02
    if instrument.startswith("inc"):
        level = 37.0 + wobble
        if instrument == "inc-1" and script.inc_action[0] <= k < script.inc_action[1]:
            level = 38.6 + wobble  # above action_high 38.0
        if instrument == "inc-2" and script.inc_alert[0] <= k < script.inc_alert[1]:
            level = 37.7 + wobble  # above alert_high 37.5
        return round(level, 2)
    level = -80.0 + wobble
    if instrument == "frz-0" and script.frz_action[0] <= k < script.frz_action[1]:
        level = -62.0 + wobble  # above action_high -65
    return round(level, 2)


@dataclass(frozen=True)
class Sample:
    """One reading the equipment handed over: the unit of 'readings in'."""

    sensor_id: str
    ts: dt.datetime
    value: float


def read_log(path: Path) -> list[Sample]:
    """Return the samples an equipment process logged as handed over."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            out.append(Sample(item["s"], parse_ts(item["t"]), float(item["v"])))
    return out


class _Log:
    def __init__(self, path: Path) -> None:
        self.fh = path.open("a", encoding="utf-8")

    def write(self, samples: list[Sample]) -> None:
        for s in samples:
            self.fh.write(json.dumps({"s": s.sensor_id, "t": format_ts(s.ts), "v": s.value}) + "\n")
        self.fh.flush()


def run_mqtt(host: str, port: int, prefix: str, t0: dt.datetime, script: Script, log: Path) -> None:
    """Publish every incubator's samples, QoS 1, keeping what the broker did not take.

    A device that cannot reach the broker keeps its samples and sends them with the next
    ones (as data loggers do); only what the broker acknowledged is logged.
    """
    out = _Log(log)
    backlog: list[Sample] = []
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    k = 0
    while k < script.samples and not stop["now"]:
        due = t0 + dt.timedelta(seconds=k)
        wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
        if wait > 0:
            time.sleep(wait)
        backlog += [Sample(f"{i}.temperature", due, value_at(i, k, script)) for i in INCUBATORS]
        k += 1
        if _publish(host, port, prefix, backlog):
            out.write(backlog)
            backlog = []
    deadline = time.monotonic() + 30
    while backlog and not stop["now"] and time.monotonic() < deadline:
        if _publish(host, port, prefix, backlog):
            out.write(backlog)
            backlog = []
        else:
            time.sleep(0.5)


def _publish(host: str, port: int, prefix: str, samples: list[Sample]) -> bool:
    try:
        publish_all(
            host,
            port,
            [
                (
                    f"{prefix}/{s.sensor_id.split('.')[0]}/data",
                    orjson.dumps({"ts": format_ts(s.ts), "t": s.value}),
                )
                for s in samples
            ],
            timeout=5,
        )
    except (MosquittoError, OSError):
        return False  # the broker is away: keep them, send them with the next
    return True


class _GatewayServer(PointsServer):
    """The freezers' server, holding the equipment's current values before it listens."""

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        super().__init__(list(FREEZERS), namespace=NAMESPACE, **kwargs)
        self.gateway = gateway

    async def build(self, server: Any) -> None:
        await super().build(server)
        await self.gateway.write_current()


class Gateway:
    """The freezers' OPC-UA gateway: one value a second each, with its source timestamp.

    Like a monitoring gateway it keeps its values' history (``history``: an SQLite file
    that outlives a restart) for HistoryRead. A gateway that (re)starts serves its
    equipment's current values, stamped with the time it started, before it accepts a
    connection; until ``t0`` is known (a file the pipeline writes once the collector is
    up) those are sample 0's values.
    """

    def __init__(
        self, endpoint: str, t0_file: Path, script: Script, log: Path, history: Path | None = None
    ) -> None:
        self.endpoint = endpoint
        self.t0_file = t0_file
        self.script = script
        self.log = _Log(log)
        self.server = _GatewayServer(self, endpoint=endpoint, history=history)

    def t0(self) -> dt.datetime | None:
        """Return the equipment's t0 once the pipeline set it."""
        try:
            return parse_ts(self.t0_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    async def write_current(self) -> None:
        """Write the values of the current sample, stamped now."""
        now = dt.datetime.now(dt.UTC)
        t0 = self.t0()
        k = max(0, int((now - t0).total_seconds())) if t0 is not None else 0
        await self._write(k, now)

    async def _write(self, k: int, ts: dt.datetime) -> None:
        values = [(f, value_at(f, k, self.script)) for f in FREEZERS]
        await self.server.write_many([(f, v, 0, ts) for f, v in values])  # 0: Good
        self.log.write([Sample(f"{f}.temperature", ts, v) for f, v in values])

    async def run(self) -> None:
        """Serve, and write one sample a second from ``t0`` on, until SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await self.server.start()
        try:
            t0 = self.t0()
            while t0 is None and not stop.is_set():
                await asyncio.sleep(0.1)
                t0 = self.t0()
            if t0 is not None:
                k = max(1, int((dt.datetime.now(dt.UTC) - t0).total_seconds()) + 1)
                while k < self.script.samples and not stop.is_set():
                    due = t0 + dt.timedelta(seconds=k)
                    wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
                    if wait > 0:
                        try:
                            await asyncio.wait_for(stop.wait(), wait)
                            break
                        except TimeoutError:
                            pass
                    await self._write(k, due)
                    k += 1
            await stop.wait()  # serving its last values until told to stop
        finally:
            await self.server.stop()


def main() -> None:
    """Run one kind of equipment (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["mqtt", "opcua"])
    parser.add_argument("--script", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--t0")
    parser.add_argument("--t0-file", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--prefix")
    parser.add_argument("--endpoint")
    parser.add_argument("--history", type=Path, help="keep the freezers' history in this file")
    args = parser.parse_args()
    script = Script.from_json(args.script)
    if args.kind == "mqtt":
        run_mqtt("127.0.0.1", args.port, args.prefix, parse_ts(args.t0), script, args.log)
    else:
        gateway = Gateway(args.endpoint, args.t0_file, script, args.log, args.history)
        asyncio.run(gateway.run())


if __name__ == "__main__":
    main()
