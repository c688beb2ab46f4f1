"""S3 Inventory deliveries in S3's layout and formats, the generator behind them, and the reader of
real inventory folders (``local run --inventory DIR``)."""

from __future__ import annotations

import copy as copy_module
import dataclasses
import gzip
import hashlib
import io
import json
import re
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import boto3
import pyarrow as pa
import pyarrow.orc as orc
import pyarrow.parquet as pq
import pytest
from moto import mock_aws
from moto.s3.models import s3_backends

from batchpipe.local.glue import inventory_table_input
from batchpipe.local.inventory import (
    InventoryDirError,
    current_objects,
    decode_inventory_key,
    encode_inventory_key,
    generate_objects,
    load_inventory_dir,
    read_inventory_dir,
    render_inventory,
    seed_bucket,
    write_inventory,
    write_inventory_dir,
)
from batchpipe.local.inventory.seed import SeededKey

DELIVERY = datetime(2024, 5, 6, 7, 8, tzinfo=UTC)


def render(objects, fmt="CSV", versions="Current", **kwargs):
    params = {
        "source_bucket": "source-bucket",
        "dest_bucket": "inventory-dest",
        "dest_prefix": "inventory",
        "config_id": "all-objects",
        "objects": objects,
        "fmt": fmt,
        "versions": versions,
        "delivery_time": DELIVERY,
    }
    return render_inventory(**{**params, **kwargs})


# ------------------------------------------------------------------------------------------ generator
def test_generated_objects_are_realistic_and_deterministic():
    objects = generate_objects(5_000, seed=3)
    assert objects == generate_objects(5_000, seed=3)
    keys = [o.key for o in objects]
    assert len(set(keys)) == len(keys)
    for needle in (" ", "+", "%", "=", ",", '"', "#", "?", "é", "日本語", "🎉", "//", "~", "*"):
        assert any(needle in k for k in keys), needle
    assert max(len(k.encode()) for k in keys) <= 1024
    assert max(len(k.encode()) for k in keys) > 900
    assert max(k.count("/") for k in keys) >= 10
    assert {"STANDARD", "STANDARD_IA", "GLACIER", "INTELLIGENT_TIERING", "DEEP_ARCHIVE"} <= {
        o.storage_class for o in objects
    }
    assert {"SSE-S3", "NOT-SSE", "SSE-KMS"} <= {o.encryption_status for o in objects}
    sizes = [o.size for o in objects]
    assert min(sizes) == 0 and max(sizes) > 1024**3
    years = {o.last_modified_date.year for o in objects}
    assert len(years) >= 5


def test_versioned_history_has_one_latest_per_key_null_versions_and_delete_markers():
    history = generate_objects(3_000, seed=4, versioned=True)
    assert len(history) == 3_000
    latest = Counter(o.key for o in history if o.is_latest)
    assert set(latest.values()) == {1} and set(latest) == {o.key for o in history}
    assert any(o.is_delete_marker and o.is_latest for o in history)
    assert any(o.version_id is None for o in history)
    assert any(c > 1 for c in Counter(o.key for o in history).values())
    current = current_objects(history)
    assert all(o.is_latest and not o.is_delete_marker for o in current)


# ------------------------------------------------------------------------------------------ keys
@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("a b", "a+b"),
        ("c++/x+y", "c%2B%2B/x%2By"),
        ("100% done", "100%25+done"),
        ("k=v,w", "k%3Dv%2Cw"),
        ('q"#?', "q%22%23%3F"),
        ("été/中", "%C3%A9t%C3%A9/%E4%B8%AD"),
        ("deep/er/", "deep/er/"),
    ],
)
def test_csv_inventory_keys_are_form_encoded_with_slashes_kept(key, encoded):
    assert encode_inventory_key(key) == encoded
    assert decode_inventory_key(encoded) == key == unquote_plus(encoded)


