"""Inventories as configurations really have them, through the real state machine: only the required
fields, a typical selection (Size, LastModifiedDate, StorageClass, ETag, EncryptionStatus) and every
field including the newer ones (ObjectAccessControlList, ObjectOwner, LifecycleExpirationDate; all
versions), each as CSV.gz, Parquet and ORC. The dry-run manifest equals the Python reference over the
same rows (adversarial keys included); a filter on a field the delivery lacks fails before any query or
job, naming the field to enable."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from batchpipe.local import inventory as inv
from batchpipe.local.stack import LocalStack
from batchpipe.local.world import World
from tests.statemachine.test_manifest_stage import manifest_rows
from tests.unit.test_query_athena import CASES, SOURCE, Case, reference, rows_of

TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def _with_newer_fields(rows: list[inv.InventoryObject]) -> list[inv.InventoryObject]:
    """Values for the fields the generator leaves empty, so filters on them select something."""
    for index, row in enumerate(rows):
        row.object_owner = ("owner-a", "owner-b", None)[index % 3]
        row.lifecycle_expiration_date = datetime(2026 + index % 5, 1, 1, tzinfo=UTC) if index % 2 else None
        row.object_access_control_list = "eyJ2ZXJzaW9uIjoiMjAyMi0xMS0xMCJ9" if index % 4 == 0 else None
    return rows


SELECTIONS = {
    # (optional fields, versions, runs that must match the reference, a filter the delivery cannot serve)
    "required": ((), "Current", ["no filter", "prefixes", "keyRegex"], ({"minSizeBytes": 1}, "Size")),
    "typical": (
        inv.FIELD_SELECTIONS["typical"],
        "Current",
        ["prefix with quotes and space", "typical fields"],
        ({"where": "replication_status = 'FAILED'"}, "ReplicationStatus"),
    ),
    "all": (inv.FIELD_SELECTIONS["all"], "All", ["everything", "newer fields"], None),
}
RUNS = {
    **CASES,
    "typical fields": Case(
        {
            "storageClasses": ["STANDARD", "GLACIER"],
            "minSizeBytes": 1,
            "modifiedAfter": "2020-01-01T00:00:00Z",
            "encryptionStatuses": ["SSE-S3", "NOT-SSE"],
            "where": "e_tag IS NOT NULL",
        },
        lambda o: (
            o.storage_class in ("STANDARD", "GLACIER")
            and (o.size or 0) >= 1
            and o.last_modified_date >= datetime(2020, 1, 1, tzinfo=UTC)
            and o.encryption_status in ("SSE-S3", "NOT-SSE")
            and o.e_tag is not None
        ),
    ),
    "newer fields": Case(
        {
            "latestOnly": False,
            "where": "object_owner = 'owner-a' AND (lifecycle_expiration_date < TIMESTAMP '2028-01-01 00:00:00' "
            "OR object_access_control_list IS NOT NULL)",
        },
        lambda o: (
            o.object_owner == "owner-a"
            and (
                (o.lifecycle_expiration_date is not None and o.lifecycle_expiration_date.year < 2028)
                or o.object_access_control_list is not None
            )
        ),
    ),
}
LAYOUTS = [(selection, fmt) for selection in SELECTIONS for fmt in ("CSV", "Parquet", "ORC")]


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{s}-{f}" for s, f in LAYOUTS])
def layout(request):
    selection, fmt = request.param
    fields, versions, _, _ = SELECTIONS[selection]
    world = World(source_bucket=SOURCE, fmt=fmt, versions=versions, fields=fields)
    rows = _with_newer_fields(rows_of(versions))
    with LocalStack(parameters=world.parameters()) as stack:
        s3 = stack.client("s3")
        world.create_buckets(s3)
        world.deliver(s3, rows, delivery_time=datetime(2024, 5, 1, tzinfo=UTC), rows_per_file=100)
        yield stack, rows, selection


def _run(stack, filter_: dict, name: str):
    spec = {"name": "fields", "filter": filter_, "operation": TAGGING, "dryRun": True}
    return stack.run(spec, name=re.sub(r"[^A-Za-z0-9-]", "-", name)).output


def test_every_selection_selects_exactly_the_reference(layout):
    stack, rows, selection = layout
    _, versions, runs, _ = SELECTIONS[selection]
    for case_name in runs:
        case = RUNS[case_name]
        summary = _run(stack, case.filter, case_name)
        assert summary["status"] == "DRY_RUN", (case_name, summary)
        if "latestOnly" not in case.filter:
            case = Case(case.filter, lambda o, keep=case.keep: keep(o) and o.is_latest is not False)
        expected = reference(rows, case, versions)
        assert expected, f"{case_name} selects nothing: the comparison would prove little"
        assert summary["manifest"]["objects"] == sum(expected.values()), case_name
        manifest_rows(stack, summary, versions, expected)


def test_a_filter_on_a_field_the_delivery_lacks_fails_before_any_job(layout):
    stack, _, selection = layout
    missing = SELECTIONS[selection][3]
    if missing is None:
        pytest.skip("this delivery has every field")
    filter_, field = missing
    summary = _run(stack, filter_, f"missing-{field}")
    assert summary["status"] == "FAILED"
    assert summary["error"] == "InventorySchemaError"
    assert f"The filter needs {field}, which this inventory delivery does not contain" in summary["cause"]
    assert summary["manifest"] is None
    assert stack.client("s3control").list_jobs(AccountId=stack.account_id)["Jobs"] == []
