"""Site files of the alerting tests: a cold room of freezers, to which a test adds the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from envmon.models import AlarmEvent, AlarmKind, Direction, Level
from envmon.testing import site_yaml

FREEZER = """\
      - id: frz-{n}
        name: Freezer {n}
        kind: freezer
        channels:
          - {{parameter: temperature, unit: degC, limits: {{alert_high: -70, action_high: -60}}}}
"""


def freezer_site(
    *,
    freezers: int = 1,
    grade: str | None = "D",
    name: str = "Test site",
    area: tuple[str, str] = ("cold-room", "Cold room"),
) -> str:
    """Return the start of a site file: one area of freezers ``frz-1``…, alert −70, action −60 °C.

    The text ends after the last freezer, so that a test appends more areas or its
    ``alerting:`` section.
    """
    head = f"- id: {area[0]}\n  name: {area[1]}\n" + (f"  grade: {grade}\n" if grade else "")
    text = site_yaml(
        head + "  instruments:", site=f"site: {{name: {name}, timezone: Europe/Amsterdam}}"
    )
    return text + "".join(FREEZER.format(n=n) for n in range(1, freezers + 1))


def freezer_alarm(kind: AlarmKind, ts: datetime, **fields: Any) -> AlarmEvent:
    """Return an action-level high alarm of freezer F-01 (``fields`` override any value)."""
    values: dict[str, Any] = {
        "sensor_id": "F-01.temp",
        "area": "freezer-room",
        "parameter": "temperature",
        "unit": "°C",
        "level": Level.ACTION,
        "direction": Direction.HIGH,
        "value": -62.5,
        "limit": -65.0,
        "excursion_id": "exc-1",
    }
    return AlarmEvent(event=kind, ts=ts, **(values | fields))
