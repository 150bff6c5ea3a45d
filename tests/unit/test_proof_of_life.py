"""Proofs of life: evidence that a report-by-exception sensor is alive, never a sample."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from envmon.bus import DEADLETTER, InMemoryBus, Message
from envmon.models import (
    AlarmEvent,
    AlarmKind,
    CoreEvent,
    DataGap,
    ExcursionRecord,
    ProofOfLife,
    Quality,
    Reading,
    decode_readings_message,
)
from envmon.testing import DEFAULT_T0, FakeClock, make_spec
from envmon.timeutil import to_us
from stream.core import Evaluator, SensorState
from stream.embedded import StreamProcessor
from stream.kafka.batch import BatchResult, ReadingBatchProcessor
from stream.timeseries.sqlite import SqliteTimeSeries

SID = "freezer-1.temperature"
STALE_S = 300


def at(seconds: float) -> datetime:
    return DEFAULT_T0 + timedelta(seconds=seconds)


def us(seconds: float) -> int:
    return to_us(at(seconds))


def reading(seconds: float, value: float | None = -20.0, sid: str = SID) -> Reading:
    quality = Quality.GOOD if value is not None else Quality.BAD
    return Reading(sensor_id=sid, value=value, ts=at(seconds), quality=quality)


def proof(seconds: float, sid: str = SID) -> ProofOfLife:
    return ProofOfLife(sensor_id=sid, ts=at(seconds), source="opcua:test")


def kinds(events: Any) -> list[str]:
    return [e.event.value if isinstance(e, AlarmEvent) else e.kind for e in events]


class TestWireModel:
    def test_round_trips_and_is_told_apart_from_a_reading(self):
        """A proof encodes with its kind and decodes back; a reading still decodes as one."""
        p = proof(10)
        raw = p.model_dump_json().encode()
        assert json.loads(raw)["kind"] == "proof_of_life"
        assert decode_readings_message(raw) == p
        r = reading(10)
        assert decode_readings_message(r.to_json()) == r

    def test_a_bad_proof_is_refused_as_a_proof(self):
        """A message that says it is a proof but is not a valid one raises the proof's error."""
        raw = b'{"kind":"proof_of_life","schema_version":1,"sensor_id":"x y","ts":"nope"}'
        with pytest.raises(ValidationError, match="ProofOfLife"):
            decode_readings_message(raw)
        with pytest.raises(ValidationError, match="Reading"):
            decode_readings_message(b'{"sensor_id": 1}')


