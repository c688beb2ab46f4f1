"""An SSE-KMS inventory's key parameter, end to end on the embedded AWS: the stack deploys with it,
InventoryKeyReaders exists (its condition holds) and grants kms:Decrypt on exactly that key (resolved
as this stack resolves it) to the roles SAM generates for the principals that read inventory files
(PlanQueryFunction, and the state machine whose credentials Athena uses), and a run over the
inventory succeeds. The local S3 does not encrypt: this tests the parameter's wiring, not KMS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchpipe.local.stack import LocalStack
from batchpipe.local.world import World

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


def test_an_inventory_key_reaches_exactly_the_inventory_readers_and_the_run_works():
    world = World()
    with LocalStack(parameters=world.parameters(InventoryKmsKeyArn=KEY)) as stack:
        s3 = stack.client("s3")
        world.create_buckets(s3)
        world.deliver(s3, world.generated(25), delivery_time=datetime(2024, 5, 1, tzinfo=UTC))
        resources = stack.template["Resources"]
        properties = resources["InventoryKeyReaders"]["Properties"]
        document = stack.resolver.resolve(properties["PolicyDocument"])
        summary = stack.run({"operation": TAGGING, "dryRun": True}, name="kms").output

    assert stack.resolver.condition(resources["InventoryKeyReaders"]["Condition"])
    (statement,) = document["Statement"]
    assert (statement["Action"], statement["Resource"]) == ("kms:Decrypt", KEY)
    # SAM names the role it generates for a function or state machine "<logical ID>Role".
    readers = {f"{name}Role" for name in ("PlanQueryFunction", "PipelineStateMachine")}
    assert {role["Ref"] for role in properties["Roles"]} == readers
    assert summary["status"] == "DRY_RUN"
    assert summary["manifest"]["objects"] == 25
