"""Small site files for the configuration tests."""

from __future__ import annotations

from envmon.config import SiteConfig, parse_site
from envmon.testing import site_yaml


def particle_room(
    *,
    grade: str | None = "B",
    iso_class: str | None = None,
    occupancy: str = "at_rest",
    area_extra: str = "",
    channel_extra: str = "",
    limits: str = "",
    parameter: str = "particles_0_5um",
) -> str:
    """Return an ``areas:`` block with one room holding one particle counter channel."""
    classification = f"grade: {grade}" if grade is not None else ""
    if iso_class is not None:
        classification = f"iso_class: {iso_class}"
    limits_block = f"limits: {limits}" if limits else ""
    return f"""
    - id: room
      name: Room
      {classification}
      occupancy: {occupancy}
      {area_extra}
      instruments:
        - id: pc
          name: Particle counter
          kind: particle_counter
          channels:
            - parameter: {parameter}
              unit: particles/m3
              {channel_extra}
              {limits_block}
    """


def load(areas: str, **kwargs: str) -> SiteConfig:
    """Parse a site file built by ``site_yaml``."""
    return parse_site(site_yaml(areas, **kwargs))
