"""Units equipment reports in and how they convert to the units of the site's channels.

Pure functions, shared by the configuration (which refuses a binding whose unit cannot be
converted, at load time) and the collectors (which convert every value). Conversions are
linear, ``target = value * scale + offset``:

- temperature: ``degC`` (``°C``), ``degF`` (``°F``), ``K``;
- particle concentration: ``particles/m3``, ``particles/ft3``, ``particles/L``, and
  ``counts`` — particles counted in one sample, divided by the sample volume (m³);
- fraction: ``%``, ``ppm`` (a CO2 sensor in ppm feeds a channel in %).

Any other unit converts only to itself. ``CounterDelta`` turns a cumulative counter
(counts since the device started) into the count of each interval.

A conversion, like a counter's difference, can overflow a finite input to ``inf``
(``1e307`` counts per 0.0283 m³): the collectors check every converted value and
dead-letter one that is not finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

#: 1 cubic foot in cubic metres (exact: 0.3048 m cubed).
FT3_IN_M3: Final = 0.3048**3
COUNTS: Final = "counts"
PARTICLES_PER_M3: Final = "particles/m3"

# unit -> (quantity, scale, offset) such that value_in_base_unit = value * scale + offset
_LINEAR: Final[dict[str, tuple[str, float, float]]] = {
    "degC": ("temperature", 1.0, 0.0),
    "°C": ("temperature", 1.0, 0.0),
    "degF": ("temperature", 5 / 9, -32 * 5 / 9),
    "°F": ("temperature", 5 / 9, -32 * 5 / 9),
    "K": ("temperature", 1.0, -273.15),
    PARTICLES_PER_M3: ("particles", 1.0, 0.0),
    "particles/ft3": ("particles", 1 / FT3_IN_M3, 0.0),
    "particles/L": ("particles", 1_000.0, 0.0),
    "%": ("fraction", 0.01, 0.0),
    "ppm": ("fraction", 1e-6, 0.0),
}
KNOWN_UNITS: Final = (*_LINEAR, COUNTS)


class UnitError(ValueError):
    """No conversion exists between two units (the message says why, for a config issue)."""


@dataclass(frozen=True, slots=True)
class Conversion:
    """A linear conversion ``value * scale + offset``."""

    scale: float = 1.0
    offset: float = 0.0

    def __call__(self, value: float) -> float:
        """Convert one value."""
        return value * self.scale + self.offset

    @property
    def is_identity(self) -> bool:
        """True when the conversion leaves values unchanged."""
        return self.scale == 1.0 and self.offset == 0.0


IDENTITY: Final = Conversion()


def quantity(unit: str) -> str | None:
    """Return the physical quantity a known unit measures (``temperature``, …), else None."""
    if unit == COUNTS:
        return "particles"
    entry = _LINEAR.get(unit)
    return entry[0] if entry is not None else None


def is_count(unit: str) -> bool:
    """Return True for units of counted particles (per sample or per volume)."""
    return quantity(unit) == "particles"


def conversion(source: str, target: str, *, sample_volume_m3: float | None = None) -> Conversion:
    """Return the conversion from ``source`` to ``target``; raise ``UnitError`` if none.

    ``counts`` (particles in one sample) needs the sample volume in m³ to become a
    concentration.
    """
    if source == target:
        return IDENTITY
    if source == COUNTS:
        if sample_volume_m3 is None or not sample_volume_m3 > 0:
            raise UnitError(
                "counts per sample need the sample volume: set sample_volume_m3 on the "
                "instrument or on the binding"
            )
        per_m3 = conversion(PARTICLES_PER_M3, target)
        scale = per_m3.scale / sample_volume_m3
        if not math.isfinite(scale):  # a volume so small that 1 count is inf per m³
            raise UnitError(f"sample volume {sample_volume_m3!r} m³ is too small to convert")
        return Conversion(scale, per_m3.offset)
    a, b = _LINEAR.get(source), _LINEAR.get(target)
    if a is None or b is None or a[0] != b[0]:
        raise UnitError(
            f"cannot convert {source!r} to {target!r}; conversions exist between units of "
            f"one quantity among: {', '.join(KNOWN_UNITS)} (any other unit only to itself)"
        )
    return Conversion(a[1] / b[1], (a[2] - b[2]) / b[1])


class CounterDelta:
    """Turns cumulative counters (counts since the device started) into per-interval counts.

    The first value of a counter only sets its baseline. A value below the previous one
    means the counter was reset (device restart, wrap-around): the interval's count is then
    the new value itself (counts since the reset) and ``step`` flags it, since counts
    between the last sample and the reset are unknown. A sample not newer than the last
    one (a redelivered duplicate, or late) yields nothing and leaves the state alone.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def step(self, key: str, value: float, ts_us: int) -> tuple[float | None, bool]:
        """Return (count of the interval ending at ``ts_us`` or None, counter was reset)."""
        last = self._last.get(key)
        if last is not None and ts_us <= last[1]:
            return None, False
        self._last[key] = (value, ts_us)
        if last is None:
            return None, False
        if value < last[0]:
            return value, True
        return value - last[0], False

    def forget(self, key: str) -> None:
        """Drop a counter's baseline (its next value starts afresh)."""
        self._last.pop(key, None)

    def __len__(self) -> int:
        return len(self._last)
