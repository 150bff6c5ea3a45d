"""Unit tests of every evaluation rule of the core, one class per rule."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest

from envmon.models import (
    AlarmEvent,
    AlarmKind,
    DataGap,
    Direction,
    ExcursionRecord,
    ExcursionStatus,
    Level,
    Quality,
    Reading,
)
from envmon.sensors import ChannelRules, FixedOccupancy, LimitSet, Occupancy, SensorSpec
from envmon.testing import DEFAULT_T0, make_spec, readings
from envmon.timeutil import to_us
from stream.core import Evaluator, SensorState
from stream.core.evaluator import UnknownSensorError, excursion_id
from stream.core.state import VOLATILE_FIELDS, SideState

SID = "fridge-1.temperature"


def run(spec: SensorSpec, values, every_s: float = 60.0):
    """Evaluate values (None = bad sample) at a fixed interval; return all events."""
    ev = Evaluator([spec])
    out = []
    for r in readings(spec.sensor_id, values, every=timedelta(seconds=every_s)):
        out.extend(ev.process(r))
    return out


def alarms(events, kind=None):
    return [e for e in events if isinstance(e, AlarmEvent) and (kind is None or e.event == kind)]


def records(events, status=None):
    return [
        e
        for e in events
        if isinstance(e, ExcursionRecord) and (status is None or e.status == status)
    ]


def at(minutes: float):
    return DEFAULT_T0 + timedelta(minutes=minutes)


class TestViolation:
    def test_value_equal_to_high_limit_is_not_a_violation(self):
        """A high limit is violated only when value > limit."""
        assert run(make_spec(alert_high=8), [8, 8, 8]) == []

    def test_value_above_high_limit_raises(self):
        """The first sample above the alert limit raises when there is no delay."""
        events = run(make_spec(alert_high=8), [5, 8.1])
        assert [a.event for a in alarms(events)] == [AlarmKind.RAISED]
        assert alarms(events)[0].level == Level.ALERT
        assert alarms(events)[0].direction == Direction.HIGH

    def test_value_equal_to_low_limit_is_not_a_violation(self):
        """A low limit is violated only when value < limit."""
        assert run(make_spec(alert_low=2), [2, 2]) == []

    def test_value_below_low_limit_raises_low(self):
        """A value below the low alert limit raises a low-side alarm."""
        events = run(make_spec(alert_low=2), [5, 1.9])
        assert alarms(events)[0].direction == Direction.LOW
        assert records(events)[0].direction == Direction.LOW

    def test_straight_to_action(self):
        """A sample beyond the action limit opens the excursion directly at action level."""
        events = run(make_spec(alert_high=8, action_high=10), [5, 12])
        assert [(a.event, a.level) for a in alarms(events)] == [(AlarmKind.RAISED, Level.ACTION)]
        assert records(events)[0].limit == 10

    def test_action_only_channel(self):
        """A side with only an action limit opens at action level and closes at that limit."""
        events = run(make_spec(action_high=10), [5, 11, 10, 9])
        closed = records(events, ExcursionStatus.CLOSED)[0]
        assert closed.level == Level.ACTION
        assert closed.end == at(2)


class TestDelay:
    def test_transient_shorter_than_delay_is_ignored(self):
        """A violation that ends before the delay elapsed raises nothing."""
        events = run(make_spec(alert_high=8, delay_s=180), [5, 9, 9, 9, 5])
        assert events == []

    def test_delay_measured_from_first_violating_sample(self):
        """The level is reached after the delay; the start is the run's first sample."""
        events = run(make_spec(alert_high=8, delay_s=180), [5, 9, 9, 9, 9])
        raised = alarms(events, AlarmKind.RAISED)[0]
        assert raised.ts == at(4)
        assert records(events)[0].start == at(1)

    def test_action_delay_is_separate_run(self):
        """Action level needs its own run of action violations lasting the delay."""
        events = run(
            make_spec(alert_high=8, action_high=10, delay_s=120), [5, 9, 11, 9, 11, 11, 11]
        )
        kinds = [(a.event, a.level, a.ts) for a in alarms(events)]
        assert kinds == [
            (AlarmKind.RAISED, Level.ALERT, at(3)),
            (AlarmKind.ESCALATED, Level.ACTION, at(6)),
        ]

    def test_bad_sample_does_not_break_run(self):
        """A bad-quality sample neither counts as violation nor resets the run."""
        events = run(make_spec(alert_high=8, delay_s=120), [5, 9, None, 9])
        assert alarms(events, AlarmKind.RAISED)[0].ts == at(3)


