"""The core's pending runs: a channel beyond a limit whose delay (or count) has not passed."""

from __future__ import annotations

from datetime import timedelta

from envmon.models import Direction, Level
from envmon.testing import DEFAULT_T0, make_spec, readings
from envmon.timeutil import to_us
from stream.core import Evaluator, Pending

SID = "fridge-1.temperature"
T0 = to_us(DEFAULT_T0)
MIN = 60_000_000


def fed(values: list[float | None], **rules: float | int | None) -> Evaluator:
    """An evaluator of one fridge channel that took ``values`` one minute apart from T0."""
    evaluator = Evaluator([make_spec(SID, **rules)])  # type: ignore[arg-type]
    for reading in readings(SID, values, every=timedelta(minutes=1)):
        evaluator.process(reading)
    return evaluator


def test_no_run_is_not_pending() -> None:
    assert fed([5, 6], alert_high=8, delay_s=600).pending(SID, T0 + MIN) is None


def test_a_run_within_its_delay_is_pending_with_the_time_left() -> None:
    evaluator = fed([5, 9, 9], alert_high=8, action_high=10, delay_s=600)
    state = evaluator.state_of(SID)
    pending = evaluator.pending(SID, T0 + 2 * MIN)
    assert pending == Pending(Direction.HIGH, Level.ALERT, delay_left_s=540.0, samples_left=0)
    assert evaluator.state_of(SID) == state  # read-only
    # later on the clock, less is left; never below zero
    assert evaluator.pending(SID, T0 + 5 * MIN) == Pending(Direction.HIGH, Level.ALERT, 360.0, 0)
    assert evaluator.pending(SID, T0 + 60 * MIN) == Pending(Direction.HIGH, Level.ALERT, 0.0, 0)


def test_a_low_run_to_an_action_only_limit_counts_samples() -> None:
    evaluator = fed([5, 1, 1], action_low=2, consecutive=4)
    assert evaluator.pending(SID, T0 + 2 * MIN) == Pending(Direction.LOW, Level.ACTION, 0.0, 2)


def test_an_open_alert_waiting_to_escalate_is_pending_action() -> None:
    evaluator = fed([5, 9, 9, 11], alert_high=8, action_high=10, consecutive=2)
    assert evaluator.state_of(SID).high.open
    assert evaluator.state_of(SID).high.level == 1
    assert evaluator.pending(SID, T0 + 3 * MIN) == Pending(Direction.HIGH, Level.ACTION, 0.0, 1)
    evaluator = fed([5, 9, 9, 11, 11], alert_high=8, action_high=10, consecutive=2)
    assert evaluator.state_of(SID).high.level == 2  # escalated: nothing waits any more
    assert evaluator.pending(SID, T0 + 4 * MIN) is None


def test_an_open_excursion_at_its_top_level_is_not_pending() -> None:
    evaluator = fed([5, 11], alert_high=8, action_high=10)
    assert evaluator.state_of(SID).high.open
    assert evaluator.pending(SID, T0 + 2 * MIN) is None


def test_a_faulty_channel_is_not_pending() -> None:
    evaluator = fed([5, 9, None, None], alert_high=8, delay_s=600, bad_after=2)
    assert evaluator.state_of(SID).fault
    assert evaluator.pending(SID, T0 + 3 * MIN) is None
