"""Site files of the alerting tests: a cold room of freezers, to which a test adds the rest."""

from __future__ import annotations

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
