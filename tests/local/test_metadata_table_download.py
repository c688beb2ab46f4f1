"""`batchpipe preview --metadata-table` on a table downloaded from S3 Tables (issue #26 §1).

A table in S3 Tables names every file under its warehouse location (``s3://<id>--table-s3/...``), in
its metadata file, its manifest list and its manifests. The fixture is such a table: pyiceberg writes
the bucket's live inventory rows (S3's backfill of an emulated bucket whose keys and tags need
encoding) with the warehouse location as the table's location, and the download is its files at their
paths under that location; for the download itself, the same files sit in moto's S3 Tables table.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from batchpipe.cli import main
from batchpipe.local.isolation import isolated_environment
from batchpipe.local.metadata_table import (
    MetadataTableError,
    download_table,
    newest_metadata_file,
    read_table,
    scan,
    write_table,
)
from batchpipe_core.metadata_table import default_namespace

BUCKET = "atlas-photos"
NAMESPACE = default_namespace(BUCKET)
WAREHOUSE = "s3://5f1c2a9e-0d3b-4c7e-9a61-2b8f4e7d1c30--table-s3"
ATLAS = ["raw/a b.jpg", "raw/plus+sign.jpg", "raw/100%.jpg", "raw/ünïcödé/日本.jpg", "raw/tab\tname.jpg"]
OTHER = ["raw/other.jpg", "docs/readme.txt", "docs/ünï.txt"]
BY_TAG = {"filter": {"tags": {"allOf": [{"key": "project", "value": "atlas"}]}}}


def inventory_rows() -> list[dict]:
    """The live inventory rows S3's backfill writes for a bucket of tagged objects."""
    with isolated_environment(), mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for key in ATLAS:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", Tagging="project=atlas&cost%20centre=r%2Bd")
        for key in OTHER:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"y", Tagging="project=other")
        return scan(s3, BUCKET)


def downloaded(tmp_path: Path, warehouse: str = WAREHOUSE) -> Path:
    """The table's files as a download lays them out: each at its path under the warehouse location."""
    import pyarrow as pa

    from batchpipe.local.metadata_table import arrow_schema

    written = write_table(
        tmp_path / "writer",
        NAMESPACE,
        pa.Table.from_pylist(inventory_rows(), arrow_schema()),
        location=warehouse,
    )
    folder = tmp_path / "download"
    shutil.copytree(written, folder)
    return folder


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def preview(tmp_path: Path, source: str, capsys) -> tuple[int, str, str]:
    spec = tmp_path / "by-tag.json"
    spec.write_text(json.dumps(BY_TAG))
    code = main(["preview", "--spec", str(spec), "--metadata-table", source])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_fixture_names_every_file_under_the_s3_warehouse_location(tmp_path):
    folder = downloaded(tmp_path)

    metadata = json.loads(newest_metadata_file(folder).read_text())
    snapshot = next(s for s in metadata["snapshots"] if s["snapshot-id"] == metadata["current-snapshot-id"])
    assert metadata["location"] == WAREHOUSE
    assert snapshot["manifest-list"].startswith(f"{WAREHOUSE}/metadata/snap-")
    assert sorted(p.name for p in folder.iterdir()) == ["data", "metadata"]


def test_preview_counts_and_samples_a_downloaded_table_without_touching_its_folder(tmp_path, capsys):
    folder = downloaded(tmp_path)
    before = listing(folder)

    code, out, err = preview(tmp_path, str(folder), capsys)

    assert code == 0, err
    assert "objects selected: 5" in out
    assert f"S3 Metadata live inventory table: s3://{BUCKET} (8 rows, {folder})" in out
    sample = {line[2:] for line in out.splitlines() if line.startswith("  ")}
    assert set(ATLAS) <= sample
    assert not sample & set(OTHER)
    assert f'"s3tablescatalog/aws-s3"."{NAMESPACE}"."inventory"' in out
    assert listing(folder) == before


def rewrite_manifest_list(folder: Path, manifest_list: str) -> None:
    path = newest_metadata_file(folder)
    metadata = json.loads(path.read_text())
    for snapshot in metadata["snapshots"]:
        snapshot["manifest-list"] = manifest_list
    path.write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("manifest_list", "refusal"),
    [
        ("s3://another-bucket/metadata/snap.avro", "outside the table's location " + WAREHOUSE),
        ("file:///etc/passwd", "outside the table's location " + WAREHOUSE),
        (f"{WAREHOUSE}/../../../../etc/passwd", "which would be read from outside"),
        (f"{WAREHOUSE}/metadata/snap-never-downloaded.avro", "lacks metadata/snap-never-downloaded.avro"),
    ],
)
def test_metadata_naming_a_file_outside_the_folder_is_refused_in_one_line(
    tmp_path, capsys, manifest_list, refusal
):
    folder = downloaded(tmp_path)
    rewrite_manifest_list(folder, manifest_list)

    code, out, err = preview(tmp_path, str(folder), capsys)

    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "cannot read the S3 Metadata table at" in err and refusal in err


