"""What `sam deploy --guided` offers must deploy, in any partition, and a second stack must not collide.

Read from template.yaml itself: the parameters a user must answer have no default (guided deploy
then asks), no default is an ARN (IAM refuses another partition's ARN), and every output says what
it is for.
"""

from __future__ import annotations

import json
from typing import Any

# The parameters only the account can answer. A default here would be a bucket that is not the
# user's: the stack would deploy and its first run fail.
REQUIRED_PARAMETERS = ("InventoryBucket", "InventoryPrefix", "SourceBuckets")
# Outputs the docs tell operators to read (DEPLOY.md, OPERATIONS.md).
DOCUMENTED_OUTPUTS = (
    "StateMachineArn",
    "PipelineBucketName",
    "NotificationTopicArn",
    "InventoryTableName",
    "TokenTableName",
)


def test_parameters_only_the_account_can_answer_have_no_default(template: dict[str, Any]) -> None:
    for name in REQUIRED_PARAMETERS:
        declaration = template["Parameters"][name]
        assert "Default" not in declaration, f"{name} must have no default, so that guided deploy asks"
        assert declaration["Description"].startswith("Required."), (
            f"{name}'s description must say it is required and what to give"
        )


def test_no_parameter_default_is_an_arn(template: dict[str, Any]) -> None:
    # arn:aws:... in IAM fails in aws-cn and aws-us-gov with MalformedPolicyDocument.
    arns = {
        name: declaration["Default"]
        for name, declaration in template["Parameters"].items()
        if "arn:" in str(declaration.get("Default", ""))
    }
    assert not arns, f"defaults that are ARNs of one partition (leave them empty): {arns}"


def test_every_output_has_a_description(template: dict[str, Any]) -> None:
    missing = sorted(key for key, output in template["Outputs"].items() if not output.get("Description"))
    assert not missing, f"outputs without a Description: {missing}"
    assert set(DOCUMENTED_OUTPUTS) <= template["Outputs"].keys()
    assert template["Outputs"]["TokenTableName"]["Value"] == {"Ref": "TokenTable"}


def test_every_schedule_is_named_after_the_stack(template: dict[str, Any]) -> None:
    # Without Name, SAM names the schedule <state machine logical ID><event name> in every stack, and
    # Scheduler names are unique per schedule group: a second stack in the region would collide.
    schedules = [
        (logical_id, event_id, event["Properties"])
        for logical_id, resource in template["Resources"].items()
        for event_id, event in resource.get("Properties", {}).get("Events", {}).items()
        if event["Type"] in ("Schedule", "ScheduleV2")
    ]
    assert schedules
    for logical_id, event_id, properties in schedules:
        assert "${AWS::StackName}" in json.dumps(properties.get("Name")), (
            f"{logical_id}.Events.{event_id} needs a Name with the stack name in it"
        )


def test_retention_never_expires_a_run_within_its_first_week(template: dict[str, Any]) -> None:
    # The lifecycle rule expires by object age, running run or not.
    allowed = [int(v) for v in template["Parameters"]["RetentionDays"]["AllowedValues"]]
    assert min(allowed) >= 7
    assert int(template["Parameters"]["RetentionDays"]["Default"]) in allowed


def test_athena_engine_version_is_pinned(resources: dict[str, Any]) -> None:
    # AUTO would let Athena change the engine the UNLOAD statement was checked against.
    (workgroup,) = [r for r in resources.values() if r["Type"] == "AWS::Athena::WorkGroup"]
    version = workgroup["Properties"]["WorkGroupConfiguration"]["EngineVersion"]["SelectedEngineVersion"]
    assert version.startswith("Athena engine version ")


def test_distributed_map_children_return_nothing(asl: dict[str, Any]) -> None:
    """A Map's output is its children's outputs in one array, within the 256 KiB payload limit;
    States.DataLimitExceeded would fail the execution past any Catch. Each child's last state ends
    with OutputPath null (output {}) unless the Map writes its results to S3 (ResultWriter)."""

    def maps(states: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for name, state in states.items():
            if state["Type"] == "Map":
                found.append((name, state))
                found += maps((state.get("ItemProcessor") or state["Iterator"])["States"])
        return found

    for name, state in maps(asl["States"]):
        if "ResultWriter" in state:
            continue
        children = (state.get("ItemProcessor") or state["Iterator"])["States"]
        ends = {child: s for child, s in children.items() if s.get("End") or s["Type"] == "Succeed"}
        for child, end in ends.items():
            assert "OutputPath" in end and end["OutputPath"] is None, (
                f'{name}\'s child state {child} ends with output; add "OutputPath": null or a ResultWriter'
            )
