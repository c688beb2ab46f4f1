"""Where S3 Inventory deliveries live, which one a spec means, and whether its schema fits the table.

S3 writes a delivery as ``<prefix>/<YYYY-MM-DDTHH-MMZ>/manifest.json`` (written once the data files
are complete), data under ``<prefix>/data/`` and the Hive symlink Athena reads under
``<prefix>/hive/dt=YYYY-MM-DD-HH-MM/symlink.txt``. Only the timestamp folders are listed (with a
delimiter), never the data, so resolving ``latest`` costs a few requests whatever the bucket's size.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from batchpipe_core.errors import BatchPipeError, InventoryNotFoundError
from batchpipe_core.listing import object_pages


@dataclass(frozen=True)
class InventoryField:
    """One S3 Inventory field: its CSV fileSchema name, its column name (ORC/Parquet, the tables) and kind."""

    csv_name: str
    column: str
    kind: str  # string | boolean | bigint | timestamp: the value's type in ORC and Parquet deliveries


# Every field S3 Inventory can write, in the order S3 writes them (S3 user guide, "Amazon S3 Inventory
# list": a delivery holds Bucket, Key, the version fields of an "all versions" inventory, then the
# optional fields the configuration selected; manifest.json's fileSchema lists exactly those).
FIELDS: tuple[InventoryField, ...] = (
    InventoryField("Bucket", "bucket", "string"),
    InventoryField("Key", "key", "string"),
    InventoryField("VersionId", "version_id", "string"),
    InventoryField("IsLatest", "is_latest", "boolean"),
    InventoryField("IsDeleteMarker", "is_delete_marker", "boolean"),
    InventoryField("Size", "size", "bigint"),
    InventoryField("LastModifiedDate", "last_modified_date", "timestamp"),
    InventoryField("ETag", "e_tag", "string"),
    InventoryField("StorageClass", "storage_class", "string"),
    InventoryField("IsMultipartUploaded", "is_multipart_uploaded", "boolean"),
    InventoryField("ReplicationStatus", "replication_status", "string"),
    InventoryField("EncryptionStatus", "encryption_status", "string"),
    InventoryField("ObjectLockRetainUntilDate", "object_lock_retain_until_date", "timestamp"),
    InventoryField("ObjectLockMode", "object_lock_mode", "string"),
    InventoryField("ObjectLockLegalHoldStatus", "object_lock_legal_hold_status", "string"),
    InventoryField("IntelligentTieringAccessTier", "intelligent_tiering_access_tier", "string"),
    InventoryField("BucketKeyStatus", "bucket_key_status", "string"),
    InventoryField("ChecksumAlgorithm", "checksum_algorithm", "string"),
    InventoryField("ObjectAccessControlList", "object_access_control_list", "string"),
    InventoryField("ObjectOwner", "object_owner", "string"),
    InventoryField("LifecycleExpirationDate", "lifecycle_expiration_date", "timestamp"),
)
FIELD_OF_COLUMN: dict[str, InventoryField] = {f.column: f for f in FIELDS}
REQUIRED_COLUMNS: tuple[str, ...] = ("bucket", "key")
VERSION_COLUMNS: tuple[str, ...] = ("version_id", "is_latest", "is_delete_marker")
# Every column an S3 Inventory table can have, in S3's order.
INVENTORY_COLUMNS: tuple[str, ...] = tuple(f.column for f in FIELDS)
# The optional fields template.yaml's InventoryTable declares (the columns a delivery with every field
# of 2023 has); a delivery may hold any subset of them, plus fields S3 added since.
CURRENT_VERSION_COLUMNS: tuple[str, ...] = tuple(
    c
    for c in INVENTORY_COLUMNS[: INVENTORY_COLUMNS.index("checksum_algorithm") + 1]
    if c not in VERSION_COLUMNS
)
ALL_VERSIONS_COLUMNS: tuple[str, ...] = (
    CURRENT_VERSION_COLUMNS[:2] + VERSION_COLUMNS + CURRENT_VERSION_COLUMNS[2:]
)

# Values S3 Inventory writes in its StorageClass column (S3 user guide, "Amazon S3 Inventory list").
INVENTORY_STORAGE_CLASSES: tuple[str, ...] = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
)
INVENTORY_FORMATS = ("CSV", "Parquet", "ORC")
INVENTORY_VERSIONS = ("Current", "All")
# The spec's filter.versions: with an all-versions inventory, whether a job acts on the version the
# inventory listed ("pinned": manifest rows carry its version ID) or on each key's current version
# when the task runs ("current": manifest rows carry no version ID).
VERSIONS_PINNED = "pinned"
VERSIONS_CURRENT = "current"
VERSION_CHOICES = (VERSIONS_PINNED, VERSIONS_CURRENT)

_DELIVERY_FOLDER = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})Z$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MINUTE = re.compile(r"^(\d{4}-\d{2}-\d{2})-(\d{2})-(\d{2})$")
_PARTITION = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}-\d{2}$")

# S3 Inventory's CSV field names (fileSchema) -> the table's column names.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class InventorySchemaError(BatchPipeError):
    """The inventory delivery lacks fields the table or the filter needs (an inventory setup problem)."""


def table_columns(versions: str) -> tuple[str, ...]:
    """The columns template.yaml's InventoryTable declares for this versions setting."""
    if versions not in INVENTORY_VERSIONS:
        raise ValueError(f"inventory versions must be one of {INVENTORY_VERSIONS}, not {versions!r}")
    return ALL_VERSIONS_COLUMNS if versions == "All" else CURRENT_VERSION_COLUMNS


