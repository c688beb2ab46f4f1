"""A Glue table's data, found and read the way Athena does, as a DuckDB view.

Everything comes from the Glue table: ``StorageDescriptor.Location`` and the partition keys (with
partition projection: the location template and the projected value ranges; without: the Glue
partitions), the input format (``SymlinkTextInputFormat``: each file lists ``s3://`` data files),
the SerDe (OpenCSVSerde: positional, every value text; LazySimpleSerDe: delimited, ``\\N`` null;
ParquetHiveSerDe and OrcSerde: by column name or index) and the column types.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.orc as orc
import pyarrow.parquet as pq

from batchpipe_core.s3uri import split_s3_uri

from .errors import catalog_not_found, data_error, not_supported, table_not_found


class ObjectStore(Protocol):
    def list(self, bucket: str, prefix: str) -> list[str]: ...
    def get(self, bucket: str, key: str) -> bytes: ...
    def put(self, bucket: str, key: str, body: bytes) -> None: ...


class Catalog(Protocol):
    def get_table(self, database: str, name: str) -> dict | None: ...
    def get_partitions(self, database: str, name: str) -> list[dict]: ...


@dataclass
class ScanStats:
    files: int = 0
    bytes: int = 0
    rows: int = 0


def s3_location(uri: str) -> tuple[str, str]:
    """(bucket, key) of a location Athena reads or writes; Athena reads only s3:// locations."""
    try:
        return split_s3_uri(uri)
    except ValueError:
        raise not_supported(f"only s3:// locations can be read, not {uri!r}") from None


# ------------------------------------------------------------------------------------------ types
_SIMPLE_TYPES = {
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "int": "INTEGER",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "tinyint": "TINYINT",
    "boolean": "BOOLEAN",
    "double": "DOUBLE",
    "float": "FLOAT",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "binary": "BLOB",
}


def duckdb_type(glue_type: str) -> str:
    text = glue_type.strip().lower()
    if text in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[text]
    if re.fullmatch(r"(var)?char\(\d+\)", text):
        return "VARCHAR"
    if re.fullmatch(r"decimal\(\d+,\s*\d+\)", text):
        return text.upper()
    raise not_supported(f"Glue column type {glue_type!r} in the local Athena stand-in")


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------------ partitions
_JAVA_DATE = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_UNITS = {"YEARS": 365 * 24, "MONTHS": 31 * 24, "WEEKS": 7 * 24, "DAYS": 24, "HOURS": 1, "MINUTES": 1 / 60}


def _strptime_format(java: str) -> str:
    return re.sub("|".join(_JAVA_DATE), lambda m: _JAVA_DATE[m.group(0)], java)


def _projected_date(text: str, fmt: str, now: datetime) -> datetime:
    match = re.fullmatch(r"NOW\s*(?:([+-])\s*(\d+)\s*(\w+?)S?)?", text.strip(), re.IGNORECASE)
    if match:
        if not match.group(1):
            return now
        hours = int(match.group(2)) * _UNITS[match.group(3).upper() + "S"]
        return now + timedelta(hours=hours) * (1 if match.group(1) == "+" else -1)
    return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC)


def projection_allows(params: dict[str, str], column: str, value: str, now: datetime) -> bool:
    """Whether partition projection would produce ``value`` for ``column`` (out of range: no data)."""
    kind = params.get(f"projection.{column}.type", "").lower()
    if kind == "date":
        fmt = _strptime_format(params.get(f"projection.{column}.format", "yyyy-MM-dd"))
        try:
            moment = datetime.strptime(value, fmt).replace(tzinfo=UTC)
            start, end = params[f"projection.{column}.range"].split(",")
            return _projected_date(start, fmt, now) <= moment <= _projected_date(end, fmt, now)
        except (ValueError, KeyError):
            return False
    if kind == "enum":
        return value in [v.strip() for v in params.get(f"projection.{column}.values", "").split(",")]
    if kind == "integer":
        try:
            low, high = (int(v) for v in params[f"projection.{column}.range"].split(","))
            return low <= int(value) <= high
        except (ValueError, KeyError):
            return False
    return True  # injected: whatever the query names


def _template_regex(template_key: str, columns: list[str]) -> re.Pattern[str]:
    pattern = ""
    for piece in re.split(r"(\$\{[^}]+\})", template_key):
        name = piece[2:-1] if piece.startswith("${") else None
        pattern += f"(?P<p{columns.index(name)}>[^/]*)" if name in columns else re.escape(piece)
    return re.compile(pattern)


