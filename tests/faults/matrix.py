"""The fault matrix's table: one row per fault, written as JSON and Markdown for validation.

A row passes when nothing that went in was lost, nothing was stored twice or invented,
every alarm and record ``envmon replay`` expects from the readings that went in was raised
and stored (and nothing else), and the system alarms the fault should raise were raised.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.faults.pipeline import Outcome


@dataclass
class Row:
    """One fault and what happened to the counted traffic through it."""

    fault: str
    description: str
    outcome: Outcome | None = None
    expected_system_alarms: tuple[str, ...] = ()
    error: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Return why the row fails (empty when it passes)."""
        if self.error:
            return [self.error]
        o = self.outcome
        if o is None:
            return ["not run"]
        out = []
        if o.lost:
            out.append(f"{len(o.lost)} readings lost (first: {o.lost[0]})")
        if o.duplicates:
            out.append(f"{o.duplicates} points stored twice")
        if o.unexpected_points:
            out.append(f"{o.unexpected_points} points stored that no equipment sent")
        if o.alarms_missing:
            out.append(f"alarms missing: {', '.join(o.alarms_missing[:3])}")
        if o.alarms_unexpected:
            out.append(f"alarms not expected: {', '.join(o.alarms_unexpected[:3])}")
        if o.records_wrong:
            out.append(f"records: {', '.join(o.records_wrong[:3])}")
        missing = [a for a in self.expected_system_alarms if a not in o.system_alarms]
        if missing:
            out.append(f"system alarms not raised: {', '.join(missing)}")
        return out

    @property
    def verdict(self) -> str:
        """Return ``pass`` or ``FAIL``."""
        return "pass" if not self.problems else "FAIL"

    def as_dict(self) -> dict[str, object]:
        """Return the row as plain data (the JSON artifact)."""
        return {
            "fault": self.fault,
            "description": self.description,
            "verdict": self.verdict,
            "problems": self.problems,
            "expected_system_alarms": list(self.expected_system_alarms),
            "seconds": round(self.seconds, 1),
            "notes": self.notes,
            "outcome": asdict(self.outcome) if self.outcome else None,
        }


COLUMNS = (
    "fault",
    "readings in",
    "stored",
    "lost",
    "duplicated",
    "alarms expected / raised",
    "records expected / stored",
    "system alarms",
    "verdict",
)


def cells(row: Row) -> list[str]:
    """Return the table cells of a row."""
    o = row.outcome
    if o is None:
        return [row.fault, "-", "-", "-", "-", "-", "-", "-", f"FAIL: {row.error}"]
    verdict = row.verdict if not row.problems else f"FAIL: {'; '.join(row.problems)}"
    return [
        row.fault,
        f"{o.readings_in:,}",
        f"{o.readings_stored:,}",
        f"{len(o.lost):,}",
        f"{o.duplicates + o.unexpected_points:,}",
        f"{o.alarms_expected} / {o.alarms_raised - len(o.alarms_unexpected)}"
        + (f" (+{len(o.alarms_unexpected)} unexpected)" if o.alarms_unexpected else ""),
        f"{o.records_expected} / {o.records_stored}"
        + (f" (+{extra} unexpected)" if (extra := _unexpected(o.records_wrong)) else ""),
        ", ".join(o.system_alarms) or "none",
        verdict,
    ]


def _unexpected(problems: list[str]) -> int:
    return sum(1 for p in problems if p.startswith("unexpected"))


def markdown(rows: list[Row], started: datetime) -> str:
    """Return the matrix as a Markdown document."""
    lines = [
        "# envmon fault matrix",
        "",
        f"Run {started.strftime('%Y-%m-%d %H:%M UTC')} on {platform.node()}"
        f" (Python {platform.python_version()}); `make faults` to repeat.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells(r)) + " |" for r in rows]
    lines += ["", "## The faults", ""]
    for row in rows:
        lines.append(f"- **{row.fault}**: {row.description}")
        lines += [f"  - {note}" for note in row.notes]
    return "\n".join(lines) + "\n"


def text_table(rows: list[Row]) -> str:
    """Return the matrix as a plain-text table for the terminal."""
    table = [list(COLUMNS), *[cells(r) for r in rows]]
    widths = [min(60, max(len(r[i]) for r in table)) for i in range(len(COLUMNS))]
    out = []
    for n, r in enumerate(table):
        out.append("  ".join(c[: widths[i]].ljust(widths[i]) for i, c in enumerate(r)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write(rows: list[Row], directory: Path, started: datetime) -> tuple[Path, Path]:
    """Write ``fault-matrix.json`` and ``fault-matrix.md`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    as_json = directory / "fault-matrix.json"
    as_md = directory / "fault-matrix.md"
    as_json.write_text(
        json.dumps(
            {
                "started": started.astimezone(UTC).isoformat(),
                "rows": [r.as_dict() for r in rows],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    as_md.write_text(markdown(rows, started), encoding="utf-8")
    return as_json, as_md
