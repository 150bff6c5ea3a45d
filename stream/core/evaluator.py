"""Limit, delay, deadband, rate-of-change, stale-data and sensor-fault evaluation.

The rules (README "Limit semantics" is the user-facing version):

- a sample violates a high limit when ``value > limit`` and a low limit when
  ``value < limit``; one ``delay``, ``consecutive`` and ``deadband`` per channel serve both
  levels and both sides;
- a level is reached when its run of violating samples has lasted ``delay`` (from the first
  violating sample of the run to the current one) and, if set, counts ``consecutive``
  samples; the excursion opens when the alert level (or straight away the action level) is
  reached and starts at the first violating sample of the run;
- an open excursion escalates alert → action and keeps its highest level; it closes at the
  first sample back within the alert limit by at least the deadband;
- bad-quality samples neither violate nor recover; ``bad_after`` of them in a row raise a
  sensor fault; duplicates are ignored and late samples counted, not evaluated;
- stale means "no data and no proof of life": a gap longer than ``stale_after`` between
  two pieces of evidence (samples or proofs of life, in the sensor's data time) raises a
  communication-loss alarm and a data gap, and so does ``stale_after`` on the evaluator's
  clock without any evidence arriving (see :class:`Evaluator`); a proof of life is never a
  sample (no count, statistic or rate comes from it), but it says the last value still
  holds, so a time delay can pass on it.

Both sides run the same code on *signed* values: ``x = value`` for the high side and
``x = -value`` for the low side, so "beyond the limit" is always ``x > limit_x``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, KeysView, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from envmon.models import (
    AlarmEvent,
    AlarmKind,
    CoreEvent,
    DataGap,
    Direction,
    ExcursionRecord,
    ExcursionStatus,
    Level,
    LimitsInForce,
    ProofOfLife,
    Quality,
    Reading,
)
from envmon.sensors import LimitSet, Occupancy, SensorSpec
from envmon.timeutil import US_PER_S, format_us, from_us, to_us
from stream.core.state import SensorState, SideState

#: Namespace of envmon's deterministic ids (uuid5 of sensor and start).
ENVMON_NAMESPACE: Final = uuid.UUID("6f1c1a52-3d0e-5b9e-9a43-5f0d3f2a7c11")
NOTHING: Final[tuple[CoreEvent, ...]] = ()
_INF: Final = math.inf
_FAR_FUTURE: Final = 2**62
_LEVELS: Final = (None, Level.ALERT, Level.ACTION)
_BY_PROOF: Final = "proof of life: the source is healthy and the value unchanged"


class UnknownSensorError(KeyError):
    """A reading for a sensor that the site configuration does not define."""


def excursion_id(sensor_id: str, start_us: int) -> str:
    """Return the deterministic id of the excursion of ``sensor_id`` starting at ``start_us``."""
    return str(uuid.uuid5(ENVMON_NAMESPACE, f"excursion|{sensor_id}|{format_us(start_us)}"))


def gap_id(sensor_id: str, start_us: int) -> str:
    """Return the deterministic id of the data gap of ``sensor_id`` starting at ``start_us``."""
    return str(uuid.uuid5(ENVMON_NAMESPACE, f"gap|{sensor_id}|{format_us(start_us)}"))


@dataclass(frozen=True, slots=True)
class _SideLimits:
    """Limits of one side in signed form; ``open_x`` is +inf when the side has none."""

    open_x: float
    action_x: float | None
    has_alert: bool
    enabled: bool


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A ``LimitSet`` prepared for the hot path."""

    source: LimitSet
    in_force: LimitsInForce
    hi_open: float
    lo_open: float
    high: _SideLimits
    low: _SideLimits


