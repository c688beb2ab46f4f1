"""A bucket's S3 Metadata live inventory table on the embedded AWS: a real Apache Iceberg table.

S3 keeps a bucket's live inventory table in the AWS managed table bucket ``aws-s3`` (S3 user guide,
"Creating metadata table configurations"). Locally the table bucket is a folder: each table is
written by pyiceberg through a SQL catalog on SQLite (``<root>/catalog.db``) at
``<root>/<namespace>/<table>/`` (Iceberg's own ``metadata/`` and ``data/``), and read back by the
local Athena from its newest metadata file, so a table folder can also be read with no catalog at
all (``batchpipe preview --metadata-table``).

``backfill`` fills the table from the emulated bucket the way S3's backfill does ("Amazon S3 scans
your general purpose bucket to retrieve the initial metadata for all objects"): one row per version
and per delete marker, with the schema page's columns. The table is a snapshot: S3 reflects later
changes "typically within one hour", and the embedded AWS reflects none until ``backfill`` runs
again, the least helpful of the answers that documentation allows (docs/LOCAL.md).
"""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path
from typing import Any

import pyarrow as pa

from batchpipe_core.metadata_table import COLUMN_TYPES, TABLE, TABLE_BUCKET, default_namespace

_METADATA_FILE = re.compile(r"^(\d+)-.*\.metadata\.json$")
# How S3 reports server-side encryption (x-amz-server-side-encryption) -> the table's encryption_status.
_ENCRYPTION = {"AES256": "SSE-S3", "aws:kms": "SSE-KMS", "aws:kms:dsse": "DSSE-KMS"}


class MetadataTableError(ValueError):
    """A folder that holds no Iceberg table (no metadata/<n>-<id>.metadata.json)."""


def arrow_schema() -> pa.Schema:
    """The live inventory table's columns as Arrow types (Iceberg: string, boolean, long, timestamp, map)."""
    kinds = {
        "string": pa.string(),
        "boolean": pa.bool_(),
        "bigint": pa.int64(),
        "timestamp": pa.timestamp("us"),
        "map<string,string>": pa.map_(pa.string(), pa.string()),
    }
    required = {"bucket", "key", "sequence_number"}
    return pa.schema(
        [pa.field(name, kinds[kind], nullable=name not in required) for name, kind in COLUMN_TYPES]
    )


def table_folder(root: Path, namespace: str, table: str = TABLE) -> Path:
    return root / namespace / table


def write_table(root: Path, namespace: str, rows: pa.Table, table: str = TABLE) -> Path:
    """Replaces ``namespace.table`` in the table bucket folder ``root`` with ``rows``; its folder."""
    from pyiceberg.catalog.sql import SqlCatalog

    root.mkdir(parents=True, exist_ok=True)
    catalog = SqlCatalog(
        TABLE_BUCKET, uri=f"sqlite:///{root / 'catalog.db'}", warehouse=(root / "warehouse").as_uri()
    )
    catalog.create_namespace_if_not_exists(namespace)
    identifier = (namespace, table)
    if catalog.table_exists(identifier):
        catalog.purge_table(identifier)
    folder = table_folder(root, namespace, table)
    created = catalog.create_table(identifier, schema=arrow_schema(), location=folder.as_uri())
    created.append(rows.cast(arrow_schema()))
    return folder


def read_table(folder: Path) -> pa.Table:
    """The table's current rows, from its newest metadata file (no catalog needed)."""
    from pyiceberg.table import StaticTable

    metadata = folder / "metadata"
    versions = sorted(
        (int(match.group(1)), path)
        for path in (metadata.iterdir() if metadata.is_dir() else [])
        if (match := _METADATA_FILE.match(path.name))
    )
    if not versions:
        raise MetadataTableError(
            f"{folder} holds no Iceberg table (no metadata/<n>-<uuid>.metadata.json); give the table's folder, "
            "e.g. the one `batchpipe local metadata-table` writes"
        )
    return StaticTable.from_metadata(versions[-1][1].as_uri()).scan().to_arrow()


