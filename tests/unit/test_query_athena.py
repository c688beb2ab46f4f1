"""End to end on the embedded AWS: PlanQuery's SQL runs on the DuckDB-backed Athena over a real-layout
inventory (CSV.gz, Parquet, ORC; current and all versions), BuildManifest joins the output, and the
manifest equals a Python reference computed from the same inventory rows, for every filter field.

Keys include spaces, ``+``, ``%``, ``=``, ``,``, quotes, ``#``, ``?``, unicode, tabs, backslashes and
1,024-byte keys; every manifest key must give back the exact key under both unquote and unquote_plus.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, unquote_plus

import boto3
import pytest
from moto import mock_aws

from batchpipe.local.athena import install_athena
from batchpipe.local.glue import create_inventory_table
from batchpipe.local.inventory import (
    InventoryObject,
    current_objects,
    generate_objects,
    write_inventory,
)
from batchpipe.local.lambdas import LambdaContext
from batchpipe_core.observability import metrics

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from build_manifest import app as build_manifest_app  # noqa: E402
from plan_query import app as plan_query_app  # noqa: E402

REGION = "us-east-1"
SOURCE = "my-source-bucket"
INVENTORY_BUCKET = "inventory-dest"
PIPELINE = "pipeline"
DATABASE = "batchpipe_inventory"
WORKGROUP = "batchpipe"
DELIVERED = datetime(2024, 5, 1, tzinfo=UTC)

# Keys the generator may not produce on every seed, each with a distinct shape.
SPECIAL_KEYS = [
    "a b+c",
    "plus+only",
    "100%/%20literal%2B",
    "k=v&x=y,z",
    "quote'single\"double",
    "hash#frag?query=1",
    "ünïcødé/日本/🎉",
    "tab\there\\back",
    "ends with space ",
    "~tilde*star",
    "k/" + "é" * 511,  # exactly 1,024 bytes of UTF-8
    "x" * 1024,
]
assert all(len(k.encode()) <= 1024 for k in SPECIAL_KEYS) and len(SPECIAL_KEYS[-2].encode()) == 1024


def special_objects() -> list[InventoryObject]:
    return [
        InventoryObject(
            bucket=SOURCE,
            key=key,
            version_id=None,
            size=index * 1000,
            last_modified_date=datetime(2021 + index % 4, 1 + index % 12, 1, 12, 0, 0, tzinfo=UTC),
            e_tag=f"{index:032x}",
            storage_class=["STANDARD", "GLACIER", "STANDARD_IA"][index % 3],
            encryption_status=["SSE-S3", "NOT-SSE"][index % 2],
            replication_status="FAILED" if index % 5 == 0 else None,
        )
        for index, key in enumerate(SPECIAL_KEYS)
    ]


def rows_of(versions: str) -> list[InventoryObject]:
    generated = generate_objects(240, seed=7, bucket=SOURCE, versioned=versions == "All")
    rows = generated + special_objects()
    return rows if versions == "All" else current_objects(rows)


# ---------------------------------------------------------------- cases: filter + Python reference


@dataclass(frozen=True)
class Case:
    filter: dict
    keep: Callable[[InventoryObject], bool]


def _ms(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


CASES = {
    "no filter": Case({}, lambda o: True),
    "prefixes": Case(
        {
            "prefixes": [
                "photos/2019/",
                "c++/src/lib+extra/",
                "odd/a,b;c=d/",
                "My Documents/",
                "100%/%20",
                "ünï",
            ]
        },
        lambda o: o.key.startswith(
            ("photos/2019/", "c++/src/lib+extra/", "odd/a,b;c=d/", "My Documents/", "100%/%20", "ünï")
        ),
    ),
    "prefix with quotes and space": Case(
        {"prefixes": ["quote'single\"", "ends with "]},
        lambda o: o.key.startswith(("quote'single\"", "ends with ")),
    ),
    "keyRegex": Case(
        {"keyRegex": "\\.(jpe?g|JPG)$|\\+"}, lambda o: re.search(r"\.(jpe?g|JPG)$|\+", o.key) is not None
    ),
    "storageClasses": Case(
        {"storageClasses": ["GLACIER", "DEEP_ARCHIVE"]},
        lambda o: o.storage_class in ("GLACIER", "DEEP_ARCHIVE"),
    ),
    "encryptionStatuses": Case(
        {"encryptionStatuses": ["NOT-SSE", "SSE-KMS"]},
        lambda o: o.encryption_status in ("NOT-SSE", "SSE-KMS"),
    ),
    "minSizeBytes": Case({"minSizeBytes": 20000}, lambda o: o.size is not None and o.size >= 20000),
    "maxSizeBytes": Case({"maxSizeBytes": 5000}, lambda o: o.size is not None and o.size <= 5000),
    "modifiedBefore": Case(
        {"modifiedBefore": "2022-03-01T00:00:00Z"},
        lambda o: o.last_modified_date < _ms("2022-03-01T00:00:00Z"),
    ),
    "modifiedAfter": Case(
        {"modifiedAfter": "2023-06-15T12:30:00.5Z"},
        lambda o: o.last_modified_date >= _ms("2023-06-15T12:30:00.5Z"),
    ),
    "latestOnly": Case({"latestOnly": True}, lambda o: bool(o.is_latest)),
    "where": Case(
        {"where": "replication_status = 'FAILED' OR (is_multipart_uploaded AND size > 1000)"},
        lambda o: o.replication_status == "FAILED" or bool(o.is_multipart_uploaded and (o.size or 0) > 1000),
    ),
    "where on key and dates": Case(
        {"where": "strpos(key, ' ') > 0 AND last_modified_date >= TIMESTAMP '2021-01-01 00:00:00'"},
        lambda o: " " in o.key and o.last_modified_date >= _ms("2021-01-01T00:00:00Z"),
    ),
    "everything": Case(
        {
            "prefixes": ["photos/", "logs/", "a b", "x"],
            "keyRegex": "[0-9]",
            "storageClasses": ["STANDARD", "STANDARD_IA", "INTELLIGENT_TIERING"],
            "minSizeBytes": 1,
            "maxSizeBytes": 10**9,
            "modifiedAfter": "2019-06-01T00:00:00Z",
            "modifiedBefore": "2025-01-01T00:00:00Z",
            "encryptionStatuses": ["SSE-S3", "NOT-SSE"],
            "latestOnly": True,
            "where": "e_tag IS NOT NULL",
        },
        lambda o: (
            o.key.startswith(("photos/", "logs/", "a b", "x"))
            and re.search("[0-9]", o.key) is not None
            and o.storage_class in ("STANDARD", "STANDARD_IA", "INTELLIGENT_TIERING")
            and 1 <= (o.size or 0) <= 10**9
            and _ms("2019-06-01T00:00:00Z") <= o.last_modified_date < _ms("2025-01-01T00:00:00Z")
            and o.encryption_status in ("SSE-S3", "NOT-SSE")
            and bool(o.is_latest)
            and o.e_tag is not None
        ),
    ),
    "nothing": Case({"prefixes": ["no/such/prefix/"]}, lambda o: False),
}


def reference(rows: list[InventoryObject], case: Case, versions: str) -> Counter:
    kept = [o for o in rows if not o.is_delete_marker and case.keep(o)]
    if versions == "All":
        return Counter((o.bucket, o.key, o.version_id or "null") for o in kept)
    return Counter((o.bucket, o.key) for o in kept)


# ---------------------------------------------------------------- the embedded AWS, one per inventory


@dataclass
class World:
    fmt: str
    versions: str
    rows: list[InventoryObject]
    s3: object
    athena: object
    runs: int = 0


LAYOUTS = [(fmt, versions) for fmt in ("CSV", "Parquet", "ORC") for versions in ("Current", "All")]


# PlanQuery emits no metric of its own; Powertools warns about that on every call.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture(autouse=True)
def _fresh_metrics():
    """Powertools keeps metric values while metrics are disabled and raises at 100: start each test empty."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{f}-{v}" for f, v in LAYOUTS])
