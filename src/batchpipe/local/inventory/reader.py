"""Loads a real S3 Inventory from disk (``local run --inventory DIR``, docs/LOCAL.md).

DIR is the config-id folder as S3 writes it: ``DIR/<YYYY-MM-DDTHH-MMZ>/manifest.json`` (+ checksum),
``DIR/data/...`` and ``DIR/hive/dt=.../symlink.txt``. The newest delivery's manifest names the source
bucket, the format, the column order and the data files. The folder can then be uploaded into the
emulated inventory bucket under another prefix (manifest keys and symlink URIs rewritten to point at
the copies) and its objects created in the emulated source bucket.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq

from batchpipe.inputs import UsageError, bucket_name
from batchpipe_core import inventory_layout as layout
from batchpipe_core.s3uri import split_s3_uri

from .fields import BY_NAME, FIELDS, Field, from_text
from .objects import InventoryObject
from .seed import seed_bucket

_DELIVERY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z$")


class InventoryDirError(ValueError):
    """The folder is not an S3 Inventory config-id folder, or its files do not match its manifest."""


@dataclass
class LocalInventory:
    directory: Path
    delivery: str  # newest YYYY-MM-DDTHH-MMZ folder
    manifest: dict
    data_files: list[Path]  # the manifest's files, in order, found on disk

    @property
    def source_bucket(self) -> str:
        return str(self.manifest["sourceBucket"])

    @property
    def file_format(self) -> str:
        return str(self.manifest["fileFormat"])

    @property
    def versions(self) -> str:
        return "All" if "version_id" in self.columns else "Current"

    @property
    def dt(self) -> str:
        return self.delivery[:10] + "-" + self.delivery[11:16]

    @property
    def columns(self) -> list[str]:
        """snake_case column names in file order, whatever the format spells them."""
        return [f.name for f in schema_of(self.manifest)]

    @property
    def original_prefix(self) -> str:
        """The config-id folder's key in the bucket S3 delivered to (from the manifest's file keys)."""
        key = str(self.manifest["files"][0]["key"]) if self.manifest["files"] else ""
        return key.rsplit("/data/", 1)[0] if "/data/" in key else ""

    @property
    def config_id(self) -> str:
        """The inventory configuration's ID: the folder S3 named after it."""
        return self.original_prefix.rsplit("/", 1)[-1] or self.directory.resolve().name

    def objects(self) -> Iterator[InventoryObject]:
        """Every row of the newest delivery; keys decoded, null versions as ``version_id=None``."""
        for _, row in self.located_objects():
            yield row

    def located_objects(self) -> Iterator[tuple[str, InventoryObject]]:
        """Every row with where it is ("<manifest file key> line N" for CSV, "... row N" within the
        file for Parquet/ORC), one file in memory at a time. A row of another bucket is an
        InventoryDirError there: a delivery mixing buckets is not what S3 writes, and dropping the row
        would silently shrink the selection."""
        fields = schema_of(self.manifest)
        for entry, path in zip(self.manifest["files"], self.data_files, strict=True):
            name = str(entry["key"])
            for where, row in read_data_file(path.read_bytes(), self.file_format, fields, name=name):
                if row.bucket != self.source_bucket:
                    raise InventoryDirError(
                        f"{where}: bucket {str(row.bucket)[:70]!r} is not the manifest's sourceBucket "
                        f"{self.source_bucket!r}"
                    )
                yield where, row

    def upload(self, s3_client: Any, bucket: str, prefix: str) -> list[str]:
        """Copies the whole folder to ``s3://bucket/prefix/`` and returns the keys written.

        Manifests and symlinks are rewritten to name the copies; a folder without ``hive/`` gets the
        newest delivery's symlink.txt generated, since the Athena table reads through it.
        """
        prefix = prefix.strip("/")
        written = []
        for path in sorted(p for p in self.directory.rglob("*") if p.is_file()):
            relative = path.relative_to(self.directory).as_posix()
            body = path.read_bytes()
            if path.name in ("manifest.json", "manifest.checksum"):
                continue  # below, once the data they point at exists
            if path.name.startswith("."):
                continue  # S3 writes no dot-files: a folder marker or .DS_Store is not the delivery's
            if path.name == "symlink.txt" and relative.startswith("hive/"):
                body = self._rewrite_symlink(body, bucket, prefix, path)
            s3_client.put_object(Bucket=bucket, Key=f"{prefix}/{relative}", Body=body)
            written.append(f"{prefix}/{relative}")
        symlink_key = f"{prefix}/hive/dt={self.dt}/symlink.txt"
        if symlink_key not in written:
            uris = "".join(
                f"s3://{bucket}/{prefix}/{p.relative_to(self.directory).as_posix()}\n"
                for p in self.data_files
            )
            s3_client.put_object(Bucket=bucket, Key=symlink_key, Body=uris.encode())
            written.append(symlink_key)
        for manifest_path in sorted(self.directory.glob("*/manifest.json")):
            manifest = json.loads(manifest_path.read_bytes())
            manifest["destinationBucket"] = f"arn:aws:s3:::{bucket}"
            for entry in manifest.get("files", []):
                entry["key"] = self._rewrite_key(str(entry["key"]), prefix)
            body = json.dumps(manifest, indent=4).encode()
            folder = manifest_path.parent.name
            s3_client.put_object(Bucket=bucket, Key=f"{prefix}/{folder}/manifest.json", Body=body)
            checksum = hashlib.md5(body, usedforsecurity=False).hexdigest().encode()
            s3_client.put_object(Bucket=bucket, Key=f"{prefix}/{folder}/manifest.checksum", Body=checksum)
            written += [f"{prefix}/{folder}/manifest.json", f"{prefix}/{folder}/manifest.checksum"]
        return written

    def _rewrite_key(self, key: str, prefix: str) -> str:
        original = self.original_prefix
        if original and key.startswith(original + "/"):
            return prefix + key[len(original) :]
        return f"{prefix}/data/{key.rsplit('/', 1)[-1]}"

    def _rewrite_symlink(self, body: bytes, bucket: str, prefix: str, path: Path) -> bytes:
        lines = []
        for line in body.decode().splitlines():
            if line.strip():
                try:
                    _, key = split_s3_uri(line.strip())
                except ValueError:
                    raise InventoryDirError(
                        f"{path}: {line.strip()[:100]!r} is not an s3:// URI (S3 writes one per line)"
                    ) from None
                lines.append(f"s3://{bucket}/{self._rewrite_key(key, prefix)}\n")
        return "".join(lines).encode()