def _compile(limits: LimitSet) -> _Compiled:
    hi_open = limits.alert_high if limits.alert_high is not None else limits.action_high
    lo_open = limits.alert_low if limits.alert_low is not None else limits.action_low
    high = _SideLimits(
        open_x=hi_open if hi_open is not None else _INF,
        action_x=limits.action_high,
        has_alert=limits.alert_high is not None,
        enabled=hi_open is not None,
    )
    low = _SideLimits(
        open_x=-lo_open if lo_open is not None else _INF,
        action_x=-limits.action_low if limits.action_low is not None else None,
        has_alert=limits.alert_low is not None,
        enabled=lo_open is not None,
    )
    return _Compiled(
        source=limits,
        in_force=LimitsInForce(
            alert_high=limits.alert_high,
            action_high=limits.action_high,
            alert_low=limits.alert_low,
            action_low=limits.action_low,
        ),
        hi_open=hi_open if hi_open is not None else _INF,
        lo_open=lo_open if lo_open is not None else -_INF,
        high=high,
        low=low,
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """A run beyond a limit whose delay (or count of samples) has not passed yet: no alarm.

    ``level`` is the level the run raises once it has lasted (the opening level, or action
    for an open alert-level excursion that has gone beyond the action limit);
    ``delay_left_s`` is the data time the run still needs (0 once it has lasted),
    ``samples_left`` the samples it still needs (0 when none or no count is set).
    """

    direction: Direction
    level: Level
    delay_left_s: float
    samples_left: int


class ChannelEvaluator:
    """Evaluates the samples of one channel; holds configuration, never state.

    The state lives in a :class:`SensorState` passed to every call, so the same evaluator
    serves a state kept in memory, in a faust table or restored from a snapshot.
    """

    __slots__ = (
        "_by_occupancy",
        "_cur",
        "_valid_from",
        "_valid_until",
        "bad_after",
        "deadband",
        "delay_us",
        "min_count",
        "roc",
        "spec",
        "stale_us",
    )

    def __init__(self, spec: SensorSpec) -> None:
        self.spec = spec
        rules = spec.rules
        self.delay_us = round(rules.delay_s * US_PER_S)
        self.min_count = rules.consecutive or 0
        self.deadband = rules.deadband
        self.roc = rules.rate_of_change_per_min
        self.stale_us = round(rules.stale_after_s * US_PER_S) if rules.stale_after_s else 0
        self.bad_after = rules.bad_after or 0
        self._cur = _compile(rules.limits)
        self._by_occupancy: dict[Occupancy, _Compiled] | None = None
        if rules.limits_by_occupancy is not None and spec.schedule is not None:
            self._by_occupancy = {k: _compile(v) for k, v in rules.limits_by_occupancy.items()}
        self._valid_from = 0
        self._valid_until = _FAR_FUTURE if self._by_occupancy is None else 0

    # ----------------------------------------------------------------- public API

    def limits_at(self, ts_us: int) -> LimitSet:
        """Return the limits in force at ``ts_us`` (they may follow room occupancy)."""
        return self._compiled_at(ts_us).source

    def step(
        self, st: SensorState, ts: int, value: float | None, good: bool, at: int | None = None
    ) -> Sequence[CoreEvent]:
        """Evaluate one sample (``ts`` in epoch µs) against ``st`` and return the events.

        ``at`` is when the sample arrived, on the evaluator's clock (default: ``ts``).
        """
        last = st.last_ts
        out: list[CoreEvent] | None = None
        if last is not None:
            if ts <= last:
                if ts == last:
                    st.duplicates += 1
                else:
                    st.late += 1
                return NOTHING
            if st.stale:
                out = self._restore_comms(st, ts)
            elif self.stale_us and ts - last > self.stale_us:
                # the gap runs from the last evidence: the last sample or a later proof
                alive = st.alive_ts
                if alive is None or ts - alive > self.stale_us:
                    out = self.go_stale(st)
                    out.extend(self._restore_comms(st, ts))
        st.last_ts = ts
        st.heard = ts if at is None else at
        if not good or value is None:
            st.bad_run += 1
            if self.bad_after and st.bad_run >= self.bad_after and not st.fault:
                st.fault = True
                out = out or []
                out.append(self._alarm(AlarmKind.SENSOR_FAULT, ts, detail="bad quality"))
            return out or NOTHING
        st.bad_run = 0
        if st.fault:
            st.fault = False
            out = out or []
            out.append(self._alarm(AlarmKind.RESTORED, ts, value=value, cause="sensor_fault"))
        lim = self._cur if ts < self._valid_until and ts >= self._valid_from else None
        if lim is None:
            lim = self._compiled_at(ts)
        if self.roc is not None and st.last_good_ts is not None:
            rate = (value - st.last_good_value) * 60_000_000 / (ts - st.last_good_ts)
            if abs(rate) > self.roc:
                if not st.roc_active:
                    st.roc_active = True
                    out = out or []
                    out.append(self._roc_alarm(ts, rate))
            else:
                st.roc_active = False
        st.last_good_ts = ts
        st.last_good_value = value
        high = st.high
        low = st.low
        if (
            lim.lo_open <= value <= lim.hi_open
            and high.run_start is None
            and not high.open
            and low.run_start is None
            and not low.open
        ):
            return out or NOTHING
        out = out or []
        if lim.high.enabled or not high.idle:
            self._side(high, Direction.HIGH, value, value, ts, lim, lim.high, out)
        if lim.low.enabled or not low.idle:
            self._side(low, Direction.LOW, -value, value, ts, lim, lim.low, out)
        return out

    def alive(self, st: SensorState, ts: int, at: int | None = None) -> Sequence[CoreEvent]:
        """Take a proof of life at ``ts`` (data time, epoch µs): evidence, never a sample.

        It ends a stale period (the sensor is heard from again: restored, the gap closed at
        ``ts``) and reveals a gap longer than ``stale_after`` since the last evidence, as a
        sample would. It also says the last value still holds at ``ts``: a time delay that
        has passed since a violating run began is reached by it (a report-by-exception
        freezer that jumps past its limit and stays there is alarmed once its delay is
        over, not at its next change), and the time beyond the limit grows. It adds no
        sample: consecutive counts, sample counts, peaks, rates and faults do not move. A
        proof no newer than the last evidence, or for a sensor never sampled (there is no
        value for it to vouch for), changes nothing.
        """
        evidence = st.evidence
        if evidence is None or ts <= evidence:
            return NOTHING
        out: list[CoreEvent] | None = None
        if st.stale:
            out = self._restore_comms(st, ts, detail=_BY_PROOF)
        elif self.stale_us and ts - evidence > self.stale_us:
            out = self.go_stale(st)
            out.extend(self._restore_comms(st, ts, detail=_BY_PROOF))
        st.alive_ts = ts
        st.heard = ts if at is None else at
        if (
            not st.fault
            and st.last_good_ts is not None
            and st.last_good_ts == st.last_ts
            and (st.high.run_start is not None or st.low.run_start is not None)
        ):
            out = out or []
            self._hold(st, ts, out)
        return out or NOTHING

    def _hold(self, st: SensorState, ts: int, out: list[CoreEvent]) -> None:
        """Hold the last good value until ``ts``: reach the levels whose time delay passed."""
        value = st.last_good_value
        lim = self._compiled_at(ts)
        for side, direction, x, sl in (
            (st.high, Direction.HIGH, value, lim.high),
            (st.low, Direction.LOW, -value, lim.low),
        ):
            if side.run_start is None or not x > sl.open_x:
                continue  # no run, or the limits in force at ts no longer see a violation
            self._accumulate(side, x, ts, sl.open_x)
            action = (
                sl.action_x is not None
                and side.action_start is not None
                and self._reached(side.action_start, side.action_count, ts)
            )
            if side.open:
                if action and side.level < 2:
                    side.level = 2
                    side.revision += 1
                    out.append(
                        self._level_alarm(AlarmKind.ESCALATED, side, direction, value, ts, sl)
                    )
                    out.append(self._record(side, direction, lim, sl, None))
                continue
            if action:
                level = 2
            elif sl.has_alert and self._reached(side.run_start, side.run_count, ts):
                level = 1
            else:
                continue
            side.open = True
            side.level = level
            side.revision = 1
            side.excursion_id = excursion_id(self.spec.sensor_id, side.run_start)
            out.append(self._level_alarm(AlarmKind.RAISED, side, direction, value, ts, sl))
            out.append(self._record(side, direction, lim, sl, None))

    def go_stale(self, st: SensorState) -> list[CoreEvent]:
        """Mark communication lost after the last evidence: a stale alarm and an open data gap.

        Both are stamped in the sensor's data time (the gap starts at the last evidence, the
        alarm ``stale_after`` later), whichever clock found the silence, so that repeating
        the same input gives the same ids.
        """
        start = st.evidence
        assert start is not None
        st.stale = True
        spec = self.spec
        deadline = start + self.stale_us
        return [
            self._alarm(
                AlarmKind.STALE, deadline, detail=f"no data for more than {self.stale_us / 1e6:g} s"
            ),
            DataGap(
                id=gap_id(spec.sensor_id, start),
                sensor_id=spec.sensor_id,
                area=spec.area,
                parameter=spec.parameter,
                start=from_us(start),
                end=None,
                duration_s=None,
            ),
        ]

    def stale_deadline(self, st: SensorState) -> int | None:
        """Return the instant on the evaluator's clock (µs) after which ``st`` goes stale."""
        if not self.stale_us or st.stale or st.last_ts is None:
            return None
        heard = st.heard
        if heard is None:
            heard = st.evidence
            assert heard is not None
        return heard + self.stale_us

    def open_records(self, st: SensorState) -> list[CoreEvent]:
        """Return snapshots of what is still open for this sensor (excursions, data gap)."""
        out: list[CoreEvent] = []
        lim = self._compiled_at(st.last_ts or 0)
        for side, direction, side_lim in (
            (st.high, Direction.HIGH, lim.high),
            (st.low, Direction.LOW, lim.low),
        ):
            if side.open:
                out.append(self._record(side, direction, lim, side_lim, None))
        start = st.evidence
        if st.stale and start is not None:
            spec = self.spec
            out.append(
                DataGap(
                    id=gap_id(spec.sensor_id, start),
                    sensor_id=spec.sensor_id,
                    area=spec.area,
                    parameter=spec.parameter,
                    start=from_us(start),
                    end=None,
                    duration_s=None,
                )
            )
        return out

    def pending(self, st: SensorState, now: int) -> Pending | None:
        """Return the run beyond a limit still waiting for its delay or count at ``now`` (µs).

        Read-only: ``st`` is not changed. The run's level follows the limits in force at the
        last sample; ``now`` is in data time (the demo's clock). None when no run waits.
        """
        if st.stale or st.fault:
            return None
        lim = self._compiled_at(st.last_ts or 0)
        for side, direction, sl in (
            (st.high, Direction.HIGH, lim.high),
            (st.low, Direction.LOW, lim.low),
        ):
            if side.open:
                if side.level == 1 and side.action_start is not None:
                    start, count, level = side.action_start, side.action_count, Level.ACTION
                else:
                    continue
            elif side.run_start is not None:
                level = Level.ALERT if sl.has_alert else Level.ACTION
                start, count = side.run_start, side.run_count
            else:
                continue
            return Pending(
                direction=direction,
                level=level,
                delay_left_s=max(0, self.delay_us - (now - start)) / US_PER_S,
                samples_left=max(0, self.min_count - count),
            )
        return None

    # ----------------------------------------------------------------- internals

    def _compiled_at(self, ts: int) -> _Compiled:
        if self._by_occupancy is None or self.spec.schedule is None:
            return self._cur
        if not (self._valid_from <= ts < self._valid_until):
            state, until = self.spec.schedule.state_at(ts)
            self._cur = self._by_occupancy[state]
            self._valid_from = ts
            self._valid_until = until
        return self._cur

    def _reached(self, run_start: int, run_count: int, ts: int) -> bool:
        return ts - run_start >= self.delay_us and run_count >= self.min_count

    def _side(
        self,
        side: SideState,
        direction: Direction,
        x: float,
        value: float,
        ts: int,
        lim: _Compiled,
        sl: _SideLimits,
        out: list[CoreEvent],
    ) -> None:
        open_x = sl.open_x
        if side.open:
            self._accumulate(side, x, ts, open_x)
            if x <= open_x - self.deadband:
                out.append(
                    self._alarm(
                        AlarmKind.CLEARED,
                        ts,
                        level=_LEVELS[side.level],
                        direction=direction,
                        value=value,
                        limit=_unsign(open_x, direction),
                        excursion_id=side.excursion_id,
                    )
                )
                side.revision += 1
                out.append(self._record(side, direction, lim, sl, ts))
                side.reset()
                return
            self._take_sample(side, x, value, ts)
            if self._track_action(side, x, ts, sl) and side.level < 2:
                side.level = 2
                side.revision += 1
                out.append(self._level_alarm(AlarmKind.ESCALATED, side, direction, value, ts, sl))
                out.append(self._record(side, direction, lim, sl, None))
            return
        if not x > open_x:
            if side.run_start is not None:
                side.reset()
            return
        if side.run_start is None:
            side.run_start = ts
            side.run_count = 1
            side.peak_x = x
            side.peak_ts = ts
            side.vmin = side.vmax = value
            side.samples = 1
            side.beyond_us = 0.0
            side.integral = 0.0
            side.prev_ts = ts
            side.prev_x = x
        else:
            self._accumulate(side, x, ts, open_x)
            side.run_count += 1
            self._take_sample(side, x, value, ts)
        action = self._track_action(side, x, ts, sl)
        if action:
            level = 2
        elif sl.has_alert and self._reached(side.run_start, side.run_count, ts):
            level = 1
        else:
            return
        side.open = True
        side.level = level
        side.revision = 1
        side.excursion_id = excursion_id(self.spec.sensor_id, side.run_start)
        out.append(self._level_alarm(AlarmKind.RAISED, side, direction, value, ts, sl))
        out.append(self._record(side, direction, lim, sl, None))

    def _track_action(self, side: SideState, x: float, ts: int, sl: _SideLimits) -> bool:
        """Advance the action-level run; return True when the action level is reached."""
        if sl.action_x is None or not x > sl.action_x:
            side.action_start = None
            side.action_count = 0
            return False
        if side.action_start is None:
            side.action_start = ts
            side.action_count = 1
        else:
            side.action_count += 1
        return self._reached(side.action_start, side.action_count, ts)

    @staticmethod
    def _take_sample(side: SideState, x: float, value: float, ts: int) -> None:
        side.samples += 1
        if x > side.peak_x:
            side.peak_x = x
            side.peak_ts = ts
        if value < side.vmin:
            side.vmin = value
        if value > side.vmax:
            side.vmax = value

    @staticmethod
    def _accumulate(side: SideState, x: float, ts: int, open_x: float) -> None:
        """Add the interval since the previous sample: time beyond and trapezoid integral."""
        dt = (ts - side.prev_ts) / US_PER_S
        e0 = side.prev_x - open_x
        e1 = x - open_x
        if e0 >= 0 and e1 >= 0:
            side.beyond_us += dt
            side.integral += (e0 + e1) / 2 * dt
        elif e0 >= 0 > e1 or e1 >= 0 > e0:
            inside = e0 if e0 >= 0 else e1  # the end that is beyond the limit
            t = dt * inside / (abs(e0) + abs(e1))
            side.beyond_us += t
            side.integral += inside * t / 2
        side.prev_ts = ts
        side.prev_x = x

    def _record(
        self,
        side: SideState,
        direction: Direction,
        lim: _Compiled,
        sl: _SideLimits,
        end: int | None,
    ) -> ExcursionRecord:
        spec = self.spec
        assert side.run_start is not None
        assert side.excursion_id is not None
        level = Level.ACTION if side.level == 2 else Level.ALERT
        limit_x = sl.action_x if side.level == 2 and sl.action_x is not None else sl.open_x
        return ExcursionRecord(
            id=side.excursion_id,
            revision=side.revision,
            status=ExcursionStatus.OPEN if end is None else ExcursionStatus.CLOSED,
            sensor_id=spec.sensor_id,
            area=spec.area,
            instrument=spec.instrument,
            parameter=spec.parameter,
            unit=spec.unit,
            direction=direction,
            level=level,
            limit=_unsign(limit_x, direction),
            limits=lim.in_force,
            start=from_us(side.run_start),
            end=None if end is None else from_us(end),
            duration_s=None if end is None else (end - side.run_start) / US_PER_S,
            peak=_unsign(side.peak_x, direction),
            peak_ts=from_us(side.peak_ts),
            min=side.vmin,
            max=side.vmax,
            samples=side.samples,
            time_beyond_limit_s=side.beyond_us,
            integral_beyond_limit=side.integral,
        )

    def _level_alarm(
        self,
        kind: AlarmKind,
        side: SideState,
        direction: Direction,
        value: float,
        ts: int,
        sl: _SideLimits,
    ) -> AlarmEvent:
        limit_x = sl.action_x if side.level == 2 and sl.action_x is not None else sl.open_x
        return self._alarm(
            kind,
            ts,
            level=_LEVELS[side.level],
            direction=direction,
            value=value,
            limit=_unsign(limit_x, direction),
            excursion_id=side.excursion_id,
        )

    def _roc_alarm(self, ts: int, rate: float) -> AlarmEvent:
        assert self.roc is not None
        return self._alarm(
            AlarmKind.RATE_OF_CHANGE,
            ts,
            direction=Direction.HIGH if rate > 0 else Direction.LOW,
            value=rate,
            limit=self.roc,
            detail=f"changing {rate:+.4g} {self.spec.unit}/min, limit {self.roc:g}",
        )

    def _restore_comms(self, st: SensorState, ts: int, detail: str = "") -> list[CoreEvent]:
        """End a stale period at ``ts``: restored, and the gap since the last evidence closed."""
        start = st.evidence
        assert start is not None
        end = ts if ts > start else start  # a device clock behind its proofs' clock
        st.stale = False
        spec = self.spec
        return [
            self._alarm(AlarmKind.RESTORED, ts, cause="stale", detail=detail),
            DataGap(
                id=gap_id(spec.sensor_id, start),
                sensor_id=spec.sensor_id,
                area=spec.area,
                parameter=spec.parameter,
                start=from_us(start),
                end=from_us(end),
                duration_s=(end - start) / US_PER_S,
            ),
        ]

    def _alarm(
        self,
        kind: AlarmKind,
        ts: int,
        *,
        level: Level | None = None,
        direction: Direction | None = None,
        value: float | None = None,
        limit: float | None = None,
        excursion_id: str | None = None,
        cause: str | None = None,
        detail: str = "",
    ) -> AlarmEvent:
        spec = self.spec
        return AlarmEvent(
            event=kind,
            sensor_id=spec.sensor_id,
            area=spec.area,
            parameter=spec.parameter,
            unit=spec.unit,
            ts=from_us(ts),
            level=level,
            direction=direction,
            value=value,
            limit=limit,
            excursion_id=excursion_id,
            cause=cause,
            detail=detail,
        )


def _unsign(x: float, direction: Direction) -> float:
    return x if direction is Direction.HIGH else -x


@dataclass(frozen=True, slots=True)
class EvaluationStats:
    """Counters of an evaluator: readings seen, duplicates and late samples ignored."""

    readings: int
    duplicates: int
    late: int
    sensors: int


class Evaluator:
    """Evaluates the readings of a whole site, one :class:`ChannelEvaluator` per sensor.

    ``feed`` takes the hot-path form (sensor id, epoch µs, value, good); ``process`` takes a
    :class:`~envmon.models.Reading` (or a :class:`~envmon.models.ProofOfLife`, as ``alive``).

    Silence is measured on the evaluator's *clock* (its ``watermark``): the time at which
    each sample or proof arrived (``at``), moved on by every arrival and by
    :meth:`advance`. Replay gives no ``at``: its clock is the data time, the latest sample
    time seen. The live engines give the wall clock, so that data arriving behind it (a
    backlog, a burst, a device clock that runs late) is never read as silence: a sensor goes
    stale when nothing arrived from it for ``stale_after`` on the clock, or when its own
    evidence shows a gap longer than that in its data time. Either way the alarm and the
    gap carry data times. States handed in without ``heard`` (restored) count as heard at
    ``heard_from`` when given (a live engine taking them over: what it has not read yet is
    not silence), else at their last evidence (replay). While ``hold`` is set, arrivals
    are recorded but do not move the clock: an engine that knows more is waiting unread
    moves it itself with :meth:`advance` once it has read it.
    """

    __slots__ = ("_channels", "_next_deadline", "_watermark", "hold", "proofs", "readings")

    def __init__(
        self,
        specs: Iterable[SensorSpec],
        states: Mapping[str, SensorState] | None = None,
        watermark: int | None = None,
        *,
        heard_from: int | None = None,
    ) -> None:
        self._channels: dict[str, tuple[ChannelEvaluator, SensorState]] = {}
        for spec in specs:
            state = (states or {}).get(spec.sensor_id) or SensorState()
            if state.heard is None and state.last_ts is not None:
                state.heard = heard_from if heard_from is not None else state.evidence
            self._channels[spec.sensor_id] = (ChannelEvaluator(spec), state)
        self.readings = 0
        self.proofs = 0
        self.hold = False
        self._watermark = watermark if watermark is not None else -_FAR_FUTURE
        self._next_deadline = -_FAR_FUTURE  # a lower bound: the first advance rescans

    @property
    def watermark(self) -> int | None:
        """Return the clock's time (epoch µs; data time in replay), or None before any."""
        return None if self._watermark == -_FAR_FUTURE else self._watermark

    def __contains__(self, sensor_id: object) -> bool:
        return sensor_id in self._channels

    @property
    def sensor_ids(self) -> KeysView[str]:
        """Return a live view of the sensor ids this evaluator knows."""
        return self._channels.keys()

    def feed(
        self,
        sensor_id: str,
        ts: int,
        value: float | None,
        good: bool,
        at: int | None = None,
    ) -> Sequence[CoreEvent]:
        """Evaluate one sample given in the hot-path form; raise for an unknown sensor.

        ``at`` is the clock's time when the sample arrived (default: ``ts``, data time).
        """
        ch = self._channels.get(sensor_id)
        if ch is None:
            raise UnknownSensorError(sensor_id)
        evaluator, state = ch
        self.readings += 1
        now = ts if at is None else at
        expired: list[CoreEvent] | None = None
        if now > self._watermark and not self.hold:
            self._watermark = now
            if now > self._next_deadline:
                expired = self._expire(now)
        events = evaluator.step(state, ts, value, good, at)
        stale_us = evaluator.stale_us
        # An accepted sample was heard now: its deadline may be the earliest. A repeat
        # changed no deadline (and was not heard now), so the bound holds as it is.
        if stale_us and now + stale_us < self._next_deadline and state.heard == now:
            self._next_deadline = now + stale_us
        if expired:
            expired.extend(events)
            return expired
        return events

    def alive(self, sensor_id: str, ts: int, at: int | None = None) -> Sequence[CoreEvent]:
        """Take a proof of life of one sensor (``ChannelEvaluator.alive``); raise if unknown."""
        ch = self._channels.get(sensor_id)
        if ch is None:
            raise UnknownSensorError(sensor_id)
        evaluator, state = ch
        self.proofs += 1
        now = ts if at is None else at
        expired: list[CoreEvent] | None = None
        if now > self._watermark and not self.hold:
            self._watermark = now
            if now > self._next_deadline:
                expired = self._expire(now)
        events = evaluator.alive(state, ts, at)
        deadline = evaluator.stale_deadline(state)
        if deadline is not None and deadline < self._next_deadline:
            self._next_deadline = deadline
        if expired:
            expired.extend(events)
            return expired
        return events

    def process(self, message: Reading | ProofOfLife, at: int | None = None) -> Sequence[CoreEvent]:
        """Evaluate one reading, or take one proof of life; ``at`` as for :meth:`feed`."""
        if isinstance(message, ProofOfLife):
            return self.alive(message.sensor_id, to_us(message.ts), at)
        good = message.quality is not Quality.BAD and message.value is not None
        return self.feed(message.sensor_id, to_us(message.ts), message.value, good, at)

    def advance(self, now_us: int) -> list[CoreEvent]:
        """Move time forward without a sample (a clock tick): raise stale-data alarms."""
        if now_us <= self._watermark:
            return []
        self._watermark = now_us
        return self._expire(now_us) if now_us > self._next_deadline else []

    def open_records(self) -> list[CoreEvent]:
        """Return snapshots of every excursion and data gap still open."""
        out: list[CoreEvent] = []
        for evaluator, state in self._channels.values():
            out.extend(evaluator.open_records(state))
        return out

    def state_of(self, sensor_id: str) -> SensorState:
        """Return the live state of one sensor: the same object for the evaluator's life."""
        return self._channels[sensor_id][1]

    def channel(self, sensor_id: str) -> ChannelEvaluator:
        """Return the evaluator of one sensor."""
        return self._channels[sensor_id][0]

    def pending(self, sensor_id: str, now: int) -> Pending | None:
        """Return one sensor's run still waiting for its delay or count (see the channel's)."""
        evaluator, state = self._channels[sensor_id]
        return evaluator.pending(state, now)

    def stats(self) -> EvaluationStats:
        """Return the counters summed over every sensor."""
        return EvaluationStats(
            readings=self.readings,
            duplicates=sum(s.duplicates for _, s in self._channels.values()),
            late=sum(s.late for _, s in self._channels.values()),
            sensors=len(self._channels),
        )

    def snapshot(self) -> dict[str, Any]:
        """Return the whole evaluation state as JSON-ready data."""
        return {
            "watermark": self.watermark,
            "readings": self.readings,
            "sensors": {sid: st.to_dict() for sid, (_, st) in self._channels.items()},
        }

    @classmethod
    def restore(cls, specs: Iterable[SensorSpec], snapshot: Mapping[str, Any]) -> Evaluator:
        """Rebuild an evaluator from :meth:`snapshot` output and the same specs."""
        states = {sid: SensorState.from_dict(d) for sid, d in snapshot["sensors"].items()}
        ev = cls(specs, states, snapshot.get("watermark"))
        ev.readings = int(snapshot.get("readings", 0))
        return ev

    def _expire(self, now: int) -> list[CoreEvent]:
        """Raise stale alarms for sensors silent since before ``now - stale_after``."""
        due: list[tuple[int, str]] = []
        nearest = _FAR_FUTURE
        for sid, (evaluator, state) in self._channels.items():
            deadline = evaluator.stale_deadline(state)
            if deadline is None:
                continue
            if deadline < now:
                due.append((deadline, sid))
            elif deadline < nearest:
                nearest = deadline
        self._next_deadline = nearest
        out: list[CoreEvent] = []
        for _, sid in sorted(due):
            evaluator, state = self._channels[sid]
            out.extend(evaluator.go_stale(state))
        return out