class TestCore:
    def spec(self, **rules: Any) -> Any:
        return make_spec(SID, stale_after_s=STALE_S, **rules)

    def test_a_steady_value_with_proofs_never_goes_stale(self):
        """Report-by-exception: one change, proofs for 11 minutes, the next change: nothing."""
        ev = Evaluator([self.spec()])
        out = list(ev.process(reading(0)))
        for s in range(100, 700, 100):
            out += ev.process(proof(s))
            out += ev.advance(us(s + 50))
        out += ev.process(reading(660, -19.0))
        assert out == []
        assert ev.readings == 2
        assert ev.proofs == 6

    def test_without_proofs_the_same_data_is_a_gap(self):
        """The control: the same two changes without proofs are a communication loss."""
        ev = Evaluator([self.spec()])
        ev.process(reading(0))
        assert kinds(ev.process(reading(660, -19.0))) == [
            "stale",
            "data_gap",
            "restored",
            "data_gap",
        ]

    def test_a_proof_is_never_a_sample(self):
        """A proof adds no sample: no count, statistic or rate moves, no count-based level."""
        ev = Evaluator([self.spec(alert_high=8, consecutive=2, rate_of_change_per_min=1.0)])
        ev.process(reading(0, 9.0))
        assert not ev.process(proof(100))  # 100 s beyond the limit, but one sample only
        state = ev.state_of(SID)
        assert (state.high.run_count, state.high.samples, state.last_good_ts) == (1, 1, us(0))
        events = ev.process(reading(110, 9.0))
        (record,) = [e for e in events if isinstance(e, ExcursionRecord)]
        assert record.samples == 2
        assert [e.event for e in events if isinstance(e, AlarmEvent)] == [AlarmKind.RAISED]

    def test_a_proof_holds_the_value_so_a_time_delay_passes(self):
        """Report-by-exception: a value past its limit that stays is alarmed after the delay."""
        ev = Evaluator([self.spec(alert_high=-70, action_high=-65, delay_s=600)])
        ev.process(reading(0, -80.0))
        assert not ev.process(reading(60, -60.0))  # past both limits; the delay runs
        for seconds in (200, 400, 600):
            assert not ev.process(proof(seconds))
        events = ev.process(proof(660))  # the value has held beyond the limits for 600 s
        alarms = [e for e in events if isinstance(e, AlarmEvent)]
        assert [(a.event, a.level, a.ts, a.value) for a in alarms] == [
            (AlarmKind.RAISED, "action", at(660), -60.0)
        ]
        (record,) = [e for e in events if isinstance(e, ExcursionRecord)]
        assert (record.start, record.samples, record.time_beyond_limit_s) == (at(60), 1, 600)
        closing = ev.process(reading(700, -80.0))
        (closed,) = [e for e in closing if isinstance(e, ExcursionRecord)]
        assert (closed.samples, closed.end) == (1, at(700))  # the clearing sample is not one

    def test_a_proof_escalates_an_open_excursion_once_the_action_delay_passed(self):
        """Open at alert; the value reaches the action limit and holds: escalated by a proof."""
        ev = Evaluator([self.spec(alert_high=-70, action_high=-65, delay_s=600)])
        ev.process(reading(0, -68.0))
        for seconds in (200, 400):
            assert not ev.process(proof(seconds))
        assert kinds(ev.process(reading(600, -60.0))) == ["raised", "excursion"]
        for seconds in (800, 1000, 1100):
            assert not ev.process(proof(seconds))
        events = ev.process(proof(1200))
        assert kinds(events) == ["escalated", "excursion"]
        assert not ev.process(proof(1400))  # once

    def test_a_proof_after_a_bad_sample_holds_nothing(self):
        """The last sample was bad: there is no value for the proof to hold."""
        ev = Evaluator([self.spec(alert_high=8, delay_s=60)])
        ev.process(reading(0, 9.0))
        ev.process(reading(10, None))
        assert not ev.process(proof(100))

    def test_a_proof_restores_a_stale_sensor(self):
        """Stale on the clock; a proof ends it: restored, the gap closed at the proof's time."""
        ev = Evaluator([self.spec()])
        ev.process(reading(0))
        assert kinds(ev.advance(us(301))) == ["stale", "data_gap"]
        events = ev.process(proof(400))
        assert kinds(events) == ["restored", "data_gap"]
        restored, gap = events
        assert isinstance(restored, AlarmEvent)
        assert "proof of life" in restored.detail
        assert isinstance(gap, DataGap)
        assert (gap.start, gap.end, gap.duration_s) == (at(0), at(400), 400)

    def test_a_late_proof_reveals_the_gap_before_it(self):
        """A proof more than stale_after after the last evidence is a gap, as a sample is."""
        ev = Evaluator([self.spec()])
        ev.process(reading(0))
        assert kinds(ev.process(proof(400))) == ["stale", "data_gap", "restored", "data_gap"]

    def test_silence_after_proofs_starts_at_the_last_proof(self):
        """The gap starts at the last evidence; the alarm is stale_after later, in data time."""
        ev = Evaluator([self.spec()])
        ev.process(reading(0))
        ev.process(proof(100))
        assert ev.advance(us(400)) == []
        stale, gap = ev.advance(us(401))
        assert isinstance(stale, AlarmEvent)
        assert stale.ts == at(400)
        assert isinstance(gap, DataGap)
        assert gap.start == at(100)

    def test_an_old_proof_changes_nothing(self):
        """A proof no newer than the last evidence (a repeat) neither resets nor restores."""
        ev = Evaluator([self.spec()])
        ev.process(reading(100), at=us(100))
        assert ev.process(proof(100), at=us(250)) == ()
        assert ev.process(proof(50), at=us(250)) == ()
        assert kinds(ev.advance(us(401))) == ["stale", "data_gap"]

    def test_a_proof_for_a_sensor_never_sampled_changes_nothing(self):
        """With no value reported yet, a proof has nothing to vouch for."""
        ev = Evaluator([self.spec()])
        assert ev.process(proof(100)) == ()
        assert ev.state_of(SID).alive_ts is None
        assert ev.advance(us(10_000)) == []

    def test_a_proof_does_not_clear_a_sensor_fault(self):
        """A faulty sensor stays faulty: the proof says nothing changed."""
        ev = Evaluator([self.spec(bad_after=1)])
        ev.process(reading(0))
        assert kinds(ev.process(reading(10, None))) == ["sensor_fault"]
        assert ev.process(proof(100)) == ()
        assert ev.state_of(SID).fault

    def test_on_a_live_clock_a_proof_resets_the_stale_timer(self):
        """With arrival times on the wall clock, the proof counts when it arrives."""
        ev = Evaluator([self.spec()])
        ev.process(reading(0), at=us(600))  # data ten minutes behind the clock
        ev.process(proof(200), at=us(850))
        assert ev.advance(us(1150)) == []
        assert kinds(ev.advance(us(1151))) == ["stale", "data_gap"]

    def test_state_keeps_the_proof_and_reads_version_1(self):
        """alive_ts survives the state's round trip; a version-1 state (no proofs) still loads."""
        ev = Evaluator([self.spec()])
        ev.process(reading(0))
        ev.process(proof(100))
        state = ev.state_of(SID)
        assert SensorState.from_dict(json.loads(state.to_json())).alive_ts == us(100)
        old = {k: v for k, v in state.to_dict().items() if k != "alive_ts"} | {"v": 1}
        assert SensorState.from_dict(old).alive_ts is None


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None