def schema_of(manifest: dict) -> list[Field]:
    """The manifest's ``fileSchema`` as catalogue fields, in file order (parsed as PlanQuery parses it)."""
    try:
        names = layout.schema_columns(str(manifest["fileSchema"]))
    except layout.InventorySchemaError as error:
        raise InventoryDirError(f"manifest.json: {error}") from None
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise InventoryDirError(f"manifest.json fileSchema has columns this reader does not know: {unknown}")
    return [BY_NAME[n] for n in names]


def read_data_file(
    body: bytes, fmt: str, fields: list[Field], *, name: str = "data file"
) -> Iterator[tuple[str, InventoryObject]]:
    """The rows of one data file, each with its place ("``name`` line N" for CSV, "``name`` row N" for
    Parquet/ORC); anything unreadable is an InventoryDirError naming ``name`` (and the line, for CSV),
    never a row silently dropped."""
    if fmt == "CSV":
        yield from _read_csv(body, fields, name)
        return
    try:
        table = pq.read_table(io.BytesIO(body)) if fmt == "Parquet" else orc.ORCFile(io.BytesIO(body)).read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InventoryDirError(f"{name} is not a readable {fmt} file: {exc}") from None
    for number, row in enumerate(_objects_of_table(table, fields), start=1):
        yield f"{name} row {number}", row