# ------------------------------------------------------------------------------------------ layout
def test_delivery_layout_matches_s3():
    objects = generate_objects(1_000, seed=1, bucket="source-bucket")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="inventory-dest")
        delivery = write_inventory(
            s3,
            source_bucket="source-bucket",
            dest_bucket="inventory-dest",
            dest_prefix="inventory",
            config_id="all-objects",
            objects=objects,
            fmt="CSV",
            delivery_time=DELIVERY,
            rows_per_file=300,
        )
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="inventory-dest")["Contents"])

        def get(key):
            return s3.get_object(Bucket="inventory-dest", Key=key)["Body"].read()

        root = "inventory/source-bucket/all-objects"
        assert delivery.prefix == root and delivery.dt == "2024-05-06-07-08"
        assert f"{root}/2024-05-06T07-08Z/manifest.json" in keys
        assert f"{root}/hive/dt=2024-05-06-07-08/symlink.txt" in keys
        data = [k for k in keys if k.startswith(f"{root}/data/")]
        assert len(data) == 4 and all(re.fullmatch(rf"{root}/data/[0-9a-f-]{{36}}\.csv\.gz", k) for k in data)
        assert len(keys) == len(data) + 3

        manifest_body = get(f"{root}/2024-05-06T07-08Z/manifest.json")
        assert (
            get(f"{root}/2024-05-06T07-08Z/manifest.checksum").decode()
            == hashlib.md5(manifest_body).hexdigest()
        )
        manifest = json.loads(manifest_body)
        assert manifest["sourceBucket"] == "source-bucket"
        assert manifest["destinationBucket"] == "arn:aws:s3:::inventory-dest"
        assert manifest["version"] == "2016-11-30"
        assert manifest["creationTimestamp"] == str(int(DELIVERY.timestamp() * 1000))
        assert manifest["fileFormat"] == "CSV"
        assert manifest["fileSchema"].startswith("Bucket, Key, Size, LastModifiedDate, ETag, StorageClass")
        assert sorted(f["key"] for f in manifest["files"]) == data
        for entry in manifest["files"]:
            body = get(entry["key"])
            assert entry["size"] == len(body) and entry["MD5checksum"] == hashlib.md5(body).hexdigest()
        symlink = get(f"{root}/hive/dt=2024-05-06-07-08/symlink.txt").decode().split()
        assert sorted(symlink) == [f"s3://inventory-dest/{k}" for k in data]


def test_csv_rows_are_quoted_unheaded_encoded_and_in_schema_order():
    history = generate_objects(500, seed=9, versioned=True)
    delivery = render(history, versions="All")
    schema = [c.strip() for c in delivery.manifest["fileSchema"].split(",")]
    assert schema[:5] == ["Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker"]
    text = "".join(gzip.decompress(delivery.files[k]).decode() for k in delivery.data_keys)
    lines = text.splitlines()
    assert len(lines) == 500 and not lines[0].startswith('"Bucket"')
    by_key = {}
    for line in lines:
        cells = line[1:-1].split('","')
        assert len(cells) == len(schema) and line.startswith('"') and line.endswith('"')
        row = dict(zip(schema, cells, strict=True))
        assert " " not in row["Key"] and encode_inventory_key(unquote_plus(row["Key"])) == row["Key"]
        by_key.setdefault(unquote_plus(row["Key"]), []).append(row)
    assert any("+" in k for k in by_key) and any(" " in k for k in by_key)
    for obj in history:
        row = next(r for r in by_key[obj.key] if r["VersionId"] == (obj.version_id or ""))
        assert row["IsLatest"] == ("true" if obj.is_latest else "false")
        assert row["Size"] == ("" if obj.size is None else str(obj.size))
        if obj.last_modified_date:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["LastModifiedDate"])


@pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
def test_columnar_inventories_have_typed_snake_case_columns_and_plain_keys(fmt):
    objects = generate_objects(300, seed=2)
    delivery = render(objects, fmt=fmt, versions="All")
    (key,) = delivery.data_keys
    body = delivery.files[key]
    table = pq.read_table(io.BytesIO(body)) if fmt == "Parquet" else orc.ORCFile(io.BytesIO(body)).read()
    types = {f.name: f.type for f in table.schema}
    assert types["size"] == pa.int64() and types["is_latest"] == pa.bool_() and types["key"] == pa.string()
    assert pa.types.is_timestamp(types["last_modified_date"])
    assert table.column("key").to_pylist() == [o.key for o in objects]
    if fmt == "Parquet":
        assert (
            key.endswith(".parquet")
            and pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0).column(0).compression == "SNAPPY"
        )
        assert "optional int64 last_modified_date (TIMESTAMP_MILLIS);" in delivery.manifest["fileSchema"]
    else:
        assert key.endswith(".orc") and orc.ORCFile(io.BytesIO(body)).compression == "ZLIB"
        assert delivery.manifest["fileSchema"].startswith(
            "struct<bucket:string,key:string,version_id:string,is_latest:boolean"
        )


def test_current_inventories_list_only_current_versions_without_version_columns():
    history = generate_objects(400, seed=6, versioned=True)
    delivery = render(history, fmt="CSV", versions="Current")
    assert "VersionId" not in delivery.manifest["fileSchema"]
    assert delivery.rows == len(current_objects(history))


