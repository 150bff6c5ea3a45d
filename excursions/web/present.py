"""What the QA pages show of records, in words people read: names, labels, values, rules.

Pure functions over the read models of ``excursions.queries`` and the site's
configuration (optional): every value, time and duration goes through the site's
``Display``; areas, instruments and sensors are named from the site (else from the
store); the evaluation rule that was in force is said in sentences. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from envmon.config.schema import SiteConfig
from envmon.display import Display, label, unit_label
from envmon.sensors import SensorSpec
from excursions.lifecycle import MEANINGS, QA_FIELDS, REQUIRED_TO_CLOSE, ROOT_CAUSES
from excursions.policy import QAState
from excursions.queries import RecordSummary
from excursions.trend.model import Trend

#: The QA fields as the assessment form, the record page and the PDF name them.
QA_LABELS: Final = {name: label(name) for name in QA_FIELDS}
#: What each QA field asks for (help text under the field).
QA_HELP: Final = {
    "impact_products": "Products stored or processed during the excursion, and the effect.",
    "impact_batches": "Batch numbers concerned, or “none”.",
    "impact_text": "Why the product quality is or is not affected.",
    "root_cause_text": "What caused the excursion, as far as it is known.",
    "deviation_ref": "The deviation record in the quality system, if one was raised.",
    "capa_ref": "The corrective and preventive action, if one was raised.",
    "conclusion": "The QA decision on this record.",
}
#: The long QA fields (a large text area, full width) and the one-line ones (references).
QA_LONG: Final = frozenset(name for name, longest in QA_FIELDS.items() if longest > 2_000)
QA_LINE: Final = frozenset(name for name, longest in QA_FIELDS.items() if longest <= 100)
ROOT_CAUSE_LABELS: Final = {
    "equipment": "Equipment",
    "utilities": "Utilities",
    "procedure": "Procedure",
    "human_error": "Human error",
    "environment": "Environment",
    "sensor_fault": "Sensor fault",
    "unknown": "Unknown",
}
MEANING_LABELS: Final = {"reviewed": "Reviewed", "approved": "Approved"}
QA_STATES: Final = tuple(QAState)
LEVELS: Final = ("alert", "action")
KINDS: Final = ("excursion", "data_gap")
#: The actions' names on buttons and form headings.
ACTION_LABELS: Final = {
    "acknowledge": "Acknowledge",
    "comment": "Add a comment",
    "start_review": "Start QA review",
    "assess": "Record the assessment",
    "close": "Close with electronic signature",
    "reopen": "Reopen with electronic signature",
}
#: What the page says after an action was done (``?done=<action>``; nothing else is shown).
DONE: Final = {
    "acknowledge": "Acknowledged. Your comment is in the audit trail.",
    "comment": "Comment added to the audit trail.",
    "start_review": "QA review started. The assessment can now be recorded.",
    "assess": "Assessment saved. The changes are in the audit trail.",
    "close": "Record closed and signed.",
    "reopen": "Record reopened and signed.",
}
#: Audit-trail actions and fields as people read them.
AUDIT_ACTIONS: Final = {
    "create": "Record created",
    "update": "Updated by the monitoring core",
    "acknowledge": "Acknowledged",
    "comment": "Comment",
    "start_review": "Review started",
    "assess": "Assessment",
    "close": "Closed (signed)",
    "reopen": "Reopened (signed)",
}
FIELD_LABELS: Final = {
    **QA_LABELS,
    "qa_state": label("qa_state"),
    "core_status": label("core_status"),
    "signature": "Signature",
    "comment": "Comment",
}


def field_label(name: str | None) -> str:
    """Return an audit field's name as people read it."""
    return FIELD_LABELS.get(name or "", label(name))


def field_value(name: str | None, value: str | None) -> str:
    """Return an audit value as people read it: state and category names in words."""
    if not value:
        return ""
    if name in ("qa_state", "core_status", "level", "kind"):
        return label(value)
    if name == "root_cause_category":
        return ROOT_CAUSE_LABELS.get(value, value)
    return value