def world(request):
    fmt, versions = request.param
    env = {
        "ACCOUNT_ID": "123456789012",
        "PIPELINE_BUCKET": PIPELINE,
        "TOKEN_TABLE": "tokens",
        "INVENTORY_BUCKET": INVENTORY_BUCKET,
        "INVENTORY_PREFIX": f"inventory/{SOURCE}/all-objects",
        "INVENTORY_FORMAT": fmt,
        "INVENTORY_VERSIONS": versions,
        "INVENTORY_DATABASE": DATABASE,
        "INVENTORY_TABLE": "inventory",
        "ATHENA_WORKGROUP": WORKGROUP,
        "BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/batch",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:topic",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "BatchPipe",
        "POWERTOOLS_SERVICE_NAME": "batchpipe",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with mock_aws(), install_athena(polls_before_done=0, unload_rows_per_file=40):
            s3 = boto3.client("s3", region_name=REGION)
            for bucket in (INVENTORY_BUCKET, PIPELINE):
                s3.create_bucket(Bucket=bucket)
            create_inventory_table(
                boto3.client("glue", region_name=REGION),
                {
                    "InventoryBucket": INVENTORY_BUCKET,
                    "InventoryPrefix": f"inventory/{SOURCE}/all-objects",
                    "InventoryFormat": fmt,
                    "InventoryVersions": versions,
                    "InventoryDatabaseName": DATABASE,
                },
            )
            athena = boto3.client("athena", region_name=REGION)
            athena.create_work_group(
                Name=WORKGROUP,
                Configuration={
                    "ResultConfiguration": {"OutputLocation": f"s3://{PIPELINE}/athena/"},
                    "EnforceWorkGroupConfiguration": True,
                },
            )
            rows = rows_of(versions)
            write_inventory(
                s3,
                source_bucket=SOURCE,
                dest_bucket=INVENTORY_BUCKET,
                dest_prefix="inventory",
                config_id="all-objects",
                objects=rows,
                fmt=fmt,
                versions=versions,
                delivery_time=DELIVERED,
                rows_per_file=100,
            )
            yield World(fmt, versions, rows, s3, athena)


def context(name: str) -> LambdaContext:
    return LambdaContext(name, f"arn:aws:lambda:{REGION}:123456789012:function:{name}")


def run_manifest_stage(world: World, filter_: dict) -> tuple[dict, dict]:
    """PlanQuery -> StartQuery -> GetQueryStatus -> BuildManifest, as the state machine chains them."""
    world.runs += 1
    run = {
        "name": "t",
        "executionId": f"arn:aws:states:{REGION}:123456789012:execution:sm:t-{world.runs}",
        "executionName": f"t-{world.runs}",
        "prefix": f"runs/t/t-{world.runs}/",
        "bucket": PIPELINE,
    }
    spec = {
        "inventory": {"database": None, "table": None, "date": "latest"},
        "filter": filter_,
        "maxObjects": 10**6,
    }
    event = json.loads(json.dumps({"spec": spec, "run": run}))
    query = plan_query_app.handler(event, context("PlanQuery"))
    started = world.athena.start_query_execution(
        QueryString=query["sql"],
        WorkGroup=query["workGroup"],
        QueryExecutionContext={"Database": query["database"]},
    )
    status = world.athena.get_query_execution(QueryExecutionId=started["QueryExecutionId"])["QueryExecution"]
    assert status["Status"]["State"] == "SUCCEEDED", status["Status"].get("StateChangeReason")
    query |= {"execution": {"id": started["QueryExecutionId"]}, "status": {"state": "SUCCEEDED"}}
    manifest = build_manifest_app.handler(
        json.loads(json.dumps({"spec": spec, "run": run, "query": query})), context("BuildManifest")
    )
    return query, manifest


def manifest_rows(world: World, manifest: dict) -> Counter:
    if manifest["objects"] == 0:
        return Counter()
    body = world.s3.get_object(Bucket=manifest["bucket"], Key=manifest["key"])["Body"].read().decode("utf-8")
    assert body.endswith("\n")
    rows = Counter()
    for line in body.splitlines():
        fields = line.split(",")
        assert len(fields) == (3 if world.versions == "All" else 2), line
        encoded = fields[1]
        assert "+" not in encoded and " " not in encoded, encoded
        assert unquote(encoded) == unquote_plus(encoded), encoded
        rows[(fields[0], unquote(encoded), *fields[2:])] += 1
    return rows


@pytest.mark.parametrize("name", list(CASES))
def test_manifest_equals_the_python_reference(world, name):
    case = CASES[name]
    if name == "latestOnly" and world.versions == "Current":
        pytest.skip("every row of a current-versions inventory is the latest version")
    _, manifest = run_manifest_stage(world, case.filter)
    expected = reference(world.rows, case, world.versions)
    assert manifest_rows(world, manifest) == expected
    # The count is S3 Batch Operations' own (the job's TotalNumberOfTasks); the manifest stage knows
    # only whether the UNLOAD wrote anything.
    assert manifest["empty"] is (not expected)
    assert manifest["objects"] == (None if expected else 0)
    if expected:
        assert manifest["location"] == f"s3://{PIPELINE}/{manifest['key']}"
        assert set(manifest["sample"]) <= {row[1] for row in expected}
        assert len(manifest["sample"]) == min(20, sum(expected.values()))
    else:
        assert manifest["location"] is None and manifest["sample"] == []


def test_special_keys_round_trip(world):
    _, manifest = run_manifest_stage(world, {"where": "e_tag LIKE '0000000000000000000000000000000%'"})
    keys = {row[1] for row in manifest_rows(world, manifest)}
    assert keys == set(SPECIAL_KEYS)


def test_versioned_inventories_have_null_versions_and_no_delete_markers(world):
    if world.versions == "Current":
        pytest.skip("versions only in all-versions inventories")
    assert any(o.version_id is None for o in world.rows) and any(o.is_delete_marker for o in world.rows)
    _, manifest = run_manifest_stage(world, {})
    versions = [row[2] for row in manifest_rows(world, manifest)]
    assert "null" in versions and "" not in versions
    assert len(versions) == sum(1 for o in world.rows if not o.is_delete_marker)
