"""Words and units as facilities staff read them on the dashboards."""

from __future__ import annotations

from typing import Final

from stream.timeseries.context import STATUS_NAMES

PARAMETER_LABELS: Final = {
    "temperature": "Temperature",
    "humidity": "Relative humidity",
    "co2": "CO₂",
    "o2": "O₂",
    "level": "Fill level",
    "pressure": "Differential pressure",
    "particles_0_5um": "Particles ≥ 0.5 µm",
    "particles_5_0um": "Particles ≥ 5.0 µm",
}
#: envmon's units → Grafana's unit ids (``suffix:`` writes the text after the value).
GRAFANA_UNITS: Final = {
    "degC": "celsius",
    "degF": "fahrenheit",
    "%": "percent",
    "percent": "percent",
    "%RH": "humidity",
    "Pa": "pressurepa",
    "particles/m3": "suffix: particles/m³",
}
KIND_LABELS: Final = {
    "freezer": "Freezers",
    "fridge": "Fridges",
    "ln2_dewar": "LN2 dewars",
    "incubator": "Incubators",
    "particle_counter": "Particle counters",
    "room_sensor": "Room sensors",
}
#: The instrument kinds of the cold-storage overview.
COLD_KINDS: Final = ("freezer", "fridge", "ln2_dewar")
PARTICLE_KIND: Final = "particle_counter"
#: Status codes → (label, Grafana colour) for value mappings.
STATUS_STYLE: Final = {
    code: (name.capitalize(), color)
    for (code, name), color in zip(
        sorted(STATUS_NAMES.items()),
        ("green", "orange", "red", "purple", "dark-red"),
        strict=True,
    )
}
QUALITY_STYLE: Final = {
    "good": ("Good", "green"),
    "uncertain": ("Uncertain", "yellow"),
    "bad": ("Bad", "red"),
}


def parameter_label(parameter: str) -> str:
    """Return a parameter's human name (``particles_0_5um`` → ``Particles ≥ 0.5 µm``)."""
    return PARAMETER_LABELS.get(parameter) or parameter.replace("_", " ").capitalize()


def grafana_unit(unit: str) -> str:
    """Return Grafana's unit id for an envmon unit (a suffix when Grafana has none)."""
    if unit in GRAFANA_UNITS:
        return GRAFANA_UNITS[unit]
    return f"suffix: {unit}" if unit else "none"