def known_columns(versions: str) -> tuple[str, ...]:
    """Every column an inventory with this versions setting can have, whatever fields it selected."""
    if versions not in INVENTORY_VERSIONS:
        raise ValueError(f"inventory versions must be one of {INVENTORY_VERSIONS}, not {versions!r}")
    return tuple(c for c in INVENTORY_COLUMNS if versions == "All" or c not in VERSION_COLUMNS)


def field_name(column: str) -> str:
    """The name the inventory configuration uses for a column's field (``e_tag`` -> ``ETag``)."""
    known = FIELD_OF_COLUMN.get(column)
    return known.csv_name if known else column


def is_partition(value: str) -> bool:
    """True for a ``dt`` partition value, ``YYYY-MM-DD-HH-MM``."""
    return bool(_PARTITION.match(value))


def partition_of(folder: str) -> str:
    """``2024-05-01T00-00Z`` (delivery folder) -> ``2024-05-01-00-00`` (the table's ``dt``)."""
    match = _DELIVERY_FOLDER.match(folder)
    if not match:
        raise ValueError(f"not an inventory delivery folder name: {folder!r}")
    return "-".join(match.groups())


def folder_of(partition: str) -> str:
    """``2024-05-01-00-00`` -> ``2024-05-01T00-00Z``: the inverse of :func:`partition_of`."""
    match = _MINUTE.match(partition)
    if not match:
        raise ValueError(f"not a dt partition (YYYY-MM-DD-HH-MM): {partition!r}")
    day, hour, minute = match.groups()
    return f"{day}T{hour}-{minute}Z"


def column_name(field: str) -> str:
    """CSV fileSchema field -> column: ``LastModifiedDate`` -> ``last_modified_date``, ``ETag`` -> ``e_tag``."""
    return _CAMEL_BOUNDARY.sub("_", field.strip()).lower()


def schema_columns(file_schema: str) -> list[str]:
    """Column names, in order, from a manifest.json ``fileSchema`` of any of the three formats."""
    return [name for name, _ in schema_types(file_schema)]


