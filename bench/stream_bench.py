"""Stream worker on Kafka: readings/s for one worker against a bare consumer, and latency.

Starts a Kafka broker (KRaft, Maven Central jars) and QuestDB (the InfluxDB v2 write API)
on 127.0.0.1, generates a site of N cold-store sensors and then measures, in one run:

1. **Throughput.** N readings produced to ``envmon.readings`` first; then a bare aiokafka
   consumer reads and decodes the whole topic (``Reading.model_validate_json``, the decode
   the worker does, with the worker's fetch settings), and one ``StreamWorker`` (faust)
   consumes the same readings, evaluates them, produces alarms and records and writes
   every reading to QuestDB. Both are timed from their first fetch to the last reading handled;
   the ratio is worker / bare. ``--repeat`` alternates the two (a new consumer group, a new
   worker and site tag each time) and reports every run and the median ratio. The whole
   process runs with the worker's garbage-collector settings (``tune_gc``), so both sides
   run under the same interpreter settings. Untimed passes come first: a bare one warms
   the broker's and the consumer's caches, a worker one the servers' write paths (QuestDB's
   line protocol and WAL, the broker's produce path: JVMs not yet compiled). Each run also
   reports the CPU µs a reading of this process (every thread) and of each server, read
   from ``/proc`` at the first fetch and at the end: the figure that says whether the
   worker or a server bounded the rate.

   **One worker, one CPU.** In production the broker and the time-series server run on
   their own hosts; here they share a 2-CPU machine with the worker. On a machine with two
   or more CPUs the servers are started pinned to CPU 1 and this process (bare consumer
   and worker alike) then pins itself to CPU 0, so the worker's rate is what one worker
   on one CPU achieves and is not lowered by the servers' work taking its CPU (``--no-pin``
   turns this off; pinning needs the machine's CPU count, not this process's, since the
   second ``pin`` runs already pinned). QuestDB's idle workers are told to nap and sleep
   sooner than its defaults (``QUESTDB_QUIET``), so they do not spin on the broker's CPU
   between writes.
2. **Latency.** A fresh worker and topics; readings produced at a steady rate (the first
   ``LATENCY_RAMP_S`` not measured: connections, JIT and caches settle), each stamped with
   its send time; one sensor in 20 crosses its action limit and returns every
   2 s (no delay configured), so alarms are raised and cleared throughout. Latency is
   from a reading's send to the arrival of the alarm event it caused, read by a consumer of
   ``envmon.alarms``: p50 and p99.

    .venv/bin/python -m bench.stream_bench --readings 400000 --sensors 1000 --repeat 3
    .venv/bin/python -m bench.stream_bench --latency-only --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.cpu import cpu_seconds
from devservers.kafka import KafkaBroker
from devservers.questdb import QuestDB, create_readings_table
from envmon.bus import ALARMS, ALL_TOPICS, READINGS
from envmon.commands.stream_worker import build_worker
from envmon.config import SiteConfig, parse_site
from envmon.models import DeadLetter, Quality, Reading
from envmon.settings import Settings
from stream.kafka.app import StreamWorker, tune_gc
from stream.kafka.intake import FETCH_MAX_WAIT_MS, MAX_PARTITION_FETCH_BYTES
from stream.kafka.topics import create_topics
from stream.timeseries.influxdb import InfluxWriter
from stream.timeseries.schema import reading_line

PARTITIONS = 4
#: Seconds produced at the latency run's rate before its readings are measured.
LATENCY_RAMP_S = 2.0
SERVER_CPU, WORKER_CPU = 1, 0
# QuestDB's shared and WAL-apply workers spin before they nap and sleep; on a small
# machine that spinning takes CPU from the broker. These thresholds (ms) are QuestDB's own
# settings, lowered from their defaults; they change when a worker rests, not what it does.
QUESTDB_QUIET = "\n".join(
    f"{worker}.{state}.threshold={ms}"
    for worker in ("shared.worker", "wal.apply.worker")
    for state, ms in (("nap", 20), ("sleep", 30))
)


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by this process (every thread) and by each server process."""

    own: float
    servers: dict[str, float]


class CpuMeter:
    """CPU seconds of this process and of the servers' processes, read from ``/proc``."""

    def __init__(self, servers: dict[str, int | None]) -> None:
        self.servers = {name: pid for name, pid in servers.items() if pid is not None}

    def snapshot(self) -> CpuSnapshot:
        """Return the CPU seconds used until now."""
        servers = {name: cpu_seconds(pid) for name, pid in self.servers.items()}
        return CpuSnapshot(time.process_time(), servers)

    def since(self, start: CpuSnapshot, start_time: float) -> Phase:
        """Close a phase that started at ``start_time`` (perf_counter) with CPU ``start``."""
        end_time = time.perf_counter()
        end = self.snapshot()
        return Phase(
            end_time - start_time,
            end.own - start.own,
            {name: end.servers[name] - start.servers[name] for name in end.servers},
        )


