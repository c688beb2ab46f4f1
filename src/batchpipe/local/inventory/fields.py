"""The S3 Inventory columns, their two spellings and their types, and how CSV inventories encode keys.

CSV inventories name columns in PascalCase (manifest ``fileSchema``: ``Bucket, Key, Size, ...``);
ORC and Parquet inventories use snake_case with real types. One catalogue serves both, so the writer,
the reader and the tests cannot disagree about a column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote_plus, unquote_plus

import pyarrow as pa

from batchpipe_core import inventory_layout as layout


@dataclass(frozen=True)
class Field:
    csv_name: str
    name: str  # snake_case: ORC/Parquet column and InventoryObject attribute
    kind: str  # string | bool | int | timestamp


# The catalogue is the deployed code's (batchpipe_core.inventory_layout), in the writer's spelling.
_KINDS = {"string": "string", "boolean": "bool", "bigint": "int", "timestamp": "timestamp"}
FIELDS: tuple[Field, ...] = tuple(Field(f.csv_name, f.column, _KINDS[f.kind]) for f in layout.FIELDS)
BY_CSV_NAME = {f.csv_name: f for f in FIELDS}
BY_NAME = {f.name: f for f in FIELDS}

ALWAYS = ("Bucket", "Key")
VERSION_FIELDS = ("VersionId", "IsLatest", "IsDeleteMarker")
# The optional fields template.yaml's InventoryTable declares, in the order S3 writes them.
DEFAULT_OPTIONAL_FIELDS: tuple[str, ...] = tuple(
    layout.field_name(c) for c in layout.CURRENT_VERSION_COLUMNS if c not in layout.REQUIRED_COLUMNS
)
# Field selections real configurations have: only the required fields, a typical few, and every field.
FIELD_SELECTIONS: dict[str, tuple[str, ...]] = {
    "required": (),
    "typical": ("Size", "LastModifiedDate", "StorageClass", "ETag", "EncryptionStatus"),
    "all": tuple(f.csv_name for f in FIELDS if f.csv_name not in ALWAYS + VERSION_FIELDS),
}


def schema_fields(optional_fields: tuple[str, ...] | list[str], versions: str) -> list[Field]:
    """The inventory's columns in file order: S3 orders them by the catalogue, whatever was asked."""
    wanted = set(ALWAYS) | set(optional_fields)
    if versions == "All":
        wanted |= set(VERSION_FIELDS)
    unknown = set(optional_fields) - set(BY_CSV_NAME) - set(VERSION_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown S3 Inventory fields {sorted(unknown)}; known: {[f.csv_name for f in FIELDS]}"
        )
    return [f for f in FIELDS if f.csv_name in wanted]


_ARROW_TYPES = {"string": pa.string(), "bool": pa.bool_(), "int": pa.int64()}


def arrow_type(field: Field, fmt: str) -> pa.DataType:
    """Parquet inventories store TIMESTAMP_MILLIS (UTC-adjusted); ORC ones a plain ``timestamp``."""
    if field.kind == "timestamp":
        return pa.timestamp("ms", tz="UTC") if fmt == "Parquet" else pa.timestamp("ms")
    return _ARROW_TYPES[field.kind]


# ------------------------------------------------------------------------------------------ keys
def encode_inventory_key(key: str) -> str:
    """A key as CSV inventories write it: form encoding (space -> ``+``, UTF-8 ``%XX``), ``/`` kept.

    Public reports of real inventories and ListObjects ``encoding-type=url`` agree on ``+`` for a
    space and a literal ``/``; which other punctuation stays bare is unverified, so this follows Java's
    URLEncoder (bare: letters, digits, ``-_.*``). Decoding, which is all a reader does, is the same.
    """
    return quote_plus(key, safe="/*").replace("~", "%7E")


def decode_inventory_key(encoded: str) -> str:
    return unquote_plus(encoded)


# ------------------------------------------------------------------------------------------ text
def format_timestamp(value: datetime) -> str:
    """``2024-01-02T03:04:05.000Z``: the CSV inventory form of a date."""
    value = value.astimezone(UTC) if value.tzinfo else value
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


_TS = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?Z$")


def parse_timestamp(text: str) -> datetime:
    match = _TS.match(text)
    if not match:
        raise ValueError(f"not an S3 Inventory timestamp: {text!r}")
    return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}{match.group(3) or ''}+00:00")


def to_text(field: Field, value: object) -> str:
    """One CSV inventory cell (unquoted): empty for a missing value, as S3 writes it."""
    if value is None:
        return ""
    if field.kind == "bool":
        return "true" if value else "false"
    if field.kind == "timestamp":
        assert isinstance(value, datetime)
        return format_timestamp(value)
    if field.name == "key":
        return encode_inventory_key(str(value))
    return str(value)


def from_text(field: Field, text: str) -> object:
    """The inverse of :func:`to_text`."""
    if field.name == "key":
        return decode_inventory_key(text)
    if text == "":
        return None  # a null version's VersionId, an unset replication status, ...
    if field.kind == "bool":
        return text.lower() == "true"
    if field.kind == "int":
        return int(text)
    if field.kind == "timestamp":
        return parse_timestamp(text)
    return text
