"""The context series (stream.timeseries.context): limits, status, alarms and records."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from envmon.config import load_site
from envmon.models import AlarmEvent, AlarmKind, DataGap, Direction, Level
from envmon.testing import DEFAULT_T0, make_spec
from envmon.timeutil import parse_ts, to_us
from stream.core.state import SensorState
from stream.timeseries.context import (
    LIMITS_BACKFILL_US,
    LIMITS_EVERY_US,
    MINUTE_US,
    STATUS_ACTION,
    STATUS_FAULT,
    STATUS_NORMAL,
    STATUS_STALE,
    ContextPoint,
    ContextTrail,
    status_code,
    to_line,
)

EVERY = LIMITS_EVERY_US
SITE_FILE = Path(__file__).parents[2] / "deploy" / "examples" / "site.yaml"
FRIDGE = make_spec("fridge-1.temperature", alert_high=6.0, action_high=8.0, action_low=2.0)


def fields(point: ContextPoint) -> dict[str, object]:
    return dict(point.fields)


class TestLimits:
    def test_first_reading_then_every_quarter_hour(self):
        trail = ContextTrail([FRIDGE], "plant-a")
        t0 = to_us(DEFAULT_T0) + 30_000_000  # half a minute past
        first = trail.reading("fridge-1.temperature", t0)
        assert [p.ts_us for p in first] == [t0]
        assert fields(first[0]) == {
            "alert_high": 6.0,
            "action_high": 8.0,
            "action_low": 2.0,
            "occupancy": "",
        }
        assert trail.reading("fridge-1.temperature", t0 + MINUTE_US) == []  # same quarter
        later = trail.reading("fridge-1.temperature", t0 + 3 * EVERY)
        step = (t0 // EVERY + 1) * EVERY
        assert [p.ts_us for p in later] == [step, step + EVERY, step + 2 * EVERY]

    def test_late_readings_write_nothing(self):
        trail = ContextTrail([FRIDGE])
        t0 = to_us(DEFAULT_T0)
        trail.reading("fridge-1.temperature", t0 + 10 * MINUTE_US)
        assert trail.reading("fridge-1.temperature", t0) == []

    def test_a_long_gap_is_backfilled_for_at_most_an_hour(self):
        trail = ContextTrail([FRIDGE])
        t0 = to_us(DEFAULT_T0)  # on a quarter hour
        trail.reading("fridge-1.temperature", t0)
        points = trail.reading("fridge-1.temperature", t0 + 50 * MINUTE_US)
        assert len(points) == 3  # the gap's quarter hours: limits in force throughout
        later = t0 + 50 * MINUTE_US + 2 * LIMITS_BACKFILL_US
        points = trail.reading("fridge-1.temperature", later)
        assert [p.ts_us for p in points] == [later]  # not the two hours before it

    def test_scheduled_room_switches_at_the_exact_instant(self):
        """Grade B room: in operation from 07:00 Europe/Amsterdam on weekdays (06:00 UTC)."""
        site = load_site(SITE_FILE)
        spec = next(s for s in site.sensors() if s.sensor_id == "pc-grade-b.particles_0_5um")
        trail = ContextTrail([spec], site.site_id)
        before = to_us(parse_ts("2026-01-05T05:52:30Z"))
        after = to_us(parse_ts("2026-01-05T06:05:20Z"))
        (rest_point,) = trail.reading(spec.sensor_id, before)
        points = trail.reading(spec.sensor_id, after)
        switch = to_us(parse_ts("2026-01-05T06:00:00Z"))
        assert [p.ts_us for p in points] == [switch]
        rest, operation = fields(rest_point), fields(points[0])
        assert rest["occupancy"] == "at_rest"
        assert operation["occupancy"] == "in_operation"
        assert rest["action_high"] < operation["action_high"]  # at rest is stricter
        assert dict(points[0].tags)["site"] == "leiden-cell-therapy-suite"

    def test_the_evening_switch_back_to_at_rest(self):
        """Grade C prep: in operation from 06:00 Europe/Amsterdam (05:00 UTC), at rest at 22:00."""
        site = load_site(SITE_FILE)
        spec = next(s for s in site.sensors() if s.sensor_id == "pc-grade-c.particles_0_5um")
        trail = ContextTrail([spec], site.site_id)
        trail.reading(spec.sensor_id, to_us(parse_ts("2026-01-05T20:50:00Z")))
        points = trail.reading(spec.sensor_id, to_us(parse_ts("2026-01-05T21:20:00Z")))
        assert [(p.ts_us, fields(p)["occupancy"]) for p in points] == [
            (to_us(parse_ts("2026-01-05T21:00:00Z")), "at_rest"),
            (to_us(parse_ts("2026-01-05T21:15:00Z")), "at_rest"),
        ]


class TestStatus:
    def test_codes(self):
        state = SensorState()
        assert status_code(state) == STATUS_NORMAL
        state.high.open, state.high.level = True, 2
        assert status_code(state) == STATUS_ACTION
        state.stale = True
        assert status_code(state) == STATUS_STALE
        state.fault = True
        assert status_code(state) == STATUS_FAULT

    def test_changes_only_unless_swept(self):
        trail = ContextTrail([FRIDGE])
        state = SensorState(last_ts=to_us(DEFAULT_T0), last_good_ts=to_us(DEFAULT_T0))
        state.last_good_value = 4.5
        now = to_us(DEFAULT_T0) + 5_000_000
        (point,) = trail.status(now, [("fridge-1.temperature", state)])
        assert fields(point) == {
            "code": 0,
            "value": 4.5,
            "last_reading": to_us(DEFAULT_T0) // 1000,
        }
        assert point.ts_us == now
        assert trail.status(now + 1, [("fridge-1.temperature", state)]) == []
        assert len(trail.status(now + 2, [("fridge-1.temperature", state)], sweep=True)) == 1
        state.stale = True
        (stale,) = trail.status(now + 3, [("fridge-1.temperature", state)])
        assert fields(stale)["code"] == STATUS_STALE

    def test_sweep_once_a_minute_of_the_clock(self):
        trail = ContextTrail([FRIDGE])
        t = to_us(DEFAULT_T0) + 1
        assert trail.sweep_due(t)
        assert not trail.sweep_due(t + 1_000_000)
        assert trail.sweep_due((t // MINUTE_US + 1) * MINUTE_US)

    def test_no_value_before_the_first_good_sample(self):
        trail = ContextTrail([FRIDGE])
        (point,) = trail.status(1, [("fridge-1.temperature", SensorState())])
        assert fields(point) == {"code": 0}


class TestEvents:
    def test_alarm_point_and_line(self):
        trail = ContextTrail([FRIDGE], "plant-a")
        event = AlarmEvent(
            event=AlarmKind.RAISED,
            sensor_id="fridge-1.temperature",
            area="cold-store",
            parameter="temperature",
            unit="degC",
            ts=DEFAULT_T0,
            level=Level.ACTION,
            direction=Direction.HIGH,
            value=8.25,
            limit=8.0,
            excursion_id="exc-1",
        )
        (point,) = trail.events([event])
        line = to_line(point)
        assert line == (
            "alarm,area=cold-store,event=raised,instrument=fridge-1,level=action,"
            "parameter=temperature,sensor=fridge-1.temperature,site=plant-a,unit=degC"
            ' text="Action raised: fridge-1 temperature at 8.25 degC (limit 8)",'
            f'value=8.25,limit_value=8.0,excursion="exc-1" {to_us(DEFAULT_T0)}'
        )

    def test_data_gap_point_gets_its_end_when_it_ends(self):
        trail = ContextTrail([FRIDGE])
        gap = DataGap(
            id="gap-1",
            sensor_id="fridge-1.temperature",
            area="cold-store",
            parameter="temperature",
            start=DEFAULT_T0,
            end=None,
            duration_s=None,
        )
        (open_point,) = trail.events([gap])
        ended = gap.model_copy(
            update={"end": DEFAULT_T0 + timedelta(minutes=20), "duration_s": 1200.0}
        )
        (closed,) = trail.events([ended])
        assert open_point.series() == closed.series()
        assert open_point.ts_us == closed.ts_us
        assert "end_ms" not in fields(open_point)
        assert fields(closed)["end_ms"] == to_us(DEFAULT_T0 + timedelta(minutes=20)) // 1000
        assert dict(closed.tags)["kind"] == "data_gap"

    def test_escaping_in_lines(self):
        point = ContextPoint(
            "alarm", (("area", "a b"), ("sensor", "s,1")), (("text", 'say "hi"'),), 5
        )
        assert to_line(point) == 'alarm,area=a\\ b,sensor=s\\,1 text="say \\"hi\\"" 5'