class TestEngines:
    def test_the_worker_takes_proofs_as_evidence_not_readings(self):
        """The worker's batch processor: no point, no rejection, the state marked for saving."""
        clock = FakeClock(at(0))
        processor = ReadingBatchProcessor(
            [make_spec(SID, stale_after_s=STALE_S)],
            1,
            lambda _sid: None,
            clock=clock,
            encode=lambda r, _ts, _c: r,
        )
        result = BatchResult()
        messages = [reading(0).to_json(), proof(200).model_dump_json().encode()]
        records = [Record(i, SID.encode(), m) for i, m in enumerate(messages)]
        processor.evaluate([(0, records)], result)
        assert (len(result.points), result.proofs, result.rejected) == (1, 1, 0)
        assert result.touched[0][SID].alive_ts == us(200)
        clock.advance(250)
        assert processor.tick(clock(), {}) == []  # heard from at its proof

        bad = Record(2, SID.encode(), b'{"kind":"proof_of_life","sensor_id":"' + b"x" * 3 + b'"}')
        result = BatchResult()
        processor.evaluate([(0, [bad])], result)
        assert result.rejected == 1
        (letter,) = [json.loads(m.value) for m in result.outputs if m.topic == DEADLETTER]
        assert letter["reason"].startswith("invalid proof of life")

    async def test_the_embedded_processor_takes_proofs_as_evidence(self, tmp_path):
        """The embedded processor: the proof keeps the sensor alive and stores no point."""
        clock = FakeClock(at(0))
        events: list[CoreEvent] = []
        store = SqliteTimeSeries(tmp_path / "ts.sqlite3")
        proc = StreamProcessor(
            InMemoryBus(),
            [make_spec(SID, stale_after_s=STALE_S)],
            store=store,
            clock=clock,
            listener=events.append,
        )
        await proc.handle([Message("r", SID, reading(0).to_json())])
        for s in (100, 200, 300, 400):
            clock.now = at(s)
            await proc.handle([Message("r", SID, proof(s).model_dump_json().encode())])
            await proc.tick()
        assert events == []
        assert (proc.readings, proc.proofs, proc.rejected, store.count()) == (1, 4, 0, 1)
        clock.now = at(701)
        await proc.tick()
        assert kinds(events) == ["stale", "data_gap"]