# ------------------------------------------------------------------------------------------ reader
@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
@pytest.mark.parametrize("versions", ["Current", "All"])
def test_inventory_folders_round_trip_through_read_inventory_dir(tmp_path, fmt, versions):
    objects = generate_objects(2_000, seed=8, versioned=versions == "All", bucket="source-bucket")
    write_inventory_dir(
        tmp_path,
        source_bucket="source-bucket",
        dest_bucket="inventory-dest",
        dest_prefix="inventory",
        config_id="all-objects",
        objects=objects,
        fmt=fmt,
        versions=versions,
        delivery_time=DELIVERY,
        rows_per_file=700,
    )
    inventory = read_inventory_dir(tmp_path)
    assert (inventory.source_bucket, inventory.file_format, inventory.versions) == (
        "source-bucket",
        fmt,
        versions,
    )
    expected = objects if versions == "All" else current_objects(objects)
    assert inventory.dt == "2024-05-06-07-08" and len(inventory.data_files) == -(-len(expected) // 700)
    assert list(inventory.objects()) == expected


def test_the_newest_delivery_wins(tmp_path):
    for day, seed in ((1, 1), (3, 3), (2, 2)):
        write_inventory_dir(
            tmp_path,
            source_bucket="b",
            dest_bucket="d",
            dest_prefix="",
            config_id="c",
            objects=generate_objects(10, seed=seed, bucket="b"),
            delivery_time=datetime(2024, 1, day, tzinfo=UTC),
        )
    inventory = read_inventory_dir(tmp_path)
    assert inventory.delivery == "2024-01-03T00-00Z"
    assert [o.key for o in inventory.objects()] == [o.key for o in generate_objects(10, seed=3, bucket="b")]


def test_a_folder_that_is_not_an_inventory_is_refused_with_the_fix(tmp_path):
    with pytest.raises(InventoryDirError, match="config-id folder"):
        read_inventory_dir(tmp_path)


def test_a_corrupted_data_file_is_caught(tmp_path):
    delivery = write_inventory_dir(
        tmp_path, source_bucket="b", dest_bucket="d", dest_prefix="p", config_id="c",
        objects=generate_objects(10, seed=1, bucket="b"), delivery_time=DELIVERY,
    )  # fmt: skip
    (tmp_path / delivery.data_keys[0].split("/c/", 1)[1]).write_bytes(b"garbage")
    with pytest.raises(InventoryDirError, match="MD5checksum"):
        read_inventory_dir(tmp_path)


def _rewrite_csv(tmp_path, delivery, change):
    """Rewrites the delivery's first CSV file with ``change(text)`` and its manifest's MD5 to match."""
    relative = delivery.data_keys[0].split("/c/", 1)[1]
    path = tmp_path / relative
    body = gzip.compress(change(gzip.decompress(path.read_bytes()).decode()).encode())
    path.write_bytes(body)
    manifest_path = tmp_path / delivery.delivery / "manifest.json"
    manifest = json.loads(manifest_path.read_bytes())
    manifest["files"][0]["MD5checksum"] = hashlib.md5(body).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    return path


def _csv_delivery(tmp_path, **kwargs):
    return write_inventory_dir(
        tmp_path, source_bucket="b", dest_bucket="d", dest_prefix="p", config_id="c",
        objects=generate_objects(5, seed=1, bucket="b"), delivery_time=DELIVERY, **kwargs,
    )  # fmt: skip


def test_blank_lines_in_csv_data_are_skipped_as_athena_skips_them(tmp_path):
    delivery = _csv_delivery(tmp_path)
    _rewrite_csv(tmp_path, delivery, lambda text: "\n" + text.replace("\n", "\n\n", 2) + "\n\n")
    assert list(read_inventory_dir(tmp_path).objects()) == generate_objects(5, seed=1, bucket="b")


def test_a_row_with_the_wrong_number_of_fields_is_reported_with_file_and_line(tmp_path):
    delivery = _csv_delivery(tmp_path, fields=["Size"])
    path = _rewrite_csv(
        tmp_path, delivery, lambda text: text.replace("\n", ',"extra"\n', 2).replace(',"extra"', "", 1)
    )
    with pytest.raises(
        InventoryDirError,
        match=rf"^{re.escape('p/b/c/data/' + path.name)} line 2: 4 fields, but the manifest's fileSchema lists 3$",
    ):
        list(read_inventory_dir(tmp_path).objects())


def test_upload_rewrites_manifest_and_symlinks_to_the_new_place(tmp_path):
    write_inventory_dir(
        tmp_path, source_bucket="b", dest_bucket="their-bucket", dest_prefix="reports", config_id="c",
        objects=generate_objects(50, seed=1, bucket="b"), fmt="ORC", delivery_time=DELIVERY, rows_per_file=20,
    )  # fmt: skip
    inventory = read_inventory_dir(tmp_path)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ours")
        written = inventory.upload(s3, "ours", "inventory/b/c")
        assert "inventory/b/c/2024-05-06T07-08Z/manifest.json" in written
        manifest_body = s3.get_object(Bucket="ours", Key="inventory/b/c/2024-05-06T07-08Z/manifest.json")[
            "Body"
        ].read()
        manifest = json.loads(manifest_body)
        assert manifest["destinationBucket"] == "arn:aws:s3:::ours"
        checksum = s3.get_object(Bucket="ours", Key="inventory/b/c/2024-05-06T07-08Z/manifest.checksum")[
            "Body"
        ].read()
        assert checksum.decode() == hashlib.md5(manifest_body).hexdigest()
        for entry in manifest["files"]:
            assert entry["key"].startswith("inventory/b/c/data/")
            s3.head_object(Bucket="ours", Key=entry["key"])
        symlink = s3.get_object(Bucket="ours", Key="inventory/b/c/hive/dt=2024-05-06-07-08/symlink.txt")[
            "Body"
        ].read()
        assert sorted(symlink.decode().split()) == sorted(f"s3://ours/{e['key']}" for e in manifest["files"])


def test_upload_creates_the_symlink_a_partial_download_lacks(tmp_path):
    write_inventory_dir(
        tmp_path, source_bucket="b", dest_bucket="d", dest_prefix="p", config_id="c",
        objects=generate_objects(5, seed=1, bucket="b"), delivery_time=DELIVERY,
    )  # fmt: skip
    for path in (tmp_path / "hive").rglob("*"):
        if path.is_file():
            path.unlink()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ours")
        read_inventory_dir(tmp_path).upload(s3, "ours", "x/b/c")
        symlink = (
            s3.get_object(Bucket="ours", Key="x/b/c/hive/dt=2024-05-06-07-08/symlink.txt")["Body"]
            .read()
            .decode()
        )
        assert symlink.startswith("s3://ours/x/b/c/data/")


def test_a_symlink_line_that_is_not_an_s3_uri_is_refused_naming_the_file(tmp_path):
    write_inventory_dir(
        tmp_path, source_bucket="b", dest_bucket="d", dest_prefix="p", config_id="c",
        objects=generate_objects(5, seed=1, bucket="b"), delivery_time=DELIVERY,
    )  # fmt: skip
    (symlink,) = (tmp_path / "hive").rglob("symlink.txt")
    symlink.write_text("data/not-a-uri.csv.gz\n")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ours")
        with pytest.raises(
            InventoryDirError, match=r"symlink\.txt: 'data/not-a-uri\.csv\.gz' is not an s3:// URI"
        ):
            read_inventory_dir(tmp_path).upload(s3, "ours", "x/b/c")


# ------------------------------------------------------------------------------------------ seeding
def test_seed_bucket_creates_the_objects_with_their_storage_class():
    objects = generate_objects(40, seed=12, bucket="ignored")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="source")
        created = seed_bucket(s3, "source", objects)
        listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket="source")["Contents"]}
        assert set(listed) == {o.key for o in objects}
        for obj in created:
            assert obj.bucket == "source" and listed[obj.key]["StorageClass"] == obj.storage_class
            assert f'"{obj.e_tag}"' == listed[obj.key]["ETag"]


