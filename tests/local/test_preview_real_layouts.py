"""`batchpipe preview --inventory DIR` on folders laid out as `aws s3 sync` of a real delivery leaves
them: every format, current and all versions, any field selection, deliveries of any date, and
manifests shaped exactly like the S3 user guide's samples ("Locating your inventory list", Inventory
manifest: data files under another folder than data/, no hive/ folder downloaded, 2016 deliveries)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpipe.cli import main
from batchpipe.local import inventory as inv

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
BUCKET = "amzn-s3-demo-source-bucket"

# The fileSchema strings of the S3 user guide's sample manifest.json files, one per format: all
# versions, every optional field of that time (ObjectAccessControlList and ObjectOwner, no
# LifecycleExpirationDate); their ORC and Parquet object_lock_retain_until_date is a timestamp.
DOCS_FILE_SCHEMAS = {
    "CSV": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, "
    "IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, "
    "ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm, "
    "ObjectAccessControlList, ObjectOwner",
    "ORC": "struct<bucket:string,key:string,version_id:string,is_latest:boolean,is_delete_marker:boolean,"
    "size:bigint,last_modified_date:timestamp,e_tag:string,storage_class:string,is_multipart_uploaded:boolean,"
    "replication_status:string,encryption_status:string,object_lock_retain_until_date:timestamp,"
    "object_lock_mode:string,object_lock_legal_hold_status:string,intelligent_tiering_access_tier:string,"
    "bucket_key_status:string,checksum_algorithm:string,object_access_control_list:string,object_owner:string>",
    "Parquet": "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary "
    "version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; optional int64 size; "
    "optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary "
    "storage_class (UTF8); optional boolean is_multipart_uploaded; optional binary replication_status (UTF8); "
    "optional binary encryption_status (UTF8); optional int64 object_lock_retain_until_date (TIMESTAMP_MILLIS); "
    "optional binary object_lock_mode (UTF8); optional binary object_lock_legal_hold_status (UTF8); optional "
    "binary intelligent_tiering_access_tier (UTF8); optional binary bucket_key_status (UTF8); optional binary "
    "checksum_algorithm (UTF8); optional binary object_access_control_list (UTF8); optional binary "
    "object_owner (UTF8);}",
}
# Where the samples' files entries point (the CSV one under the delivery's own folder, not data/).
DOCS_FILE_KEYS = {
    "CSV": "Inventory/amzn-s3-demo-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz",
    "ORC": "inventory/amzn-s3-demo-source-bucket/data/d794c570-95bb-4271-9128-26023c8b4900.orc",
    "Parquet": "inventory/amzn-s3-demo-source-bucket/data/d754c470-85bb-4255-9218-47023c8b4910.parquet",
}
DOCS_FIELDS = tuple(f for f in inv.FIELD_SELECTIONS["all"] if f != "LifecycleExpirationDate")


def preview(tmp_path: Path, folder: Path, filter_: dict, capsys) -> tuple[int, str, str]:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"filter": filter_}))
    code = main(["preview", "--spec", str(spec), "--inventory", str(folder), "--sample", "5"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def selected(printed: str) -> int:
    return int(printed.split("objects selected: ", 1)[1].split("\n", 1)[0])


def docs_shaped_folder(root: Path, fmt: str, objects: list[inv.InventoryObject]) -> Path:
    """A delivery as the guide's sample manifest describes it: data file named and placed as its key says."""
    written = inv.write_inventory_dir(
        root / "written", source_bucket=BUCKET, dest_bucket="example-inventory-destination-bucket",
        dest_prefix="Inventory", config_id="cfg", objects=objects, fmt=fmt, versions="All",
        fields=DOCS_FIELDS, delivery_time=datetime(2016, 11, 6, 21, 32, tzinfo=UTC),
    )  # fmt: skip
    (body,) = [written.files[key] for key in written.data_keys]
    folder = root / "synced"
    data = folder / DOCS_FILE_KEYS[fmt].split("/", 2)[2].split("/", 1)[1]  # as sync leaves it
    data.parent.mkdir(parents=True)
    data.write_bytes(body)
    manifest = {
        "sourceBucket": BUCKET,
        "destinationBucket": "arn:aws:s3:::example-inventory-destination-bucket",
        "version": "2016-11-30",
        "creationTimestamp": "1514944800000",
        "fileFormat": fmt,
        "fileSchema": DOCS_FILE_SCHEMAS[fmt],
        "files": [
            {
                "key": DOCS_FILE_KEYS[fmt],
                "size": len(body),
                "MD5checksum": hashlib.md5(body, usedforsecurity=False).hexdigest(),
            }
        ],
    }
    (folder / "2016-11-06T21-32Z").mkdir(exist_ok=True)
    (folder / "2016-11-06T21-32Z" / "manifest.json").write_text(json.dumps(manifest, indent=4))
    return folder


