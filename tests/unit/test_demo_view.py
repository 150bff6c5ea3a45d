"""The demo's live view fits the terminal, from 80×24 up, and says what each channel is doing.

Drawn with rich's fixed-size console on the example site in a state with channels in
action, alert, beyond a limit while the delay runs, stale and faulty. The 80×24 screen is
saved as text and SVG in the test artifacts.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from envmon.commands.demo import demo_logging
from envmon.commands.demo_view import (
    PAGE_S,
    channel_state,
    event_line,
    progress_line,
    render,
    short_unit,
)
from envmon.config import SiteConfig, load_site
from envmon.models import (
    AlarmEvent,
    Quality,
    Reading,
    SystemEvent,
    SystemEventKind,
)
from envmon.sensors import SensorSpec
from envmon.testing import DEFAULT_T0
from envmon.timeutil import to_us
from stream.core import Evaluator, SensorState

ARTIFACTS = Path(os.environ.get("ENVMON_TEST_ARTIFACTS", "var/test-artifacts"))
SITE = Path("deploy/examples/site.yaml")
URL = "http://127.0.0.1:8000"
PASSWORDS = {
    "operator": "RwtMoaeW2DSzIXlM",
    "qa": "izHRiNGY2uEFvmFI",
    "viewer": "whE2bjOwZC5zhAf2",
    "admin": "FD1rmj0PKamwqzOb",
}
MINUTES = 30
NOW = DEFAULT_T0 + timedelta(minutes=MINUTES)

#: value of a channel per minute, where the scene departs from normal
SCENE: dict[str, Callable[[int], float | None]] = {
    "pc-isolator-1.particles_0_5um": lambda m: 4_812.0 if m >= 27 else None,  # action
    "incubator-2.co2": lambda m: 4.2 if m >= 5 else None,  # alert (low) after 20 min
    "ult-freezer-1.temperature": lambda m: -65.04 if m >= 26 else None,  # delay runs
    "rs-grade-c.humidity": lambda m: 61.37 if m >= 22 else None,  # delay runs
    "pc-grade-d.particles_0_5um": lambda m: 1_055_223.0,  # large values, all OK
}
STALE = "fridge-2.temperature"  # silent since minute 10
FAULTY = "fridge-1.temperature"  # bad quality since minute 25


def normal(spec: SensorSpec) -> float:
    """A value well within a channel's limits."""
    limits = spec.rules.limits
    high = limits.alert_high if limits.alert_high is not None else limits.action_high
    low = limits.alert_low if limits.alert_low is not None else limits.action_low
    if high is not None and low is not None:
        return (high + low) / 2 + 0.0123
    if high is not None:
        return high - abs(high) * 0.1 - 1.0123
    assert low is not None
    return low + abs(low) * 0.1 + 1.0123


def scene() -> tuple[SiteConfig, dict[str, Any]]:
    """The example site after half an hour with several channels in trouble."""
    site = load_site(SITE)
    specs = {spec.sensor_id: spec for spec in site.sensors()}
    evaluator = Evaluator(specs.values())
    last: dict[str, Reading] = {}
    recent: list[AlarmEvent | SystemEvent] = [
        SystemEvent(
            event=SystemEventKind.CONNECTED,
            component="mqtt:site-broker",
            ts=DEFAULT_T0,
            detail="connected to 127.0.0.1:1883 as envmon-collector-1",
        )
    ]
    for minute in range(MINUTES + 1):
        at = DEFAULT_T0 + timedelta(minutes=minute)
        for sid, spec in specs.items():
            if sid == STALE and minute > 10:
                continue
            value = SCENE[sid](minute) if sid in SCENE else None
            if value is None:
                value = normal(spec)
            quality = Quality.GOOD
            if sid == FAULTY and minute >= 25:
                value, quality = None, Quality.BAD
            reading = Reading(sensor_id=sid, value=value, ts=at, quality=quality)
            last[sid] = reading
            for event in evaluator.process(reading):
                if isinstance(event, AlarmEvent):
                    recent.append(event)
        for event in evaluator.advance(to_us(at)):
            if isinstance(event, AlarmEvent):
                recent.append(event)
    now_us = to_us(NOW)
    pending = {sid: found for sid in specs if (found := evaluator.pending(sid, now_us)) is not None}
    return site, {
        "now": NOW,
        "speed": 30.0,
        "states": {sid: evaluator.state_of(sid) for sid in specs},
        "last": last,
        "recent": recent,
        "counters": {"mqtt:site-broker": {"received": 1_234, "readings": 2_345}},
        "excursions": 2,
        "buffered": 0,
        "app_url": URL,
        "pages": [(NOW, "sanne.email@demo.invalid", "ULT freezer 1 temperature alert")],
        "pending": pending,
        "passwords": PASSWORDS,
        "limits": {sid: evaluator.channel(sid).limits_at(now_us) for sid in specs},
    }


def draw(width: int, height: int, **changes: Any) -> tuple[str, Console]:
    """Draw the scene on a console of ``width``×``height``; return its text and the console."""
    site, kwargs = scene()
    kwargs.update(changes)
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True
    )
    console.print(render(site, **kwargs))
    return console.export_text(clear=False), console