def test_seed_bucket_recreates_version_history_with_the_rows_version_ids():
    history = generate_objects(60, seed=13, versioned=True)
    wanted = {(o.key, o.version_id or "null", bool(o.is_delete_marker), bool(o.is_latest)) for o in history}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="source")
        seed_bucket(s3, "source", history)
        listing = s3.list_object_versions(Bucket="source")
        versions = {(v["Key"], v["VersionId"], False, v["IsLatest"]) for v in listing.get("Versions", [])}
        markers = {(m["Key"], m["VersionId"], True, m["IsLatest"]) for m in listing.get("DeleteMarkers", [])}
        assert versions | markers == wanted
        some = next(o for o in history if o.version_id and not o.is_delete_marker)
        assert (
            s3.head_object(Bucket="source", Key=some.key, VersionId=some.version_id)["VersionId"]
            == some.version_id
        )


# What a PutObject stores and what the seeder stores must read the same; these differ by nature.
_PER_OBJECT = {"name", "last_modified", "_time_progressed", "_tick", "_version_id", "lock", "_value_buffer"}


def test_seeded_keys_match_put_object():
    """The seeder writes moto's store directly (compact keys); every attribute, HeadObject, tagging,
    GetObject, CopyObject and a deep copy behave as for a key made by PutObject."""
    row = generate_objects(1, seed=3)[0].replace(
        key="seeded", storage_class="GLACIER", encryption_status="SSE-KMS"
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="source")
        s3.put_object(
            Bucket="source", Key="put", Body=b"", StorageClass="GLACIER", ServerSideEncryption="aws:kms"
        )
        seed_bucket(s3, "source", [row])
        backend = s3_backends["123456789012"]["aws"]
        put, seeded = backend.get_object("source", "put"), backend.get_object("source", "seeded")
        assert isinstance(seeded, SeededKey)
        for name in set(vars(put)) - _PER_OBJECT - {"_metadata", "acl"}:
            assert getattr(seeded, name) == getattr(put, name), name
        assert seeded.metadata["Content-Type"] == put.metadata["Content-Type"]
        assert [g.permissions for g in seeded.acl.grants] == [g.permissions for g in put.acl.grants]
        for key in ("put", "seeded"):
            s3.put_object_tagging(Bucket="source", Key=key, Tagging={"TagSet": [{"Key": "t", "Value": key}]})
        heads = [s3.head_object(Bucket="source", Key=key) for key in ("put", "seeded")]
        for head in heads:
            head.pop("ResponseMetadata"), head.pop("LastModified")
        assert heads[0] == heads[1]
        # moto refuses GetObjectTagging on archived objects (S3 does not): read its store
        assert backend.get_object_tagging(seeded)["Tags"] == [{"Key": "t", "Value": "seeded"}]
        s3.put_object(Bucket="source", Key="plain", Body=b"")
        plain = dict(s3.get_object(Bucket="source", Key="plain"))
        s3.copy_object(Bucket="source", Key="copy", CopySource={"Bucket": "source", "Key": "plain"})
        copy = s3.head_object(Bucket="source", Key="copy")
        assert plain["Body"].read() == b"" and copy["ETag"] == heads[1]["ETag"]
        clone = copy_module.deepcopy(seeded)
        assert (
            clone.value == b""
            and clone.storage_class == "GLACIER"
            and vars(clone).keys() <= vars(seeded).keys() | {"_buffer", "_lock"}
        )


