"""MQTT collector throughput at QoS 1: Mosquitto → collector → Outbox → InMemoryBus.

For each protocol version the benchmark starts Mosquitto (the shipped configuration) on
127.0.0.1, gives two subscribers a persistent QoS 1 session — ``mosquitto_sub`` (the C
client) and envmon's ``MqttCollector`` — and publishes N messages, every one acknowledged
by the broker. Each subscriber then drains the same backlog of N messages on its own:

- ``mosquitto_sub -q 1 -c -C N > /dev/null`` — the reference, timed as a process;
- the collector with its durable Outbox (SQLite, ``synchronous=FULL``) forwarding to an
  ``InMemoryBus`` whose consumer counts the readings: timed until the last reading has
  been consumed from the bus.

It also times the stages on their own to show where the time goes: the paho adapter
alone acknowledging at once (``adapter``), and the collector into the Outbox without
forwarding (``outbox``).

    .venv/bin/python -m bench.mqtt_bench --messages 100000 --repeat 3

Each figure is the median of ``--repeat`` runs (a fresh backlog each time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from collectors.buffer import Outbox
from collectors.mqtt import MqttCollector
from collectors.mqtt.wire import InboundMessage, MqttConnection
from collectors.pipeline import CollectorPipeline
from devservers.mosquitto import Mosquitto, mosquitto_binary, publish_all
from envmon.bus import READINGS, InMemoryBus
from envmon.config import SiteConfig, parse_site

PREFIX = "bench"
INSTRUMENTS = 100


def site_yaml(port: int, protocol: str, channels: int, receive_maximum: int = 2_000) -> str:
    """Return a site of INSTRUMENTS incubators and one MQTT binding for them."""
    instruments = "\n".join(
        f"""      - id: inc-{i}
        name: Incubator {i}
        kind: incubator
        channels:
          - {{parameter: temperature, unit: degC}}
          - {{parameter: co2, unit: "%"}}"""
        for i in range(INSTRUMENTS)
    )
    mapping = "temperature: {path: t}" + (", co2: {path: co2}" if channels == 2 else "")
    return f"""
site: {{name: Bench}}
areas:
  - id: room
    name: Room
    instruments:
{instruments}
collectors:
  mqtt:
    - id: bench
      port: {port}
      protocol: "{protocol}"
      receive_maximum: {receive_maximum}
      bindings:
        - topic: {PREFIX}/+area/+instrument/data
          sensor_id: "{{instrument}}.{{channel}}"
          payload:
            timestamp: {{path: ts, format: iso8601}}
            channels: {{{mapping}}}
