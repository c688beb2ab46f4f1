"""PlanQuery: which inventory delivery a spec means, whether its schema fits, and the query document."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from batchpipe.local.glue import create_inventory_table, inventory_table_input
from batchpipe.local.inventory import (
    FIELD_SELECTIONS,
    InventoryObject,
    render_inventory,
    write_inventory,
)
from batchpipe.local.lambdas import LambdaContext
from batchpipe_core import inventory_layout as layout
from batchpipe_core.errors import InventoryNotFoundError, SpecValidationError
from batchpipe_core.inventory_layout import InventorySchemaError
from batchpipe_core.inventory_table import InventoryNotReadableError
from batchpipe_core.observability import metrics

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from plan_query import app  # noqa: E402

REGION = "us-east-1"
INVENTORY_BUCKET = "inventory-dest"
PREFIX = "inventory/my-source-bucket/all-objects"
OBJECTS = [InventoryObject(bucket="my-source-bucket", key="a b+c", size=3)]
STACK_PARAMETERS = {
    "InventoryBucket": INVENTORY_BUCKET,
    "InventoryPrefix": PREFIX,
    "InventoryFormat": "CSV",
    "InventoryStartDate": "2024-05-01-00-00",
}

ENV = {
    "ACCOUNT_ID": "123456789012",
    "PIPELINE_BUCKET": "pipeline",
    "TOKEN_TABLE": "tokens",
    "INVENTORY_BUCKET": INVENTORY_BUCKET,
    "INVENTORY_PREFIX": PREFIX,
    "INVENTORY_FORMAT": "CSV",
    "INVENTORY_VERSIONS": "Current",
    "INVENTORY_DATABASE": "batchpipe_inventory",
    "INVENTORY_TABLE": "inventory",
    "ATHENA_WORKGROUP": "stack-batchpipe",
    "BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/batch",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:topic",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "BatchPipe",
    "POWERTOOLS_SERVICE_NAME": "batchpipe",
    "AWS_DEFAULT_REGION": REGION,
}


# PlanQuery emits no metric of its own; Powertools warns about that on every call.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture(autouse=True)
def _fresh_metrics():
    """Powertools keeps metric values while metrics are disabled and raises at 100: start each test empty."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def s3(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=INVENTORY_BUCKET)
        create_inventory_table(boto3.client("glue", region_name=REGION), STACK_PARAMETERS)
        yield client


@pytest.fixture
def glue(s3):
    return boto3.client("glue", region_name=REGION)


def deliver(s3, when: datetime, *, fmt="CSV", versions="Current", complete=True, **kwargs):
    """One delivery in S3's layout; an incomplete one has its data and symlink but no manifest yet."""
    arguments = {
        "source_bucket": "my-source-bucket",
        "dest_bucket": INVENTORY_BUCKET,
        "dest_prefix": "inventory",
        "config_id": "all-objects",
        "objects": OBJECTS,
        "fmt": fmt,
        "versions": versions,
        "delivery_time": when,
    } | kwargs
    if complete:
        return write_inventory(s3, **arguments)
    delivery = render_inventory(**arguments)
    for key, body in delivery.files.items():
        if not key.endswith(("manifest.json", "manifest.checksum")):
            s3.put_object(Bucket=INVENTORY_BUCKET, Key=key, Body=body)
    return delivery


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2024, 5, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def deliveries(s3):
    deliver(s3, at(1))
    deliver(s3, at(2))
    deliver(s3, at(2, 12, 30))
    deliver(s3, at(3), complete=False)  # still being written
    deliver(s3, at(4, 1), complete=False)
    return s3


def resolve(s3, date: str) -> layout.Delivery:
    return layout.resolve_delivery(s3, bucket=INVENTORY_BUCKET, prefix=PREFIX, date=date)


# ---------------------------------------------------------------- partition resolution