class TestConsecutive:
    def test_needs_n_violating_samples(self):
        """With consecutive=3 the level is reached on the third violating sample."""
        events = run(make_spec(alert_high=8, consecutive=3), [5, 9, 9, 9])
        assert alarms(events, AlarmKind.RAISED)[0].ts == at(3)

    def test_interrupted_run_restarts(self):
        """A sample back within limits restarts the count."""
        assert run(make_spec(alert_high=8, consecutive=3), [9, 9, 5, 9, 9]) == []

    def test_delay_and_consecutive_both_apply(self):
        """When both are set, both must be satisfied."""
        events = run(make_spec(alert_high=8, consecutive=2, delay_s=300), [9, 9, 9, 9, 9, 9])
        assert alarms(events, AlarmKind.RAISED)[0].ts == at(5)


class TestDeadband:
    def test_closes_only_below_limit_minus_deadband(self):
        """An excursion closes at the first sample <= alert_high - deadband."""
        events = run(make_spec(alert_high=8, deadband=0.5), [9, 7.8, 8.5, 7.6, 7.5, 9])
        closed = records(events, ExcursionStatus.CLOSED)
        assert len(closed) == 1
        assert closed[0].end == at(4)
        assert closed[0].samples == 4
        assert len(records(events, ExcursionStatus.OPEN)) == 2  # the second one opened at 9

    def test_low_side_deadband(self):
        """On the low side the value must rise to alert_low + deadband."""
        events = run(make_spec(alert_low=2, deadband=0.5), [1, 2.4, 2.5])
        assert records(events, ExcursionStatus.CLOSED)[0].end == at(2)

    def test_cleared_event_carries_highest_level(self):
        """The cleared alarm reports the highest level reached."""
        events = run(make_spec(alert_high=8, action_high=10), [9, 11, 9, 5])
        cleared = alarms(events, AlarmKind.CLEARED)[0]
        assert cleared.level == Level.ACTION
        assert cleared.ts == at(3)


class TestExcursionRecord:
    def test_metrics_of_a_high_excursion(self):
        """Peak, min, max, samples, duration, time beyond and integral follow the samples."""
        events = run(make_spec(alert_high=8), [5, 10, 12, 10, 6])
        rec = records(events, ExcursionStatus.CLOSED)[0]
        assert rec.start == at(1)
        assert rec.end == at(4)
        assert rec.duration_s == 180
        assert rec.peak == 12
        assert rec.peak_ts == at(2)
        assert (rec.min, rec.max) == (10, 12)
        assert rec.samples == 3
        # 10→12→10 fully beyond (120 s), then 10→6 crosses 8 after 30 s
        assert rec.time_beyond_limit_s == pytest.approx(150)
        assert rec.integral_beyond_limit == pytest.approx(2 * 60 * 3 + 2 * 30 / 2)

    def test_low_excursion_peak_is_minimum(self):
        """For a low excursion the peak is the most extreme low value."""
        events = run(make_spec(alert_low=2), [5, 1, -3, 0, 3])
        rec = records(events, ExcursionStatus.CLOSED)[0]
        assert rec.peak == -3
        assert rec.min == -3
        assert rec.max == 1

    def test_id_is_uuid5_of_sensor_and_start(self):
        """The excursion id is deterministic from sensor and start."""
        events = run(make_spec(alert_high=8), [5, 9, 5])
        rec = records(events)[0]
        assert rec.id == excursion_id(SID, to_us(at(1)))

    def test_revisions_increase(self):
        """Each update of one excursion carries a higher revision."""
        events = run(make_spec(alert_high=8, action_high=10), [9, 11, 5])
        assert [r.revision for r in records(events)] == [1, 2, 3]

    def test_open_at_end_has_no_end(self):
        """An excursion still open is reported with end None."""
        ev = Evaluator([make_spec(alert_high=8)])
        for r in readings(SID, [5, 9, 9]):
            ev.process(r)
        (rec,) = ev.open_records()
        assert isinstance(rec, ExcursionRecord)
        assert rec.end is None
        assert rec.duration_s is None


