"""Backfill from the server's history: what a node reported during a gap is not lost.

A subscription delivers only what changes while it exists. With ``history.backfill`` the
collector reads what each node reported since its last stored reading (its position, kept
in the buffer's file with the readings) from the server's history (HistoryRead) before it
lets the live readings through — after a collector restart and after a server restart.
Real asyncua servers keeping their history in SQLite, a real buffer file.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from collectors.buffer import Outbox
from collectors.opcua import OpcUaCollector
from collectors.pipeline import CollectorPipeline, event_message
from collectors.simulators.opcua_server import SyntheticServer
from envmon.bus import Message
from envmon.testing import eventually
from envmon.timeutil import utcnow

from .helpers import FAST, dead_letters, readings

BACKFILL = {**FAST, "history": {"backfill": True}}
#: asyncua historizes a server's writes through a subscription publishing every 10 ms that
#: keeps one value per node between publications: writes further apart are all kept.
HISTORY_SAMPLES_S = 0.05


def collector_for(server: SyntheticServer, box: Outbox, **overrides: object) -> OpcUaCollector:
    config = server.collector_config(**{**BACKFILL, **overrides})
    return OpcUaCollector(
        config,
        server.specs(),
        CollectorPipeline(box, source="test"),
        on_event=lambda event: box.put([event_message(event)]),
    )


def values_of(box: Outbox, sensor: str) -> list[float | None]:
    return [r.value for r in readings(box) if r.sensor_id == sensor]


async def test_a_collector_restart_reads_back_what_it_missed(endpoint: str, tmp_path: Path) -> None:
    """Collector stopped, five samples written, collector started: all five, once, in order."""
    server = SyntheticServer(2, endpoint=endpoint, history=tmp_path / "history.sqlite")
    await server.start()
    box = Outbox(tmp_path / "buffer.sqlite3")
    t0 = utcnow().replace(microsecond=0) + timedelta(seconds=1)  # after the initial values
    try:
        first = collector_for(server, box)
        await first.start()
        await first.wait_connected(15)
        for k in range(1, 4):
            await server.update(now=t0 + timedelta(seconds=k), value=float(k))
        sensors = server.sensor_ids()
        await eventually(
            lambda: all(values_of(box, s)[-1:] == [3.0] for s in sensors),
            what="live readings",
            timeout=10,
        )
        await first.stop()
        for k in range(4, 9):  # nobody subscribed: only the server's history has them
            await server.update(now=t0 + timedelta(seconds=k), value=float(k))
            await asyncio.sleep(HISTORY_SAMPLES_S)
        box.close()
        box = Outbox(tmp_path / "buffer.sqlite3")  # a new process: positions from the file
        second = collector_for(server, box)
        await second.start()
        await second.wait_connected(15)
        await eventually(
            lambda: all(values_of(box, s)[-1:] == [8.0] for s in sensors),
            what="the backfill",
            timeout=10,
        )
        await server.update(now=t0 + timedelta(seconds=9), value=9.0)
        await eventually(
            lambda: all(values_of(box, s)[-1:] == [9.0] for s in sensors),
            what="live again",
            timeout=10,
        )
        await second.stop()
        for sensor in sensors:
            stamps = [r.ts for r in readings(box) if r.sensor_id == sensor]
            assert stamps == sorted(set(stamps)), "in order, none twice"
            assert [v for v in values_of(box, sensor) if v and v >= 1] == [
                float(k) for k in range(1, 10)
            ]
        assert second.counters.backfilled == 2 * 5
    finally:
        box.close()
        await server.stop()


async def test_a_server_restart_loses_nothing_written_before_the_collector_is_back(
    endpoint: str, tmp_path: Path
) -> None:
    """Samples written right after the server restarts, before the collector resubscribes."""
    history = tmp_path / "history.sqlite"
    server = SyntheticServer(2, endpoint=endpoint, history=history)
    await server.start()
    box = Outbox(tmp_path / "buffer.sqlite3")
    t0 = utcnow().replace(microsecond=0) + timedelta(seconds=1)  # after the initial values
    collector = collector_for(server, box, reconnect={"initial": 3.0, "maximum": 3.0})
    try:
        await collector.start()
        await collector.wait_connected(15)
        await server.update(now=t0, value=1.0)
        sensor = server.sensor_ids()[0]
        await eventually(
            lambda: values_of(box, sensor)[-1:] == [1.0], what="the first reading", timeout=10
        )
        await server.stop()
        server = SyntheticServer(2, endpoint=endpoint, history=history)
        await server.start()
        for k in range(2, 7):  # the collector waits 1.5–3 s before it reconnects
            await server.update(value=float(k))  # stamped now: after the restart's own values
            await asyncio.sleep(HISTORY_SAMPLES_S)
        await eventually(
            lambda: values_of(box, sensor)[-1:] == [6.0], what="the backfill", timeout=10
        )
        for sensor in server.sensor_ids():
            got = [v for v in values_of(box, sensor) if v and v >= 1]
            assert got == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        # How many came from the history depends on when the collector was back; at least
        # the first of each node did (the rest may have come live, but none twice).
        assert collector.counters.backfilled >= 2
    finally:
        await collector.stop()
        box.close()
        await server.stop()


async def test_a_server_without_history_is_named_and_live_readings_go_on(
    endpoint: str, tmp_path: Path
) -> None:
    """Backfill asked of a server that keeps no history: a dead letter per node, live data."""
    server = SyntheticServer(1, endpoint=endpoint)
    await server.start()
    box = Outbox(tmp_path / "buffer.sqlite3")
    try:
        first = collector_for(server, box)
        await first.start()
        await first.wait_connected(15)
        await server.update(value=1.0)
        sensor = server.sensor_ids()[0]
        await eventually(lambda: values_of(box, sensor)[-1:] == [1.0], what="a reading", timeout=10)
        await first.stop()
        second = collector_for(server, box)
        await second.start()
        await second.wait_connected(15)
        await server.update(value=2.0)
        await eventually(
            lambda: values_of(box, sensor)[-1:] == [2.0], what="live readings", timeout=10
        )
        await second.stop()
        (letter,) = dead_letters(box)
        assert letter.reason == "the server keeps no history of the node to fill a gap"
    finally:
        box.close()
        await server.stop()


def test_positions_are_committed_with_the_readings(tmp_path: Path) -> None:
    """The buffer keeps positions in the readings' transaction, and after a reopen."""
    box = Outbox(tmp_path / "buffer.sqlite3", max_messages=1)
    assert box.put([Message("t", "k", b"v")], {"opcua:a/s1": "2026-01-01T00:00:00+00:00"})
    assert not box.put([Message("t", "k", b"v")], {"opcua:a/s1": "2027-01-01T00:00:00+00:00"})
    box.close()
    again = Outbox(tmp_path / "buffer.sqlite3")
    try:
        assert again.positions("opcua:a/") == {"opcua:a/s1": "2026-01-01T00:00:00+00:00"}
        assert again.positions("opcua:b/") == {}
    finally:
        again.close()
