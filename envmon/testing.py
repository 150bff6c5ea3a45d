"""Test helpers shipped with envmon: spec and reading-scenario builders, a fake clock.

Users writing their own integration tests need these too (compare ``structlog.testing``).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from envmon.bus import BusUnavailableError, InMemoryBus, Message
from envmon.models import Quality, Reading
from envmon.sensors import ChannelRules, LimitSet, SensorSpec
from envmon.timeutil import format_ts, parse_ts

DEFAULT_T0 = parse_ts("2026-01-05T08:00:00Z")


def make_spec(
    sensor_id: str = "fridge-1.temperature",
    *,
    area: str = "cold-store",
    parameter: str = "temperature",
    unit: str = "degC",
    alert_high: float | None = None,
    action_high: float | None = None,
    alert_low: float | None = None,
    action_low: float | None = None,
    delay_s: float = 0.0,
    consecutive: int | None = None,
    deadband: float = 0.0,
    rate_of_change_per_min: float | None = None,
    stale_after_s: float | None = None,
    bad_after: int | None = None,
) -> SensorSpec:
    """Build a ``SensorSpec`` with the given rules and harmless defaults for the rest."""
    return SensorSpec(
        sensor_id=sensor_id,
        area=area,
        instrument=sensor_id.split(".", maxsplit=1)[0],
        instrument_kind="fridge",
        parameter=parameter,
        unit=unit,
        rules=ChannelRules(
            limits=LimitSet(
                alert_high=alert_high,
                action_high=action_high,
                alert_low=alert_low,
                action_low=action_low,
            ),
            delay_s=delay_s,
            consecutive=consecutive,
            deadband=deadband,
            rate_of_change_per_min=rate_of_change_per_min,
            stale_after_s=stale_after_s,
            bad_after=bad_after,
        ),
    )


def readings(
    sensor_id: str,
    values: Iterable[float | None],
    *,
    start: datetime = DEFAULT_T0,
    every: timedelta = timedelta(seconds=60),
    quality: Quality = Quality.GOOD,
) -> Iterator[Reading]:
    """Yield one reading per value at a regular interval; ``None`` means a bad sample."""
    ts = start
    for value in values:
        yield Reading(
            sensor_id=sensor_id,
            value=value,
            ts=ts,
            quality=Quality.BAD if value is None else quality,
        )
        ts += every


#: The ``site:`` line of a test site file.
TEST_SITE_LINE = "site: {name: Test site, timezone: Europe/Amsterdam}"


def site_yaml(
    areas: str,
    *,
    site: str = TEST_SITE_LINE,
    defaults: str = "",
    sections: str = "",
) -> str:
    """Return a site file: the ``site:`` line, ``defaults``, ``areas:`` and ``sections``.

    ``areas`` is the list under ``areas:`` (``- id: …`` items, dedented here and indented
    two spaces); ``defaults`` and ``sections`` are top-level YAML placed before and after
    it (``defaults:``, ``collectors:``, ``alerting:`` …). Every test site file is built here.
    """
    parts = [
        site,
        textwrap.dedent(defaults).strip(),
        "areas:",
        textwrap.indent(textwrap.dedent(areas).strip("\n"), "  "),
        textwrap.dedent(sections).strip(),
    ]
    return "\n".join(part for part in parts if part) + "\n"


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.02,
) -> None:
    """Wait until ``predicate()`` (plain or async) holds; else fail naming ``what``.

    For what crosses a real server, where there is no event to wait on. Raises
    ``AssertionError("timed out after N s waiting for <what>")``.
    """
    deadline = time.monotonic() + timeout
    while True:
        held = predicate()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class FakeClock:
    """An injectable clock that only moves when told to."""

    now: datetime = field(default=DEFAULT_T0)

    def __call__(self) -> datetime:
        """Return the current fake time."""
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


class SwitchableBus:
    """An ``InMemoryBus`` that can be switched off: ``publish`` then refuses, as a down bus does.

    For outage tests of everything that publishes (collectors' buffers, processors).
    """

    def __init__(self, inner: InMemoryBus | None = None) -> None:
        self.inner = inner or InMemoryBus()
        self.available = True
        self.refused = 0

    async def start(self) -> None:
        """Start the inner bus."""
        await self.inner.start()

    async def stop(self) -> None:
        """Stop the inner bus."""
        await self.inner.stop()

    async def publish(self, messages: list[Message]) -> None:
        """Publish, or raise ``BusUnavailableError`` while switched off."""
        if not self.available:
            self.refused += 1
            raise BusUnavailableError("bus switched off by the test")
        await self.inner.publish(messages)

    def subscribe(self, topic: str, group: str) -> AsyncIterator[Message]:
        """Subscribe on the inner bus."""
        return self.inner.subscribe(topic, group)

    def subscribe_batches(self, topic: str, group: str) -> AsyncIterator[list[Message]]:
        """Subscribe on the inner bus, in batches."""
        return self.inner.subscribe_batches(topic, group)


#: Shapes an injected fault: seconds since the fault started → value.
Shape = Callable[[float], float]


def nominal_value(spec: SensorSpec, limits: LimitSet | None = None) -> float:
    """Return a comfortable in-limit value for a channel (the middle of its alert band)."""
    lim = limits or spec.rules.limits
    if spec.rules.limits_by_occupancy:
        lim = min(
            spec.rules.limits_by_occupancy.values(),
            key=lambda s: s.action_high if s.action_high is not None else math.inf,
        )
    high = lim.alert_high if lim.alert_high is not None else lim.action_high
    low = lim.alert_low if lim.alert_low is not None else lim.action_low
    if high is not None and low is not None:
        return (high + low) / 2
    if high is not None:
        return high * 0.1 if high > 0 else high - 10
    if low is not None:
        return low + max(abs(low) * 0.1, 1.0)
    return 0.0


@dataclass
class _Fault:
    sensor_id: str
    start: datetime
    end: datetime
    shape: Shape


class ScenarioBuilder:
    """Builds a deterministic stream of readings for a whole site, with scripted faults.

    Every sensor reports its nominal value (with a little seeded noise) at a fixed interval;
    ``fault`` replaces a sensor's value between two instants by a shape of elapsed seconds.
    """

    def __init__(
        self,
        specs: Iterable[SensorSpec],
        *,
        start: datetime = DEFAULT_T0,
        every: timedelta = timedelta(seconds=60),
        seed: int = 1,
    ) -> None:
        self.specs = list(specs)
        self.start = start
        self.every = every
        self.seed = seed
        self._faults: list[_Fault] = []
        self._silent: list[tuple[str, datetime, datetime]] = []

    def fault(self, sensor_id: str, start: datetime, end: datetime, shape: Shape) -> None:
        """Replace ``sensor_id``'s values in [start, end) by ``shape(seconds since start)``."""
        if sensor_id not in {s.sensor_id for s in self.specs}:
            raise KeyError(f"unknown sensor {sensor_id!r}")
        self._faults.append(_Fault(sensor_id, start, end, shape))

    def silence(self, sensor_id: str, start: datetime, end: datetime) -> None:
        """Send nothing from ``sensor_id`` in [start, end) (a communication loss)."""
        self._silent.append((sensor_id, start, end))

    def rows(self, duration: timedelta) -> Iterator[tuple[str, datetime, float]]:
        """Yield (sensor_id, ts, value) in time order for ``duration``."""
        rnd = random.Random(self.seed)  # noqa: S311 - seeded noise for reproducible data
        nominal = {s.sensor_id: nominal_value(s) for s in self.specs}
        noise = {s.sensor_id: abs(nominal[s.sensor_id]) * 0.002 + 0.01 for s in self.specs}
        ts = self.start
        end = self.start + duration
        while ts < end:
            for spec in self.specs:
                sid = spec.sensor_id
                if any(s == sid and a <= ts < b for s, a, b in self._silent):
                    continue
                value = nominal[sid] + rnd.uniform(-1, 1) * noise[sid]
                for f in self._faults:
                    if f.sensor_id == sid and f.start <= ts < f.end:
                        value = f.shape((ts - f.start).total_seconds())
                yield sid, ts, value
            ts += self.every

    def write_csv(self, path: Path, duration: timedelta) -> int:
        """Write the readings as ``sensor_id,ts,value`` CSV; return the number of rows."""
        n = 0
        with path.open("w", encoding="utf-8") as fh:
            fh.write("sensor_id,ts,value\n")
            for sid, ts, value in self.rows(duration):
                fh.write(f"{sid},{format_ts(ts)},{value:.4g}\n")
                n += 1
        return n


def ramp(start_value: float, peak_value: float, rise_s: float, fall_s: float) -> Shape:
    """Return a shape rising linearly to ``peak_value`` in ``rise_s`` and back in ``fall_s``."""

    def shape(t: float) -> float:
        if t <= rise_s:
            return start_value + (peak_value - start_value) * t / rise_s
        return peak_value + (start_value - peak_value) * min(1.0, (t - rise_s) / fall_s)

    return shape


#: Monday 2026-01-05 06:00 UTC = 07:00 in Amsterdam, when the example's grade B room starts
#: its in-operation hours.
EXAMPLE_SCENARIO_START = parse_ts("2026-01-05T06:00:00Z")
EXAMPLE_SCENARIO_DURATION = timedelta(hours=6)


def example_scenario(specs: Iterable[SensorSpec]) -> ScenarioBuilder:
    """Script the example site's demo day: one reading a minute per sensor for 6 hours.

    - 07:00 UTC: ULT freezer 1 door left open: −80 °C rising to −50 °C in 20 min, back in 30;
    - 09:00 UTC: incubator 2 CO2 supply exhausted: 5 % falling to 3 % in 30 min, back in 30;
    - 10:00 UTC: particle burst in the grade B room for 5 minutes (in operation);
    - 11:00 UTC: fridge 2 stops reporting for 20 minutes (communication loss).
    """
    t0 = EXAMPLE_SCENARIO_START
    scenario = ScenarioBuilder(specs, start=t0, every=timedelta(seconds=60), seed=2026)
    hour = timedelta(hours=1)
    scenario.fault(
        "ult-freezer-1.temperature",
        t0 + hour,
        t0 + hour + timedelta(minutes=50),
        ramp(-80.0, -50.0, 1200, 1800),
    )
    scenario.fault(
        "incubator-2.co2",
        t0 + 3 * hour,
        t0 + 4 * hour,
        ramp(5.0, 3.0, 1800, 1800),
    )
    burst_end = t0 + 4 * hour + timedelta(minutes=5)
    scenario.fault("pc-grade-b.particles_0_5um", t0 + 4 * hour, burst_end, lambda _t: 450_000.0)
    scenario.fault("pc-grade-b.particles_5_0um", t0 + 4 * hour, burst_end, lambda _t: 4_000.0)
    scenario.silence("fridge-2.temperature", t0 + 5 * hour, t0 + 5 * hour + timedelta(minutes=20))
    return scenario


def _main(argv: list[str]) -> int:
    """``python -m envmon.testing demo-readings SITE OUT``: write the example scenario."""
    from envmon.config import load_site

    if len(argv) != 3 or argv[0] != "demo-readings":
        print("usage: python -m envmon.testing demo-readings SITE.yaml OUT.csv")
        return 2
    site = load_site(argv[1])
    n = example_scenario(site.sensors()).write_csv(Path(argv[2]), EXAMPLE_SCENARIO_DURATION)
    print(f"wrote {n} readings to {argv[2]}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))