class TestRateOfChange:
    def test_fast_change_raises_once(self):
        """A rate beyond the limit raises one rate_of_change alarm until it calms down."""
        events = run(make_spec(rate_of_change_per_min=2), [0, 3, 6, 7, 7, 10])
        roc = alarms(events, AlarmKind.RATE_OF_CHANGE)
        assert [a.ts for a in roc] == [at(1), at(5)]
        assert roc[0].value == pytest.approx(3)

    def test_falling_rate(self):
        """A falling rate beyond the limit is reported with direction low."""
        events = run(make_spec(rate_of_change_per_min=2), [0, -5])
        assert alarms(events, AlarmKind.RATE_OF_CHANGE)[0].direction == Direction.LOW


class TestStale:
    def test_gap_longer_than_stale_after_raises_and_restores(self):
        """A late next sample gives stale (at the deadline), a data gap and restored."""
        spec = make_spec(stale_after_s=300)
        ev = Evaluator([spec])
        ev.process(Reading(sensor_id=SID, value=5, ts=at(0)))
        events = list(ev.process(Reading(sensor_id=SID, value=5, ts=at(10))))
        assert [getattr(e, "event", e.kind) for e in events] == [
            AlarmKind.STALE,
            "data_gap",
            AlarmKind.RESTORED,
            "data_gap",
        ]
        assert events[0].ts == at(5)
        gap = events[3]
        assert isinstance(gap, DataGap)
        assert (gap.start, gap.end, gap.duration_s) == (at(0), at(10), 600)

    def test_advance_raises_stale_without_a_sample(self):
        """A clock tick past the deadline raises the stale alarm and an open gap."""
        ev = Evaluator([make_spec(stale_after_s=300)])
        ev.process(Reading(sensor_id=SID, value=5, ts=at(0)))
        assert ev.advance(to_us(at(5))) == []
        events = ev.advance(to_us(at(6)))
        assert [type(e) for e in events] == [AlarmEvent, DataGap]
        assert events[0].ts == at(5)

    def test_other_sensors_advance_the_watermark(self):
        """Samples of one sensor reveal the silence of another."""
        a = make_spec("a.t", stale_after_s=120)
        b = make_spec("b.t")
        ev = Evaluator([a, b])
        ev.process(Reading(sensor_id="a.t", value=1, ts=at(0)))
        events = ev.process(Reading(sensor_id="b.t", value=1, ts=at(3)))
        assert alarms(events, AlarmKind.STALE)[0].sensor_id == "a.t"

    def test_sample_exactly_at_timeout_is_not_stale(self):
        """A gap of exactly stale_after is not a communication loss."""
        assert run(make_spec(stale_after_s=60), [1, 1, 1]) == []


class TestSensorFault:
    def test_bad_after_in_a_row(self):
        """bad_after bad samples in a row raise one sensor fault; a good one restores."""
        events = run(make_spec(bad_after=3, alert_high=8), [5, None, None, None, None, 5])
        kinds = [(a.event, a.ts) for a in alarms(events)]
        assert kinds == [(AlarmKind.SENSOR_FAULT, at(3)), (AlarmKind.RESTORED, at(5))]
        assert alarms(events)[1].cause == "sensor_fault"

    def test_bad_samples_do_not_recover(self):
        """Bad samples during an excursion neither close it nor count as samples."""
        events = run(make_spec(alert_high=8), [9, None, None, 9, 5])
        rec = records(events, ExcursionStatus.CLOSED)[0]
        assert rec.end == at(4)
        assert rec.samples == 2

    def test_bad_quality_value_is_ignored(self):
        """A reading marked bad is not evaluated even if it carries a value."""
        ev = Evaluator([make_spec(alert_high=8)])
        assert ev.process(Reading(sensor_id=SID, value=99, ts=at(0), quality=Quality.BAD)) == ()