@dataclass(frozen=True)
class Phase:
    """One timed phase: wall seconds and CPU seconds, from its first fetch to its end."""

    seconds: float
    own_cpu: float
    server_cpu: dict[str, float]
    batches: int = 0  # the worker's batches (0: not a worker)

    def rate(self, n: int) -> float:
        """Return readings per second."""
        return n / self.seconds

    def per_reading(self, n: int) -> str:
        """Return CPU µs per reading: this process's and each server's."""
        parts = [f"own {1e6 * self.own_cpu / n:.1f}"]
        parts += [f"{name} {1e6 * cpu / n:.1f}" for name, cpu in self.server_cpu.items()]
        if self.batches:
            parts.append(f"{n / self.batches:,.0f} readings a batch")
        return ", ".join(parts)


def pin(cpu: int, enabled: bool) -> bool:
    """Pin this process (and what it starts from now on) to ``cpu``; return whether it did."""
    # The machine's CPUs, not this process's: after the first call this process has one.
    if not enabled or (os.cpu_count() or 1) < 2:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:  # not every machine allows pinning
        return False
    return True


def unpin(pids: list[int]) -> None:
    """Let this process and every thread of ``pids`` run on every CPU again."""
    cpus = set(range(os.cpu_count() or 1))
    os.sched_setaffinity(0, cpus)
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(tid), cpus)


def site_yaml(sensors: int, name: str = "Stream bench") -> str:
    """Return a site of ``sensors`` fridges with alert/action limits and no delay."""
    lines = [f"site: {{name: {name}, timezone: UTC}}", "areas:", "  - id: cold"]
    lines += ["    name: Cold", "    instruments:"]
    for i in range(sensors):
        lines += [
            f"      - id: fridge-{i:04d}",
            f"        name: Fridge {i}",
            "        kind: fridge",
            "        channels:",
            "          - parameter: temperature",
            "            unit: degC",
            "            limits: {alert_high: 7.0, action_high: 8.0, alert_low: 3.0,"
            " action_low: 2.0, deadband: 0.2}",
        ]
    return "\n".join(lines) + "\n"


def settings(
    broker: KafkaBroker, questdb: QuestDB, prefix: str, data_dir: Path, within: float = 0.02
) -> Settings:
    """Return worker settings for one measurement."""
    return Settings(
        batch_within_s=within,
        bus="kafka",
        kafka_bootstrap=broker.bootstrap,
        kafka_partitions=PARTITIONS,
        app_id=prefix,
        topic_prefix=f"{prefix}.",
        data_dir=data_dir / prefix,
        tick_s=0,
        timeseries="influx",
        influx_url=questdb.url,
    )