#: Fields the monitoring core writes (JSON values in the audit trail), by how they read.
CORE_VALUES: Final = frozenset({"peak", "min", "max", "limit"})
CORE_TIMES: Final = frozenset({"peak_ts", "start", "end"})
CORE_DURATIONS: Final = frozenset({"duration_s", "time_beyond_limit_s"})
CORE_WORDS: Final = frozenset({"core_status", "level", "kind", "direction"})
HASH_SHOWN: Final = 12
#: Every field of the core's record that the audit trail holds as JSON.
CORE_FIELDS: Final = (
    CORE_VALUES
    | CORE_TIMES
    | CORE_DURATIONS
    | CORE_WORDS
    | {"samples", "core_sha256", "integral_beyond_limit"}
)


def audit_value(
    name: str | None, value: str | None, record: Mapping[str, Any], shown: Display
) -> tuple[str, str]:
    """Return an audit-trail value as people read it, and the stored value when it differs.

    The core's values (JSON) are shown as the pages show them (rounded with the unit, site
    time, durations in words; a content hash shortened); the exact stored value goes in the
    second item (the cell's hover text). Other values are shown as stored.
    """
    if not value:
        return "", ""
    if name not in CORE_FIELDS:
        return field_value(name, value), ""
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value, ""
    unit = record.get("unit") or ""
    sensor, parameter = record.get("sensor_id"), record.get("parameter")
    text: str
    if data is None:
        text = "—"
    elif name in CORE_VALUES and isinstance(data, int | float):
        text = shown.value(data, unit, sensor=sensor, parameter=parameter)
    elif name == "integral_beyond_limit" and isinstance(data, int | float):
        number = shown.value(data, "", sensor=sensor, parameter=parameter)
        text = f"{number} {unit_label(unit)}·s".rstrip()
    elif name in CORE_TIMES and isinstance(data, str):
        text = shown.time(data)
    elif name in CORE_DURATIONS and isinstance(data, int | float):
        text = shown.duration(data)
    elif name == "samples" and isinstance(data, int):
        text = f"{data:,}"
    elif name == "core_sha256" and isinstance(data, str):
        text = f"{data[:HASH_SHOWN]}…"
    elif isinstance(data, str):
        text = label(data) if name in CORE_WORDS else data
    else:
        text = value
    return text, ("" if text == value else f"stored: {value}")


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The names and filter values the pages offer: from the site, else from the store.

    ``options`` maps a filter (``area``, ``instrument``, ``parameter``, ``sensor``) to its
    (value, text) pairs; ``specs`` the site's resolved sensors by id (empty without a site).
    """

    options: Mapping[str, tuple[tuple[str, str], ...]]
    area_names: Mapping[str, str] = field(default_factory=dict)
    instrument_names: Mapping[str, str] = field(default_factory=dict)
    specs: Mapping[str, SensorSpec] = field(default_factory=dict)

    @classmethod
    def of_site(cls, site: SiteConfig) -> Catalogue:
        """Return the catalogue of a site's configuration."""
        specs = site.sensor_map()
        areas = {a.id: a.name for a in site.areas}
        instruments = {i.id: i.name for a in site.areas for i in a.instruments}
        parameters = sorted({s.parameter for s in specs.values()}, key=label)
        sensors = sorted(
            specs.values(), key=lambda s: (instruments.get(s.instrument, ""), label(s.parameter))
        )
        return cls(
            options={
                "area": tuple(areas.items()),
                "instrument": tuple(instruments.items()),
                "parameter": tuple((p, label(p)) for p in parameters),
                "sensor": tuple(
                    (
                        s.sensor_id,
                        f"{instruments.get(s.instrument, s.instrument)} · {label(s.parameter)}",
                    )
                    for s in sensors
                ),
            },
            area_names=areas,
            instrument_names=instruments,
            specs=specs,
        )

    @classmethod
    def of_store(cls, distinct: Mapping[str, Iterable[str]]) -> Catalogue:
        """Return a catalogue of the values the store holds (no site configuration)."""
        options = {
            name: tuple((v, label(v) if name == "parameter" else v) for v in sorted(values) if v)
            for name, values in distinct.items()
        }
        return cls(options=options)

    def area(self, area_id: str | None) -> str:
        """Return an area's name (its id when the site does not know it)."""
        return self.area_names.get(area_id or "", area_id or "")

    def instrument(self, instrument_id: str | None, sensor_id: str | None) -> str:
        """Return an instrument's name: by id, else by the sensor's instrument, else the sensor."""
        if instrument_id:
            return self.instrument_names.get(instrument_id, instrument_id)
        spec = self.specs.get(sensor_id or "")
        if spec is not None:
            return self.instrument_names.get(spec.instrument, spec.instrument)
        return sensor_id or ""