def schema_types(file_schema: str) -> list[tuple[str, str]]:
    """(column, Glue type) pairs, in file order, from a manifest.json ``fileSchema`` of any format.

    CSV gives ``"Bucket, Key, Size, ..."`` (every value is text: all ``string``); ORC a type string
    ``struct<bucket:string,key:string,...>``; Parquet a message type
    ``message s3.inventory { required binary bucket (UTF8); optional int64 size; ... }``. The types are
    the file's own, so a table declared with them reads the file whatever type AWS documents elsewhere.
    """
    text = file_schema.strip()
    if text.lower().startswith("struct<"):
        pairs = []
        for field in _split_top_level(text[len("struct<") : text.rindex(">")]):
            name, _, kind = field.partition(":")
            pairs.append((_orc_field_name(name), _checked_type(name, kind.strip().lower(), file_schema)))
        return pairs
    if text.lower().startswith("message"):
        body = text[text.index("{") + 1 : text.rindex("}")]
        pairs = []
        for field in body.split(";"):
            match = _PARQUET_FIELD.match(field.strip())
            if match:
                physical, name, annotation = match.groups()
                pairs.append((name.lower(), _parquet_type(name, physical, annotation or "", file_schema)))
        return pairs
    return [(column_name(field), "string") for field in text.split(",") if field.strip()]


_PARQUET_FIELD = re.compile(r"^(?:required|optional)\s+(\w+)\s+(\w+)\s*(?:\((.*)\))?$", re.IGNORECASE)
_COLUMNAR_TYPES = frozenset(
    {"string", "boolean", "bigint", "int", "smallint", "tinyint", "timestamp", "double", "float", "date"}
)


def _parquet_type(name: str, physical: str, annotation: str, file_schema: str) -> str:
    physical, annotation = physical.lower(), annotation.upper()
    if physical == "binary":
        kind = "string" if annotation.startswith(("UTF8", "STRING", "ENUM")) or not annotation else ""
    elif physical == "int64":
        kind = "timestamp" if annotation.startswith("TIMESTAMP") else "bigint"
    elif physical == "int32":
        kind = "date" if annotation.startswith("DATE") else "int"
    else:
        kind = physical
    return _checked_type(name, kind, file_schema)


def _checked_type(name: str, kind: str, file_schema: str) -> str:
    if kind not in _COLUMNAR_TYPES:
        raise InventorySchemaError(
            f"The inventory's fileSchema gives column {name.strip()!r} a type this stack cannot declare "
            f"({kind or 'unknown'}); fileSchema: {file_schema[:300]}"
        )
    return kind


def _orc_field_name(field: str) -> str:
    return field.split(":", 1)[0].strip().strip("`").lower()


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``<...>`` (ORC nests types such as ``array<struct<...>>``)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part for part in parts if part.strip()]


def check_schema(columns: list[str], *, versions: str, needed: tuple[str, ...] | list[str]) -> None:
    """Raise :class:`InventorySchemaError` unless a delivery with ``columns`` has what the run needs.

    Any selection of optional fields, in any format, is read by name through a table made for the
    delivery (batchpipe_core.inventory_table). A column the query needs but the delivery lacks would
    read as NULL and silently select nothing, so it is an error naming the field to enable.
    """
    has_versions = "version_id" in columns
    if has_versions != (versions == "All"):
        setting = "all versions" if has_versions else "current versions only"
        raise InventorySchemaError(
            f"The inventory lists {setting} but the stack's InventoryVersions parameter is {versions}: "
            f"set InventoryVersions to {'All' if has_versions else 'Current'} or use a matching inventory."
        )
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise InventorySchemaError(
            f"The inventory's fileSchema lacks {', '.join(field_name(c) for c in missing)}, which every "
            f"S3 Inventory has: this is not an S3 Inventory delivery. fileSchema lists: {', '.join(columns)}"
        )
    missing = [column for column in needed if column not in columns]
    if missing:
        raise InventorySchemaError(
            f"The filter needs {', '.join(field_name(c) for c in missing)}, which this inventory delivery "
            f"does not contain: add {'it' if len(missing) == 1 else 'them'} to the inventory "
            "configuration's additional metadata fields (S3 console: Management > Inventory "
            "configurations; API: OptionalFields), wait for the next delivery, or change the filter. "
            f"The delivery has: {', '.join(field_name(c) for c in columns)}."
        )


@dataclass(frozen=True)
class Delivery:
    """One complete inventory delivery and what its manifest.json says about it."""

    folder: str  # 2024-05-01T00-00Z
    partition: str  # 2024-05-01-00-00, the table's dt
    manifest_key: str
    file_format: str
    columns: list[str]
    source_bucket: str
    types: tuple[tuple[str, str], ...] = ()  # (column, Glue type), the delivery's own
    files: int = 0
    size_bytes: int = 0


