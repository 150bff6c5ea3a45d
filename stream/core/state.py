"""Per-sensor evaluation state: small, plain and serialisable (a faust table value)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

STATE_VERSION = 1


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
    """Everything the core remembers about one sensor between two samples."""

    last_ts: int | None = None
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

    @property
    def idle(self) -> bool:
        """True when neither side has a run or an excursion in progress."""
        return self.high.idle and self.low.idle

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of this state."""
        out: dict[str, Any] = {"v": STATE_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, SideState):
                value = {g.name: getattr(value, g.name) for g in fields(value)}
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensorState:
        """Rebuild a state from :meth:`to_dict` output."""
        version = data.get("v")
        if version != STATE_VERSION:
            raise ValueError(f"unsupported sensor state version {version!r}")
        kwargs = {k: v for k, v in data.items() if k not in {"v", "high", "low"}}
        return cls(high=SideState(**data["high"]), low=SideState(**data["low"]), **kwargs)
