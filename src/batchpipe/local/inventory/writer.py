"""Writes an S3 Inventory delivery in the layout and formats S3 uses (S3 user guide, "Cataloging and analyzing your data with S3 Inventory").

``<dest-prefix>/<source-bucket>/<config-id>/`` holds ``<YYYY-MM-DDTHH-MMZ>/manifest.json`` (+
``manifest.checksum``, the MD5 hex of manifest.json), the data files under ``data/`` and the Hive
symlink ``hive/dt=YYYY-MM-DD-HH-MM/symlink.txt`` listing their ``s3://`` URIs. CSV is gzip, no
header, every value quoted, keys URL-encoded; Parquet (snappy) and ORC (zlib) carry snake_case
typed columns and plain keys.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

from .fields import DEFAULT_OPTIONAL_FIELDS, Field, arrow_type, schema_fields, to_text
from .objects import InventoryObject, current_objects

FORMATS = ("CSV", "Parquet", "ORC")
_EXTENSIONS = {"CSV": "csv.gz", "Parquet": "parquet", "ORC": "orc"}


@dataclass
class InventoryDelivery:
    """What one delivery wrote. ``prefix`` is the config-id folder (template's InventoryPrefix)."""

    bucket: str
    prefix: str
    source_bucket: str
    fmt: str
    versions: str
    delivery: str  # YYYY-MM-DDTHH-MMZ
    dt: str  # YYYY-MM-DD-HH-MM, the Hive partition
    manifest: dict
    files: dict[str, bytes] = field(repr=False)  # key -> body, everything written
    rows: int = 0

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}/{self.delivery}/manifest.json"

    @property
    def symlink_key(self) -> str:
        return f"{self.prefix}/hive/dt={self.dt}/symlink.txt"

    @property
    def data_keys(self) -> list[str]:
        return [f["key"] for f in self.manifest["files"]]


def config_prefix(dest_prefix: str, source_bucket: str, config_id: str) -> str:
    return "/".join(p for p in (dest_prefix.strip("/"), source_bucket, config_id) if p)


def delivery_names(delivery_time: datetime) -> tuple[str, str]:
    """(manifest folder ``2024-01-02T03-04Z``, Hive partition ``2024-01-02-03-04``)."""
    t = delivery_time.astimezone(UTC) if delivery_time.tzinfo else delivery_time
    return t.strftime("%Y-%m-%dT%H-%MZ"), t.strftime("%Y-%m-%d-%H-%M")


def file_schema(fields: Sequence[Field], fmt: str) -> str:
    """manifest.json ``fileSchema`` as S3 writes it for each format."""
    if fmt == "CSV":
        return ", ".join(f.csv_name for f in fields)
    if fmt == "ORC":
        orc_types = {"string": "string", "bool": "boolean", "int": "bigint", "timestamp": "timestamp"}
        return "struct<" + ",".join(f"{f.name}:{orc_types[f.kind]}" for f in fields) + ">"
    parquet_types = {
        "string": "binary {} (UTF8)",
        "bool": "boolean {}",
        "int": "int64 {}",
        "timestamp": "int64 {} (TIMESTAMP_MILLIS)",
    }
    columns = " ".join(
        f"{'required' if f.name in ('bucket', 'key') else 'optional'} {parquet_types[f.kind].format(f.name)};"
        for f in fields
    )
    return f"message s3.inventory {{ {columns} }}"