SIZES = [(80, 24), (100, 40), (200, 50)]


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site(SITE)


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_view_fits_the_terminal(width: int, height: int) -> None:
    text, console = draw(width, height)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= height, text
    assert max(len(line.rstrip()) for line in lines) <= width, text
    if (width, height) == (80, 24):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "demo-view-80x24.txt").write_text(text, encoding="utf-8")
        console.save_svg(str(ARTIFACTS / "demo-view-80x24.svg"), title="envmon demo 80×24")
    else:
        (ARTIFACTS / f"demo-view-{width}x{height}.txt").parent.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"demo-view-{width}x{height}.txt").write_text(text, encoding="utf-8")


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_every_area_the_app_and_the_newest_alarm_show(
    width: int, height: int, site: SiteConfig
) -> None:
    text, _ = draw(width, height)
    for area in site.areas:
        assert area.id in text or area.name.split(" (")[0] in text, area.id
    assert URL in text
    for user, password in PASSWORDS.items():
        assert f"{user} {password}" in text
    assert "recent alarms" in text
    newest = scene()[1]["recent"][-1]
    assert newest.sensor_id in text  # the newest alarm is on screen
    assert "Europe/Amsterdam" in text
    assert "2026-01-05 09:30:00 CET" in text  # the simulated clock in the site's zone


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_values_are_rounded_for_their_sensor(width: int, height: int) -> None:
    text = "\n".join(draw(width, height, page_at=n * PAGE_S)[0] for n in range(3))  # every page
    assert "e+0" not in text
    assert "4,812 " in text  # particles whole, with thousands separators
    assert "−65.0 °C" in text  # the freezer to one digit, with a minus sign
    assert "1,055,223" in text
    for number in re.findall(r"\d+\.(\d+)", text):
        assert len(number) <= 1, text  # no value in this site has more than one digit


def test_states_are_told_apart() -> None:
    text, _ = draw(200, 50)
    assert "beyond alert · delay 6 min left" in text  # the ULT freezer: 4 of 10 min passed
    assert "beyond alert · delay 22 min left" in text  # room humidity: 8 of 30 min passed
    assert "ACTION high" in text
    assert "ALERT low" in text
    assert "STALE · no data for 20 min" in text
    assert "FAULT" in text
    row = next(line for line in text.splitlines() if "ult-freezer-1 Temperature" in line)
    assert "OK" not in row


def test_compact_states() -> None:
    pages = [draw(80, 24, page_at=n * PAGE_S)[0] for n in range(4)]
    for number, page in enumerate(pages[:3], start=1):
        assert f"page {number}/3" in page
    assert pages[3] == pages[0]  # round again
    both = "\n".join(pages)
    assert "beyond alert · 6 min left" in both
    assert "STALE · no data 20 min" in both
    for spec in load_site(SITE).sensors():  # every channel is on one of the pages
        assert spec.instrument in both
    assert "7,880 /m³" not in both  # (no such value in the scene)
    assert short_unit("particles/m3") == "/m³"


def test_a_channel_beyond_its_limit_is_not_ok(site: SiteConfig) -> None:
    display = site.display()
    _, kwargs = scene()
    freezer = "ult-freezer-1.temperature"
    state = channel_state(kwargs["states"][freezer], kwargs["pending"][freezer], NOW, display)
    assert (state.kind, state.text) == ("pending", "beyond alert · delay 6 min left")
    fresh = channel_state(SensorState(), None, NOW, display)
    assert fresh.text == "no data yet"


def test_without_the_app_and_alarms_the_view_still_fits() -> None:
    text, _ = draw(80, 24, app_url=None, recent=[], pages=[], passwords=None)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= 24
    assert "QA app off" in text
    assert "no alarms yet" in text


def test_plain_lines(site: SiteConfig) -> None:
    display = site.display()
    _, kwargs = scene()
    units = {spec.sensor_id: spec.unit for spec in site.sensors()}
    lines = [event_line(event, display, units) for event in kwargs["recent"]]
    assert lines[0] == (
        "2026-01-05 09:00:00 CET  Connected  mqtt:site-broker"
        "  (to 127.0.0.1:1883 as envmon-collector-1)"
    )
    raised = next(line for line in lines if "pc-isolator-1.particles_0_5um" in line)
    assert "Raised  Action  pc-isolator-1.particles_0_5um  value 4,812 particles/m³" in raised
    states = [
        channel_state(kwargs["states"][sid], kwargs["pending"].get(sid), NOW, display)
        for sid in kwargs["states"]
    ]
    line = progress_line(
        display, now=NOW, readings=12_345, alarms=7, excursions=2, buffered=0, states=states
    )
    assert line.startswith("2026-01-05 09:30:00 CET  readings 12,345 · alarm events 7")
    assert "2 beyond a limit (delay running)" in line
    assert "1 stale" in line


def test_a_bad_reading_before_the_fault_is_not_ok(site: SiteConfig) -> None:
    state = SensorState(last_ts=to_us(NOW), bad_run=2)
    shown = channel_state(state, None, NOW, site.display())
    assert shown.kind == "bad"
    assert shown.text == "bad quality · 2 samples, no fault yet"


async def test_the_demo_log_keeps_library_noise_off_the_screen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Libraries' routine lines go nowhere, their warnings to the file; envmon's show."""
    console = Console(file=io.StringIO(), width=200)
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("collectors").level)
    async with demo_logging(tmp_path / "demo.log", console, live=True):
        logging.getLogger("asyncua.client.client").warning("Requested session timeout")
        logging.getLogger("amqtt.broker").info("session expired")
        logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET / HTTP/1.1" 200')
        logging.getLogger("collectors.mqtt").info("mqtt:site-broker: connected")
        logging.getLogger("collectors.opcua").warning("gateway not answering")
        logging.getLogger("amqtt.broker").error("broker failed")
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "gateway not answering" in shown
    assert "broker failed" in shown
    assert "Requested session timeout" not in shown
    assert "connected" not in shown
    assert "GET /" not in shown
    logged = (tmp_path / "demo.log").read_text()
    assert "Requested session timeout" in logged
    assert "mqtt:site-broker: connected" in logged
    assert "session expired" not in logged
    assert "GET /" not in logged
    assert (root.level, list(root.handlers), logging.getLogger("collectors").level) == before
    assert capsys.readouterr().err == ""
