"""Grafana 11.6's own JSON schemas (../shared/grafana-schema-11.6), with their known quirks.

The schemas are the grafana-foundation-sdk's, taken unchanged. Two places are patched here,
each where the schema contradicts what Grafana itself writes:

- a threshold step's ``value`` is typed as a number, but Grafana's base step is ``null``
  (the schema's own description: "Nulls currently appear here when serializing -Infinity");
- an annotation's ``target`` is typed as the built-in Grafana source's query (``limit``,
  ``matchAny``, ``tags``, ``type``) with no other key, although its description says it
  "should be a regular DataQuery": a data source's annotation query (InfluxQL here) keeps
  those four keys and adds its own;
- a field override's ``matcher.options`` and each ``properties[].value`` are typed as
  objects: the CUE source says ``_`` (any value), and Grafana writes a field name there for
  its ``byName`` matcher (``{"id": "byName", "options": "Time"}``) and a plain value for
  most properties (``{"id": "unit", "value": "celsius"}``).

Panel ``options`` and ``fieldConfig.defaults.custom`` are free-form in the dashboard schema;
``validate_dashboard`` checks them against the panel kind's own schema.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

#: A copy of ../shared/grafana-schema-11.6 (its README and LICENSE beside the files), so a
#: clone anywhere has them.
SCHEMAS = Path(__file__).resolve().parent / "grafana-schema-11.6"
#: Panel type → its schema file.
PANEL_KINDS = {
    "timeseries": "timeseries",
    "table": "table",
    "stat": "stat",
    "state-timeline": "statetimeline",
}


@functools.cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text(encoding="utf-8"))


@functools.cache
def dashboard_validator() -> jsonschema.Draft7Validator:
    schema = copy.deepcopy(_load("dashboard"))
    defs = schema["definitions"]
    defs["Threshold"]["properties"]["value"] = {"type": ["number", "null"]}
    defs["AnnotationTarget"]["additionalProperties"] = True
    defs["MatcherConfig"]["properties"]["options"] = {}
    defs["DynamicConfigValue"]["properties"]["value"] = {}
    # Same meaning as the schema's oneOf [Panel, RowPanel], but an error in a panel is then
    # reported where it is, not as "matches neither".
    defs["Dashboard"]["properties"]["panels"]["items"] = {
        "if": {"properties": {"type": {"const": "row"}}, "required": ["type"]},
        "then": {"$ref": "#/definitions/RowPanel"},
        "else": {"$ref": "#/definitions/Panel"},
    }
    return jsonschema.Draft7Validator(schema)


@functools.cache
def _part_validator(kind: str, definition: str) -> jsonschema.Draft7Validator:
    schema = copy.deepcopy(_load(kind))
    schema["$ref"] = f"#/definitions/{definition}"
    return jsonschema.Draft7Validator(schema)


def _say(error: jsonschema.ValidationError) -> str:
    """Name the deepest reason: a panel matching neither Panel nor RowPanel says why."""
    while error.context:
        error = jsonschema.exceptions.best_match(error.context)
    return f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"


def problems(model: dict[str, Any]) -> list[str]:
    """Return every schema violation of a dashboard model, with its JSON path."""
    found = [_say(e) for e in dashboard_validator().iter_errors(model)]
    for index, panel in enumerate(model.get("panels", [])):
        kind = panel.get("type")
        if kind == "row":
            continue
        if kind not in PANEL_KINDS:
            found.append(f"panels/{index}: panel kind {kind!r} has no schema here")
            continue
        kind = PANEL_KINDS[kind]
        checks = [("Options", panel.get("options", {}), "options")]
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None and "FieldConfig" in _load(kind)["definitions"]:
            checks.append(("FieldConfig", custom, "fieldConfig/defaults/custom"))
        for definition, value, where in checks:
            for error in _part_validator(kind, definition).iter_errors(value):
                path = "/".join(map(str, error.absolute_path))
                found.append(f"panels/{index}/{where}/{path}: {error.message[:300]}")
    return found
