"""AllowedOperations decides what the Batch Operations role may do, and ValidateSpec refuses the rest.

The role is resolved from template.yaml for several values of the parameter (the project's own
intrinsic resolver, as CloudFormation would compute it), so the check is on the policy a stack gets.
"""

from __future__ import annotations

from typing import Any

import pytest

from batchpipe.local.template import Resolver, load_template, parameter_values
from batchpipe_core.spec_stack import BYPASS_GOVERNANCE, COMPLIANCE_RETENTION

from .test_iam_usage import SOURCE_ACTIONS_BY_OPERATION, job_operations

ROLE = "BatchOperationsRole"
ANSWERS = {"InventoryBucket": "inventory", "InventoryPrefix": "inv/src/all", "SourceBuckets": "src"}
# Irreversible or exposing: never in the default (the "only when named").
NAMED_ONLY = {"S3PutObjectAcl", "S3DeleteObjectTagging", COMPLIANCE_RETENTION, BYPASS_GOVERNANCE}


def role_statements(allowed: str | None) -> list[dict[str, Any]]:
    template = load_template()
    overrides = dict(ANSWERS, TargetBuckets="dst")
    if allowed is not None:
        overrides["AllowedOperations"] = allowed
    resolver = Resolver(
        template=template,
        parameters=parameter_values(template, overrides),
        pseudo={"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"},
        attr=lambda logical_id, attribute: f"arn:aws:s3:::{logical_id.lower()}",
    )
    policies = resolver.resolve(template["Resources"][ROLE]["Properties"]["Policies"])
    return [statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]]


def source_object_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {
        action
        for statement in statements
        if any(str(r).startswith("arn:aws:s3:::src") for r in statement["Resource"])
        for action in statement["Action"]
    }


def test_default_allows_no_acl_delete_compliance_or_bypass() -> None:
    template = load_template()
    default = set(template["Parameters"]["AllowedOperations"]["Default"].split(","))
    assert not default & NAMED_ONLY
    assert default <= set(job_operations()) | NAMED_ONLY, (
        "the default names an operation botocore does not know"
    )
    granted = source_object_actions(role_statements(None))
    assert not granted & {"s3:PutObjectAcl", "s3:DeleteObjectTagging", "s3:BypassGovernanceRetention"}
    (retention,) = [s for s in role_statements(None) if s["Action"] == ["s3:PutObjectRetention"]]
    assert retention["Condition"] == {"StringNotEquals": {"s3:object-lock-mode": "COMPLIANCE"}}


@pytest.mark.parametrize(
    "operation", [o for o in SOURCE_ACTIONS_BY_OPERATION if SOURCE_ACTIONS_BY_OPERATION[o]]
)
def test_each_operation_alone_gets_its_actions(operation: str) -> None:
    granted = source_object_actions(role_statements(operation))
    needed = SOURCE_ACTIONS_BY_OPERATION[operation] | {"s3:ListBucket"}
    assert granted == needed, (
        f"AllowedOperations={operation}: granted {sorted(granted)}, needs {sorted(needed)}"
    )


def test_named_extras_grant_compliance_and_bypass() -> None:
    statements = role_statements(f"S3PutObjectRetention,{COMPLIANCE_RETENTION},{BYPASS_GOVERNANCE}")
    assert "s3:BypassGovernanceRetention" in source_object_actions(statements)
    (retention,) = [s for s in statements if s["Action"] == ["s3:PutObjectRetention"]]
    assert "Condition" not in retention


def test_copies_reach_targets_only_when_copy_is_allowed() -> None:
    def target_actions(allowed: str) -> set[str]:
        return {
            a for s in role_statements(allowed) if "arn:aws:s3:::dst/*" in s["Resource"] for a in s["Action"]
        }

    assert target_actions("S3PutObjectTagging") == set()
    assert {"s3:PutObject", "s3:PutObjectRetention", "s3:PutObjectLegalHold"} <= target_actions(
        "S3PutObjectCopy"
    )


def test_validate_spec_is_told_the_allowed_operations() -> None:
    template = load_template()
    variables = template["Resources"]["ValidateSpecFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["ALLOWED_OPERATIONS"] == {"Fn::Join": [",", {"Ref": "AllowedOperations"}]}
