"""QuestDB as a time-series store: the DDL of the readings table it is written to.

QuestDB takes the InfluxDB v2 write API, so ``stream.timeseries.influxdb.InfluxWriter``
writes to it; the table must exist before the first write (a table QuestDB creates itself
has no deduplication).
"""

from __future__ import annotations

import re
from typing import Final

from stream.timeseries import schema as tsschema

_TABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,126}")


def table_name(name: str) -> str:
    """Return ``name`` if it is a plain table name (letters, digits, ``_ . -``), else raise."""
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"not a plain table name: {name!r}")
    return name


def readings_table_ddl(table: str = tsschema.MEASUREMENT) -> str:
    """Return the QuestDB DDL of the readings table of ``stream.timeseries.schema``.

    Tags are SYMBOLs, ``time`` is the designated timestamp (µs), and the table
    deduplicates on (time, site, sensor): the same point written twice is stored once (the
    last write wins), as InfluxDB does for a series and a timestamp.
    """
    s = tsschema
    tags = ", ".join(f"{key} SYMBOL" for key in s.TAG_KEYS)
    return (
        f"CREATE TABLE IF NOT EXISTS '{table_name(table)}' ({tags}, {s.FIELD_VALUE} DOUBLE,"
        f" {s.FIELD_QUALITY} SYMBOL, {s.FIELD_STATE} INT, {s.TIME_COLUMN} TIMESTAMP)"
        f" TIMESTAMP({s.TIME_COLUMN}) PARTITION BY DAY WAL"
        f" DEDUP UPSERT KEYS({s.TIME_COLUMN}, {s.TAG_SITE}, {s.TAG_SENSOR})"
    )