@pytest.mark.parametrize(
    ("date", "folder", "partition"),
    [
        ("latest", "2024-05-02T12-30Z", "2024-05-02-12-30"),
        ("2024-05-02", "2024-05-02T12-30Z", "2024-05-02-12-30"),
        ("2024-05-01", "2024-05-01T00-00Z", "2024-05-01-00-00"),
        ("2024-05-02-00-00", "2024-05-02T00-00Z", "2024-05-02-00-00"),
    ],
)
def test_the_newest_complete_delivery_that_matches(deliveries, date, folder, partition):
    delivery = resolve(deliveries, date)
    assert (delivery.folder, delivery.partition) == (folder, partition)
    assert delivery.manifest_key == f"{PREFIX}/{folder}/manifest.json"
    assert delivery.file_format == "CSV"
    assert delivery.source_bucket == "my-source-bucket"


@pytest.mark.parametrize(
    "date", ["2024-05-03", "2024-05-03-00-00", "2024-05-04-01-00", "2024-04-30", "2024-05-02-12-31"]
)
def test_incomplete_or_missing_deliveries_are_not_found(deliveries, date):
    with pytest.raises(InventoryNotFoundError, match=f"s3://{INVENTORY_BUCKET}/{PREFIX}/"):
        resolve(deliveries, date)


@pytest.mark.parametrize(
    ("date", "wanted"),
    [
        ("latest", "no complete inventory delivery under"),
        ("2024-06-01", "no complete inventory delivery on 2024-06-01 under"),
        ("2024-06-01-00-00", "no complete inventory delivery 2024-06-01T00-00Z (dt=2024-06-01-00-00) under"),
    ],
)
def test_a_missing_delivery_is_said_in_plain_words(s3, date, wanted):
    with pytest.raises(InventoryNotFoundError) as raised:
        resolve(s3, date)

    assert str(raised.value).startswith(f"Found {wanted} s3://")


def test_no_inventory_at_all_says_where_it_looked(s3):
    with pytest.raises(InventoryNotFoundError, match="InventoryPrefix"):
        resolve(s3, "latest")


def test_latest_lists_folders_not_data(deliveries):
    """Resolving reads one listing page of folders and one manifest, however large the inventory."""
    calls: list[str] = []
    deliveries.meta.events.register("before-call.s3.*", lambda model, **kw: calls.append(model.name))
    resolve(deliveries, "latest")
    assert calls == ["ListObjectsV2", "GetObject"]


def test_folder_and_partition_names_map_both_ways():
    assert layout.partition_of("2024-05-01T00-00Z") == "2024-05-01-00-00"
    assert layout.folder_of("2024-05-01-23-59") == "2024-05-01T23-59Z"
    with pytest.raises(ValueError):
        layout.partition_of("data")


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
@pytest.mark.parametrize("versions", ["Current", "All"])
def test_s3s_file_schemas_read_as_the_tables_columns(s3, fmt, versions):
    delivery = deliver(s3, at(1), fmt=fmt, versions=versions)
    columns = layout.schema_columns(delivery.manifest["fileSchema"])
    assert columns == list(layout.table_columns(versions))
    layout.check_schema(columns, versions=versions, needed=["bucket", "key"])


@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
@pytest.mark.parametrize("versions", ["Current", "All"])
def test_table_columns_are_the_templates(fmt, versions):
    _, table = inventory_table_input({"InventoryFormat": fmt, "InventoryVersions": versions})
    declared = [column["Name"] for column in table["StorageDescriptor"]["Columns"]]
    assert tuple(declared) == layout.table_columns(versions)


# The S3 user guide's DDL for ORC and Parquet inventories ("Querying Amazon S3 Inventory with Amazon
# Athena"): the types a hand-made table over them declares.
DOCUMENTED_COLUMNAR_TYPES = {
    "bucket": "string",
    "key": "string",
    "version_id": "string",
    "is_latest": "boolean",
    "is_delete_marker": "boolean",
    "size": "bigint",
    "last_modified_date": "timestamp",
    "e_tag": "string",
    "storage_class": "string",
    "is_multipart_uploaded": "boolean",
    "replication_status": "string",
    "encryption_status": "string",
    "object_lock_retain_until_date": "bigint",
    "object_lock_mode": "string",
    "object_lock_legal_hold_status": "string",
    "intelligent_tiering_access_tier": "string",
    "bucket_key_status": "string",
    "checksum_algorithm": "string",
}


@pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
def test_columnar_template_types_are_the_documented_ones(fmt):
    _, table = inventory_table_input({"InventoryFormat": fmt, "InventoryVersions": "All"})
    declared = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert declared == DOCUMENTED_COLUMNAR_TYPES


def test_csv_field_names_become_column_names():
    assert layout.schema_columns("Bucket, Key, VersionId, IsLatest, ETag, ObjectLockRetainUntilDate") == [
        "bucket",
        "key",
        "version_id",
        "is_latest",
        "e_tag",
        "object_lock_retain_until_date",
    ]


def test_file_schema_types_are_the_files_own():
    """The derived table declares what the file holds, whichever type AWS's DDL gives elsewhere."""
    parquet = (
        "message s3.inventory { required binary bucket (UTF8); required binary key (STRING); "
        "optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); "
        "optional int64 object_lock_retain_until_date; optional boolean is_latest;}"
    )
    assert layout.schema_types(parquet) == [
        ("bucket", "string"),
        ("key", "string"),
        ("size", "bigint"),
        ("last_modified_date", "timestamp"),
        ("object_lock_retain_until_date", "bigint"),
        ("is_latest", "boolean"),
    ]
    orc = "struct<bucket:string,key:string,object_lock_retain_until_date:timestamp,size:bigint>"
    assert dict(layout.schema_types(orc))["object_lock_retain_until_date"] == "timestamp"
    assert set(dict(layout.schema_types("Bucket, Key, Size")).values()) == {"string"}
    with pytest.raises(InventorySchemaError, match="tags"):
        layout.schema_types("struct<bucket:string,key:string,tags:map<string,string>>")


@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
@pytest.mark.parametrize("selection", sorted(FIELD_SELECTIONS))
def test_any_field_selection_passes_when_the_filter_needs_only_what_it_has(s3, fmt, selection):
    delivery = deliver(s3, at(1), fmt=fmt, fields=FIELD_SELECTIONS[selection])
    columns = layout.schema_columns(delivery.manifest["fileSchema"])
    layout.check_schema(columns, versions="Current", needed=["bucket", "key"])


@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
def test_a_needed_field_the_delivery_lacks_is_named_to_enable(s3, fmt):
    delivery = deliver(s3, at(1), fmt=fmt, fields=["Size", "LastModifiedDate"])
    columns = layout.schema_columns(delivery.manifest["fileSchema"])
    layout.check_schema(columns, versions="Current", needed=["bucket", "key", "size"])
    with pytest.raises(InventorySchemaError, match="needs StorageClass, ObjectOwner,") as raised:
        layout.check_schema(columns, versions="Current", needed=["key", "storage_class", "object_owner"])
    assert "OptionalFields" in str(raised.value)
    assert "The delivery has: Bucket, Key, Size, LastModifiedDate." in str(raised.value)


def test_versions_setting_must_match_the_stack(s3):
    delivery = deliver(s3, at(1), versions="All")
    with pytest.raises(InventorySchemaError, match="InventoryVersions to All"):
        layout.check_schema(
            layout.schema_columns(delivery.manifest["fileSchema"]), versions="Current", needed=[]
        )


# ---------------------------------------------------------------- the handler


def event(spec: dict | None = None) -> dict:
    return {
        "spec": {
            "name": "retag",
            "inventory": {"database": "batchpipe_inventory", "table": "inventory", "date": "latest"},
            "filter": {"prefixes": ["a "], "where": None, "latestOnly": False},
            "operation": {"S3PutObjectTagging": {"TagSet": []}},
            "maxObjects": 10,
        }
        | (spec or {}),
        "run": {
            "name": "retag",
            "executionId": "arn:aws:states:us-east-1:123456789012:execution:sm:retag-1",
            "executionName": "retag-1",
            "prefix": "runs/retag/retag-1/",
            "bucket": "pipeline",
        },
    }