def test_a_real_versioned_inventory_is_loaded_with_its_version_ids(tmp_path):
    history = generate_objects(80, seed=21, bucket="their-bucket", versioned=True)
    write_inventory_dir(
        tmp_path / "weekly", source_bucket="their-bucket", dest_bucket="theirs", dest_prefix="inv",
        config_id="weekly", objects=history, fmt="Parquet", versions="All", delivery_time=DELIVERY,
    )  # fmt: skip
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="ours")
        s3.create_bucket(Bucket="their-bucket")
        assert load_inventory_dir(s3, tmp_path / "weekly", dest_bucket="ours", dest_prefix="inventory") == 80
        assert s3.head_object(
            Bucket="ours", Key="inventory/their-bucket/weekly/2024-05-06T07-08Z/manifest.json"
        )
        listing = s3.list_object_versions(Bucket="their-bucket")
        listed = {
            (v["Key"], v["VersionId"]) for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])
        }
        assert listed == {(o.key, o.version_id or "null") for o in history}


# ------------------------------------------------------------------------------------------ glue
@pytest.mark.parametrize(
    ("fmt", "serde"),
    [("CSV", "OpenCSVSerde"), ("Parquet", "ParquetHiveSerDe"), ("ORC", "OrcSerde")],
)
def test_the_glue_table_is_the_templates_and_matches_the_written_schema(fmt, serde):
    _database, table = inventory_table_input({"InventoryFormat": fmt, "InventoryVersions": "All"})
    descriptor = table["StorageDescriptor"]
    assert descriptor["SerdeInfo"]["SerializationLibrary"].endswith(serde)
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    columns = [c["Name"] for c in descriptor["Columns"]]
    delivery = render(generate_objects(5, seed=1), fmt=fmt, versions="All")
    from batchpipe.local.inventory.reader import schema_of

    assert [f.name for f in schema_of(delivery.manifest)] == columns


@pytest.mark.parametrize(("fmt", "place"), [("CSV", "line"), ("Parquet", "row"), ("ORC", "row")])
def test_a_row_of_another_bucket_is_reported_by_its_own_file_and_place_there(tmp_path, fmt, place):
    objects = generate_objects(6, seed=1, bucket="b")
    objects[4] = dataclasses.replace(objects[4], bucket="elsewhere")  # the 2nd row of the 2nd file
    write_inventory_dir(
        tmp_path, source_bucket="b", dest_bucket="d", dest_prefix="p", config_id="c", objects=objects,
        fmt=fmt, delivery_time=DELIVERY, rows_per_file=3,
    )  # fmt: skip
    layout = read_inventory_dir(tmp_path)
    second = layout.manifest["files"][1]["key"]

    with pytest.raises(InventoryDirError) as raised:
        list(layout.objects())

    assert str(raised.value) == (
        f"{second} {place} 2: bucket 'elsewhere' is not the manifest's sourceBucket 'b'"
    )
