"""Query results as Athena writes them: values as text, the result CSV, UNLOAD's files.

Athena renders values the way its engine prints them (``true``, ``2024-01-02 03:04:05.000``); the
result file ``<QueryExecutionId>.csv`` has a header row, every value quoted and NULL as an empty
field; UNLOAD to TEXTFILE writes Hive text: one line per row, fields joined by the delimiter
(default ``\\001``), no quoting, NULL as ``\\N``, gzip unless ``compression = 'NONE'``.
"""

from __future__ import annotations

import gzip
import io
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq

from .errors import AthenaQueryError, not_supported

_ATHENA_TYPES = {
    "varchar": "varchar",
    "bigint": "bigint",
    "hugeint": "bigint",
    "integer": "integer",
    "smallint": "smallint",
    "tinyint": "tinyint",
    "boolean": "boolean",
    "double": "double",
    "float": "real",
    "timestamp": "timestamp",
    "timestamp with time zone": "timestamp with time zone",
    "date": "date",
    "decimal": "decimal",
}


@dataclass
class Column:
    name: str
    type: str  # Athena's name for it
    precision: int = 0
    scale: int = 0

    def info(self) -> dict:
        return {
            "CatalogName": "hive",
            "SchemaName": "",
            "TableName": "",
            "Name": self.name,
            "Label": self.name,
            "Type": self.type,
            "Precision": self.precision,
            "Scale": self.scale,
            "Nullable": "UNKNOWN",
            "CaseSensitive": self.type == "varchar",
        }


def athena_column(name: str, duck_type: duckdb.DuckDBPyType) -> Column:
    text = str(duck_type)
    kind = _ATHENA_TYPES.get(duck_type.id, "varchar")
    if kind == "decimal":
        precision, scale = (int(v) for v in re.findall(r"\d+", text))
        return Column(name, "decimal", precision, scale)
    return Column(name, kind)


def _as_text(column: str, duck_type: duckdb.DuckDBPyType) -> str:
    kind = duck_type.id
    if kind == "boolean":
        return f"CASE WHEN {column} THEN 'true' WHEN NOT {column} THEN 'false' END"
    if kind == "timestamp":
        return f"strftime({column}, '%Y-%m-%d %H:%M:%S.%g')"
    if kind == "timestamp with time zone":
        return f"strftime({column}, '%Y-%m-%d %H:%M:%S.%g') || ' UTC'"
    if kind == "date":
        return f"strftime({column}, '%Y-%m-%d')"
    return f"CAST({column} AS VARCHAR)"


def text_query(relation: duckdb.DuckDBPyRelation, sql: str) -> str:
    """SQL giving every column of ``sql`` as Athena's text for it (positional, names dropped)."""
    names = [f"c{i}" for i in range(len(relation.columns))]
    exprs = ", ".join(f"{_as_text(n, t)} AS {n}" for n, t in zip(names, relation.types, strict=True))
    return f"SELECT {exprs} FROM ({sql}) AS q({', '.join(names)})"


def results_csv(columns: list[Column], rows: list[tuple[str | None, ...]]) -> bytes:
    def quoted(value: str | None) -> str:
        return "" if value is None else '"' + value.replace('"', '""') + '"'

    lines = [",".join(quoted(c.name) for c in columns)]
    lines += [",".join(quoted(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------------------------ UNLOAD
def _delimiter(value: str) -> str:
    """Hive spells control characters as escapes: '\\t', '\\001'."""
    decoded = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), value).replace("\\t", "\t")
    if len(decoded) != 1:
        raise AthenaQueryError(f"field_delimiter must be a single character, not {value!r}", error_type=1101)
    return decoded


def trino_query_id(now: datetime) -> str:
    """The engine's query ID, which Athena's UNLOAD file names start with."""
    suffix = "".join(random.choices("abcdefghijklmnopqrstuvwxyz", k=5))
    return f"{now:%Y%m%d_%H%M%S}_{random.randrange(100000):05d}_{suffix}"


@dataclass
class UnloadFile:
    key: str
    body: bytes
    rows: int


def unload_files(
    con: duckdb.DuckDBPyConnection, sql: str, prefix: str, properties: dict[str, str], rows_per_file: int
) -> list[UnloadFile]:
    """The files UNLOAD writes under ``prefix`` (no files for an empty result)."""
    fmt = properties.get("format", "").upper()
    compression = properties.get("compression", "GZIP" if fmt == "TEXTFILE" else "").upper()
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    query_id = trino_query_id(datetime.now(UTC))
    relation = con.sql(sql)
    if fmt == "TEXTFILE":
        if compression not in ("GZIP", "NONE"):
            raise not_supported(f"TEXTFILE compression {compression!r} in the local stand-in (GZIP or NONE)")
        delimiter = _delimiter(properties.get("field_delimiter", "\\001"))
        names = [f"c{i}" for i in range(len(relation.columns))]
        line = f" || chr({ord(delimiter)}) || ".join(f"coalesce({n}, '\\N')" for n in names)
        line_sql = f"SELECT {line} AS line FROM ({text_query(relation, sql)}) AS t({', '.join(names)})"
        lines = [row[0] for row in con.sql(line_sql).fetchall()]
        files = []
        for start in range(0, len(lines), rows_per_file):
            chunk = lines[start : start + rows_per_file]
            body = ("\n".join(chunk) + "\n").encode()
            name = f"{query_id}_{uuid.uuid4()}"
            if compression == "GZIP":
                body, name = gzip.compress(body, mtime=0), name + ".gz"
            files.append(UnloadFile(base + name, body, len(chunk)))
        return files
    if fmt == "PARQUET":
        table = relation.to_arrow_table()
        files = []
        for start in range(0, table.num_rows, rows_per_file):
            chunk = table.slice(start, rows_per_file)
            buffer = io.BytesIO()
            pq.write_table(chunk, buffer, compression=(compression or "GZIP").lower())
            files.append(UnloadFile(f"{base}{query_id}_{uuid.uuid4()}", buffer.getvalue(), chunk.num_rows))
        return files
    raise not_supported(f"UNLOAD format {fmt!r} in the local stand-in (TEXTFILE or PARQUET)")
