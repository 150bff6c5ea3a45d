"""Names that tie the generated dashboards to the rest of envmon: uids, panel ids, links.

The QA app links a channel and a record to its Grafana panel through ``PanelLinks``, so the
uids and panel ids here are the ones the generator writes (``dashboards.generate``): both
take them from this module only.

Uids are stable: derived from the site id and the area id (never from titles or positions
that an edit could move), at most 40 characters (Grafana's limit). A panel id is stable
while the site file keeps its channels in the same order within their area.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final
from urllib.parse import quote, urlencode

from envmon.sensors import SensorSpec

#: Grafana's longest uid.
MAX_UID: Final = 40
INFLUX_DATASOURCE_UID: Final = "envmon-influxdb"
RECORDS_DATASOURCE_UID: Final = "envmon-records"
#: The kinds of generated dashboard (the middle part of their uids).
OVERVIEW: Final = "overview"
AREA: Final = "area"
COLD: Final = "cold"
PARTICLES: Final = "particles"
#: The first panel id of a channel's trend on its area dashboard; the overview rows and the
#: state timeline come first.
FIRST_CHANNEL_PANEL: Final = 100


def slug(text: str) -> str:
    """Lowercase letters, digits and single hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def uid(site_id: str, kind: str, area: str = "") -> str:
    """Return the uid of a generated dashboard: ``<site>-<kind>[-<area>]``, ≤ 40 characters.

    When that is longer, the site's part is cut and followed by 6 hex digits of the whole
    text's SHA-256 (``leiden-cell-th-1a2b3c-area-cold-store``): the kind and area stay
    readable, and two long ids that share a beginning still get different uids. An area id
    too long for that is cut too.
    """
    site, place = slug(site_id), slug(area)
    text = "-".join(part for part in (site, kind, place) if part)
    if len(text) <= MAX_UID:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    tail = "-".join(part for part in (kind, place) if part)
    room = MAX_UID - len(tail) - len(digest) - 2
    if room >= 4:
        return f"{site[:room].rstrip('-')}-{digest}-{tail}"
    return f"{text[: MAX_UID - len(digest) - 1].rstrip('-')}-{digest}"


def folder_uid(site_id: str) -> str:
    """Return the uid of the site's dashboard folder."""
    return uid(site_id, "folder")


def channel_panel_ids(specs: Sequence[SensorSpec]) -> dict[str, int]:
    """Return each channel's trend panel id on its area dashboard (specs in site order)."""
    ids: dict[str, int] = {}
    per_area: dict[str, int] = {}
    for spec in specs:
        position = per_area.get(spec.area, 0)
        per_area[spec.area] = position + 1
        ids[spec.sensor_id] = FIRST_CHANNEL_PANEL + position
    return ids


class PanelLinks:
    """Links to the channels' trend panels on their area dashboards (ids computed once)."""

    def __init__(self, grafana_url: str, site_id: str, specs: Sequence[SensorSpec]) -> None:
        self.grafana_url = grafana_url.rstrip("/")
        ids = channel_panel_ids(specs)
        self._places = {
            spec.sensor_id: (
                uid(site_id, AREA, spec.area),
                slug(spec.area),
                spec,
                ids[spec.sensor_id],
            )
            for spec in specs
        }

    def __call__(self, sensor_id: str, start: datetime, end: datetime) -> str | None:
        """Return the link to a channel's trend over ``[start, end]``, or None if unknown."""
        place = self._places.get(sensor_id)
        if place is None:
            return None
        dashboard, name, spec, panel = place
        query = urlencode(
            {
                "viewPanel": f"panel-{panel}",
                "from": int(start.timestamp() * 1000),
                "to": int(end.timestamp() * 1000),
                "var-instrument": spec.instrument,
            }
        )
        return f"{self.grafana_url}/d/{quote(dashboard)}/{name}?{query}"