class TestOrdering:
    def test_duplicate_ignored(self):
        """A second sample with the same sensor and timestamp is ignored and counted."""
        ev = Evaluator([make_spec(alert_high=8)])
        ev.process(Reading(sensor_id=SID, value=5, ts=at(0)))
        assert ev.process(Reading(sensor_id=SID, value=50, ts=at(0))) == ()
        assert ev.stats().duplicates == 1

    def test_late_sample_counted_not_evaluated(self):
        """A sample older than the last one is counted as late and not evaluated."""
        ev = Evaluator([make_spec(alert_high=8)])
        ev.process(Reading(sensor_id=SID, value=5, ts=at(5)))
        assert ev.process(Reading(sensor_id=SID, value=50, ts=at(1))) == ()
        assert ev.stats().late == 1
        assert ev.state_of(SID).late == 1

    def test_unknown_sensor(self):
        """A reading for a sensor not in the site raises UnknownSensorError."""
        ev = Evaluator([make_spec()])
        with pytest.raises(UnknownSensorError):
            ev.process(Reading(sensor_id="nope", value=1, ts=at(0)))


class TestOccupancy:
    def test_limits_follow_schedule(self):
        """Limits in force follow the occupancy schedule at each sample's time."""

        class Alternating:
            def state_at(self, ts_us: int) -> tuple[Occupancy, int]:
                hour = ts_us // 3_600_000_000
                state = Occupancy.IN_OPERATION if hour % 2 else Occupancy.AT_REST
                return state, (hour + 1) * 3_600_000_000

        rules = ChannelRules(
            limits_by_occupancy={
                Occupancy.AT_REST: LimitSet(action_high=3520),
                Occupancy.IN_OPERATION: LimitSet(action_high=352000),
            }
        )
        spec = SensorSpec(
            SID,
            "b",
            "pc",
            "particle_counter",
            "particles_0_5um",
            "1/m3",
            rules,
            schedule=Alternating(),
        )
        ev = Evaluator([spec])
        # DEFAULT_T0 is 08:00 UTC: an even hour, at rest
        assert ev.process(Reading(sensor_id=SID, value=3000, ts=at(0))) == ()
        assert alarms(ev.process(Reading(sensor_id=SID, value=4000, ts=at(1))))
        assert ev.process(Reading(sensor_id=SID, value=3000, ts=at(2)))  # closes
        assert ev.process(Reading(sensor_id=SID, value=100000, ts=at(61))) == ()  # in operation
        assert ev.channel(SID).limits_at(to_us(at(61))).action_high == 352000

    def test_fixed_occupancy(self):
        """A fixed occupancy keeps the plain limits."""
        spec = SensorSpec(
            SID,
            "b",
            "pc",
            "particle_counter",
            "p",
            "1/m3",
            ChannelRules(limits=LimitSet(alert_high=1)),
            schedule=FixedOccupancy(Occupancy.AT_REST),
        )
        assert Evaluator([spec]).channel(SID).limits_at(0).alert_high == 1


class TestState:
    def test_state_round_trips_through_json(self):
        """A sensor state survives to_dict/from_dict unchanged."""
        ev = Evaluator([make_spec(alert_high=8, delay_s=60)])
        for r in readings(SID, [5, 9, 9, 9]):
            ev.process(r)
        st = ev.state_of(SID)
        assert SensorState.from_dict(st.to_dict()) == st

    def test_state_dict_names_every_field(self):
        """to_dict, written out by hand for speed, carries every field but the volatile ones."""
        data = SensorState().to_dict()
        state_fields = {f.name for f in dataclasses.fields(SensorState)} - VOLATILE_FIELDS
        side_fields = [f.name for f in dataclasses.fields(SideState)]
        assert set(data) == state_fields | {"v"}
        assert list(data["high"]) == side_fields
        assert list(data["low"]) == side_fields

    def test_state_json_is_the_dict_as_json(self):
        """to_json encodes to_dict, and from_dict reads it back to the same state."""
        ev = Evaluator([make_spec(alert_high=8, delay_s=60)])
        for r in readings(SID, [5, 9, 9, 9]):
            ev.process(r)
        st = ev.state_of(SID)
        assert json.loads(st.to_json()) == st.to_dict()
        assert SensorState.from_dict(json.loads(st.to_json())) == st

    def test_unknown_state_version_refused(self):
        """A state of another version is refused rather than misread."""
        data = SensorState().to_dict() | {"v": 99}
        with pytest.raises(ValueError, match="version"):
            SensorState.from_dict(data)
