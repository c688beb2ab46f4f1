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

# The InventoryTable columns of template.yaml, in order (a test keeps the two in step). CSV tables read
# columns by position, so these must be a prefix of a CSV inventory's fileSchema.
CURRENT_VERSION_COLUMNS: tuple[str, ...] = (
    "bucket",
    "key",
    "size",
    "last_modified_date",
    "e_tag",
    "storage_class",
    "is_multipart_uploaded",
    "replication_status",
    "encryption_status",
    "object_lock_retain_until_date",
    "object_lock_mode",
    "object_lock_legal_hold_status",
    "intelligent_tiering_access_tier",
    "bucket_key_status",
    "checksum_algorithm",
)
VERSION_COLUMNS: tuple[str, ...] = ("version_id", "is_latest", "is_delete_marker")
ALL_VERSIONS_COLUMNS: tuple[str, ...] = (
    CURRENT_VERSION_COLUMNS[:2] + VERSION_COLUMNS + CURRENT_VERSION_COLUMNS[2:]
)

# Every column an S3 Inventory table can have: the table's, in S3's field order, plus optional fields
# this stack's table does not declare (a `where` naming one gets a clear error, not Athena's).
UNDECLARED_COLUMNS: tuple[str, ...] = (
    "object_access_control_list",
    "object_owner",
    "lifecycle_expiration_date",
)
INVENTORY_COLUMNS: tuple[str, ...] = ALL_VERSIONS_COLUMNS + UNDECLARED_COLUMNS
INVENTORY_FORMATS = ("CSV", "Parquet", "ORC")
INVENTORY_VERSIONS = ("Current", "All")

_DELIVERY_FOLDER = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})-(\d{2})Z$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MINUTE = re.compile(r"^(\d{4}-\d{2}-\d{2})-(\d{2})-(\d{2})$")
_PARTITION = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}-\d{2}$")

# S3 Inventory's CSV field names (fileSchema) -> the table's column names.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class InventorySchemaError(BatchPipeError):
    """The inventory delivery lacks fields the table or the filter needs (an inventory setup problem)."""


def table_columns(versions: str) -> tuple[str, ...]:
    if versions not in INVENTORY_VERSIONS:
        raise ValueError(f"inventory versions must be one of {INVENTORY_VERSIONS}, not {versions!r}")
    return ALL_VERSIONS_COLUMNS if versions == "All" else CURRENT_VERSION_COLUMNS


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
    """Column names, in order, from a manifest.json ``fileSchema`` of any of the three formats.

    CSV gives ``"Bucket, Key, Size, ..."``; ORC a type string ``struct<bucket:string,key:string,...>``;
    Parquet a message type ``message s3.inventory { required binary bucket (STRING); ... }``.
    """
    text = file_schema.strip()
    if text.lower().startswith("struct<"):
        return [_orc_field_name(field) for field in _split_top_level(text[len("struct<") : -1])]
    if text.lower().startswith("message"):
        body = text[text.index("{") + 1 : text.rindex("}")]
        names = []
        for field in body.split(";"):
            words = field.split()
            if len(words) >= 3 and words[0] in ("required", "optional", "repeated"):
                names.append(words[2].split("(")[0].lower())
        return names
    return [column_name(field) for field in text.split(",") if field.strip()]


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


# CSV field names as S3 Inventory's configuration calls them, for error messages that say what to enable.
_FIELD_OF_COLUMN = {
    "size": "Size",
    "last_modified_date": "LastModifiedDate",
    "e_tag": "ETag",
    "storage_class": "StorageClass",
    "is_multipart_uploaded": "IsMultipartUploaded",
    "replication_status": "ReplicationStatus",
    "encryption_status": "EncryptionStatus",
    "object_lock_retain_until_date": "ObjectLockRetainUntilDate",
    "object_lock_mode": "ObjectLockMode",
    "object_lock_legal_hold_status": "ObjectLockLegalHoldStatus",
    "intelligent_tiering_access_tier": "IntelligentTieringAccessTier",
    "bucket_key_status": "BucketKeyStatus",
    "checksum_algorithm": "ChecksumAlgorithm",
}


def check_schema(
    columns: list[str], *, inventory_format: str, versions: str, needed: tuple[str, ...] | list[str]
) -> None:
    """Raise :class:`InventorySchemaError` unless a delivery with ``columns`` can be read as the table.

    CSV columns are read by position, so the table's columns must be a prefix of the file's (extra
    trailing fields such as ObjectOwner are fine). ORC and Parquet are read by name: a column the query
    needs but the files lack would read as NULL and silently filter everything out, so it is an error.
    """
    expected = table_columns(versions)
    has_versions = "version_id" in columns
    if has_versions != (versions == "All"):
        setting = "all versions" if has_versions else "current versions only"
        raise InventorySchemaError(
            f"The inventory lists {setting} but the stack's InventoryVersions parameter is {versions}: "
            f"set InventoryVersions to {'All' if has_versions else 'Current'} or use a matching inventory."
        )
    if inventory_format == "CSV":
        if tuple(columns[: len(expected)]) != expected:
            missing = [column for column in expected if column not in columns]
            hint = (
                f"enable these optional fields in the inventory configuration: "
                f"{', '.join(_FIELD_OF_COLUMN.get(c, c) for c in missing)}"
                if missing
                else "the field order differs from S3 Inventory's own"
            )
            raise InventorySchemaError(
                "The CSV inventory's fields do not match the table (CSV is read by position): "
                f"{hint}. fileSchema lists: {', '.join(columns)}"
            )
        return
    missing = [column for column in needed if column not in columns]
    if missing:
        raise InventorySchemaError(
            f"The {inventory_format} inventory lacks columns this query needs: enable these optional "
            f"fields in the inventory configuration: {', '.join(_FIELD_OF_COLUMN.get(c, c) for c in missing)}"
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
            return Delivery(
                folder=folder,
                partition=partition_of(folder),
                manifest_key=f"{prefix}/{folder}/manifest.json",
                file_format=str(manifest.get("fileFormat", "")),
                columns=schema_columns(str(manifest.get("fileSchema", ""))),
                source_bucket=str(manifest.get("sourceBucket", "")),
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
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=list_prefix, Delimiter="/"):
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
    """The delivery's format and schema match the stack's inventory table, or a clear error says why."""
    if delivery.file_format.lower() != inventory_format.lower():
        raise InventorySchemaError(
            f"The inventory delivery {delivery.folder} is {delivery.file_format or 'of unknown format'} but "
            f"the stack's InventoryFormat parameter is {inventory_format}: make them the same."
        )
    check_schema(delivery.columns, inventory_format=inventory_format, versions=versions, needed=needed)