def invoke(payload: dict) -> dict:
    context = LambdaContext(
        "PlanQueryFunction", "arn:aws:lambda:us-east-1:123456789012:function:PlanQueryFunction"
    )
    return app.handler(json.loads(json.dumps(payload)), context)


def test_handler_returns_the_query_document(deliveries):
    result = invoke(event())
    assert set(result) == {
        "sql",
        "workGroup",
        "catalog",
        "database",
        "table",
        "partition",
        "outputPrefix",
        "delivery",
    }
    assert result["delivery"] == {
        "folder": "2024-05-02T12-30Z",
        "manifest": f"s3://{INVENTORY_BUCKET}/{PREFIX}/2024-05-02T12-30Z/manifest.json",
        "files": 1,
        "sizeBytes": result["delivery"]["sizeBytes"],
    }
    assert result["delivery"]["sizeBytes"] > 0
    assert result["workGroup"] == "stack-batchpipe"
    assert result["database"] == "batchpipe_inventory"
    assert result["partition"] == "2024-05-02-12-30"
    assert result["outputPrefix"] == "s3://pipeline/runs/retag/retag-1/athena/"
    assert result["sql"].startswith("UNLOAD (\nSELECT bucket, replace(url_encode(key), '+', '%20') AS key\n")
    assert "  WHERE dt = '2024-05-02-12-30'" in result["sql"]
    assert "WHERE starts_with(key, 'a ')" in result["sql"]
    assert result["sql"].endswith(
        f"TO '{result['outputPrefix']}' WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')"
    )


def test_handler_takes_the_stack_table_when_the_spec_names_none(deliveries):
    result = invoke(event({"inventory": {"database": None, "table": None, "date": "2024-05-01"}}))
    assert result["database"] == "batchpipe_inventory"
    assert re.search(r'FROM "batchpipe_inventory"."inventory_[0-9a-f]{16}"', result["sql"])
    assert result["partition"] == "2024-05-01-00-00"


def test_handler_reports_a_missing_inventory(deliveries):
    with pytest.raises(InventoryNotFoundError, match="2024-06-01"):
        invoke(event({"inventory": {"date": "2024-06-01"}}))


def test_handler_refuses_a_format_other_than_the_stacks(deliveries, monkeypatch):
    monkeypatch.setenv("INVENTORY_FORMAT", "Parquet")
    with pytest.raises(InventorySchemaError, match="InventoryFormat"):
        invoke(event())


def test_handler_checks_where_before_looking_for_the_inventory(s3):
    with pytest.raises(SpecValidationError, match="version_id"):
        invoke(event({"filter": {"where": "version_id = 'x'"}}))


# ---------------------------------------------------------------- the per-delivery table


def tables(glue) -> dict[str, list[str]]:
    found = glue.get_tables(DatabaseName="batchpipe_inventory")["TableList"]
    return {t["Name"]: [c["Name"] for c in t["StorageDescriptor"]["Columns"]] for t in found}


def test_the_query_reads_a_table_with_exactly_the_deliverys_columns(s3, glue):
    deliver(s3, at(1), fields=["Size", "StorageClass", "ObjectOwner"])
    result = invoke(event({"filter": {"where": "object_owner = 'me' AND size > 0", "latestOnly": False}}))
    assert tables(glue)[result["table"]] == ["bucket", "key", "size", "storage_class", "object_owner"]
    made = glue.get_table(DatabaseName="batchpipe_inventory", Name=result["table"])["Table"]
    base = glue.get_table(DatabaseName="batchpipe_inventory", Name="inventory")["Table"]
    assert made["StorageDescriptor"]["Location"] == base["StorageDescriptor"]["Location"]
    assert made["StorageDescriptor"]["SerdeInfo"] == base["StorageDescriptor"]["SerdeInfo"]
    assert made["PartitionKeys"] == base["PartitionKeys"]
    assert {k: v for k, v in made["Parameters"].items() if k.startswith("projection.")} == {
        k: v for k, v in base["Parameters"].items() if k.startswith("projection.")
    }


