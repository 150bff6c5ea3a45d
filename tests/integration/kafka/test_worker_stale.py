"""The stream worker on a real Kafka judges backfilled data in data time (issue 14, 0c).

Readings fifteen minutes behind the worker's (fake) clock arrive in bursts ten times
faster than real time while the worker is caught up, with its clock tick run between the
bursts: nothing goes stale and no data gap opens. A freezer that reports only changes is
kept alive by proofs of life. Then real silence on the clock still raises every stale
alarm, stamped in data time.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from devservers.kafka import KafkaBroker
from envmon.bus import ALARMS, EXCURSIONS, READINGS, Message
from envmon.config import load_site
from envmon.models import ProofOfLife, Reading
from envmon.testing import FakeClock, eventually
from envmon.timeutil import format_ts, parse_ts
from stream.kafka.app import StreamWorker
from stream.kafka.bus import KafkaBus
from stream.timeseries.sink import SqliteSink

from .faust_counter import wait_ready
from .test_worker import SITE, make_topics, read_topic, settings_for

pytestmark = pytest.mark.timeout(240)

T0 = parse_ts("2026-01-05T08:00:00Z")
SAMPLED = ("incubator-1.temperature", "incubator-2.temperature", "rs-grade-c.temperature")
VALUES = {"incubator-1.temperature": 37.0, "incubator-2.temperature": 37.0}
STEADY = "ult-freezer-1.temperature"  # stale_after 10 min, reports only changes
BURST_S = 60  # seconds of data per burst ...
EVERY_S = 6  # ... every 6 s of the worker's clock: 10x real time
BURSTS = 15


def burst(k: int) -> list[Message]:
    start = T0 + timedelta(seconds=BURST_S * k)
    out: list[Message] = []
    if k == 0:
        freezer = Reading(sensor_id=STEADY, value=-80.0, ts=start)
        out.append(Message(READINGS, STEADY, freezer.to_json()))
    elif k % 3 == 0:  # every 3 minutes of data the collector vouches for the freezer
        proof = ProofOfLife(sensor_id=STEADY, ts=start, source="opcua:test")
        out.append(Message(READINGS, STEADY, proof.model_dump_json().encode()))
    for s in range(BURST_S):
        ts = start + timedelta(seconds=s)
        for sid in SAMPLED:
            reading = Reading(sensor_id=sid, value=VALUES.get(sid, 21.0), ts=ts)
            out.append(Message(READINGS, sid, reading.to_json()))
    return out


class TestBackfillThroughKafka:
    async def test_bursts_behind_the_clock_raise_nothing_and_silence_still_does(
        self, kafka: KafkaBroker, topic_prefix: str, tmp_path: Path
    ) -> None:
        """Fifteen minutes behind, 10x real time, ticking between bursts: no stale, no gap."""
        settings = settings_for(kafka, topic_prefix, tmp_path / "worker")
        await make_topics(settings)
        clock = FakeClock(T0 + timedelta(minutes=15))
        worker = StreamWorker(
            settings,
            load_site(SITE).sensors(),
            SqliteSink(tmp_path / "ts.sqlite3"),
            clock=clock,
            on_fatal=lambda _e: None,
        )
        bus = KafkaBus(settings.kafka_bootstrap, topic_prefix=settings.topic_prefix)
        await bus.start()
        await worker.app.start()
        try:
            await wait_ready(worker.app)
            readings = proofs = 0
            for k in range(BURSTS):
                messages = burst(k)
                await bus.publish(messages)
                proofs += sum(m.key == STEADY and k > 0 for m in messages)
                readings += len(messages) - sum(m.key == STEADY and k > 0 for m in messages)

                def handled(r: int = readings, p: int = proofs) -> bool:
                    taken = sum(e.proofs for e in worker.processor.evaluators.values())
                    return worker.readings >= r and taken >= p

                await eventually(handled, what=f"burst {k} handled", timeout=60)
                for _ in range(EVERY_S):
                    clock.advance(1)
                    await worker._tick()  # the worker's timer, run on the test's clock
            assert worker.fatal is None
            assert worker.readings == readings  # proofs are no readings

            # Silence on the clock: stale_after later, every sensor is stale.
            clock.advance(600 + 1)
            await worker._tick()
            alarms = await read_topic(settings, ALARMS, until=4)
            records = await read_topic(settings, EXCURSIONS, until=4)
        finally:
            await worker.app.stop()
            await worker.sink.close()
            await bus.stop()

        stale = {a["sensor_id"]: a["ts"] for a in alarms if a.get("event") == "stale"}
        assert [a for a in alarms if a.get("event") != "stale"] == []  # no restored, no more
        last = T0 + timedelta(seconds=BURST_S * BURSTS - 1)
        last_proof = T0 + timedelta(seconds=BURST_S * 12)
        expected: dict[str, datetime] = {sid: last + timedelta(minutes=5) for sid in SAMPLED}
        expected[STEADY] = last_proof + timedelta(minutes=10)
        assert stale == {sid: format_ts(ts) for sid, ts in expected.items()}
        gaps = [r for r in records if r.get("kind") == "data_gap"]
        assert len(gaps) == 4
        assert all(g["end"] is None for g in gaps)  # the four open gaps of the silence, only
        assert json.dumps(sorted(g["sensor_id"] for g in gaps)) == json.dumps(
            sorted([*SAMPLED, STEADY])
        )
