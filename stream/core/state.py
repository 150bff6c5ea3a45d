"""Per-sensor evaluation state: small, plain and serialisable (a faust table value)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

STATE_VERSION = 2
#: Versions ``from_dict`` reads: version 1 had no ``alive_ts`` (no proofs of life).
READABLE_VERSIONS = frozenset({1, 2})
#: Fields of ``SensorState`` that are not saved (see ``SensorState.heard``).
VOLATILE_FIELDS = frozenset({"heard"})


@dataclass(slots=True)
class SideState:
    """State of one side (high or low) of one channel.

    Values here are kept in *signed* form (``x = value`` on the high side, ``x = -value``
    on the low side) so that one piece of logic serves both sides.
    """

    # run of consecutive samples beyond the opening limit (alert, or action if no alert)
    run_start: int | None = None
    run_count: int = 0
    # run of consecutive samples beyond the action limit
    action_start: int | None = None
    action_count: int = 0
    # excursion metrics, accumulated from the first sample of the run (candidate or open)
    open: bool = False
    excursion_id: str | None = None
    level: int = 0  # 0 none, 1 alert, 2 action
    revision: int = 0
    peak_x: float = 0.0
    peak_ts: int = 0
    vmin: float = 0.0
    vmax: float = 0.0
    samples: int = 0
    beyond_us: float = 0.0
    integral: float = 0.0
    prev_ts: int = 0
    prev_x: float = 0.0

    def reset(self) -> None:
        """Forget the run and any excursion (after a close or an aborted run)."""
        self.run_start = None
        self.run_count = 0
        self.action_start = None
        self.action_count = 0
        self.open = False
        self.excursion_id = None
        self.level = 0
        self.revision = 0
        self.samples = 0
        self.beyond_us = 0.0
        self.integral = 0.0

    @property
    def idle(self) -> bool:
        """True when no run and no excursion is in progress on this side."""
        return self.run_start is None and not self.open


@dataclass(slots=True)
class SensorState:
    """Everything the core remembers about one sensor between two samples.

    ``last_ts`` is the newest sample's time and ``alive_ts`` the newest proof of life's,
    both in the sensor's data time; the later of the two is the sensor's last evidence,
    from which data gaps are measured. ``heard`` is when the last of them arrived, on the
    evaluator's clock (data time in replay, the wall clock in the live engines): a sensor
    goes stale when that clock passes ``heard + stale_after``. ``heard`` is not saved: a
    clock's readings mean nothing to another process, and a state taken over counts as
    heard when it is taken over (see ``Evaluator``).
    """

    last_ts: int | None = None
    alive_ts: int | None = None
    last_good_ts: int | None = None
    last_good_value: float = 0.0
    stale: bool = False
    bad_run: int = 0
    fault: bool = False
    roc_active: bool = False
    late: int = 0
    duplicates: int = 0
    high: SideState = field(default_factory=SideState)
    low: SideState = field(default_factory=SideState)
    heard: int | None = field(default=None, compare=False)

    @property
    def evidence(self) -> int | None:
        """Return the data time of the last evidence of life: a sample or a proof."""
        last, alive = self.last_ts, self.alive_ts
        if alive is None or (last is not None and last >= alive):
            return last
        return alive

    @property
    def idle(self) -> bool:
        """True when neither side has a run or an excursion in progress."""
        return self.high.idle and self.low.idle

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of this state.

        Written out field by field: the stream worker saves the state of every sensor a
        batch touched, and the generic ``dataclasses.fields`` walk costs several times as
        much. A unit test holds the keys equal to the dataclass fields.
        """
        return {
            "v": STATE_VERSION,
            "last_ts": self.last_ts,
            "alive_ts": self.alive_ts,
            "last_good_ts": self.last_good_ts,
            "last_good_value": self.last_good_value,
            "stale": self.stale,
            "bad_run": self.bad_run,
            "fault": self.fault,
            "roc_active": self.roc_active,
            "late": self.late,
            "duplicates": self.duplicates,
            "high": _side_dict(self.high),
            "low": _side_dict(self.low),
        }

    def to_json(self) -> bytes:
        """Return :meth:`to_dict` as compact JSON (the stream worker's changelog value)."""
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensorState:
        """Rebuild a state from :meth:`to_dict` output."""
        version = data.get("v")
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unsupported sensor state version {version!r}")
        kwargs = {k: v for k, v in data.items() if k not in {"v", "high", "low"}}
        return cls(high=SideState(**data["high"]), low=SideState(**data["low"]), **kwargs)


def _side_dict(side: SideState) -> dict[str, Any]:
    return {
        "run_start": side.run_start,
        "run_count": side.run_count,
        "action_start": side.action_start,
        "action_count": side.action_count,
        "open": side.open,
        "excursion_id": side.excursion_id,
        "level": side.level,
        "revision": side.revision,
        "peak_x": side.peak_x,
        "peak_ts": side.peak_ts,
        "vmin": side.vmin,
        "vmax": side.vmax,
        "samples": side.samples,
        "beyond_us": side.beyond_us,
        "integral": side.integral,
        "prev_ts": side.prev_ts,
        "prev_x": side.prev_x,
    }