"""


def messages(n: int) -> Iterator[tuple[str, bytes]]:
    """Yield n messages spread over the instruments, one sample per second each."""
    for i in range(n):
        seconds = i // INSTRUMENTS
        ts = f"2026-01-05T{8 + seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
        payload = b'{"ts":"%s","status":"ok","t":%.2f,"co2":%.2f}' % (
            ts.encode(),
            37.0 + (i % 7) * 0.01,
            5.0 + (i % 5) * 0.01,
        )
        yield f"{PREFIX}/room/inc-{i % INSTRUMENTS}/data", payload


@dataclass
class Result:
    """Timings of one protocol version."""

    protocol: str
    messages: int
    readings: int
    mosquitto_sub_s: float
    collector_s: float
    adapter_s: float
    outbox_s: float

    def rate(self, seconds: float) -> float:
        """Return messages per second."""
        return self.messages / seconds


async def _collector_run(
    site: SiteConfig, workdir: Path, expect: int, *, forward: bool
) -> tuple[float, int]:
    """Drain the backlog with the collector; return (seconds, readings that arrived)."""
    outbox = Outbox(workdir / f"outbox-{time.monotonic_ns()}.sqlite3")
    pipeline = CollectorPipeline(outbox, source="mqtt:bench")
    collector = MqttCollector(site.collectors.mqtt[0], site, pipeline)
    bus = InMemoryBus()
    consumed = 0
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal consumed
        async for _ in bus.subscribe(READINGS, "bench"):
            consumed += 1
            if consumed >= expect:
                done.set()

    tasks = []
    start = time.perf_counter()
    await collector.start()
    if forward:
        tasks = [asyncio.create_task(consume()), asyncio.create_task(outbox.forward(bus))]
        await done.wait()
        arrived = consumed
    else:
        while pipeline.counters.readings < expect:
            await asyncio.sleep(0.005)
        arrived = pipeline.counters.readings
    elapsed = time.perf_counter() - start
    await collector.stop()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    outbox.close()
    return elapsed, arrived


async def _adapter_run(site: SiteConfig, n: int) -> float:
    """Drain the backlog with the paho adapter alone, acknowledging each message at once."""
    config = site.collectors.mqtt[0].model_copy(update={"client_id": "bench-adapter"})
    got = 0
    done = asyncio.Event()
    conn: MqttConnection | None = None

    def on_message(message: InboundMessage) -> None:
        nonlocal got
        assert conn is not None
        conn.ack(message.mid, message.qos)
        got += 1
        if got >= n:
            done.set()

    start = time.perf_counter()
    conn = MqttConnection(config, on_message)
    await conn.connect()
    await conn.subscribe([f"{PREFIX}/#"], 1)
    await done.wait()
    elapsed = time.perf_counter() - start
    await conn.disconnect()
    return elapsed


def _mosquitto_sub(port: int, protocol: str, count: int | None) -> float:
    """Run mosquitto_sub on its persistent session; return its wall time."""
    args = [
        "mosquitto_sub",
        *("-h", "127.0.0.1", "-p", str(port), "-q", "1", "-c", "-i", "bench-mosquitto-sub"),
        *("-V", "mqttv5" if protocol == "5" else "mqttv311", "-t", f"{PREFIX}/#"),
    ]
    if protocol == "5":
        args += ["-x", "604800"]  # session expiry: a persistent session in MQTT 5
    if count is None:  # just create the session
        subprocess.run([*args, "-W", "1"], capture_output=True, check=False)
        return 0.0
    start = time.perf_counter()
    subprocess.run([*args, "-C", str(count)], stdout=subprocess.DEVNULL, check=True, timeout=600)
    return time.perf_counter() - start


async def run_protocol(protocol: str, n: int, channels: int, workdir: Path) -> Result:
    """Measure one protocol version."""
    workdir = workdir / f"run-{protocol}-{time.monotonic_ns()}"  # a fresh broker each run
    with Mosquitto(workdir / "mosquitto") as broker:
        site = parse_site(site_yaml(broker.port, protocol, channels))
        collector_sessions = [
            site.collectors.mqtt[0].model_copy(update={"client_id": cid})
            for cid in ("envmon-bench", "envmon-bench-outbox", "bench-adapter")
        ]
        for config in collector_sessions:  # persistent sessions: they queue the backlog
            conn = MqttConnection(config, lambda _m: None)
            await conn.connect()
            await conn.subscribe([f"{PREFIX}/#"], 1)
            await conn.disconnect()
        _mosquitto_sub(broker.port, protocol, None)
        await asyncio.to_thread(publish_all, "127.0.0.1", broker.port, messages(n), timeout=600)

        sub_s = await asyncio.to_thread(_mosquitto_sub, broker.port, protocol, n)
        expect = n * channels
        collector_s, arrived = await _collector_run(site, workdir, expect, forward=True)
        if arrived != expect:
            raise SystemExit(f"collector delivered {arrived} readings, expected {expect}")
        outbox_site = site.model_copy(
            update={
                "collectors": site.collectors.model_copy(update={"mqtt": (collector_sessions[1],)})
            }
        )
        outbox_s, _ = await _collector_run(outbox_site, workdir, expect, forward=False)
        adapter_s = await _adapter_run(site, n)
    return Result(protocol, n, expect, sub_s, collector_s, adapter_s, outbox_s)


def machine() -> str:
    """Describe the machine in one line."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(
        [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("processor")]
    )
    mosquitto = subprocess.run(
        [mosquitto_binary(), "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    return (
        f"{cores} vCPU {cpu}; CPython {platform.python_version()}; {mosquitto}; "
        f"paho-mqtt {version('paho-mqtt')}"
    )


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--channels", type=int, choices=(1, 2), default=1)
    parser.add_argument("--protocol", action="append", choices=("3.1.1", "5"))
    parser.add_argument("--repeat", type=int, default=3, help="runs per protocol (median)")
    args = parser.parse_args()
    protocols = args.protocol or ["5", "3.1.1"]
    print(machine())
    rows = []
    with tempfile.TemporaryDirectory(prefix="envmon-mqtt-bench-") as tmp:
        for protocol in protocols:
            runs = []
            for _ in range(args.repeat):
                r = asyncio.run(run_protocol(protocol, args.messages, args.channels, Path(tmp)))
                runs.append(r)
                print(
                    f"MQTT {protocol}: mosquitto_sub {r.rate(r.mosquitto_sub_s):,.0f} msg/s; "
                    f"collector → bus {r.rate(r.collector_s):,.0f} msg/s "
                    f"({r.readings / r.collector_s:,.0f} readings/s), "
                    f"ratio {r.mosquitto_sub_s / r.collector_s:.2f}",
                    flush=True,
                )
            rows.append(
                Result(
                    protocol,
                    args.messages,
                    runs[0].readings,
                    *(
                        statistics.median(getattr(run, name) for run in runs)
                        for name in ("mosquitto_sub_s", "collector_s", "adapter_s", "outbox_s")
                    ),
                )
            )
    print()
    print(
        "| MQTT | messages | readings/msg | mosquitto_sub msg/s | collector → bus msg/s "
        "| readings/s | ratio | adapter only msg/s | into Outbox msg/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.protocol} | {r.messages:,} | {args.channels} | "
            f"{r.rate(r.mosquitto_sub_s):,.0f} | {r.rate(r.collector_s):,.0f} | "
            f"{r.readings / r.collector_s:,.0f} | {r.mosquitto_sub_s / r.collector_s:.2f} | "
            f"{r.rate(r.adapter_s):,.0f} | {r.rate(r.outbox_s):,.0f} |"
        )


if __name__ == "__main__":
    main()
