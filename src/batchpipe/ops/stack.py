"""Finds a deployed batchpipe stack and its executions through CloudFormation's outputs."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .aws import Aws, OperatorError, aws_errors

# template.yaml's Outputs that make a stack a batchpipe stack (tests check they exist there).
STATE_MACHINE_OUTPUT = "StateMachineArn"
PIPELINE_BUCKET_OUTPUT = "PipelineBucketName"
REQUIRED_OUTPUTS = (STATE_MACHINE_OUTPUT, PIPELINE_BUCKET_OUTPUT)
# The spec checker's function: `start` checks a spec with its settings. A stack deployed before this
# output existed lacks it, and `start` then leaves the stack's checks to ValidateSpec.
VALIDATE_SPEC_OUTPUT = "ValidateSpecFunctionName"
# The table of each attempt's record (its job ID among them): `watch` finds a new job there.
TOKEN_TABLE_OUTPUT = "TokenTableName"  # noqa: S105 - an output name, not a secret
# template.yaml names the state machine "${AWS::StackName}-pipeline" (a test holds it to that).
PIPELINE_SUFFIX = "-pipeline"

_EXECUTION_ARN = re.compile(r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:execution:[^:]+:[^:]+$")
_STATE_MACHINE_ARN = re.compile(r"^arn:(aws[a-z-]*):states:([a-z0-9-]+):(\d{12}):stateMachine:([^:]+)$")


@dataclass(frozen=True)
class Stack:
    name: str
    state_machine_arn: str
    pipeline_bucket: str
    validate_spec_function: str | None = None
    token_table: str | None = None

    def execution_arn(self, name: str) -> str:
        partition, region, account, machine = _STATE_MACHINE_ARN.match(self.state_machine_arn).groups()
        return f"arn:{partition}:states:{region}:{account}:execution:{machine}:{name}"


STACK_ENV = "BATCHPIPE_STACK"
SAM_CONFIG = "samconfig.toml"


def default_stack_name(folder: Path | None = None) -> str:
    """The stack when --stack is not given: $BATCHPIPE_STACK, else the one `sam deploy` would deploy
    from this folder (samconfig.toml's default environment: its deploy, then its global stack_name)."""
    if os.environ.get(STACK_ENV):
        return os.environ[STACK_ENV]
    config = (folder or Path.cwd()) / SAM_CONFIG
    try:
        environment = tomllib.loads(config.read_text(encoding="utf-8")).get("default", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        environment = {}
    for command in ("deploy", "global"):
        name = (environment.get(command) or {}).get("parameters", {}).get("stack_name")
        if isinstance(name, str) and name:
            return name
    raise OperatorError(
        f"no stack: pass --stack, set {STACK_ENV}, or run where the stack's {SAM_CONFIG} names it (stack_name)"
    )


def find_stack(aws: Aws, name: str) -> Stack:
    with aws_errors(f"finding stack {name!r}"):
        try:
            stacks = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
                region = aws.session.region_name
                raise OperatorError(
                    f"stack {name!r} not found in {region}: check --stack and --region (the name you gave "
                    "`sam deploy`)"
                ) from None
            raise
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise OperatorError(
            f"stack {name!r} is not a batchpipe stack (no {', '.join(missing)} output); "
            "pass the name of the stack deployed from this repository's template.yaml"
        )
    if not _STATE_MACHINE_ARN.match(outputs[STATE_MACHINE_OUTPUT]):
        raise OperatorError(f"stack {name!r}: output {STATE_MACHINE_OUTPUT} is not a state machine ARN")
    return Stack(
        name,
        outputs[STATE_MACHINE_OUTPUT],
        outputs[PIPELINE_BUCKET_OUTPUT],
        outputs.get(VALIDATE_SPEC_OUTPUT),
        outputs.get(TOKEN_TABLE_OUTPUT),
    )


def stack_of(aws: Aws, execution_arn: str) -> Stack | None:
    """The stack whose state machine ran an execution (``<stack>-pipeline``), or None when no such
    batchpipe stack answers: what needs it then does without."""
    machine = execution_arn.split(":")[6]
    if not machine.endswith(PIPELINE_SUFFIX):
        return None
    try:
        stack = find_stack(aws, machine[: -len(PIPELINE_SUFFIX)])
    except OperatorError:
        return None
    return stack if stack.execution_arn(execution_arn.rsplit(":", 1)[1]) == execution_arn else None


def execution_arn(aws: Aws, execution: str, stack_name: str | None) -> str:
    """An execution ARN as given, or built from a name and the stack's state machine."""
    if execution.startswith("arn:"):
        if not _EXECUTION_ARN.match(execution):
            raise OperatorError(f"{execution!r} is not a Step Functions execution ARN")
        return execution
    if not stack_name:
        raise OperatorError(f"{execution!r} is an execution name: also pass --stack (or give the full ARN)")
    return find_stack(aws, stack_name).execution_arn(execution)


def describe(aws: Aws, arn: str) -> dict[str, Any]:
    with aws_errors(f"describing execution {arn}"):
        try:
            return aws.client("stepfunctions").describe_execution(executionArn=arn)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
                raise OperatorError(f"no execution {arn} (check the name, --stack and --region)") from None
            raise


def summary_of(described: dict[str, Any]) -> dict[str, Any] | None:
    """The run summary (the execution's output), or None while it runs or if it ended without one."""
    output = described.get("output")
    if not output:
        return None
    try:
        summary = json.loads(output)
    except ValueError:
        return None
    return summary if isinstance(summary, dict) and "status" in summary else None


def console_url(arn: str) -> str:
    partition, region = arn.split(":")[1], arn.split(":")[3]
    domain = {"aws-cn": "console.amazonaws.cn", "aws-us-gov": "console.amazonaws-us-gov.com"}.get(
        partition, "console.aws.amazon.com"
    )
    return f"https://{region}.{domain}/states/home?region={region}#/v2/executions/details/{arn}"