def throughput_readings(site: SiteConfig, n: int, seed: int = 7) -> list[bytes]:
    """Return n encoded readings: every sensor every 10 s, a random walk with excursions."""
    rnd = random.Random(seed)
    ids = [spec.sensor_id for spec in site.sensors()]
    values = [5.0] * len(ids)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    out = []
    for i in range(n):
        k = i % len(ids)
        step = i // len(ids)
        values[k] += (5.0 - values[k]) * 0.1 + rnd.gauss(0, 0.3)
        if rnd.random() < 0.001:
            values[k] = 9.0  # a door left open: an action excursion
        reading = Reading.trusted(
            ids[k],
            round(values[k], 3),
            "degC",
            t0 + timedelta(seconds=10 * step),
            None,
            Quality.GOOD,
            "bench",
        )
        out.append(reading.to_json())
    return out


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Produce values keyed by their sensor id (acks=all, idempotent)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        pending = []
        for value in values:
            key = orjson.loads(value)["sensor_id"].encode()
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def bare_consumer(
    bootstrap: str, topic: str, n: int, batch_max: int, meter: CpuMeter
) -> Phase:
    """Read and decode n readings with a bare aiokafka consumer; return time and CPU.

    Fetch settings and batch size are the worker's intake's, so the two differ only in what
    the worker does with a reading after decoding it.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bare-{time.monotonic_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
    )
    await consumer.start()
    got = 0
    start: float | None = None
    cpu = meter.snapshot()
    validate = Reading.model_validate_json
    try:
        while got < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=batch_max)
            if batches and start is None:
                start = time.perf_counter()
                cpu = meter.snapshot()
            for records in batches.values():
                for record in records:
                    validate(record.value)
                    got += 1
        assert start is not None
        return meter.since(cpu, start)
    finally:
        await consumer.stop()


async def writer_alone(questdb: QuestDB, site: SiteConfig, values: list[bytes]) -> float:
    """Write the same readings as line protocol with the InfluxDB writer alone; seconds.

    Decoding and encoding happen before the clock starts: this is the time-series
    server's (and the writer's HTTP) ceiling on this machine, which bounds any worker.
    """
    specs = {spec.sensor_id: spec for spec in site.sensors()}
    lines = []
    for value in values:
        reading = Reading.model_validate_json(value)
        lines.append(reading_line(reading, specs[reading.sensor_id], site="bench-writer"))
    letters: list[DeadLetter] = []
    writer = InfluxWriter(questdb.url, "-", "envmon", "readings", dead_letter=letters.append)
    async with writer:
        start = time.perf_counter()
        for i in range(0, len(lines), 5_000):
            await writer.write(lines[i : i + 5_000])
        seconds = time.perf_counter() - start
    assert not letters, letters[:1]
    return seconds


async def run_worker(worker: StreamWorker, n: int, meter: CpuMeter) -> Phase:
    """Run the worker until it processed n readings; return time and CPU from its first fetch.

    The bare consumer is timed the same way (from its first fetch), so neither side's
    start-up (group join, faust's recovery) is counted. CPU is read within 2 ms of the
    first fetch.
    """
    await worker.app.start()
    try:
        async with asyncio.timeout(1_800):
            while worker.first_fetch is None:
                await asyncio.sleep(0.002)
            cpu = meter.snapshot()
            while worker.readings < n:
                await asyncio.sleep(0.01)
        result = dataclasses.replace(meter.since(cpu, worker.first_fetch), batches=worker.batches)
    finally:
        await worker.app.stop()
        await worker.sink.close()
    return result


@dataclass
class Latency:
    """Latency figures in milliseconds."""

    alarms: int
    p50: float
    p99: float
    max: float


def worker_process(conf: Settings, site_file: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start ``envmon stream worker`` as its own process (as in production)."""
    env = {**os.environ, **conf.model_copy(update={"site": site_file}).as_env()}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "envmon.cli", "stream", "worker", "--loglevel", "warning"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def latency(
    conf: Settings, site: SiteConfig, site_file: Path, rate: int, seconds: float
) -> Latency:
    """Produce at ``rate`` readings/s for ``seconds``; measure send → alarm arrival.

    The worker runs as its own process; this one only produces and reads the alarms.
    """
    ids = [spec.sensor_id for spec in site.sensors()]
    sent: dict[tuple[str, str], float] = {}
    arrivals: list[float] = []
    worker = worker_process(conf, site_file, conf.data_dir.parent / f"{conf.app_id}.log")
    consumer = AIOKafkaConsumer(
        conf.topic(ALARMS),
        bootstrap_servers=conf.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=conf.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=1
    )
    await producer.start()

    async def consume() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = orjson.loads(record.value)
                    t = sent.get((event["sensor_id"], event["ts"]))
                    if t is not None and event.get("event") in ("raised", "cleared"):
                        arrivals.append((now - t) * 1000)

    reader = asyncio.create_task(consume())
    try:
        await asyncio.sleep(8)  # the worker starts and joins its group
        start = time.perf_counter()
        i = 0
        # The first LATENCY_RAMP_S at the same rate are not measured: the steady state is.
        ramp = int(rate * LATENCY_RAMP_S)
        total = ramp + int(rate * seconds)
        while i < total:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            k = i % len(ids)
            # One sensor in 20 crosses its action limit and back every 2 s; the rest are calm.
            cycle = int(time.perf_counter() - start) // 2
            value = 9.0 if k % 20 == 0 and (cycle + k // 20) % 2 else 5.0
            ts = datetime.now(UTC)
            reading = Reading.trusted(ids[k], value, "degC", ts, None, Quality.GOOD, "bench")
            if i >= ramp:
                stamp = reading.to_json().split(b'"ts":"')[1].split(b'"')[0].decode()
                sent[(ids[k], stamp)] = time.perf_counter()
            await producer.send(conf.topic(READINGS), reading.to_json(), key=ids[k].encode())
            i += 1
        await producer.flush()
        await asyncio.sleep(3)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await consumer.stop()
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    ordered = sorted(arrivals)
    return Latency(
        alarms=len(ordered),
        p50=statistics.median(ordered),
        p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        max=ordered[-1],
    )


async def throughput(
    args: argparse.Namespace, broker: KafkaBroker, questdb: QuestDB, site: SiteConfig, work: Path
) -> None:
    """Run the throughput measurements (bare consumer and worker, then the breakdown)."""
    conf = settings(broker, questdb, "thr", work, args.within)
    await create_topics(broker.bootstrap, {conf.topic(t): PARTITIONS for t in ALL_TOPICS})
    values = throughput_readings(site, args.readings)
    await produce(broker.bootstrap, conf.topic(READINGS), values)
    n = args.readings
    meter = CpuMeter({"kafka": broker.pid, "questdb": questdb.pid})
    # Untimed: the first pass over a new topic is slower (broker and consumer warm up), and
    # the first worker's writes find the servers' write paths cold (QuestDB's line protocol
    # and WAL, the broker's produce path: their JIT compilers have not run yet).
    await bare_consumer(broker.bootstrap, conf.topic(READINGS), n, conf.batch_max, meter)
    warm_conf = conf.model_copy(update={"app_id": "warm"})
    await run_worker(
        build_worker(warm_conf, parse_site(site_yaml(args.sensors, "Warm-up"))), n, meter
    )
    ratios = []
    for run in range(1, args.repeat + 1):
        bare = await bare_consumer(broker.bootstrap, conf.topic(READINGS), n, conf.batch_max, meter)
        # A new worker group and site tag: the same readings, new series in QuestDB.
        run_conf = conf.model_copy(update={"app_id": f"thr{run}"})
        run_site = parse_site(site_yaml(args.sensors, f"Stream bench {run}"))
        worker = await run_worker(build_worker(run_conf, run_site), n, meter)
        ratios.append(bare.seconds / worker.seconds)
        print(
            f"throughput run {run}: bare consumer {bare.rate(n):,.0f} readings/s "
            f"(CPU µs a reading: {bare.per_reading(n)}); worker {worker.rate(n):,.0f} "
            f"readings/s (evaluated, alarms produced, written to QuestDB; "
            f"batch_within_s {args.within:g}; CPU µs a reading: "
            f"{worker.per_reading(n)}); ratio {bare.seconds / worker.seconds:.3f}",
            flush=True,
        )
    print(f"throughput: median ratio {statistics.median(ratios):.3f}", flush=True)
    # Where the worker's time goes, same topic, same run: the time-series write on
    # its own, and a worker (new group) that writes no time series.
    alone_s = await writer_alone(questdb, site, values)
    no_ts = conf.model_copy(update={"app_id": "nots", "timeseries": "none"})
    no_ts_run = await run_worker(build_worker(no_ts, site), n, meter)
    print(
        f"breakdown: time-series writer alone {n / alone_s:,.0f} readings/s "
        f"(ratio {bare.seconds / alone_s:.3f}); worker without time series "
        f"{no_ts_run.rate(n):,.0f} readings/s (ratio "
        f"{bare.seconds / no_ts_run.seconds:.3f}; CPU µs a reading: "
        f"{no_ts_run.per_reading(n)})",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> None:
    """Run both measurements and print the results."""
    site = parse_site(site_yaml(args.sensors))
    tune_gc()  # the worker's settings (envmon stream worker), for both sides
    with tempfile.TemporaryDirectory(prefix="envmon-stream-bench-") as tmp:
        work = Path(tmp)
        pinned = pin(SERVER_CPU, args.pin)  # the servers inherit this CPU ...
        with (
            KafkaBroker(work / "kafka") as broker,
            QuestDB(work / "questdb", extra=QUESTDB_QUIET) as questdb,
        ):
            if pinned:
                pin(WORKER_CPU, True)  # ... and this process moves to the other one
            print(
                f"servers on CPU {SERVER_CPU}, bench and worker on CPU {WORKER_CPU}"
                if pinned
                else "not pinned: the servers and the worker share every CPU",
                flush=True,
            )
            create_readings_table(questdb)
            if args.throughput:
                await throughput(args, broker, questdb, site, work)
            if pinned:
                # Latency is measured as deployed on one machine: the worker's process, this
                # producer and the servers share every CPU (on one CPU each, the producer
                # and the worker would queue behind each other).
                unpin([pid for pid in (broker.pid, questdb.pid) if pid is not None])
            conf = settings(broker, questdb, "lat", work, args.lat_within)
            await create_topics(broker.bootstrap, {conf.topic(t): PARTITIONS for t in ALL_TOPICS})
            site_file = work / "site.yaml"
            site_file.write_text(site_yaml(args.sensors), encoding="utf-8")
            lat = await latency(conf, site, site_file, args.rate, args.seconds)
            print(
                f"latency at {args.rate:,} readings/s for {args.seconds:g} s "
                f"(batch_within_s {args.lat_within:g}): {lat.alarms:,} "
                f"alarm events; p50 {lat.p50:.1f} ms, p99 {lat.p99:.1f} ms, max {lat.max:.1f} ms"
            )


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200_000)
    parser.add_argument("--sensors", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=2_000, help="readings/s for the latency run")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3, help="throughput runs (bare, worker)")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the servers and the worker to separate CPUs",
    )
    parser.add_argument(
        "--within", type=float, default=0.02, help="batch_within_s of the throughput run"
    )
    parser.add_argument(
        "--latency-only",
        dest="throughput",
        action="store_false",
        help="measure the latency only (no throughput runs)",
    )
    parser.add_argument(
        "--lat-within", type=float, default=0.02, help="batch_within_s of the latency run"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