def render_csv(objects: Iterable[InventoryObject], fields: Sequence[Field]) -> bytes:
    """The gzipped CSV; rows are compressed 10,000 at a time, so only the compressed file is held."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        lines: list[str] = []
        for obj in objects:
            cells = (_cell(f, obj) for f in fields)
            lines.append(",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\n")
            if len(lines) == 10_000:
                gz.write("".join(lines).encode("utf-8"))
                lines.clear()
        gz.write("".join(lines).encode("utf-8"))
    return buffer.getvalue()


def _cell(f: Field, obj: InventoryObject) -> str:
    value = getattr(obj, f.name)
    if f.name == "version_id" and value is None:
        return ""  # the null version
    return to_text(f, value)


def arrow_table(objects: Sequence[InventoryObject], fields: Sequence[Field], fmt: str) -> pa.Table:
    columns = {}
    for f in fields:
        values: list[Any] = [getattr(o, f.name) for o in objects]
        if f.name == "version_id":
            values = ["" if v is None else v for v in values]  # null version: empty, as in CSV
        columns[f.name] = pa.array(values, type=arrow_type(f, fmt))
    schema = pa.schema(
        [pa.field(f.name, arrow_type(f, fmt), nullable=f.name not in ("bucket", "key")) for f in fields]
    )
    return pa.Table.from_pydict(columns, schema=schema)


def render_columnar(objects: Sequence[InventoryObject], fields: Sequence[Field], fmt: str) -> bytes:
    table = arrow_table(objects, fields, fmt)
    buffer = io.BytesIO()
    if fmt == "Parquet":
        pq.write_table(table, buffer, compression="snappy")
    else:
        orc.write_table(table, buffer, compression="zlib")
    return buffer.getvalue()


def render_inventory(
    *,
    source_bucket: str,
    dest_bucket: str,
    dest_prefix: str,
    config_id: str,
    objects: Sequence[InventoryObject],
    fmt: str = "CSV",
    versions: str = "Current",
    delivery_time: datetime,
    fields: Sequence[str] = DEFAULT_OPTIONAL_FIELDS,
    rows_per_file: int = 250_000,
) -> InventoryDelivery:
    """Every object of one delivery, in memory (keys in the destination bucket -> bodies)."""
    if fmt not in FORMATS:
        raise ValueError(f"inventory format must be one of {FORMATS}, not {fmt!r}")
    if versions not in ("Current", "All"):
        raise ValueError(f"versions must be 'Current' or 'All', not {versions!r}")
    columns = schema_fields(tuple(fields), versions)
    rows = list(objects) if versions == "All" else current_objects(list(objects))
    prefix = config_prefix(dest_prefix, source_bucket, config_id)
    delivery, dt = delivery_names(delivery_time)

    files: dict[str, bytes] = {}
    entries = []
    for index, start in enumerate(range(0, max(len(rows), 1), rows_per_file)):
        chunk = rows[start : start + rows_per_file]
        body = render_csv(chunk, columns) if fmt == "CSV" else render_columnar(chunk, columns, fmt)
        name = uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{dest_bucket}/{prefix}/{delivery}/{index}")
        key = f"{prefix}/data/{name}.{_EXTENSIONS[fmt]}"
        files[key] = body
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        entries.append({"key": key, "size": len(body), "MD5checksum": md5})

    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{dest_bucket}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(delivery_time.timestamp() * 1000)),
        "fileFormat": fmt,
        "fileSchema": file_schema(columns, fmt),
        "files": entries,
    }
    manifest_body = json.dumps(manifest, indent=4).encode()
    files[f"{prefix}/{delivery}/manifest.json"] = manifest_body
    files[f"{prefix}/{delivery}/manifest.checksum"] = (
        hashlib.md5(manifest_body, usedforsecurity=False).hexdigest().encode()
    )
    symlink = "".join(f"s3://{dest_bucket}/{e['key']}\n" for e in entries)
    files[f"{prefix}/hive/dt={dt}/symlink.txt"] = symlink.encode()
    return InventoryDelivery(
        bucket=dest_bucket,
        prefix=prefix,
        source_bucket=source_bucket,
        fmt=fmt,
        versions=versions,
        delivery=delivery,
        dt=dt,
        manifest=manifest,
        files=files,
        rows=len(rows),
    )


def write_inventory(s3_client: Any, **kwargs: Any) -> InventoryDelivery:
    """Renders a delivery (see :func:`render_inventory` for the arguments) into ``dest_bucket``.

    The manifest is written last, as S3 does: a delivery is complete once its manifest.json exists.
    """
    delivery = render_inventory(**kwargs)
    manifest_keys = {delivery.manifest_key, delivery.manifest_key.replace(".json", ".checksum")}
    for key in sorted(delivery.files, key=lambda k: k in manifest_keys):
        s3_client.put_object(Bucket=delivery.bucket, Key=key, Body=delivery.files[key])
    return delivery


def write_inventory_dir(directory: Path | str, **kwargs: Any) -> InventoryDelivery:
    """Writes a delivery to disk as ``aws s3 sync`` of the config-id folder would leave it."""
    delivery = render_inventory(**kwargs)
    root = Path(directory)
    for key, body in delivery.files.items():
        path = root / key[len(delivery.prefix) + 1 :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    return delivery
