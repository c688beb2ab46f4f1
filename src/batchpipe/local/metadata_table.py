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

import json
import re
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def write_table(
    root: Path, namespace: str, rows: pa.Table, table: str = TABLE, location: str | None = None
) -> Path:
    """Replaces ``namespace.table`` in the table bucket folder ``root`` with ``rows``; its folder.

    ``location`` is the table's location as its metadata names it: the folder's own ``file://`` URI by
    default, or, for a table laid out as one downloaded from S3 Tables, its ``s3://`` warehouse
    location (the files are still written to the folder, at the same relative paths)."""
    from pyiceberg.catalog.sql import SqlCatalog

    from .iceberg_folder import folder_io

    root.mkdir(parents=True, exist_ok=True)
    folder = table_folder(root, namespace, table)
    location = location or folder.as_uri()
    catalog = SqlCatalog(
        TABLE_BUCKET,
        uri=f"sqlite:///{root / 'catalog.db'}",
        warehouse=(root / "warehouse").as_uri(),
        **folder_io(location, folder, writable=True),
    )
    catalog.create_namespace_if_not_exists(namespace)
    identifier = (namespace, table)
    if catalog.table_exists(identifier):
        catalog.purge_table(identifier)
    created = catalog.create_table(identifier, schema=arrow_schema(), location=location)
    created.append(rows.cast(arrow_schema()))
    return folder


@dataclass(frozen=True)
class TableRead:
    """A table's current rows and the data files they came from (what Athena would scan at most)."""

    rows: pa.Table
    files: int
    bytes: int


def newest_metadata_file(folder: Path) -> Path:
    """The table's current metadata file: the highest-numbered ``metadata/<n>-<uuid>.metadata.json``."""
    metadata = folder / "metadata"
    versions = sorted(
        (int(match.group(1)), path)
        for path in (metadata.iterdir() if metadata.is_dir() else [])
        if (match := _METADATA_FILE.match(path.name))
    )
    if not versions:
        raise MetadataTableError(
            f"{folder} holds no Iceberg table (no metadata/<n>-<uuid>.metadata.json); give the table's folder, "
            "e.g. the one `batchpipe local run` writes or one downloaded as docs/FILTERS.md shows"
        )
    newest = versions[-1][1]
    if not newest.resolve().is_relative_to(folder.resolve()):
        raise MetadataTableError(f"{newest} leads outside {folder} (a symbolic link): refused")
    return newest


def table_location(metadata_file: Path) -> str:
    """The ``location`` a metadata file gives its table: an ``s3://`` (S3 Tables' warehouse location)
    or ``file://`` URI; every file of the table lies under it."""
    try:
        location = json.loads(metadata_file.read_bytes()).get("location")
    except (ValueError, AttributeError, RecursionError):
        raise MetadataTableError(
            f"{metadata_file} is not an Iceberg metadata file (JSON with a location)"
        ) from None
    parsed = urlsplit(location) if isinstance(location, str) else None
    if parsed is None or parsed.scheme not in ("s3", "file") or (parsed.scheme == "s3" and not parsed.netloc):
        raise MetadataTableError(
            f"{metadata_file}: the table's location must be an s3:// or file:// URI, not {str(location)[:200]!r}"
        )
    return location


def unreadable(where: object, exc: Exception) -> MetadataTableError:
    return MetadataTableError(
        f"{where} is not a readable Iceberg table: {type(exc).__name__}: {str(exc)[:300]}"
    )


