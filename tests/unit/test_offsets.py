"""PartitionOffsets: only the next record of a partition is taken; holes are not skipped."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.kafka.offsets import Admission, PartitionOffsets


def test_takes_records_in_sequence_from_the_start_offset() -> None:
    offsets = PartitionOffsets()
    offsets.start(0, 40)
    assert [offsets.admit(0, o) for o in (40, 41, 42)] == [Admission.TAKE] * 3
    assert offsets.position(0) == 43


def test_a_contiguous_run_from_the_position_is_taken_whole() -> None:
    offsets = PartitionOffsets()
    offsets.start(0, 40)
    assert offsets.admit_run(0, 40, 49, 10)
    assert offsets.position(0) == 50
    assert offsets.admit(0, 50) is Admission.TAKE


@pytest.mark.parametrize(
    ("first", "last", "count"),
    [
        (41, 50, 10),  # starts after the position: a hole before it
        (39, 48, 10),  # starts before it: repeats
        (40, 50, 10),  # not contiguous: a hole inside
        (40, 39, 0),  # empty
    ],
)
def test_a_run_that_is_not_exactly_next_is_left_to_admit(first: int, last: int, count: int) -> None:
    offsets = PartitionOffsets()
    offsets.start(0, 40)
    assert not offsets.admit_run(0, first, last, count)
    assert offsets.position(0) == 40


def test_a_hole_is_not_skipped_over() -> None:
    offsets = PartitionOffsets()
    offsets.start(3, 10)
    assert offsets.admit(3, 10) is Admission.TAKE
    assert offsets.admit(3, 14) is Admission.GAP
    assert offsets.admit(3, 15) is Admission.GAP
    assert offsets.position(3) == 11  # what is committed never passes the hole
    assert offsets.admit(3, 11) is Admission.TAKE  # the re-fetch after the seek


def test_repeats_are_dropped_and_counted() -> None:
    offsets = PartitionOffsets()
    offsets.start(1, 0)
    for o in range(5):
        offsets.admit(1, o)
    assert offsets.admit(1, 2) is Admission.REPEAT
    assert offsets.repeats == 1
    assert offsets.position(1) == 5


def test_partitions_are_independent_and_forgotten_on_revocation() -> None:
    offsets = PartitionOffsets()
    offsets.start(0, 5)
    offsets.start(1, 100)
    assert offsets.admit(1, 100) is Admission.TAKE
    assert offsets.admit(0, 5) is Admission.TAKE
    assert offsets.unknown([0, 1, 2]) == {2}
    offsets.forget([0, 7])
    assert 0 not in offsets
    assert 1 in offsets
    assert offsets.unknown([0, 1]) == {0}
    with pytest.raises(KeyError):
        offsets.admit(0, 6)  # a revoked partition must be started again first


def test_a_negative_start_is_refused() -> None:
    with pytest.raises(ValueError, match="partition 2"):
        PartitionOffsets().start(2, -1)


@given(st.lists(st.integers(min_value=0, max_value=30), max_size=200), st.integers(0, 10))
def test_taken_records_are_exactly_the_contiguous_run(deliveries: list[int], start: int) -> None:
    """Whatever order records arrive in, what is taken is start, start+1, ... with no hole."""
    offsets = PartitionOffsets()
    offsets.start(0, start)
    taken = [o for o in deliveries if offsets.admit(0, o) is Admission.TAKE]
    assert taken == list(range(start, start + len(taken)))
    assert offsets.position(0) == start + len(taken)