def test_same_file_schema_same_table_and_a_new_one_when_the_configuration_changes(s3, glue):
    deliver(s3, at(1), fields=["Size"])
    first = invoke(event())["table"]
    assert invoke(event())["table"] == first
    deliver(s3, at(2), fields=["Size", "ETag"])
    second = invoke(event())["table"]
    assert second != first
    assert set(tables(glue)) == {"inventory", first, second}


def test_old_delivery_tables_are_pruned_to_the_newest_few(s3, glue):
    from batchpipe_core.inventory_table import KEEP

    selections = [["Size"], ["ETag"], ["Size", "ETag"], ["StorageClass"], ["Size", "StorageClass"], []]
    made = []
    for day, fields in enumerate(selections, start=1):
        deliver(s3, at(day), fields=fields)
        made.append(invoke(event())["table"])
    assert set(tables(glue)) == {"inventory", *made[-KEEP:]}


def test_a_columnar_table_takes_the_files_own_types(s3, glue, monkeypatch):
    monkeypatch.setenv("INVENTORY_FORMAT", "Parquet")
    glue.delete_table(DatabaseName="batchpipe_inventory", Name="inventory")
    create_inventory_table(glue, STACK_PARAMETERS | {"InventoryFormat": "Parquet"})
    deliver(s3, at(1), fmt="Parquet", fields=["Size", "ObjectLockRetainUntilDate", "LifecycleExpirationDate"])
    made = glue.get_table(DatabaseName="batchpipe_inventory", Name=invoke(event())["table"])["Table"]
    assert {c["Name"]: c["Type"] for c in made["StorageDescriptor"]["Columns"]} == {
        "bucket": "string",
        "key": "string",
        "size": "bigint",
        "object_lock_retain_until_date": "timestamp",
        "lifecycle_expiration_date": "timestamp",
    }


@pytest.mark.parametrize(
    ("filter_", "field"),
    [
        ({"storageClasses": ["STANDARD"]}, "StorageClass"),
        ({"minSizeBytes": 1}, "Size"),
        ({"modifiedAfter": "2024-01-01T00:00:00Z"}, "LastModifiedDate"),
        ({"encryptionStatuses": ["NOT-SSE"]}, "EncryptionStatus"),
        ({"where": "replication_status = 'FAILED'"}, "ReplicationStatus"),
        ({"where": "object_owner IS NULL"}, "ObjectOwner"),
    ],
)
def test_a_filter_field_the_delivery_lacks_fails_before_any_query_naming_it(s3, glue, filter_, field):
    deliver(s3, at(1), fields=[])
    with pytest.raises(InventorySchemaError, match=f"The filter needs {field}, which this inventory"):
        invoke(event({"filter": {"latestOnly": False, **filter_}}))
    assert set(tables(glue)) == {"inventory"}


def test_a_delivery_before_the_projection_range_fails_naming_inventory_start_date(s3):
    """Athena would read no rows from a partition outside the projection range: never a silent zero."""
    deliver(s3, datetime(2024, 4, 30, 23, tzinfo=UTC))
    with pytest.raises(InventoryNotReadableError, match="InventoryStartDate=2024-04-30-23-00 or earlier"):
        invoke(event())


def test_a_table_over_another_location_fails_naming_the_settings(s3, glue):
    deliver(s3, at(1))
    _, other = inventory_table_input(STACK_PARAMETERS | {"InventoryPrefix": "elsewhere/b/c"})
    glue.create_table(DatabaseName="batchpipe_inventory", TableInput=other | {"Name": "other"})
    with pytest.raises(InventoryNotReadableError, match="reads s3://inventory-dest/elsewhere/b/c/hive"):
        invoke(event({"inventory": {"table": "other"}}))


def test_a_missing_table_is_named(s3):
    deliver(s3, at(1))
    with pytest.raises(InventoryNotReadableError, match=r"batchpipe_inventory\.nope does not exist"):
        invoke(event({"inventory": {"table": "nope"}}))
