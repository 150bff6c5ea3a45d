"""Site files of the alerting tests: a cold room of freezers, to which a test adds the rest."""

from __future__ import annotations

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
    lines = [
        f"site: {{name: {name}, timezone: Europe/Amsterdam}}",
        "areas:",
        f"  - id: {area[0]}",
        f"    name: {area[1]}",
    ]
    if grade is not None:
        lines.append(f"    grade: {grade}")
    lines.append("    instruments:")
    return "\n".join(lines) + "\n" + "".join(FREEZER.format(n=n) for n in range(1, freezers + 1))