def _read_csv(body: bytes, fields: list[Field], name: str) -> Iterator[tuple[str, InventoryObject]]:
    try:
        text = gzip.decompress(body).decode("utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise InventoryDirError(f"{name} is not gzip-compressed UTF-8 CSV: {exc}") from None
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        for row in reader:
            if not row:
                continue  # real deliveries have been seen ending with a blank line
            if len(row) != len(fields):
                raise InventoryDirError(
                    f"{name} line {reader.line_num}: {len(row)} fields, but the manifest's fileSchema "
                    f"lists {len(fields)}"
                )
            line = reader.line_num
            yield (
                f"{name} line {line}",
                _object({f.name: _cell(f, cell, name, line) for f, cell in zip(fields, row, strict=True)}),
            )
    except csv.Error as exc:
        raise InventoryDirError(f"{name} line {reader.line_num}: {exc}") from None


def _cell(field: Field, cell: str, name: str, line: int) -> Any:
    try:
        return from_text(field, cell)
    except ValueError as exc:
        raise InventoryDirError(f"{name} line {line}: column {field.csv_name}: {exc}") from None


def _objects_of_table(table: pa.Table, fields: list[Field]) -> Iterator[InventoryObject]:
    names = {f.name for f in fields} & set(table.column_names)
    for row in table.select(sorted(names)).to_pylist():
        if row.get("version_id") == "":
            row["version_id"] = None
        for name, value in row.items():
            if isinstance(value, datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=UTC)  # ORC timestamps are UTC wall-clock
        yield _object(row)


def _object(values: dict[str, Any]) -> InventoryObject:
    """Columns the inventory lacks stay None; without version columns every row is a current version."""
    row: dict[str, Any] = {f.name: None for f in FIELDS}
    row.update(is_latest=True, is_delete_marker=False)
    row.update(values)
    return InventoryObject(**row)


def read_inventory_dir(path: Path | str) -> LocalInventory:
    directory = Path(path)
    deliveries = sorted(
        p.parent.name for p in directory.glob("*/manifest.json") if _DELIVERY.match(p.parent.name)
    )
    if not deliveries:
        raise InventoryDirError(
            f"{directory} has no <YYYY-MM-DDTHH-MMZ>/manifest.json: pass the inventory's config-id folder "
            "(the one that contains data/, hive/ and the dated manifest folders)"
        )
    delivery = deliveries[-1]
    manifest_path = directory / delivery / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise InventoryDirError(f"{manifest_path} is not a readable JSON manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise InventoryDirError(f"{manifest_path} must hold a JSON object")
    for required in ("sourceBucket", "fileFormat", "fileSchema", "files"):
        if required not in manifest:
            raise InventoryDirError(f"{manifest_path} has no {required!r}")
    if manifest["fileFormat"] not in ("CSV", "ORC", "Parquet"):
        raise InventoryDirError(f"{manifest_path} fileFormat must be CSV, ORC or Parquet")
    if not isinstance(manifest["files"], list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("key"), str) for entry in manifest["files"]
    ):
        raise InventoryDirError(f'{manifest_path} files must be a list of {{"key": ...}} objects')
    data_files = [_find_data_file(directory, entry) for entry in manifest["files"]]
    return LocalInventory(directory=directory, delivery=delivery, manifest=manifest, data_files=data_files)


def _find_data_file(directory: Path, entry: dict) -> Path:
    """A manifest file key is absolute in the original bucket; on disk it sits under DIR/data/."""
    name = str(entry["key"]).rsplit("/", 1)[-1]
    candidates = [directory / "data" / name, *directory.rglob(name)]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise InventoryDirError(f"data file {entry['key']} named by the manifest is not under {directory}")
    checksum = entry.get("MD5checksum")
    if checksum and hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() != checksum:
        raise InventoryDirError(
            f"data file {entry['key']} ({path}) does not match the manifest's MD5checksum {checksum}"
        )
    return path


def load_inventory_dir(
    s3_client: Any,
    inventory: LocalInventory | Path | str,
    *,
    dest_bucket: str,
    dest_prefix: str = "inventory",
    config_id: str | None = None,
    create_objects: bool = True,
) -> int:
    """``local run --inventory DIR``: uploads the folder to ``<dest_prefix>/<source bucket>/<config id>``
    in ``dest_bucket`` (config id: the inventory's own unless given) and creates the objects it lists,
    with their version IDs, in the source bucket (which must exist). Returns the number of rows."""
    local = inventory if isinstance(inventory, LocalInventory) else read_inventory_dir(inventory)
    prefix = "/".join(
        p for p in (dest_prefix.strip("/"), local.source_bucket, config_id or local.config_id) if p
    )
    local.upload(s3_client, dest_bucket, prefix)
    rows = list(local.objects())
    if create_objects:
        seed_bucket(s3_client, local.source_bucket, rows)
    return len(rows)


def read_inventory(path: str) -> LocalInventory:
    """An inventory folder, every row parsed once up front: a malformed folder is refused (naming the
    file and line) before anything starts, never part-loaded."""
    found = read_inventory_dir(Path(path))
    where = f"{path}/{found.delivery}/manifest.json"
    try:
        bucket_name(found.source_bucket)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{where} sourceBucket {found.source_bucket[:70]!r} {exc}") from None
    for place, row in found.located_objects():  # streams; rows of another bucket are refused there
        # The objects are created in the emulated bucket: S3's own limits apply (S3 user guide,
        # "Naming Amazon S3 objects": a key is at most 1,024 bytes of UTF-8).
        size = len(row.key.encode("utf-8", "surrogatepass"))
        if not 0 < size <= 1024:
            raise UsageError(f"{path}: {place}: the key is {size} bytes; S3 keys are 1-1,024 bytes of UTF-8")
    return found
