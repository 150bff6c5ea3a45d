"""Site files of the MQTT tests: one room of instruments and a ``collectors.mqtt`` list."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping

from envmon.testing import site_yaml

#: The two particle channels of a counter, in particles/m³.
PARTICLES_M3 = {"particles_0_5um": "particles/m3", "particles_5_0um": "particles/m3"}


def instrument(
    instrument_id: str,
    name: str,
    kind: str,
    channels: Mapping[str, str],
    *,
    sample_volume_m3: str | None = None,
) -> str:
    """Return one ``instruments:`` item; ``channels`` maps each parameter to its unit."""
    lines = [f"- id: {instrument_id}", f"  name: {name}", f"  kind: {kind}"]
    if sample_volume_m3 is not None:
        lines.append(f"  sample_volume_m3: {sample_volume_m3}")
    lines.append("  channels:")
    lines += [
        f"    - {{parameter: {parameter}, unit: {json.dumps(unit)}}}"
        for parameter, unit in channels.items()
    ]
    return "\n".join(lines) + "\n"


PC_1 = instrument(
    "pc-1", "Particle counter", "particle_counter", PARTICLES_M3, sample_volume_m3="0.0283"
)
INC_1 = instrument("inc-1", "Incubator", "incubator", {"temperature": "degC", "co2": "%"})
FRIDGE_1 = instrument("fridge-1", "Fridge", "fridge", {"temperature": "degC"})


def mqtt_site(*instruments: str, mqtt: str, site: str = "site: {name: Test}") -> str:
    """Return a site file: one room (grade C) of ``instruments``, then ``collectors.mqtt``.

    ``mqtt`` is the YAML list of MQTT collectors (dedented here).
    """
    items = "".join(textwrap.indent(item, "    ") for item in instruments)
    room = "- id: room\n  name: Room\n  grade: C\n  instruments:\n" + items
    collectors = textwrap.indent(textwrap.dedent(mqtt).strip("\n"), "    ")
    return site_yaml(room, site=site, sections="collectors:\n  mqtt:\n" + collectors)
