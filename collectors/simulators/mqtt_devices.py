"""Simulated MQTT equipment: particle counters, incubators and room sensors.

Each device publishes JSON in its own native form, as real equipment does, so that the
collector's payload mapping and unit conversion are exercised end to end:

- particle counter, ``cgt/<area>/<instrument>/particles`` once per sample cycle:
  ``{"ts": …, "status": "ok", "sample_volume_l": 28.3, "counts": {"0_5um": 12, "5_0um": 0}}``
  — whole particles counted in one sample, not a concentration;
- incubator, ``cgt/<area>/<instrument>/incubator``:
  ``{"ts": …, "status": "ok", "temperature_c": 37.02, "co2_ppm": 50120, "rh_pct": 93.4}``;
- room sensor, ``cgt/<area>/<instrument>/climate``: ``{"ts": …, "t_f": 69.8, "rh": 45.1}``
  (°F, as some building systems report).

Values come from the shared equipment model (``Simulation``); a failed sensor publishes
``null`` for its channel and a communication loss publishes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Final

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from collectors.simulators.equipment import SimInstrument, Simulation
from envmon.config.schema import SiteConfig
from envmon.timeutil import format_ts, utcnow

logger = logging.getLogger(__name__)

DEFAULT_PERIOD_S: Final = 60.0
TOPIC_PREFIX: Final = "cgt"
_M3_IN_L: Final = 1000.0
#: (site parameter, payload field, factor from the site unit to the device unit, offset)
_INCUBATOR_FIELDS: Final = (
    ("temperature", "temperature_c", 1.0, 0.0),
    ("co2", "co2_ppm", 10_000.0, 0.0),  # % → ppm
    ("humidity", "rh_pct", 1.0, 0.0),
)
_CLIMATE_FIELDS: Final = (
    ("temperature", "t_f", 9 / 5, 32.0),  # °C → °F
    ("humidity", "rh", 1.0, 0.0),
)
_KINDS: Final = {
    "particle_counter": "particles",
    "incubator": "incubator",
    "room_sensor": "climate",
}


class MqttDeviceSimulator:
    """Publishes every MQTT instrument of a site at its sample cycle (simulated time)."""

    def __init__(
        self,
        site: SiteConfig,
        simulation: Simulation,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], datetime] = utcnow,
        client_id: str = "envmon-simulator",
        poll_s: float = 0.05,
    ) -> None:
        self.site = site
        self.instruments = [i for i in simulation.instruments() if i.kind in _KINDS]
        self.host = host
        self.port = port
        self.period_s = period_s
        self.clock = clock
        self.poll_s = poll_s
        self.published = 0
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv311
        )
        self._task: asyncio.Task[None] | None = None

    def messages(self, now: datetime) -> list[tuple[str, bytes]]:
        """Return the (topic, payload) every connected device publishes at ``now``."""
        out: list[tuple[str, bytes]] = []
        for instrument in self.instruments:
            if not instrument.connected(now):
                continue
            topic = f"{TOPIC_PREFIX}/{instrument.area}/{instrument.id}/{_KINDS[instrument.kind]}"
            out.append((topic, json.dumps(self._payload(instrument, now)).encode()))
        return out

    def publish_once(self, now: datetime) -> int:
        """Publish one sample of every device at QoS 1; return how many messages."""
        messages = self.messages(now)
        for topic, payload in messages:
            self._client.publish(topic, payload, qos=1)
        self.published += len(messages)
        return len(messages)

    async def start(self) -> None:
        """Connect and publish every ``period_s`` of (simulated) time until stopped."""
        self._client.connect(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._task = asyncio.create_task(self._run(), name="mqtt-devices")

    async def stop(self) -> None:
        """Stop publishing and disconnect."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._client.disconnect()
        self._client.loop_stop()

    async def _run(self) -> None:
        due = self.clock()
        while True:
            now = self.clock()
            if now >= due:
                self.publish_once(due)
                due = due.fromtimestamp(due.timestamp() + self.period_s, tz=due.tzinfo)
                continue
            await asyncio.sleep(self.poll_s)

    def _payload(self, instrument: SimInstrument, now: datetime) -> dict[str, object]:
        values = instrument.read(now)
        payload: dict[str, object] = {"ts": format_ts(now), "status": "ok"}
        by_parameter = {spec.parameter: values[spec.sensor_id].value for spec in instrument.specs}
        if instrument.kind == "particle_counter":
            volume = instrument.sample_volume_m3
            payload["sample_volume_l"] = round(volume * _M3_IN_L, 3)
            payload["counts"] = {
                "0_5um": _count(by_parameter.get("particles_0_5um"), volume),
                "5_0um": _count(by_parameter.get("particles_5_0um"), volume),
            }
            return payload
        fields = _INCUBATOR_FIELDS if instrument.kind == "incubator" else _CLIMATE_FIELDS
        for parameter, name, factor, offset in fields:
            if parameter in by_parameter:
                value = by_parameter[parameter]
                payload[name] = None if value is None else round(value * factor + offset, 4)
        return payload


def _count(per_m3: float | None, volume_m3: float) -> int | None:
    """Return whole particles in one sample from a concentration (None stays None)."""
    return None if per_m3 is None else round(per_m3 * volume_m3)
