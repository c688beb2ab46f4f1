"""ARNs for every partition, and the inventory's SSE-KMS key granted to exactly its readers.

Both read template.yaml through the project's own intrinsic-function resolver, so they check the
values CloudFormation would compute, not the spelling of the template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchpipe.local.template import Resolver, load_template, parameter_values

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
KEY_PARAMETER = "InventoryKmsKeyArn"
KEY_CONDITION = "HasInventoryKmsKey"
INVENTORY_BUCKET_PARAMETER = "InventoryBucket"
SAM_GENERATED_ROLE = "{}Role"  # SAM names a function's or state machine's generated role so

# Partitions where S3 Batch Operations, Step Functions and Athena all exist.
PARTITIONS = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


# Parameters whose values are ARNs the user types (empty by default), and a value of each in the
# partition under test: every statement they feed then exists and is checked.
ARN_LIST_PARAMETERS = {
    "LambdaInvokeFunctionArns": "arn:{partition}:lambda:{region}:123456789012:function:per-object",
    "KmsKeyArns": "arn:{partition}:kms:{region}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}
# The parameters `sam deploy --guided` must ask for (no default), answered as a user would.
REQUIRED_ANSWERS = {
    "InventoryBucket": "inventory-destination",
    "InventoryPrefix": "inventory/source-bucket/all-objects",
    "SourceBuckets": "source-bucket",
}


def _arn_parameters(cfn: dict[str, Any], partition: str, region: str, with_key: bool) -> dict[str, Any]:
    """Parameters whose values are ARNs the user types: given in the partition under test."""
    overrides: dict[str, Any] = dict(REQUIRED_ANSWERS, TargetBuckets="target-bucket")
    for name, example in ARN_LIST_PARAMETERS.items():
        overrides[name] = example.format(partition=partition, region=region)
    if with_key:
        overrides[KEY_PARAMETER] = (
            f"arn:{partition}:kms:{region}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        )
    return overrides


def _sam_event_rules(cfn: dict[str, Any]) -> set[str]:
    return {
        logical_id + event_name
        for logical_id, resource in cfn["Resources"].items()
        for event_name, event in resource.get("Properties", {}).get("Events", {}).items()
        if event["Type"] in ("EventBridgeRule", "Schedule")
    }


def resolved_resources(cfn: dict[str, Any], partition: str, with_key: bool = True) -> dict[str, Any]:
    region = PARTITIONS[partition]
    account = "123456789012"

    def attr(logical_id: str, attribute: str | None) -> str:
        if attribute is None or attribute not in ("Arn", "TopicArn"):
            return f"{logical_id.lower()}-name"
        if logical_id not in cfn["Resources"]:
            # A rule SAM generates for a function's event, referable as <function><event name>.
            assert logical_id in _sam_event_rules(cfn), f"{logical_id} is not a resource of the template"
            return f"arn:{partition}:events:{region}:{account}:rule/{logical_id}"
        service = cfn["Resources"][logical_id]["Type"].split("::")[1].lower()
        return f"arn:{partition}:{service}:{region}:{account}:{logical_id}"

    resolver = Resolver(
        template=cfn,
        parameters=parameter_values(cfn, _arn_parameters(cfn, partition, region, with_key)),
        pseudo={
            "AWS::Partition": partition,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::StackName": "batchpipe",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
            # Roles SAM generates for functions and state machines are referable by these names.
            **{
                SAM_GENERATED_ROLE.format(logical_id): f"{logical_id.lower()}-role"
                for logical_id, resource in cfn["Resources"].items()
                if resource["Type"].startswith("AWS::Serverless::")
            },
        },
        attr=attr,
    )
    return {
        logical_id: resolver.resolve(resource.get("Properties", {}))
        for logical_id, resource in cfn["Resources"].items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }


def _arns(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _arns(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _arns(value, f"{where}[{index}]")
    elif isinstance(node, str):
        # ARNs also hide inside JSON bodies (dashboard) and state machine substitutions.
        for match in re.finditer(r"arn:[A-Za-z0-9*-]*:[a-z0-9-]+:", node):
            yield where, node[match.start() : match.start() + 60]


@pytest.mark.parametrize("partition", sorted(PARTITIONS))
def test_every_arn_the_template_builds_is_in_the_stack_partition(cfn: dict[str, Any], partition: str) -> None:
    resources = resolved_resources(cfn, partition)
    wrong = [
        f"{where}: {arn}"
        for where, arn in _arns(resources, "Resources")
        if not arn.startswith(f"arn:{partition}:")
    ]
    assert not wrong, (
        f"ARNs outside partition {partition} (build them with ${{AWS::Partition}}):\n" + "\n".join(wrong)
    )


def _inventory_readers(cfn: dict[str, Any]) -> set[str]:
    """Roles (SAM-generated ones by their generated logical ID) that may read inventory objects."""
    readers = set()
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] not in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            continue
        for policy in resource.get("Properties", {}).get("Policies", []):
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                actions = statement.get("Action", [])
                actions = actions if isinstance(actions, list) else [actions]
                reads = "s3:GetObject" in actions
                on_inventory = f"${{{INVENTORY_BUCKET_PARAMETER}}}/" in json.dumps(statement.get("Resource"))
                if statement.get("Effect") == "Allow" and reads and on_inventory:
                    readers.add(SAM_GENERATED_ROLE.format(logical_id))
    return readers


def _key_policies(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in cfn["Resources"].items()
        if KEY_PARAMETER in json.dumps(resource)
        and resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::RolePolicy", "AWS::IAM::ManagedPolicy")
    }


def test_inventory_key_parameter_is_optional_and_takes_a_key_arn(cfn: dict[str, Any]) -> None:
    declaration = cfn["Parameters"][KEY_PARAMETER]
    assert declaration["Type"] == "String"
    assert declaration["Default"] == ""
    pattern = declaration["AllowedPattern"]
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(
        pattern, "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    assert re.fullmatch(pattern, "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd")
    # An alias ARN would not match the key S3 names in the request: KMS authorizes by key ARN.
    assert not re.fullmatch(pattern, "arn:aws:kms:eu-west-1:123456789012:alias/inventory")
    assert cfn["Conditions"][KEY_CONDITION] == {"Fn::Not": [{"Fn::Equals": [{"Ref": KEY_PARAMETER}, ""]}]}


def test_every_inventory_reader_may_decrypt_the_inventory_key_and_nobody_else(cfn: dict[str, Any]) -> None:
    readers = _inventory_readers(cfn)
    # Athena reads with the state machine's credentials; PlanQuery reads delivery manifests.
    assert {"PipelineStateMachineRole", "PlanQueryFunctionRole"} <= readers
    policies = _key_policies(cfn)
    assert len(policies) == 1, f"one policy grants the inventory key, found {sorted(policies)}"
    ((logical_id, policy),) = policies.items()
    assert policy.get("Condition") == KEY_CONDITION, (
        f"{logical_id} must exist only when {KEY_PARAMETER} is set"
    )
    properties = policy["Properties"]
    assert {role["Ref"] for role in properties["Roles"]} == readers
    (statement,) = properties["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] in ("kms:Decrypt", ["kms:Decrypt"]), (
        "least privilege: reading needs only Decrypt"
    )
    assert statement["Resource"] == {"Ref": KEY_PARAMETER}
    # Only through S3, and only for the inventory's objects (S3's encryption context is the object
    # ARN, or the bucket ARN when an S3 Bucket Key is used).
    assert statement["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}
    }
    assert statement["Condition"]["StringLike"] == {
        "kms:EncryptionContext:aws:s3:arn": [
            {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{INVENTORY_BUCKET_PARAMETER}}}"},
            {
                "Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{INVENTORY_BUCKET_PARAMETER}}}/${{InventoryPrefix}}/*"
            },
        ]
    }


def test_without_an_inventory_key_no_kms_grant_exists(cfn: dict[str, Any]) -> None:
    assert not any(
        KEY_PARAMETER in json.dumps(r) for r in resolved_resources(cfn, "aws", with_key=False).values()
    )


@pytest.mark.parametrize("doc", ["INVENTORY_SETUP.md", "DEPLOY.md"])
def test_inventory_key_parameter_is_documented(doc: str) -> None:
    assert KEY_PARAMETER in (REPO_ROOT / "docs" / doc).read_text(encoding="utf-8")
