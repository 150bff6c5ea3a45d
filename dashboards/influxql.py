"""Query types the foundation SDK lacks (InfluxQL, and raw SQL for the record store).

grafana-foundation-sdk has builders for Prometheus, Loki and others, but none for InfluxDB.
``InfluxQLQuery`` is the raw-InfluxQL target of Grafana's InfluxDB data source (``rawQuery``,
``query``, ``resultFormat``, ``alias``) as a ``Dataquery`` variant, so the SDK's panel
builders take it like their own; ``InfluxAnnotationTarget`` is the same for annotation
queries (text, tags and end-time columns).

InfluxQL and not Flux: it runs on InfluxDB 1.8, on 2.x through its v1 compatibility API
and on 3.x; Flux does not run on 3.x.

Every name and value placed in a query goes through ``ident`` (double-quoted identifier)
or ``literal`` (single-quoted string), so an id with a quote cannot change the query; the
only ``$`` in a query are Grafana's documented macros and the dashboard's own variables
(``MACROS``).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Final, Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

from dashboards.naming import INFLUX_DATASOURCE_UID, RECORDS_DATASOURCE_UID

#: Grafana's macros for InfluxQL raw queries that envmon uses (Grafana's InfluxDB docs),
#: and its global variables for the range's ends in epoch milliseconds.
MACROS: Final = ("$timeFilter", "$__interval", "${__from}", "${__to}")
DATASOURCE_TYPE: Final = "influxdb"
#: Grafana 11's PostgreSQL data source plugin.
POSTGRES_TYPE: Final = "grafana-postgresql-datasource"

ResultFormat = Literal["time_series", "table"]


def datasource_ref() -> dashboard.DataSourceRef:
    """Return the reference to envmon's InfluxDB data source (its fixed uid)."""
    return dashboard.DataSourceRef(type_val=DATASOURCE_TYPE, uid=INFLUX_DATASOURCE_UID)


def ident(name: str) -> str:
    r"""Return an InfluxQL identifier: double-quoted, with ``\\`` and ``"`` escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(text: str) -> str:
    r"""Return an InfluxQL string literal: single-quoted, with ``\\`` and ``'`` escaped."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def regex_of(values: typing.Iterable[str]) -> str:
    """Return an InfluxQL regular expression matching exactly these values."""
    alternatives = "|".join(re.escape(value).replace("/", "\\/") for value in values)
    return f"/^({alternatives})$/"


def tag_is(key: str, value: str) -> str:
    """Return ``"key" = 'value'``."""
    return f"{ident(key)} = {literal(value)}"


@dataclass
class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB data source."""

    ref_id: str
    query: str
    result_format: ResultFormat = "time_series"
    alias: str | None = None
    hide: bool = False
    datasource: dashboard.DataSourceRef = field(default_factory=datasource_ref)

    def to_json(self) -> dict[str, object]:
        """Return the target as Grafana stores it."""
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": self.datasource,
            "rawQuery": True,
            "query": self.query,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.hide:
            payload["hide"] = True
        return payload


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of ``InfluxQLQuery``, in the SDK's builder style."""

    def __init__(self, ref_id: str, query: str) -> None:
        self._internal = InfluxQLQuery(ref_id=ref_id, query=query)

    def build(self) -> InfluxQLQuery:
        """Return the query."""
        return self._internal

    def table(self) -> typing.Self:
        """Ask for a table (one row per series and time) instead of time series."""
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> typing.Self:
        """Name the series (``$tag_<key>`` and ``$col`` are Grafana's alias patterns)."""
        self._internal.alias = alias
        return self


class InfluxAnnotationTarget(dashboard.AnnotationTarget):
    """An InfluxQL annotation query: time from the points, text/tags/end from columns.

    Grafana 11.6's JSON schema types an annotation's ``target`` as the built-in Grafana
    source's (``limit``, ``matchAny``, ``tags``, ``type``; its own description says it
    should be a data source query): those four keys are written for it, and the InfluxDB
    source's keys beside them (see the schema notes in ``docs/dashboards.md``).
    """

    def __init__(
        self, query: str, *, text: str, tags: str = "", time_end: str = "", title: str = ""
    ) -> None:
        super().__init__(limit=100, match_any=False, tags=[], type_val="tags")
        self.query = query
        self.text_column = text
        self.tags_column = tags
        self.time_end_column = time_end
        self.title_column = title

    def to_json(self) -> dict[str, object]:
        """Return the target as Grafana stores a migrated InfluxQL annotation."""
        payload = super().to_json()
        payload.update(
            {
                "refId": "Anno",
                "rawQuery": True,
                "fromAnnotations": True,
                "queryType": "tags",
                "query": self.query,
                "textColumn": self.text_column,
                "tagsColumn": self.tags_column,
                "timeEndColumn": self.time_end_column,
                "titleColumn": self.title_column,
            }
        )
        return payload


class AnnotationTargetBuilder(cogbuilder.Builder[dashboard.AnnotationTarget]):
    """Hands an ``InfluxAnnotationTarget`` to the SDK's annotation builder."""

    def __init__(self, target: InfluxAnnotationTarget) -> None:
        self._target = target

    def build(self) -> dashboard.AnnotationTarget:
        """Return the target."""
        return self._target


@dataclass
class SqlQuery(cogvariants.Dataquery):
    """A raw SQL target of Grafana's PostgreSQL data source (the QA record store)."""

    ref_id: str
    raw_sql: str
    datasource: dashboard.DataSourceRef

    def to_json(self) -> dict[str, object]:
        """Return the target as Grafana stores it."""
        return {
            "refId": self.ref_id,
            "datasource": self.datasource,
            "rawQuery": True,
            "editorMode": "code",
            "format": "table",
            "rawSql": self.raw_sql,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    """Builder of ``SqlQuery`` on the record store's data source."""

    def __init__(self, ref_id: str, raw_sql: str) -> None:
        ref = dashboard.DataSourceRef(type_val=POSTGRES_TYPE, uid=RECORDS_DATASOURCE_UID)
        self._internal = SqlQuery(ref_id=ref_id, raw_sql=raw_sql, datasource=ref)

    def build(self) -> SqlQuery:
        """Return the query."""
        return self._internal