def partition_files(
    table: dict, catalog: Catalog, store: ObjectStore, wanted: dict[str, set[str] | None], now: datetime
) -> list[tuple[dict[str, str], list[tuple[str, str]]]]:
    """[(partition values, [(bucket, key) of the files under it])] for the partitions the query reads."""
    descriptor = table["StorageDescriptor"]
    keys = [k["Name"].lower() for k in table.get("PartitionKeys", [])]
    params = {k.lower(): v for k, v in (table.get("Parameters") or {}).items()}

    def selected(values: dict[str, str]) -> bool:
        return all(wanted.get(k) is None or values[k] in wanted[k] for k in keys)  # type: ignore[operator]

    if not keys:
        bucket, prefix = s3_location(descriptor["Location"])
        return [({}, [(bucket, k) for k in store.list(bucket, prefix) if _is_data_key(k)])]

    if params.get("projection.enabled", "").lower() != "true":
        result = []
        for partition in catalog.get_partitions(table["DatabaseName"], table["Name"]):
            values = dict(zip(keys, partition["Values"], strict=True))
            if selected(values):
                bucket, prefix = s3_location(partition["StorageDescriptor"]["Location"])
                result.append((values, [(bucket, k) for k in store.list(bucket, prefix) if _is_data_key(k)]))
        return result

    location = descriptor["Location"].rstrip("/") + "/"
    template = (
        params.get("storage.location.template") or location + "/".join(f"{k}=${{{k}}}" for k in keys) + "/"
    )
    bucket, key_template = s3_location(template)
    static_prefix = key_template.split("${", 1)[0]
    regex = _template_regex(key_template, keys)
    found: dict[tuple[str, ...], list[tuple[str, str]]] = {}
    for key in store.list(bucket, static_prefix):
        match = regex.match(key)
        if not match or not _is_data_key(key[match.end() :] or "/"):
            continue
        values = tuple(unquote(match.group(f"p{i}")) for i in range(len(keys)))
        found.setdefault(values, []).append((bucket, key))
    result = []
    for values, files in sorted(found.items()):
        named = dict(zip(keys, values, strict=True))
        if selected(named) and all(projection_allows(params, k, named[k], now) for k in keys):
            result.append((named, files))
    return result


