"""The offsets of ``envmon.readings`` a stream worker has handled, partition by partition.

The worker commits an offset only when every record before it was handled: a record is
taken only if it is exactly the next one of its partition. This guards against the defect
that made the worker read readings itself (faust acknowledged, and so committed, records
its stream skipped across a rebalance: a worker restarted with a backlog lost a few dozen
readings about one run in four) and against any consumer that skips: a hole is not passed
over, the worker seeks the partition back to the first missing offset.

:class:`PartitionOffsets` is that bookkeeping, without any I/O: the worker seeds a newly
assigned partition with its committed offset, asks :meth:`admit_run` for each partition's
run of fetched records (the common case: the run starts at the expected offset and has no
hole, so it is taken whole) and :meth:`admit` for each record of a run that is not, commits
:meth:`position` after the batch is durable, and calls :meth:`forget` on revocation.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Admission(enum.Enum):
    """What to do with a record of an assigned partition."""

    TAKE = "take"  #: the next record of its partition: handle it
    REPEAT = "repeat"  #: handled before in this assignment (a re-fetch after a seek): drop
    GAP = "gap"  #: records before it are missing: drop it and seek back


class PartitionOffsets:
    """Next expected offset per partition, for the partitions this worker holds."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        self.gaps = 0  #: holes seen (each is healed by a seek back)
        self.repeats = 0  #: records dropped as already handled

    def __contains__(self, partition: int) -> bool:
        return partition in self._next

    def unknown(self, partitions: Iterable[int]) -> set[int]:
        """Return the partitions among ``partitions`` that have no start offset yet."""
        return {p for p in partitions if p not in self._next}

    def start(self, partition: int, offset: int) -> None:
        """Seed a newly assigned partition with the offset its group committed."""
        if offset < 0:
            raise ValueError(f"partition {partition}: a start offset cannot be {offset}")
        self._next[partition] = offset

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop revoked partitions: their start is asked again on the next assignment."""
        for partition in partitions:
            self._next.pop(partition, None)

    def position(self, partition: int) -> int:
        """Return the offset after the last record handled (what may be committed)."""
        return self._next[partition]

    def admit_run(self, partition: int, first: int, last: int, count: int) -> bool:
        """Take a whole run of ``count`` fetched records from ``first`` to ``last`` at once.

        True (and the position moves past ``last``) only if the run starts exactly at the
        partition's position and its offsets are contiguous; otherwise nothing changes and
        the caller classifies the records one by one with :meth:`admit`.
        """
        if count <= 0 or first != self._next[partition] or last - first + 1 != count:
            return False
        self._next[partition] = last + 1
        return True

    def admit(self, partition: int, offset: int) -> Admission:
        """Classify a record; a taken record advances its partition's position."""
        expected = self._next[partition]
        if offset == expected:
            self._next[partition] = offset + 1
            return Admission.TAKE
        if offset < expected:
            self.repeats += 1
            return Admission.REPEAT
        return Admission.GAP
