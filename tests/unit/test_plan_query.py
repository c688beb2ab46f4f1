"""PlanQuery: which inventory delivery a spec means, whether its schema fits, and the query document."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from batchpipe_core import inventory_layout as layout
from batchpipe_core.errors import InventoryNotFoundError, SpecValidationError
from batchpipe_core.inventory_layout import InventorySchemaError
from batchpipe_core.observability import metrics
from batchpipe_local.inventory import (
    InventoryObject,
    inventory_table_input,
    render_inventory,
    write_inventory,
)
from batchpipe_local.lambdas import LambdaContext

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from plan_query import app  # noqa: E402

REGION = "us-east-1"
INVENTORY_BUCKET = "inventory-dest"
PREFIX = "inventory/my-source-bucket/all-objects"
OBJECTS = [InventoryObject(bucket="my-source-bucket", key="a b+c", size=3)]

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
        yield client


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
    layout.check_schema(columns, inventory_format=fmt, versions=versions, needed=["bucket", "key"])


@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
@pytest.mark.parametrize("versions", ["Current", "All"])
def test_table_columns_are_the_templates(fmt, versions):
    _, table = inventory_table_input({"InventoryFormat": fmt, "InventoryVersions": versions})
    declared = [column["Name"] for column in table["StorageDescriptor"]["Columns"]]
    assert tuple(declared) == layout.table_columns(versions)


def test_csv_field_names_become_column_names():
    assert layout.schema_columns("Bucket, Key, VersionId, IsLatest, ETag, ObjectLockRetainUntilDate") == [
        "bucket",
        "key",
        "version_id",
        "is_latest",
        "e_tag",
        "object_lock_retain_until_date",
    ]


def test_csv_without_a_field_the_table_reads_by_position_names_the_field_to_enable(s3):
    fields = [f for f in ("Size", "LastModifiedDate", "ETag", "StorageClass") if f != "ETag"]
    delivery = deliver(s3, at(1), fields=fields)
    with pytest.raises(InventorySchemaError, match="ETag") as raised:
        layout.check_schema(
            layout.schema_columns(delivery.manifest["fileSchema"]),
            inventory_format="CSV",
            versions="Current",
            needed=["bucket", "key"],
        )
    assert "ChecksumAlgorithm" in str(raised.value)


def test_csv_with_extra_trailing_fields_is_fine(s3):
    fields = [*layout._FIELD_OF_COLUMN.values(), "ObjectOwner"]
    delivery = deliver(s3, at(1), fields=fields)
    layout.check_schema(
        layout.schema_columns(delivery.manifest["fileSchema"]),
        inventory_format="CSV",
        versions="Current",
        needed=[],
    )


@pytest.mark.parametrize("fmt", ["Parquet", "ORC"])
def test_columnar_inventory_without_a_needed_column_is_refused(s3, fmt):
    delivery = deliver(s3, at(1), fmt=fmt, fields=["Size", "LastModifiedDate"])
    columns = layout.schema_columns(delivery.manifest["fileSchema"])
    layout.check_schema(columns, inventory_format=fmt, versions="Current", needed=["bucket", "key", "size"])
    with pytest.raises(InventorySchemaError, match="StorageClass"):
        layout.check_schema(
            columns, inventory_format=fmt, versions="Current", needed=["key", "storage_class"]
        )


def test_versions_setting_must_match_the_stack(s3):
    delivery = deliver(s3, at(1), versions="All")
    with pytest.raises(InventorySchemaError, match="InventoryVersions to All"):
        layout.check_schema(
            layout.schema_columns(delivery.manifest["fileSchema"]),
            inventory_format="CSV",
            versions="Current",
            needed=[],
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
    assert set(result) == {"sql", "workGroup", "database", "partition", "outputPrefix"}
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
    assert 'FROM "batchpipe_inventory"."inventory"' in result["sql"]
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