def read_table(folder: Path, fetch: Any = None) -> TableRead:
    """The table's current rows, from its newest metadata file (no catalog needed), every file the
    metadata names read from ``folder`` at its path under the table's location (batchpipe.local.
    iceberg_folder); ``fetch(location, path)`` brings a file the folder lacks (a download)."""
    from .iceberg_folder import TableFolderError, open_table

    metadata_file = newest_metadata_file(folder)
    location = table_location(metadata_file)
    try:
        table = open_table(location, f"metadata/{metadata_file.name}", folder, fetch)
        scan = table.scan()
        tasks = list(scan.plan_files())
        rows = scan.to_arrow()
    except TableFolderError as exc:
        raise MetadataTableError(str(exc)) from None
    except MetadataTableError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or hostile file fails anywhere in pyiceberg or Avro
        raise unreadable(folder, exc) from None
    return TableRead(rows=rows, files=len(tasks), bytes=sum(task.file.file_size_in_bytes for task in tasks))


# A table in S3 Tables, as `batchpipe preview --metadata-table` takes it: s3tables://<table bucket>/
# <namespace>/<table>, the table bucket one of the caller's account and Region (aws-s3 for S3 Metadata).
TABLE_URI = re.compile(
    r"^s3tables://([a-z0-9][a-z0-9-]{1,61}[a-z0-9])/([a-z0-9_.-]{1,255})/([a-z0-9_]{1,255})$"
)


def download_table(uri: str, target: Path, *, s3tables: Any = None, s3: Any = None, sts: Any = None) -> Path:
    """Copies the current snapshot of the table ``s3tables://<table bucket>/<namespace>/<table>`` into
    ``target``, each file at its path under the table's warehouse location; ``target``.

    S3 Tables serves a table's files to GetObject and HeadObject but has no ListObjects (S3 API
    reference, "Supported Amazon S3 object-level API operations for S3 Tables"), so the files are found
    the way a reader finds them: GetTableMetadataLocation names the current metadata file, which names
    the manifest list, which names the manifests, which name the data files."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from batchpipe_core.s3uri import split_s3_uri

    from .iceberg_folder import TableFolderError, open_table

    match = TABLE_URI.match(uri)
    if not match:
        raise MetadataTableError(
            f"{uri[:200]!r} is not a table of S3 Tables: give s3tables://<table bucket>/<namespace>/<table>, "
            "e.g. s3tables://aws-s3/b_my-bucket/inventory"
        )
    table_bucket, namespace, name = match.groups()
    session = boto3.session.Session()
    region = (s3tables.meta.region_name if s3tables else None) or session.region_name
    if not region:
        raise MetadataTableError(
            "no AWS Region: set AWS_REGION (or AWS_DEFAULT_REGION) to the table's Region"
        )
    s3tables = s3tables or session.client("s3tables", region_name=region)
    s3 = s3 or session.client("s3", region_name=region)
    account = (sts or session.client("sts", region_name=region)).get_caller_identity()["Account"]
    arn = f"arn:{session.get_partition_for_region(region)}:s3tables:{region}:{account}:bucket/{table_bucket}"
    answer = s3tables.get_table_metadata_location(tableBucketARN=arn, namespace=namespace, name=name)
    warehouse = answer.get("warehouseLocation", "").rstrip("/")
    metadata = answer.get("metadataLocation") or ""
    if not warehouse.startswith("s3://") or not metadata.startswith(f"{warehouse}/metadata/"):
        raise MetadataTableError(
            f"{uri}: S3 Tables names its metadata file {metadata[:200]!r}, not one under {warehouse}/metadata/"
        )

    def fetch(location: str, path: Path) -> None:
        bucket, key = split_s3_uri(location)
        s3.download_file(bucket, key, str(path))

    target.mkdir(parents=True, exist_ok=True)
    try:
        table = open_table(warehouse, metadata[len(warehouse) + 1 :], target, fetch)
        for task in table.scan().plan_files():  # the manifest list and manifests are fetched here
            for data_file in (task.file, *task.delete_files):
                table.io.local_path(data_file.file_path)
    except TableFolderError as exc:
        raise MetadataTableError(f"{uri}: {exc}") from None
    except (BotoCoreError, ClientError):
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or hostile file fails anywhere in pyiceberg or Avro
        raise unreadable(uri, exc) from None
    return target


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