def test_a_data_file_linked_outside_the_folder_is_refused(tmp_path):
    folder = downloaded(tmp_path)
    (data_file,) = (folder / "data").rglob("*.parquet")
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(data_file, outside)
    os.symlink(outside, data_file)

    with pytest.raises(MetadataTableError, match="which would be read from outside"):
        read_table(folder)


@pytest.mark.parametrize(
    ("location", "refusal"),
    [
        ("http://example.com/table", "must be an s3:// or file:// URI"),
        (["s3://x"], "must be an s3:// or file:// URI"),
        ("s3:///no-bucket", "must be an s3:// or file:// URI"),
    ],
)
def test_a_metadata_file_without_an_s3_or_file_location_is_refused(tmp_path, location, refusal):
    folder = downloaded(tmp_path)
    path = newest_metadata_file(folder)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"location": location}))

    with pytest.raises(MetadataTableError, match=refusal):
        read_table(folder)


def test_metadata_properties_never_choose_the_reader(tmp_path):
    """pyiceberg's own StaticTable would import the class a metadata file's py-io-impl names."""
    folder = downloaded(tmp_path)
    path = newest_metadata_file(folder)
    metadata = json.loads(path.read_text())
    metadata["properties"] = {"py-io-impl": "tests.local.no_such_module.Boom"}
    path.write_text(json.dumps(metadata))

    assert read_table(folder).rows.num_rows == 8


def test_download_follows_the_metadata_with_get_object_only_and_preview_reads_the_copy(tmp_path, capsys):
    """GetTableMetadataLocation, then GetObject (and HeadObject) of each file the metadata names: S3
    Tables has no ListObjects. The copy is laid out as the warehouse is, and previews the same."""
    calls: list[str] = []
    with isolated_environment(), mock_aws():
        tables = boto3.client("s3tables", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        arn = tables.create_table_bucket(name="aws-s3")["arn"]
        tables.create_namespace(tableBucketARN=arn, namespace=[NAMESPACE])
        tables.create_table(tableBucketARN=arn, namespace=NAMESPACE, name="inventory", format="ICEBERG")
        where = tables.get_table_metadata_location(tableBucketARN=arn, namespace=NAMESPACE, name="inventory")
        warehouse = where["warehouseLocation"]
        folder = downloaded(tmp_path, warehouse)
        storage = warehouse.removeprefix("s3://")
        for path in folder.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), storage, str(path.relative_to(folder)))
        tables.update_table_metadata_location(
            tableBucketARN=arn,
            namespace=NAMESPACE,
            name="inventory",
            versionToken=tables.get_table(tableBucketARN=arn, namespace=NAMESPACE, name="inventory")[
                "versionToken"
            ],
            metadataLocation=f"{warehouse}/metadata/{newest_metadata_file(folder).name}",
        )
        s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

        copy = download_table(
            f"s3tables://aws-s3/{NAMESPACE}/inventory",
            tmp_path / "copy",
            s3tables=tables,
            s3=s3,
            sts=boto3.client("sts", region_name="us-east-1"),
        )

    assert sorted(set(calls)) == ["GetObject", "HeadObject"]
    current = newest_metadata_file(folder).name
    earlier = {
        f"metadata/{p.name}" for p in (folder / "metadata").glob("*.metadata.json") if p.name != current
    }
    assert earlier  # the table's first metadata file: a reader of the current snapshot never needs it
    assert set(listing(copy)) == set(listing(folder)) - earlier
    code, out, err = preview(tmp_path, str(copy), capsys)
    assert code == 0, err
    assert "objects selected: 5" in out


@pytest.mark.parametrize(
    "source", ["s3tables://aws-s3/only-two", "s3tables://Aws-S3/b_x/inventory", "s3tables://"]
)
def test_a_table_that_is_not_bucket_namespace_table_is_refused_before_any_aws_call(tmp_path, capsys, source):
    code, _out, err = preview(tmp_path, source, capsys)

    assert code == 2
    assert "give s3tables://<table bucket>/<namespace>/<table>" in err


@pytest.mark.parametrize("pattern", ["metadata/snap-*.avro", "metadata/*-m0.avro", "data/*.parquet"])
def test_a_corrupt_file_of_the_table_is_one_line_not_a_traceback(tmp_path, capsys, pattern):
    folder = downloaded(tmp_path)
    (victim,) = folder.glob(pattern)
    victim.write_bytes(b"Obj\x01" + bytes(range(256)) * 4)

    code, out, err = preview(tmp_path, str(folder), capsys)

    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "is not a readable Iceberg table" in err
