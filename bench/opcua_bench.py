"""Benchmark of the OPC-UA collector: how many monitored items at 1 Hz one process keeps up with.

For each step (2k, 5k, 10k, 15k items by default) a ``SyntheticServer`` with that many
nodes runs in a separate process pinned to its own CPU and writes a new value with a new
source timestamp to every node once a second. The collector runs in this process, pinned
to the other CPU, with the real path behind it: notifications mapped to ``Reading``s,
group-committed to a durable on-disk ``Outbox`` (SQLite, WAL, synchronous=FULL) and
forwarded to a bus (one that discards, so the bus costs nothing). After a warm-up it
measures for a while:

- the rate of readings committed to the buffer (keeping up: ≈ items per second);
- the lag of each committed reading (commit time − source timestamp), as median and p99
  over the first and the last third of the window: keeping up means the lag does not grow;
  and the part of it spent in the collector (commit time − receipt of the notification);
- the CPU used by the collector process and by the server process.

    python -m bench.opcua_bench --steps 2000,5000,10000,15000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import cpu_seconds
from collectors.buffer import Outbox
from collectors.opcua import OpcUaCollector
from collectors.pipeline import CollectorPipeline, RawPayload
from collectors.simulators.opcua_server import SyntheticServer
from envmon.bus import Message
from envmon.models import ProofOfLife, Reading
from envmon.netutil import free_port

HOST = "127.0.0.1"
COLLECTOR_CPU = 0
SERVER_CPU = 1
WARMUP_S = 8.0


class NullBus:
    """A bus that takes every message and keeps none."""

    published = 0

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    async def publish(self, messages: list[Message]) -> None:
        """Count the messages and drop them."""
        self.published += len(messages)

    async def subscribe(self, topic: str, group: str) -> AsyncIterator[Message]:
        """Yield nothing: the messages are gone."""
        nothing: tuple[Message, ...] = ()
        for message in nothing:
            yield message

    async def subscribe_batches(self, topic: str, group: str) -> AsyncIterator[list[Message]]:
        """Yield nothing: the messages are gone."""
        nothing: tuple[list[Message], ...] = ()
        for batch in nothing:
            yield batch


class MeasuringPipeline(CollectorPipeline):
    """A pipeline that records the lag of a sample of committed readings."""

    samples: list[tuple[float, float, float]]  # (commit time, lag s, in-collector s)

    def put(
        self,
        readings: Sequence[Reading],
        failures: Sequence[RawPayload] = (),
        alive: Sequence[ProofOfLife] = (),
        positions: Mapping[str, str] | None = None,
    ) -> bool:
        """Commit, then sample the lag of some readings: since the source, since receipt."""
        stored = super().put(readings, failures, alive, positions)
        now = time.time()
        step = max(1, len(readings) // 20)
        self.samples.extend(
            (now, now - r.ts.timestamp(), now - r.received_at.timestamp())
            for r in readings[::step]
            if r.received_at is not None
        )
        return stored


@dataclass
class StepResult:
    """The figures of one step."""

    items: int
    subscriptions: int
    connect_s: float
    rate: float
    lag_first_p50: float
    lag_first_p99: float
    lag_last_p50: float
    lag_last_p99: float
    in_collector_p99: float
    collector_cpu: float
    server_cpu: float
    refused: int
    buffered_end: int

    @property
    def keeps_up(self) -> bool:
        """Readings/s within 3 % of the items and a lag that does not grow."""
        return self.rate >= 0.97 * self.items and self.lag_last_p99 <= max(
            2 * self.lag_first_p99, self.lag_first_p99 + 1.0
        )


async def serve(count: int, port: int) -> None:
    """Run a synthetic server writing every node once a second (the child process)."""
    server = SyntheticServer(count, endpoint=f"opc.tcp://{HOST}:{port}/bench/")
    await server.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    try:
        while True:
            next_at += 1.0
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            await server.update()
    finally:
        await server.stop()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_step(count: int, seconds: float, batch: int, per_sub: int) -> StepResult:
    """Measure one step: start a server process, collect from it, report the figures."""
    port = free_port(HOST)
    child = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "bench.opcua_bench",
         "--serve", str(count), "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"the server did not start: {line!r}")
        stub = SyntheticServer(count, endpoint=f"opc.tcp://{HOST}:{port}/bench/")
        config = stub.collector_config(
            "bench",
            subscription={"max_items_per_subscription": per_sub, "batch_size": batch},
            watchdog={"silence_timeout": 60, "health_check": 10},
            request_timeout=30,
        )
        with tempfile.TemporaryDirectory() as tmp:
            outbox = Outbox(Path(tmp) / "buffer.sqlite3", max_messages=10_000_000)
            pipeline = MeasuringPipeline(outbox, source="bench")
            pipeline.samples = []
            bus = NullBus()
            forwarder = asyncio.create_task(outbox.forward(bus, batch=5_000))
            collector = OpcUaCollector(config, stub.specs(), pipeline)
            started = time.perf_counter()
            await collector.start()
            await collector.wait_connected(timeout=300)
            connect_s = time.perf_counter() - started
            await asyncio.sleep(WARMUP_S)
            readings0, t0 = pipeline.counters.readings, time.time()
            cpu0, server_cpu0 = time.process_time(), cpu_seconds(child.pid)
            await asyncio.sleep(seconds)
            readings1, t1 = pipeline.counters.readings, time.time()
            cpu1, server_cpu1 = time.process_time(), cpu_seconds(child.pid)
            window = [(t, lag, own) for t, lag, own in pipeline.samples if t0 <= t <= t1]
            third = (t1 - t0) / 3
            first = [lag for t, lag, _ in window if t < t0 + third]
            last = [lag for t, lag, _ in window if t >= t1 - third]
            own = [own for _, _, own in window]
            subscriptions = collector.subscription_count
            await collector.stop()
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            buffered = len(outbox)
            outbox.close()
        return StepResult(
            items=count,
            subscriptions=subscriptions,
            connect_s=connect_s,
            rate=(readings1 - readings0) / (t1 - t0),
            lag_first_p50=statistics.median(first) if first else float("nan"),
            lag_first_p99=_percentile(first, 0.99),
            lag_last_p50=statistics.median(last) if last else float("nan"),
            lag_last_p99=_percentile(last, 0.99),
            in_collector_p99=_percentile(own, 0.99),
            collector_cpu=(cpu1 - cpu0) / (t1 - t0),
            server_cpu=(server_cpu1 - server_cpu0) / (t1 - t0),
            refused=pipeline.counters.refused,
            buffered_end=buffered,
        )
    finally:
        child.terminate()
        child.wait(10)


async def main(steps: list[int], seconds: float, batch: int, per_sub: int) -> None:
    """Run every step and print a Markdown table."""
    with contextlib.suppress(OSError):  # not every machine allows pinning
        os.sched_setaffinity(0, {COLLECTOR_CPU})
    print(
        "| items | subscriptions | connect s | readings/s | lag p50/p99 first third s | "
        "lag p50/p99 last third s | receipt→commit p99 ms | collector CPU | server CPU | "
        "keeps up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for count in steps:
        r = await run_step(count, seconds, batch, per_sub)
        print(
            f"| {r.items:,} | {r.subscriptions} | {r.connect_s:.1f} | {r.rate:,.0f} | "
            f"{r.lag_first_p50:.2f} / {r.lag_first_p99:.2f} | "
            f"{r.lag_last_p50:.2f} / {r.lag_last_p99:.2f} | {r.in_collector_p99 * 1000:.0f} | "
            f"{r.collector_cpu:.0%} | "
            f"{r.server_cpu:.0%} | {'yes' if r.keeps_up else 'no'} |",
            flush=True,
        )


def cli() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--steps", default="2000,5000,10000,15000")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=1_000, help="monitored items per call")
    parser.add_argument("--per-subscription", type=int, default=5_000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.port))
        return
    steps = [int(s) for s in args.steps.split(",")]
    asyncio.run(main(steps, args.seconds, args.batch, args.per_subscription))


if __name__ == "__main__":
    cli()