def backfill(s3: Any, bucket: str, root: Path, namespace: str | None = None) -> Path:
    """Writes the bucket's live inventory table from what the emulated bucket holds now; its folder."""
    return write_table(
        root, namespace or default_namespace(bucket), pa.Table.from_pylist(scan(s3, bucket), arrow_schema())
    )


def scan(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """One row per object version and delete marker, each key's rows numbered oldest to newest."""
    entries: dict[str, list[tuple[bool, dict]]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            entries.setdefault(version["Key"], []).append((False, version))
        for marker in page.get("DeleteMarkers", []):
            entries.setdefault(marker["Key"], []).append((True, marker))
    # A versioning-enabled or -suspended bucket's null version is named "null" (S3 user guide, "Working
    # with objects in a versioning-suspended bucket"); an unversioned bucket's objects by their key alone.
    versioned = bool(s3.get_bucket_versioning(Bucket=bucket).get("Status"))
    rows = []
    sequence = 0
    for key in sorted(entries):
        # Oldest first, the current one (IsLatest) last: a larger sequence_number is a newer row.
        ordered = sorted(entries[key], key=lambda e: (bool(e[1].get("IsLatest")), e[1]["LastModified"]))
        for is_marker, entry in ordered:
            sequence += 1
            rows.append(_row(s3, bucket, key, entry, is_marker, sequence, versioned))
    return rows


def _row(
    s3: Any, bucket: str, key: str, entry: dict, is_marker: bool, sequence: int, versioned: bool
) -> dict[str, Any]:
    version = entry.get("VersionId")
    row: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "sequence_number": f"{sequence:040d}",
        "version_id": None if version in (None, "null") else version,
        "is_delete_marker": is_marker,
        "last_modified_date": entry["LastModified"].astimezone(UTC).replace(tzinfo=None),
    }
    if is_marker:
        return row | {"size": 0}
    # In a versioned bucket a bare key would not reach the null version once a delete marker is newer.
    which = {"VersionId": version} if versioned and version else {}
    head = s3.head_object(Bucket=bucket, Key=key, **which)
    tags = _tag_set(s3, bucket, key, which.get("VersionId"))
    etag = entry.get("ETag", "").strip('"')
    encryption = _ENCRYPTION.get(head.get("ServerSideEncryption", ""))
    if head.get("SSECustomerAlgorithm"):
        encryption = "SSE-C"
    return row | {
        "size": entry.get("Size", 0),
        "e_tag": etag,
        "storage_class": entry.get("StorageClass") or "STANDARD",
        "is_multipart": "-" in etag,
        "encryption_status": encryption,
        "is_bucket_key_enabled": bool(head.get("BucketKeyEnabled", False)),
        "kms_key_arn": head.get("SSEKMSKeyId") if encryption in ("SSE-KMS", "DSSE-KMS") else None,
        "checksum_algorithm": (entry.get("ChecksumAlgorithm") or [None])[0],
        "object_tags": [(t["Key"], t["Value"]) for t in tags],
        "user_metadata": list((head.get("Metadata") or {}).items()),
    }


def _tag_set(s3: Any, bucket: str, key: str, version: str | None) -> list[dict[str, str]]:
    """The version's tags. moto refuses GetObjectTagging on an archived (GLACIER, DEEP_ARCHIVE) object,
    which S3 answers (S3 API reference, GetObjectTagging, lists no such error): its tags are then read
    from moto's own store, as S3's backfill reads them."""
    which = {"VersionId": version} if version else {}
    try:
        return s3.get_object_tagging(Bucket=bucket, Key=key, **which)["TagSet"]
    except s3.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") != "InvalidObjectState":
            raise
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    return backend.get_object_tagging(backend.get_object(bucket, key, version_id=version))["Tags"]
