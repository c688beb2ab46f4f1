"""A run that selects nothing says why; a delivery the table cannot read fails the run naming the
setting to change, never ends NOTHING_TO_DO (real state machine, embedded AWS)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import pytest

from batchpipe.local import inventory as inv
from batchpipe.local.stack import LocalStack
from batchpipe.local.world import INVENTORY_DEST_PREFIX, World

TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def deliver(stack: LocalStack, world: World, when: datetime) -> inv.InventoryDelivery:
    s3 = stack.client("s3")
    world.create_buckets(s3)
    return inv.write_inventory(
        s3,
        source_bucket=world.source_bucket,
        dest_bucket=world.inventory_bucket,
        dest_prefix=INVENTORY_DEST_PREFIX,
        config_id=world.config_id,
        objects=world.generated(30),
        fmt=world.fmt,
        delivery_time=when,
    )


def test_a_filter_that_matches_nothing_says_how_many_rows_it_read():
    world = World()
    with LocalStack(parameters=world.parameters()) as stack:
        deliver(stack, world, datetime(2024, 5, 1, tzinfo=UTC))
        spec = {"filter": {"prefixes": ["no/such/prefix/"]}, "operation": TAGGING}
        summary = stack.run(spec, name="nothing").output
    assert summary["status"] == "NOTHING_TO_DO"
    assert summary["manifest"]["objects"] == 0
    assert summary["manifest"]["why"] == (
        "the filter matched none of 30 rows of the inventory delivery 2024-05-01T00-00Z"
    )


def test_a_delivery_before_the_projection_range_fails_naming_inventory_start_date():
    world = World()
    with LocalStack(parameters=world.parameters(InventoryStartDate="2024-06-01-00-00")) as stack:
        deliver(stack, world, datetime(2024, 5, 1, tzinfo=UTC))
        summary = stack.run({"operation": TAGGING}, name="too-early").output
    assert summary["status"] == "FAILED"
    assert summary["error"] == "InventoryNotReadableError"
    assert "InventoryStartDate=2024-05-01-00-00 or earlier" in summary["cause"]


def test_a_partition_athena_cannot_read_fails_the_run_naming_what_to_check():
    """The delivery's manifest exists, but its hive/ symlink is gone: the query reads no file."""
    world = World()
    with LocalStack(parameters=world.parameters()) as stack:
        delivery = deliver(stack, world, datetime(2024, 5, 1, tzinfo=UTC))
        stack.client("s3").delete_object(Bucket=delivery.bucket, Key=delivery.symlink_key)
        summary = stack.run({"operation": TAGGING}, name="unreadable").output
    assert summary["status"] == "FAILED"
    assert summary["error"] == "InventoryNotReadableError"
    assert "Athena read nothing from the inventory delivery 2024-05-01T00-00Z" in summary["cause"]
    assert "InventoryStartDate" in summary["cause"] and "symlink.txt" in summary["cause"]


def test_blank_lines_in_csv_data_are_skipped_as_athena_skips_them():
    """Real deliveries have been seen ending with a blank line; rows around blank lines all count."""
    world = World()
    with LocalStack(parameters=world.parameters()) as stack:
        delivery = deliver(stack, world, datetime(2024, 5, 1, tzinfo=UTC))
        s3 = stack.client("s3")
        (key,) = delivery.data_keys
        text = gzip.decompress(s3.get_object(Bucket=delivery.bucket, Key=key)["Body"].read()).decode()
        blank = "\n" + text.replace("\n", "\n\n", 5) + "\n\n"
        s3.put_object(Bucket=delivery.bucket, Key=key, Body=gzip.compress(blank.encode()))
        summary = stack.run({"operation": TAGGING, "dryRun": True}, name="blank-lines").output
    assert summary["status"] == "DRY_RUN"
    assert summary["manifest"]["objects"] == 30
