"""Airborne particle limits by cleanroom grade (EU GMP Annex 1) and ISO class (ISO 14644-1).

Particle concentrations are in particles per cubic metre of air, counted at or above the
channel's particle size. The evaluation core only ever sees the resolved numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, Literal

from envmon.sensors import Occupancy

Grade = Literal["A", "B", "C", "D"]
PARTICLE_UNIT: Final = "particles/m3"
PARTICLE_SIZES_UM: Final[Mapping[str, float]] = {
    "particles_0_5um": 0.5,
    "particles_5_0um": 5.0,
}
"""Particle channel parameters and the particle size (µm) each counts, at or above."""

ANNEX1_TABLE5: Final[Mapping[Grade, Mapping[Occupancy, Mapping[float, float | None]]]] = {
    "A": {
        Occupancy.AT_REST: {0.5: 3_520, 5.0: 29},
        Occupancy.IN_OPERATION: {0.5: 3_520, 5.0: 29},
    },
    "B": {
        Occupancy.AT_REST: {0.5: 3_520, 5.0: 29},
        Occupancy.IN_OPERATION: {0.5: 352_000, 5.0: 2_930},
    },
    "C": {
        Occupancy.AT_REST: {0.5: 352_000, 5.0: 2_930},
        Occupancy.IN_OPERATION: {0.5: 3_520_000, 5.0: 29_300},
    },
    "D": {
        Occupancy.AT_REST: {0.5: 3_520_000, 5.0: 29_300},
        Occupancy.IN_OPERATION: {0.5: None, 5.0: None},
    },
}
"""Maximum limits for total particle concentration, particles/m³, by grade and occupancy.

Source: EudraLex Volume 4, EU GMP Annex 1 "Manufacture of Sterile Medicinal Products"
(2022, in force 25 August 2023), Table 5 "Maximum permitted total particle concentration
for monitoring". For grade D in operation Annex 1 sets no limit ("not predetermined"):
the manufacturer sets one from its risk assessment and routine data, so ``None`` here
means "no default; configure one explicitly".
"""


def iso_class_limit(iso_class: float, size_um: float) -> float:
    """Return the ISO 14644-1:2015 class limit Cn = 10^N·(0.1/D)^2.08 in particles/m³.

    As the standard prescribes (formula 1 and Table 1), the result is rounded to the
    nearest whole number using no more than three significant figures, so ISO 5 at
    0.5 µm is 3,520 (not 3,517) and ISO 8 at 5.0 µm is 29,300.
    """
    raw = 10**iso_class * (0.1 / size_um) ** 2.08
    return float(round_half_up(round_significant(raw, 3)))


def grade_limit(grade: Grade, state: Occupancy, size_um: float) -> float | None:
    """Return the Annex 1 Table 5 action limit for a grade, occupancy state and size."""
    return ANNEX1_TABLE5[grade][state].get(size_um)


def alert_from_action(action: float, fraction: float) -> float | None:
    """Return the default alert limit: ``fraction`` of the action limit, whole particles.

    A fraction of 1 means "no separate alert level", so no alert limit is derived.
    """
    if fraction >= 1:
        return None
    return float(round_half_up(action * fraction))


def round_significant(value: float, digits: int) -> float:
    """Round ``value`` to ``digits`` significant figures, halves away from zero."""
    if value == 0:
        return 0.0
    exponent = math.floor(math.log10(abs(value))) - digits + 1
    scale = 10.0**exponent
    return round_half_up(value / scale) * scale


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves away from zero (not banker's rounding)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))