def resolve_delivery(s3: Any, *, bucket: str, prefix: str, date: str) -> Delivery:
    """The complete delivery that ``inventory.date`` names.

    ``latest``: the newest delivery whose manifest.json exists; ``YYYY-MM-DD``: the newest complete one
    of that day; ``YYYY-MM-DD-HH-MM``: exactly that one, which must be complete. A delivery still being
    written has its timestamp folder but no manifest.json yet, and is skipped.
    """
    prefix = prefix.strip("/")
    if date == "latest":
        candidates = _delivery_folders(s3, bucket, f"{prefix}/")
        wanted = "no complete inventory delivery"
    elif _DAY.match(date):
        candidates = _delivery_folders(s3, bucket, f"{prefix}/{date}T")
        wanted = f"no complete inventory delivery on {date}"
    elif _MINUTE.match(date):
        candidates = [folder_of(date)]
        wanted = f"no complete inventory delivery {folder_of(date)} (dt={date})"
    else:
        raise InventoryNotFoundError(
            f"inventory.date must be 'latest', 'YYYY-MM-DD' or 'YYYY-MM-DD-HH-MM', not {date!r}"
        )
    for folder in sorted(candidates, reverse=True):
        manifest = _read_manifest(s3, bucket, f"{prefix}/{folder}/manifest.json")
        if manifest is not None:
            types = schema_types(str(manifest.get("fileSchema", "")))
            entries = [e for e in manifest.get("files") or [] if isinstance(e, dict)]
            return Delivery(
                folder=folder,
                partition=partition_of(folder),
                manifest_key=f"{prefix}/{folder}/manifest.json",
                file_format=str(manifest.get("fileFormat", "")),
                columns=[name for name, _ in types],
                source_bucket=str(manifest.get("sourceBucket", "")),
                types=tuple(types),
                files=len(entries),
                size_bytes=sum(int(entry.get("size") or 0) for entry in entries),
            )
    raise InventoryNotFoundError(
        f"Found {wanted} under s3://{bucket}/{prefix}/: a complete delivery is a "
        f"<YYYY-MM-DDTHH-MMZ>/manifest.json folder there. Check the stack's InventoryBucket and "
        f"InventoryPrefix (up to the configuration-ID folder) and that S3 has delivered the inventory "
        f"(the first one can take up to 48 hours)."
    )


def _delivery_folders(s3: Any, bucket: str, list_prefix: str) -> list[str]:
    """Names of the timestamp folders under the listing prefix (no data files are listed)."""
    base = list_prefix[: list_prefix.rindex("/") + 1]
    folders = []
    for page in object_pages(s3, Bucket=bucket, Prefix=list_prefix, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            name = common["Prefix"][len(base) :].rstrip("/")
            if _DELIVERY_FOLDER.match(name):
                folders.append(name)
    return folders


def _read_manifest(s3: Any, bucket: str, key: str) -> dict | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def check_delivery(
    delivery: Delivery, *, inventory_format: str, versions: str, needed: tuple[str, ...] | list[str]
) -> None:
    """The delivery's format matches the stack's inventory table and it has what the run needs."""
    if delivery.file_format.lower() != inventory_format.lower():
        raise InventorySchemaError(
            f"The inventory delivery {delivery.folder} is {delivery.file_format or 'of unknown format'} but "
            f"the stack's InventoryFormat parameter is {inventory_format}: make them the same."
        )
    check_schema(delivery.columns, versions=versions, needed=needed)


# filter.replicationStatuses: what S3 Inventory writes in its ReplicationStatus column (S3 user guide,
# "Amazon S3 Inventory list": PENDING, COMPLETED, FAILED, REPLICA, empty when the object is not part of
# any replication), with NONE for that empty value, which is also the manifest generator's word for it
# (S3 API reference, JobManifestGeneratorFilter.ObjectReplicationStatuses: COMPLETED, FAILED, REPLICA, NONE).
REPLICATION_STATUSES: tuple[str, ...] = ("COMPLETED", "PENDING", "FAILED", "REPLICA", "NONE")
REPLICATION_NONE = "NONE"