def _aware(at: datetime | str | None) -> datetime | None:
    if at is None:
        return None
    value = at if isinstance(at, datetime) else datetime.fromisoformat(at.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def span_seconds(start: datetime | str | None, end: datetime | str | None) -> float | None:
    """Return the seconds from ``start`` to ``end`` (None when either is missing)."""
    begin, finish = _aware(start), _aware(end)
    if begin is None or finish is None:
        return None
    return (finish - begin).total_seconds()


def kind_text(kind: str, level: str | None) -> str:
    """Return ``Action excursion``, ``Alert excursion`` or ``Data gap``."""
    if kind == "data_gap":
        return "Data gap"
    return f"{label(level)} excursion" if level else "Excursion"


def list_row(item: RecordSummary, shown: Display, names: Catalogue) -> dict[str, Any]:
    """Return one row of the excursion list, every cell as text to show."""
    sensor, parameter = item.sensor_id, item.parameter
    duration = span_seconds(item.start, item.end)
    return {
        "id": item.id,
        "kind": item.kind,
        "level": item.level,
        "kind_text": kind_text(item.kind, item.level),
        "start": item.start,
        "start_text": shown.time(item.start),
        "start_utc": shown.utc(item.start),
        "duration": shown.duration(duration) if item.end is not None else None,
        "area": names.area(item.area),
        "instrument": names.instrument(item.instrument, sensor),
        "parameter": label(parameter),
        "peak": (
            shown.value(item.peak, item.unit or "", sensor=sensor, parameter=parameter)
            if item.peak is not None
            else "—"
        ),
        "core_status": item.core_status,
        "qa_state": item.qa_state,
        "qa_text": label(item.qa_state),
    }


@dataclass(frozen=True, slots=True)
class Fact:
    """One metric of the record page: a name, its value as text, and a hover text."""

    name: str
    text: str
    note: str = ""  #: a smaller line under the value
    title: str = ""  #: shown on hover (a time in UTC)
    id: str = ""


def _rules(record: Mapping[str, Any], spec: SensorSpec | None) -> dict[str, Any] | None:
    """Return the rule in force: the record's own when it carries one, else the site's."""
    stored = record.get("rules")
    if isinstance(stored, Mapping):
        return {
            "delay_s": float(stored.get("delay_s") or 0.0),
            "consecutive": stored.get("consecutive"),
            "deadband": float(stored.get("deadband") or 0.0),
            "stale_after_s": stored.get("stale_after_s"),
            "source": "record",
        }
    if spec is None:
        return None
    return {
        "delay_s": spec.rules.delay_s,
        "consecutive": spec.rules.consecutive,
        "deadband": spec.rules.deadband,
        "stale_after_s": spec.rules.stale_after_s,
        "source": "site",
    }


def _beyond(peak: float, limit: float | None, direction: str | None) -> bool:
    if limit is None:
        return False
    return peak >= limit if direction != "low" else peak <= limit


def rule_sentences(record: Mapping[str, Any], spec: SensorSpec | None, shown: Display) -> list[str]:
    """Return the evaluation rule that was in force for a record, in sentences.

    Says how a level is reached (delay, consecutive readings), how it clears (deadband),
    and why an excursion whose peak passed the action limit stayed at alert level.
    """
    rules = _rules(record, spec)
    kind = record.get("kind", "excursion")
    if rules is None:
        return [
            "The rule in force for this sensor is not known here: the app was started"
            " without the site configuration."
        ]
    source = (
        "As stored with the record."
        if rules["source"] == "record"
        else "From the site configuration in use now (the record does not store its rule)."
    )
    if kind == "data_gap":
        stale = rules["stale_after_s"]
        if stale:
            return [
                f"A data gap is recorded when no reading arrives for {shown.duration(stale)}"
                " (stale-data timeout).",
                source,
            ]
        return ["A data gap is recorded when the sensor's readings stop arriving.", source]
    unit = record.get("unit") or ""
    sensor, parameter = record.get("sensor_id"), record.get("parameter")
    delay, consecutive, deadband = rules["delay_s"], rules["consecutive"], rules["deadband"]
    level = record.get("level") or "alert"
    sentences: list[str] = []
    need = []
    if delay:
        need.append(f"after {shown.duration(delay)} beyond the {level} limit (delay)")
    if consecutive and consecutive > 1:
        readings = f"{consecutive} consecutive readings beyond"
        need.append(f"{readings} it" if need else f"after {readings} the {level} limit")
    if need:
        sentences.append(
            f"{label(level)} level is reached {' and '.join(need)}; the same rule applies to"
            f" the {'action' if level == 'alert' else 'alert'} level."
        )
    else:
        sentences.append(
            "A level is reached with the first reading beyond its limit (no delay, no"
            " consecutive-readings rule)."
        )
    if deadband:
        band = shown.value(deadband, unit, sensor=sensor, parameter=parameter)
        sentences.append(
            f"A level clears once the value is back inside its limit by {band} (deadband)."
        )
    limits = record.get("limits") or {}
    direction = record.get("direction")
    action = limits.get("action_low" if direction == "low" else "action_high")
    peak = record.get("peak")
    if level == "alert" and peak is not None and _beyond(peak, action, direction) and need:
        sentences.append(
            f"The value went beyond the action limit "
            f"({shown.value(action, unit, sensor=sensor, parameter=parameter)}) but not for"
            f" as long as the rule needs, so this excursion stayed at alert level."
        )
    sentences.append(source)
    return sentences


def _time_fact(
    name: str, at: datetime | str | None, shown: Display, note: str = "", ident: str = ""
) -> Fact:
    return Fact(name, shown.time(at), note, shown.utc(at) if at else "", ident)


def limits_text(record: Mapping[str, Any], shown: Display) -> str:
    """Return the limits in force at the record (``alert > 8.0 °C · action > 10.0 °C``)."""
    limits = record.get("limits") or {}
    unit = record.get("unit") or ""
    sensor, parameter = record.get("sensor_id"), record.get("parameter")
    parts = []
    for key, sign, name in (
        ("alert_low", "<", "alert"),
        ("action_low", "<", "action"),
        ("alert_high", ">", "alert"),
        ("action_high", ">", "action"),
    ):
        if limits.get(key) is not None:
            value = shown.value(limits[key], unit, sensor=sensor, parameter=parameter)
            parts.append(f"{name} {sign} {value}")
    return " · ".join(parts) or "—"


def excursion_facts(record: Mapping[str, Any], shown: Display, now: datetime) -> list[Fact]:
    """Return the metrics of an excursion (values with units, durations, site times)."""
    unit = record.get("unit") or ""
    sensor, parameter = record.get("sensor_id"), record.get("parameter")

    def value(v: float | None) -> str:
        return shown.value(v, unit, sensor=sensor, parameter=parameter)

    level = record.get("level") or ""
    direction = record.get("direction")
    end = record.get("end")
    duration = record.get("duration_s")
    if end is None:
        so_far = span_seconds(record.get("start"), now)
        duration_fact = Fact("Duration", "Ongoing", f"{shown.duration(so_far)} so far")
    else:
        duration_fact = Fact("Duration", shown.duration(duration), id="m-duration")
    integral = record.get("integral_beyond_limit")
    integral_text = (
        "—"
        if integral is None
        else f"{shown.value(integral, '', sensor=sensor, parameter=parameter)}"
        f" {unit_label(unit)}·s".rstrip()
    )
    side = "below" if direction == "low" else "above"
    return [
        _time_fact("Start", record.get("start"), shown, ident="m-start"),
        (
            _time_fact("End", end, shown, ident="m-end")
            if end is not None
            else Fact("End", "Still open", "the excursion is going on", id="m-end")
        ),
        duration_fact,
        Fact(
            "Peak",
            value(record.get("peak")),
            f"at {shown.time(record.get('peak_ts'))}" if record.get("peak_ts") else "",
            shown.utc(record.get("peak_ts")) if record.get("peak_ts") else "",
            id="m-peak",
        ),
        Fact(
            f"{label(level)} limit" if level else "Limit",
            value(record.get("limit")),
            f"the value went {side} it",
            id="m-limit",
        ),
        Fact(
            "Time beyond limit",
            shown.duration(record.get("time_beyond_limit_s")),
            id="m-time-beyond",
        ),
        Fact(
            "Integral beyond limit",
            integral_text,
            "area between the value and the limit",
            id="m-integral",
        ),
        Fact(
            "Range",
            f"{value(record.get('min'))} to {value(record.get('max'))}",
            f"{record.get('samples', 0):,} readings" if record.get("samples") else "",
        ),
        Fact("Limits in force", limits_text(record, shown), id="m-limits"),
    ]


def _last_before(trend: Trend | None, at: datetime | None) -> tuple[datetime, float] | None:
    if trend is None or at is None:
        return None
    found = [(p.ts, p.value) for run in trend.runs for p in run if p.ts <= at]
    return max(found) if found else None


def _first_after(trend: Trend | None, at: datetime | None) -> tuple[datetime, float] | None:
    if trend is None or at is None:
        return None
    found = [(p.ts, p.value) for run in trend.runs for p in run if p.ts >= at]
    return min(found) if found else None


def gap_facts(
    record: Mapping[str, Any],
    shown: Display,
    now: datetime,
    trend: Trend | None,
    unit: str = "",
) -> list[Fact]:
    """Return the metrics of a data gap: start, end, duration, readings either side if known."""
    sensor, parameter = record.get("sensor_id"), record.get("parameter")
    start, end = _aware(record.get("start")), _aware(record.get("end"))
    facts = [_time_fact("Gap start", start, shown, "time of the last reading", ident="m-gap-start")]
    if end is None:
        facts.append(Fact("Gap end", "Still open", "no reading since", id="m-gap-end"))
        facts.append(
            Fact("Duration", "Ongoing", f"{shown.duration(span_seconds(start, now))} so far")
        )
    else:
        after = "time of the next reading"
        facts.append(_time_fact("Gap end", end, shown, after, ident="m-gap-end"))
        facts.append(Fact("Duration", shown.duration(record.get("duration_s")), id="m-duration"))
    for name, found, id_ in (
        ("Last reading before", _last_before(trend, start), "m-before"),
        ("First reading after", _first_after(trend, end), "m-after"),
    ):
        if found is None:
            if name.startswith("First") and end is None:
                continue
            facts.append(Fact(name, "Not known", "not in the time-series store", id=id_))
        else:
            ts, v = found
            facts.append(
                Fact(
                    name,
                    shown.value(v, unit, sensor=sensor, parameter=parameter),
                    f"at {shown.time(ts)}",
                    shown.utc(ts),
                    id=id_,
                )
            )
    return facts


def record_title(record: RecordSummary, names: Catalogue) -> str:
    """Return a record's title: ``Freezer −80 °C 1 · Temperature · Action excursion``."""
    instrument = names.instrument(record.instrument, record.sensor_id)
    return " · ".join(
        part
        for part in (instrument, label(record.parameter), kind_text(record.kind, record.level))
        if part
    )


def assessment_fields(
    qa: Mapping[str, str], kept: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    """Return the assessment form's fields: label, value (kept after a refusal), limits."""
    values = kept if kept is not None else qa
    return [
        {
            "name": name,
            "label": QA_LABELS.get(name, label(name)),
            "help": QA_HELP.get(name, ""),
            "value": values.get(name, ""),
            "maxlength": longest,
            "required": name in REQUIRED_TO_CLOSE,
            "long": name in QA_LONG,
            "line": name in QA_LINE,
            "choices": (
                tuple((c, ROOT_CAUSE_LABELS.get(c, label(c))) for c in ROOT_CAUSES)
                if name == "root_cause_category"
                else None
            ),
        }
        for name, longest in QA_FIELDS.items()
    ]


def qa_rows(qa: Mapping[str, str]) -> list[dict[str, Any]]:
    """Return the recorded assessment as (label, text, required) rows."""
    return [
        {
            "name": name,
            "label": QA_LABELS.get(name, label(name)),
            "text": field_value(name, value),
            "required": name in REQUIRED_TO_CLOSE,
        }
        for name, value in qa.items()
    ]


def meanings() -> tuple[tuple[str, str], ...]:
    """Return the signature meanings with their labels."""
    return tuple((m, MEANING_LABELS.get(m, label(m))) for m in MEANINGS)