@pytest.mark.parametrize("fmt", ["CSV", "ORC", "Parquet"])
def test_preview_reads_a_delivery_shaped_like_the_guides_sample_manifest(tmp_path, capsys, fmt):
    objects = inv.generate_objects(120, seed=4, bucket=BUCKET, versioned=True)
    folder = docs_shaped_folder(tmp_path, fmt, objects)

    code, printed, err = preview(
        tmp_path, folder, {"prefixes": ["photos/"], "storageClasses": ["STANDARD"]}, capsys
    )

    expected = [
        o for o in objects
        if o.key.startswith("photos/") and o.storage_class == "STANDARD" and o.is_latest and not o.is_delete_marker
    ]  # fmt: skip
    assert code == 0, err
    assert selected(printed) == len(expected) > 0
    assert "delivery 2016-11-06T21-32Z" in printed


LAYOUTS = [
    (fmt, versions, selection)
    for fmt in ("CSV", "ORC", "Parquet")
    for versions, selection in (("Current", "required"), ("Current", "typical"), ("All", "all"))
]


@pytest.mark.parametrize(
    ("fmt", "versions", "selection"), LAYOUTS, ids=["-".join(layout) for layout in LAYOUTS]
)
def test_preview_on_every_layout_and_field_selection(tmp_path, capsys, fmt, versions, selection):
    objects = inv.generate_objects(150, seed=5, bucket="their-bucket", versioned=versions == "All")
    inv.write_inventory_dir(
        tmp_path / "inv", source_bucket="their-bucket", dest_bucket="dest", dest_prefix="inv", config_id="cfg",
        objects=objects, fmt=fmt, versions=versions, fields=inv.FIELD_SELECTIONS[selection],
        delivery_time=datetime(2021, 3, 4, 5, 6, tzinfo=UTC),
    )  # fmt: skip

    code, printed, err = preview(tmp_path, tmp_path / "inv", {"keyRegex": "[0-9]{3}"}, capsys)

    expected = [o for o in inv.current_objects(objects) if re.search("[0-9]{3}", o.key)]
    assert code == 0, err
    assert selected(printed) == len(expected) > 0


def test_preview_names_the_field_to_enable(tmp_path, capsys):
    inv.write_inventory_dir(
        tmp_path / "inv", source_bucket="their-bucket", dest_bucket="dest", dest_prefix="inv", config_id="cfg",
        objects=inv.generate_objects(20, seed=5, bucket="their-bucket"), fmt="Parquet",
        fields=inv.FIELD_SELECTIONS["typical"], delivery_time=datetime(2021, 3, 4, tzinfo=UTC),
    )  # fmt: skip

    code, _, err = preview(tmp_path, tmp_path / "inv", {"where": "replication_status = 'FAILED'"}, capsys)

    assert code == 2
    assert "InventorySchemaError" in err
    assert "The filter needs ReplicationStatus, which this inventory delivery does not contain" in err
