"""Offline replay: stream recorded readings from CSV or JSON lines through the core.

QA uses this to re-evaluate historical data against the limits of a site configuration.
Input is read line by line, so memory does not grow with the file; only excursions and
data gaps still open are held until they close.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Final

import orjson

from envmon.errors import InputError
from envmon.models import AlarmEvent, CoreEvent, DataGap, ExcursionRecord, ExcursionStatus
from envmon.timeutil import EPOCH, ONE_US
from stream.core.evaluator import Evaluator

REQUIRED_COLUMNS: Final = ("sensor_id", "ts", "value")
PROOF_KEYS: Final = ("sensor_id", "ts")
MAX_REPORTED_REJECTS: Final = 50
MAX_LISTED_EXCURSIONS: Final = 100
PROGRESS_EVERY: Final = 1 << 16
_GOOD_QUALITY: Final = {"": True, "good": True, "uncertain": True, "bad": False}
_MIN_US: Final = (datetime.min.replace(tzinfo=UTC) - EPOCH) // ONE_US
_MAX_US: Final = (datetime.max.replace(tzinfo=UTC) - EPOCH) // ONE_US
_QUOTED: Final = 40  # characters of a bad field quoted in a reject (never a whole field)

#: Called with (line number, reason) for each rejected line.
RejectHandler = Callable[[int, str], None]
#: Called every ``PROGRESS_EVERY`` lines with the number of lines read so far.
ProgressHandler = Callable[[int], None]


@dataclass
class ReplaySummary:
    """What a replay saw and produced."""

    lines: int = 0
    readings: int = 0
    proofs: int = 0  # proofs of life (JSON lines only)
    rejected: int = 0
    late: int = 0
    duplicates: int = 0
    alarms: Counter[str] = field(default_factory=Counter)
    excursions: Counter[tuple[str, str]] = field(default_factory=Counter)
    open_excursions: int = 0
    gaps: Counter[str] = field(default_factory=Counter)
    first_rejects: list[tuple[int, str]] = field(default_factory=list)
    listed: list[ExcursionRecord] = field(default_factory=list)

    def count_excursion(self, record: ExcursionRecord) -> None:
        """Count a final excursion record and keep the first ones for the listing."""
        self.excursions[(record.area, record.level.value)] += 1
        if len(self.listed) < MAX_LISTED_EXCURSIONS:
            self.listed.append(record)

    def as_dict(self) -> dict[str, object]:
        """Return the summary as JSON-ready data.

        Counts per group are lists of objects alike: ``excursions`` as ``{"area", "level",
        "count"}``, ``data_gaps`` as ``{"area", "count"}``, sorted by area (and level).
        """
        return {
            "lines": self.lines,
            "readings": self.readings,
            "proofs_of_life": self.proofs,
            "rejected": self.rejected,
            "late": self.late,
            "duplicates": self.duplicates,
            "alarms": dict(sorted(self.alarms.items())),
            "excursions": [
                {"area": area, "level": level, "count": n}
                for (area, level), n in sorted(self.excursions.items())
            ],
            "open_excursions": self.open_excursions,
            "data_gaps": [{"area": area, "count": n} for area, n in sorted(self.gaps.items())],
        }


class EventSink:
    """Writes replay output as JSON lines and keeps the summary counts.

    Alarm events are written as they happen; an excursion record or data gap is written
    once, when it closes, or at the end of the input with ``"end": null`` if still open.
    """

    def __init__(self, out: IO[bytes] | None, summary: ReplaySummary) -> None:
        self._out = out
        self._summary = summary

    def write(self, events: Iterable[CoreEvent]) -> None:
        """Write the events that are final and count them."""
        for event in events:
            if isinstance(event, AlarmEvent):
                self._summary.alarms[event.event.value] += 1
            elif isinstance(event, ExcursionRecord):
                if event.status is not ExcursionStatus.CLOSED:
                    continue
                self._summary.count_excursion(event)
            elif isinstance(event, DataGap):
                if event.end is None:
                    continue
                self._summary.gaps[event.area] += 1
            if self._out is not None:
                self._out.write(event.model_dump_json().encode())
                self._out.write(b"\n")

    def finish(self, still_open: Sequence[CoreEvent]) -> None:
        """Write what is still open at the end of the input."""
        for event in still_open:
            if isinstance(event, ExcursionRecord):
                self._summary.count_excursion(event)
                self._summary.open_excursions += 1
            elif isinstance(event, DataGap):
                self._summary.gaps[event.area] += 1
            if self._out is not None:
                self._out.write(event.model_dump_json().encode())
                self._out.write(b"\n")


class Replayer:
    """Feeds parsed lines to an :class:`Evaluator`, rejecting bad lines by number."""

    def __init__(
        self,
        evaluator: Evaluator,
        sink: EventSink,
        summary: ReplaySummary,
        *,
        source: str,
        strict: bool = False,
        on_reject: RejectHandler | None = None,
        on_progress: ProgressHandler | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.sink = sink
        self.summary = summary
        self.source = source
        self.strict = strict
        self.on_reject = on_reject
        self.on_progress = on_progress

    def reject(self, line: int, reason: str) -> None:
        """Count a bad line, report it, and stop if strict."""
        self.summary.rejected += 1
        if len(self.summary.first_rejects) < MAX_REPORTED_REJECTS:
            self.summary.first_rejects.append((line, reason))
        if self.on_reject is not None:
            self.on_reject(line, reason)
        if self.strict:
            raise InputError(self.source, line, reason)

    def run_csv(self, stream: IO[str]) -> None:
        """Replay CSV with a header naming ``sensor_id``, ``ts``, ``value`` [, ``quality``]."""
        reader = csv.reader(stream)
        try:
            header = next(reader)
        except StopIteration:
            return
        columns = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            self.summary.lines = 1
            raise InputError(self.source, 1, f"CSV header lacks column(s): {', '.join(missing)}")
        i_sid, i_ts, i_val = (columns[c] for c in REQUIRED_COLUMNS)
        i_q = columns.get("quality")
        width = max(i_sid, i_ts, i_val, i_q if i_q is not None else 0) + 1
        feed = self.evaluator.feed
        write = self.sink.write
        known = self.evaluator.sensor_ids.__contains__
        on_progress = self.on_progress
        good_quality = _GOOD_QUALITY
        last_ts_text = ""
        ts_us = 0
        line = 1
        readings = 0
        isfinite = math.isfinite
        for row in reader:
            line = reader.line_num
            if len(row) < width:
                if not row:
                    continue
                self.reject(line, f"expected at least {width} fields, got {len(row)}")
                continue
            sensor_id = row[i_sid]
            ts_text = row[i_ts]
            value_text = row[i_val]
            if i_q is None:
                good = True
            else:
                quality = row[i_q]
                good_or_none = good_quality.get(quality)
                if good_or_none is None:
                    good_or_none = good_quality.get(quality.strip().lower())
                    if good_or_none is None:
                        self.reject(line, f"unknown quality {quality!r}")
                        continue
                good = good_or_none
            if ts_text != last_ts_text:
                try:
                    ts_us = _parse_us(ts_text)
                except ValueError as exc:
                    self.reject(line, str(exc))
                    last_ts_text = ""
                    continue
                last_ts_text = ts_text
            value: float | None
            try:
                value = float(value_text)
            except ValueError:
                if value_text.strip() or good:
                    self.reject(line, f"value {value_text!r} is not a number")
                    continue
                value = None
            else:
                if not isfinite(value):
                    self.reject(line, f"value {value_text!r} is not finite")
                    continue
            if not known(sensor_id):
                self.reject(line, f"unknown sensor {sensor_id!r}")
                continue
            events = feed(sensor_id, ts_us, value, good)
            if events:
                write(events)
            readings += 1
            if on_progress is not None and not readings % PROGRESS_EVERY:
                on_progress(readings)
        self.summary.lines = line
        self.summary.readings += readings

    def run_jsonl(self, stream: IO[bytes]) -> None:
        """Replay JSON lines, one object per line with ``sensor_id``, ``ts``, ``value``.

        A line with ``"kind": "proof_of_life"`` (as on ``envmon.readings``) is a proof of
        life: ``sensor_id`` and ``ts`` only; the sensor's last value still holds then.
        """
        feed = self.evaluator.feed
        alive = self.evaluator.alive
        proofs = 0
        write = self.sink.write
        known = self.evaluator.sensor_ids.__contains__
        on_progress = self.on_progress
        readings = 0
        line = 0
        last_ts_text = ""
        ts_us = 0
        for line, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                self.reject(line, f"not JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                self.reject(line, "not a JSON object")
                continue
            proof = obj.get("kind") == "proof_of_life"
            missing = [c for c in (PROOF_KEYS if proof else REQUIRED_COLUMNS) if c not in obj]
            if missing:
                self.reject(line, f"missing key(s): {', '.join(missing)}")
                continue
            sensor_id = obj["sensor_id"]
            quality = obj.get("quality", "") or ""
            good_or_none = (
                _GOOD_QUALITY.get(quality.strip().lower()) if isinstance(quality, str) else None
            )
            if good_or_none is None:
                self.reject(line, f"unknown quality {quality!r}")
                continue
            good = good_or_none
            ts_text = obj["ts"]
            if not isinstance(ts_text, str):
                self.reject(line, f"ts {ts_text!r} is not an ISO 8601 string")
                continue
            if ts_text != last_ts_text:
                try:
                    ts_us = _parse_us(ts_text)
                except ValueError as exc:
                    self.reject(line, str(exc))
                    last_ts_text = ""
                    continue
                last_ts_text = ts_text
            if proof:
                if not isinstance(sensor_id, str) or not known(sensor_id):
                    self.reject(line, f"unknown sensor {sensor_id!r}")
                    continue
                events = alive(sensor_id, ts_us)
                if events:
                    write(events)
                proofs += 1
                continue
            raw_value = obj["value"]
            value: float | None
            if raw_value is None and not good:
                value = None
            elif isinstance(raw_value, bool) or not isinstance(raw_value, int | float | str):
                self.reject(line, f"value {raw_value!r} is not a number")
                continue
            else:
                try:
                    value = float(raw_value)
                except ValueError:
                    self.reject(line, f"value {raw_value!r} is not a number")
                    continue
                if not math.isfinite(value):
                    self.reject(line, f"value {raw_value!r} is not finite")
                    continue
            if not isinstance(sensor_id, str) or not known(sensor_id):
                self.reject(line, f"unknown sensor {sensor_id!r}")
                continue
            events = feed(sensor_id, ts_us, value, good)
            if events:
                write(events)
            readings += 1
            if on_progress is not None and not readings % PROGRESS_EVERY:
                on_progress(readings)
        self.summary.lines = line
        self.summary.readings += readings
        self.summary.proofs += proofs

    def finish(self) -> None:
        """Write what is still open and fill in the evaluator's counters."""
        self.sink.finish(self.evaluator.open_records())
        stats = self.evaluator.stats()
        self.summary.late = stats.late
        self.summary.duplicates = stats.duplicates


def _parse_us(text: str) -> int:
    """Parse an ISO 8601 timestamp with offset to epoch µs; errors say what was wrong."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {text[:_QUOTED]!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text[:_QUOTED]!r} has no UTC offset")
    us = (dt - EPOCH) // ONE_US
    # An extreme offset moves a time out of the datetime range (9999-12-31T23:59:59-23:59 is
    # in year 10000 UTC): the core, turning it back into a datetime, would fail.
    if not _MIN_US <= us <= _MAX_US:
        raise ValueError(f"timestamp {text[:_QUOTED]!r} is out of range in UTC")
    return us