def _is_data_key(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return bool(name) and not name.startswith(("_", "."))


# ------------------------------------------------------------------------------------------ serdes
def _decompress(key: str, body: bytes) -> bytes:
    if key.endswith(".gz"):
        return gzip.decompress(body)
    if key.endswith(".bz2"):
        return bz2.decompress(body)
    return body


def _read_delimited(
    text: bytes, *, delimiter: str, quote: str | None, escape: str | None, skip: int
) -> pa.Table:
    """Every field as text, named c0..cN positionally; N is the first row's width."""
    first = next((line for line in text.decode("utf-8", "replace").splitlines()[skip:] if line), None)
    if first is None:
        return pa.table({})
    if quote:
        escapechar = escape if escape != quote else None  # quote as escape = a doubled quote
        width = len(next(csv.reader([first], delimiter=delimiter, quotechar=quote, escapechar=escapechar)))
    else:
        width = first.count(delimiter) + 1
    names = [f"c{i}" for i in range(width)]
    return pacsv.read_csv(
        io.BytesIO(text),
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, use_threads=False),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            quote_char=quote or False,
            double_quote=bool(quote) and escape in (None, quote),
            escape_char=escape if escape and escape != quote else False,
            invalid_row_handler=lambda _row: "skip",
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _serde_reader(table: dict) -> Callable[[str, bytes, list[str]], pa.Table]:
    """(key, body, glue column names) -> a table with exactly those columns, for the table's SerDe."""
    serde = table["StorageDescriptor"].get("SerdeInfo") or {}
    library = serde.get("SerializationLibrary", "")
    sparams = serde.get("Parameters") or {}
    skip = int((table.get("Parameters") or {}).get("skip.header.line.count", "0"))

    def positional(source: pa.Table, names: list[str]) -> pa.Table:
        columns = source.columns
        return pa.table(
            {n: columns[i] if i < len(columns) else pa.nulls(source.num_rows) for i, n in enumerate(names)}
        )

    def by_name(source: pa.Table, names: list[str]) -> pa.Table:
        lower = {c.lower(): i for i, c in enumerate(source.column_names)}
        return pa.table(
            {n: source.column(lower[n]) if n in lower else pa.nulls(source.num_rows) for n in names}
        )

    if library.endswith("OpenCSVSerde"):
        # opencsv's defaults: ',' separator, '"' quote, and '"' as escape (a doubled quote).
        options = {
            "delimiter": sparams.get("separatorChar", ","),
            "quote": sparams.get("quoteChar", '"'),
            "escape": sparams.get("escapeChar", '"'),
        }
        return lambda key, body, names: positional(
            _read_delimited(_decompress(key, body), skip=skip, **options), names
        )
    if library.endswith("LazySimpleSerDe"):
        delimiter = sparams.get("field.delim", sparams.get("serialization.format", "\x01"))
        null_format = sparams.get("serialization.null.format", "\\N")

        def lazy(key: str, body: bytes, names: list[str]) -> pa.Table:
            raw = _read_delimited(
                _decompress(key, body), delimiter=delimiter, quote=None, escape=None, skip=skip
            )
            nulled = {
                n: pc.if_else(pc.equal(c, null_format), None, c)
                for n, c in zip(raw.column_names, raw.columns, strict=True)
            }
            return positional(pa.table(nulled) if nulled else raw, names)

        return lazy
    if library.endswith("ParquetHiveSerDe"):
        index_access = sparams.get("parquet.column.index.access", "false").lower() == "true"
        return lambda key, body, names: (positional if index_access else by_name)(
            pq.read_table(io.BytesIO(body)), names
        )
    if library.endswith("OrcSerde"):
        # Athena reads ORC by index unless the table says orc.column.index.access=false.
        index_access = sparams.get("orc.column.index.access", "true").lower() == "true"
        return lambda key, body, names: (positional if index_access else by_name)(
            orc.ORCFile(io.BytesIO(body)).read(), names
        )
    raise not_supported(f"SerDe {library or '(none)'} in the local Athena stand-in")


# ------------------------------------------------------------------------------------------ loading
def load_table(
    con: duckdb.DuckDBPyConnection,
    view: str,
    table: dict,
    catalog: Catalog,
    store: ObjectStore,
    wanted: dict[str, set[str] | None],
    now: datetime | None = None,
) -> ScanStats:
    """Registers ``view`` in ``con`` with the table's columns (Glue types) and partition keys."""
    descriptor = table["StorageDescriptor"]
    columns = [(c["Name"].lower(), duckdb_type(c["Type"])) for c in descriptor.get("Columns", [])]
    partition_keys = [
        (k["Name"].lower(), duckdb_type(k.get("Type", "string"))) for k in table.get("PartitionKeys", [])
    ]
    names = [n for n, _ in columns]
    read = _serde_reader(table)
    symlinked = "SymlinkTextInputFormat" in (descriptor.get("InputFormat") or "")
    stats = ScanStats()
    pieces = []
    for values, files in partition_files(table, catalog, store, wanted, now or datetime.now(UTC)):
        data_files = files
        if symlinked:
            data_files = [
                s3_location(line.strip())
                for bucket, key in files
                for line in store.get(bucket, key).decode().splitlines()
                if line.strip()
            ]
        for bucket, key in data_files:
            body = store.get(bucket, key)
            stats.files += 1
            stats.bytes += len(body)
            try:
                piece = read(key, body, names)
            except (pa.ArrowInvalid, OSError, ValueError) as error:
                raise data_error(f"cannot read s3://{bucket}/{key}: {error}") from error
            for name, _ in partition_keys:
                piece = piece.append_column(name, pa.array([values[name]] * piece.num_rows, pa.string()))
            pieces.append(piece)
    if pieces:
        try:
            data = pa.concat_tables(pieces, promote_options="permissive")
        except pa.ArrowInvalid as error:
            raise data_error(f"data files of {table['Name']} disagree on column types: {error}") from error
    else:
        data = pa.table({n: pa.array([], pa.string()) for n, _ in columns + partition_keys})
    stats.rows = data.num_rows
    raw = f"{view}__raw"
    con.register(raw, data)
    projection = ", ".join(
        f"CAST({quote_identifier(n)} AS {t}) AS {quote_identifier(n)}" for n, t in columns + partition_keys
    )
    con.execute(
        f"CREATE VIEW {quote_identifier(view)} AS SELECT {projection} FROM {quote_identifier(raw)}"
    ).fetchall()
    return stats


# ------------------------------------------------------------------------------- S3 table buckets
# Athena names an S3 table bucket's tables "s3tablescatalog/<table bucket>"."<namespace>"."<table>"
# (S3 user guide, "Querying metadata tables with AWS analytics services"). Locally a table bucket is a
# folder of Iceberg tables (batchpipe.local.metadata_table).
TableBuckets = dict[str, Path]
S3_TABLES_CATALOG = "s3tablescatalog/"


def load_iceberg_table(
    con: duckdb.DuckDBPyConnection, view: str, catalog: str, namespace: str, name: str, buckets: TableBuckets
) -> ScanStats:
    """Registers ``view`` as the Iceberg table's current rows; scanned bytes are its current data
    files' sizes (an upper bound: Athena reads only the columns a query names)."""
    from ..metadata_table import MetadataTableError, read_table, table_folder

    root = (
        buckets.get(catalog.removeprefix(S3_TABLES_CATALOG))
        if catalog.startswith(S3_TABLES_CATALOG)
        else None
    )
    if root is None:
        raise catalog_not_found(catalog)
    folder = table_folder(root, namespace, name)
    try:
        table = read_table(folder)
    except MetadataTableError:
        raise table_not_found(catalog, namespace, name) from None
    con.register(view, table.rows)
    return ScanStats(files=table.files, bytes=table.bytes, rows=table.rows.num_rows)
