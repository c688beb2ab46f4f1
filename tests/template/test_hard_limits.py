"""Every AWS hard limit and naming rule the template touches, checked on what CloudFormation receives.

cfn-lint and `sam validate` do not know these limits: a template that passes them can still fail to
deploy (an alarm with 13 metrics did). Each check here is one row of docs/LIMITS.md's "Deploy-time
limits" table, by its ID, and runs on the SAM-transformed template (samtranslator from .venv-sam,
run as a subprocess: see sam_transform.py), with intrinsic functions resolved for the widest
deployment the docs allow: every optional resource on, the longest stack name, the most buckets,
functions and keys, and the longest names AWS allows for them. A new resource or setting that
breaks a limit fails here, and `test_each_check_catches_a_broken_template` proves every check can.

Numbers come from botocore's service models where AWS publishes them there (each API reference
states the same constraint), otherwise from the quota page named next to the constant.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from batchpipe.local.template import Resolver, parameter_values, substitute_definition

REPO_ROOT = Path(__file__).resolve().parents[2]
LIMITS_DOC = REPO_ROOT / "docs" / "LIMITS.md"
TRANSFORM_SCRIPT = Path(__file__).with_name("sam_transform.py")

# ------------------------------------------------------------------ limits without a botocore shape

# CloudWatch user guide, "Limits" (alarm-limits.html): "Alarms based on metric math expressions can
# reference a maximum of 10 metrics. This is a hard limit"; PutMetricAlarm `Metrics`: up to 20
# MetricDataQuery structures, at most 10 with a MetricStat and at most 10 with an Expression.
ALARM_MAX_METRIC_STATS = 10
ALARM_MAX_EXPRESSIONS = 10
# IAM user guide, "IAM and AWS STS quotas": the inline policies of a role together at most 10,240
# characters, whitespace not counted; a role trust policy at most 2,048 characters (default quota);
# 10 managed policies per role (default quota).
IAM_ROLE_INLINE_POLICY_CHARACTERS = 10_240
IAM_TRUST_POLICY_CHARACTERS = 2_048
IAM_MANAGED_POLICIES_PER_ROLE = 10
# Lambda developer guide, "Lambda quotas": environment variables 4 KB in total; 15-minute timeout;
# 128-10,240 MB memory; 512-10,240 MB ephemeral storage; 5 layers per function.
LAMBDA_ENVIRONMENT_BYTES = 4 * 1024
LAMBDA_MAX_TIMEOUT = 900
LAMBDA_MEMORY_MB = (128, 10_240)
LAMBDA_EPHEMERAL_MB = (512, 10_240)
LAMBDA_MAX_LAYERS = 5
# EventBridge user guide, "Amazon EventBridge quotas": 5 targets per rule.
EVENTBRIDGE_TARGETS_PER_RULE = 5
# CloudFormation user guide, "CloudFormation quotas": 500 resources, 200 parameters and 200 outputs
# per template; a template body uploaded to S3 (as `sam deploy` does) at most 1 MB.
CFN_MAX_RESOURCES = 500
CFN_MAX_PARAMETERS = 200
CFN_MAX_OUTPUTS = 200
CFN_MAX_TEMPLATE_BYTES = 1_000_000
# CloudFormation user guide, stack names: at most 128 characters.
CFN_MAX_STACK_NAME = 128
# AWS::SNS::Topic DisplayName (CloudFormation resource reference): at most 100 characters.
SNS_DISPLAY_NAME = 100
# PutDashboard: "A dashboard name can contain only alphanumerics, dash (-), and underscore (_)", at most
# 255 characters; CreateTrail: 3-128 characters, starting with a letter or number. botocore's models
# carry neither constraint, so they are spelled out here from the API references.
DASHBOARD_NAME = (255, r"[A-Za-z0-9_-]+")
TRAIL_NAME = (128, r"[A-Za-z0-9][A-Za-z0-9._-]{2,127}")

# Names CloudFormation resources take, and the API member whose constraints apply to each:
# (resource type, property) -> (service, operation, member path) or (max length, pattern).
NAME_RULES: dict[tuple[str, str], tuple[str, str, tuple[str, ...]] | tuple[int, str]] = {
    ("AWS::StepFunctions::StateMachine", "StateMachineName"): (
        "stepfunctions",
        "CreateStateMachine",
        ("name",),
    ),
    ("AWS::Scheduler::Schedule", "Name"): ("scheduler", "CreateSchedule", ("Name",)),
    ("AWS::Athena::WorkGroup", "Name"): ("athena", "CreateWorkGroup", ("Name",)),
    ("AWS::Logs::LogGroup", "LogGroupName"): ("logs", "CreateLogGroup", ("logGroupName",)),
    ("AWS::Glue::Database", "DatabaseInput.Name"): ("glue", "CreateDatabase", ("DatabaseInput", "Name")),
    ("AWS::Glue::Table", "TableInput.Name"): ("glue", "CreateTable", ("TableInput", "Name")),
    ("AWS::CloudWatch::Dashboard", "DashboardName"): DASHBOARD_NAME,
    ("AWS::CloudTrail::Trail", "TrailName"): TRAIL_NAME,
    ("AWS::Lambda::Function", "FunctionName"): ("lambda", "CreateFunction", ("FunctionName",)),
    ("AWS::IAM::Role", "RoleName"): ("iam", "CreateRole", ("RoleName",)),
    ("AWS::Events::Rule", "Name"): ("events", "PutRule", ("Name",)),
    ("AWS::CloudWatch::Alarm", "AlarmName"): ("cloudwatch", "PutMetricAlarm", ("AlarmName",)),
    ("AWS::SNS::Topic", "TopicName"): (256, r"[A-Za-z0-9_-]+"),
    ("AWS::S3::Bucket", "BucketName"): (63, r"[a-z0-9][a-z0-9.-]+[a-z0-9]"),
    ("AWS::DynamoDB::Table", "TableName"): ("dynamodb", "CreateTable", ("TableName",)),
}
# Names unique only within a parent that is itself named per stack: a Glue table within its
# database (InventoryDatabaseName, a parameter).
UNIQUE_WITHIN_PARENT = {("AWS::Glue::Table", "TableInput.Name")}
# Free-text properties with a documented maximum: (resource type, property) -> API member.
TEXT_RULES: dict[tuple[str, str], tuple[str, str, tuple[str, ...]]] = {
    ("AWS::Lambda::Function", "Description"): ("lambda", "CreateFunction", ("Description",)),
    ("AWS::CloudWatch::Alarm", "AlarmDescription"): ("cloudwatch", "PutMetricAlarm", ("AlarmDescription",)),
    ("AWS::IAM::Role", "Description"): ("iam", "CreateRole", ("Description",)),
    ("AWS::KMS::Key", "Description"): ("kms", "CreateKey", ("Description",)),
    ("AWS::Lambda::LayerVersion", "Description"): ("lambda", "PublishLayerVersion", ("Description",)),
}


@cache
def api_constraint(service: str, operation: str, path: tuple[str, ...]) -> tuple[int | None, str | None]:
    """(max length, pattern) of a request member, from botocore's model of the API."""
    shape = botocore.session.get_session().get_service_model(service).operation_model(operation).input_shape
    for member in path:
        shape = shape.members[member]
    return shape.metadata.get("max"), shape.metadata.get("pattern")


def name_constraint(
    rule: tuple[str, str, tuple[str, ...]] | tuple[int, str],
) -> tuple[int | None, str | None]:
    if isinstance(rule[0], int):
        return rule[0], rule[1]  # type: ignore[return-value]
    service, operation, path = rule  # type: ignore[misc]
    return api_constraint(service, operation, path)


# ------------------------------------------------------------------ the widest deployment

# The most of each list parameter the docs promise a stack can take (docs/LIMITS.md), each at the
# longest length AWS allows: bucket names 63 characters, Lambda function names 64, KMS key IDs 36.
MAX_SOURCE_BUCKETS = 10
MAX_TARGET_BUCKETS = 10
MAX_LAMBDA_FUNCTIONS = 5
MAX_KMS_KEYS = 5
REGION = "ap-southeast-5"  # among the longest region names
ACCOUNT = "123456789012"


def _bucket(index: int) -> str:
    return f"b{index:02d}-" + "x" * 59


def widest_parameters(partition: str) -> dict[str, Any]:
    lambda_arn = f"arn:{partition}:lambda:{REGION}:{ACCOUNT}:function:" + "f" * 62
    key_arn = f"arn:{partition}:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    return {
        "InventoryBucket": "i" * 63,
        # <destination prefix>/<source bucket>/<configuration ID (at most 64 characters)>
        "InventoryPrefix": "inventory/" + _bucket(0) + "/" + "c" * 64,
        "InventoryKmsKeyArn": key_arn,
        "InventoryDatabaseName": "d" * 255,
        "SourceBuckets": ",".join(_bucket(i) for i in range(MAX_SOURCE_BUCKETS)),
        "TargetBuckets": ",".join(_bucket(50 + i) for i in range(MAX_TARGET_BUCKETS)),
        "LambdaInvokeFunctionArns": ",".join(
            lambda_arn[:-2] + f"{i:02d}" for i in range(MAX_LAMBDA_FUNCTIONS)
        ),
        "KmsKeyArns": ",".join(key_arn[:-2] + f"{i:02d}" for i in range(MAX_KMS_KEYS)),
        "NotificationEmail": "operations-team@example.com",
        "CreateTrail": "true",
    }


def max_stack_name_length(template: dict[str, Any]) -> int:
    """The longest stack name whose every derived resource name stays within its limit."""
    longest = CFN_MAX_STACK_NAME
    for _logical_id, rtype, prop, value in name_properties(template):
        text = json.dumps(value)
        if "${AWS::StackName}" not in text:
            continue
        limit, _ = name_constraint(NAME_RULES[(rtype, prop)])
        if limit is None:
            continue
        # The name's other characters, with the stack name left out.
        rest = resolve(template, value, stack_name="", partition="aws")
        longest = min(longest, limit - len(rest))
    return longest


def documented_max_stack_name() -> int:
    match = re.search(
        r"stack names? of at most \*\*(\d+) characters\*\*", LIMITS_DOC.read_text(encoding="utf-8")
    )
    assert match, (
        "docs/LIMITS.md must state the longest stack name: 'stack names of at most **N characters**'"
    )
    return int(match.group(1))


_ARN_FORMATS = {
    "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{n}",
    "AWS::Lambda::LayerVersion": "arn:{p}:lambda:{r}:{a}:layer:{n}:1",
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role/{n}",
    "AWS::S3::Bucket": "arn:{p}:s3:::{n}",
    "AWS::DynamoDB::Table": "arn:{p}:dynamodb:{r}:{a}:table/{n}",
    "AWS::SNS::Topic": "arn:{p}:sns:{r}:{a}:{n}",
    "AWS::KMS::Key": "arn:{p}:kms:{r}:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "AWS::StepFunctions::StateMachine": "arn:{p}:states:{r}:{a}:stateMachine:{n}",
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{n}:*",
    "AWS::Athena::WorkGroup": "arn:{p}:athena:{r}:{a}:workgroup/{n}",
    "AWS::Events::Rule": "arn:{p}:events:{r}:{a}:rule/{n}",
    "AWS::CloudTrail::Trail": "arn:{p}:cloudtrail:{r}:{a}:trail/{n}",
    "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{n}",
}
_REF_IS_ARN = {"AWS::SNS::Topic", "AWS::StepFunctions::StateMachine", "AWS::Lambda::LayerVersion"}


def resolver(template: dict[str, Any], stack_name: str, partition: str) -> Resolver:
    """Intrinsics resolved as CloudFormation would for the widest deployment under this stack name.

    A resource without an explicit name gets CloudFormation's generated one: stack name, logical
    ID and a 12-character suffix, cut to 64 characters (the longest most services accept)."""
    resources = template["Resources"]

    names = {logical_id: value for logical_id, _rtype, _prop, value in name_properties(template)}

    def physical_name(logical_id: str) -> str:
        if logical_id in names:
            return str(this.resolve(names[logical_id]))
        return f"{stack_name}-{logical_id}-ABCDEFGHIJKL"[:64]

    def attr(logical_id: str, attribute: str | None) -> Any:
        rtype = resources[logical_id]["Type"]
        name = physical_name(logical_id)
        if attribute is None and rtype == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"  # a queue's Ref is its URL
        if attribute is None and rtype not in _REF_IS_ARN:
            return name
        if attribute in (None, "Arn", "TopicArn"):
            if rtype not in _ARN_FORMATS:
                raise AssertionError(
                    f"test_hard_limits has no ARN shape for {rtype}: add one to _ARN_FORMATS"
                )
            return _ARN_FORMATS[rtype].format(p=partition, r=REGION, a=ACCOUNT, n=name)
        if attribute in ("TopicName", "Name", "QueueName"):
            return name
        raise AssertionError(f"test_hard_limits cannot resolve {logical_id}.{attribute}: teach attr() it")

    this = Resolver(
        template=template,
        parameters=parameter_values(template, widest_parameters(partition)),
        pseudo={
            "AWS::Partition": partition,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:{partition}:cloudformation:{REGION}:{ACCOUNT}:stack/{stack_name}/id",
            "AWS::URLSuffix": "amazonaws.com",
        },
        attr=attr,
    )
    return this


def resolve(template: dict[str, Any], node: Any, *, stack_name: str, partition: str) -> Any:
    return resolver(template, stack_name, partition).resolve(node)


def name_properties(template: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(logical ID, type, property path, unresolved value) of every name a resource sets."""
    found = []
    for logical_id, resource in template["Resources"].items():
        for (rtype, prop), _rule in NAME_RULES.items():
            if resource["Type"] != rtype:
                continue
            node: Any = resource.get("Properties", {})
            for part in prop.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                found.append((logical_id, rtype, prop, node))
    return found


# ------------------------------------------------------------------ the deployment under test


class Deployment:
    """The transformed template, resolved for the widest deployment at the longest stack name."""

    def __init__(self, template: dict[str, Any], partition: str = "aws") -> None:
        self.template = template
        self.partition = partition
        self.stack_name = "s" * documented_max_stack_name()
        self.resolver = resolver(template, self.stack_name, partition)
        self.resources = {
            logical_id: {**resource, "Properties": self.resolver.resolve(resource.get("Properties", {}))}
            for logical_id, resource in template["Resources"].items()
            if "Condition" not in resource or self.resolver.condition(resource["Condition"])
        }

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {k: r["Properties"] for k, r in self.resources.items() if r["Type"] == rtype}


def _without_whitespace(document: Any) -> int:
    return len(re.sub(r"\s", "", json.dumps(document, separators=(",", ":"))))


# ------------------------------------------------------------------ the checks, one per LIMITS.md row

Check = Callable[[Deployment], list[str]]


def check_alarm_metrics(d: Deployment) -> list[str]:
    problems = []
    for logical_id, alarm in d.of_type("AWS::CloudWatch::Alarm").items():
        queries = alarm.get("Metrics", [])
        stats = sum(1 for q in queries if "MetricStat" in q)
        expressions = sum(1 for q in queries if "Expression" in q)
        if stats > ALARM_MAX_METRIC_STATS or expressions > ALARM_MAX_EXPRESSIONS:
            problems.append(
                f"{logical_id}: {stats} metrics and {expressions} expressions; an alarm on metric math may "
                f"reference at most {ALARM_MAX_METRIC_STATS} metrics (split it into alarms of fewer)"
            )
    return problems


def check_every_function_has_an_errors_alarm(d: Deployment) -> list[str]:
    """Adding a function must not silently leave it unwatched, nor push an alarm past 10 metrics."""
    functions = {
        d.resolver.resolve({"Ref": logical_id}): logical_id
        for logical_id, r in d.resources.items()
        if r["Type"] == "AWS::Lambda::Function"
    }
    watched: dict[str, list[str]] = {}
    for logical_id, alarm in d.of_type("AWS::CloudWatch::Alarm").items():
        for query in alarm.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace") == "AWS/Lambda" and metric.get("MetricName") == "Errors":
                for dimension in metric.get("Dimensions", []):
                    watched.setdefault(dimension["Value"], []).append(logical_id)
    problems = []
    for name, logical_id in functions.items():
        alarms = watched.get(name, [])
        if len(alarms) != 1:
            problems.append(
                f"{logical_id} is in {len(alarms)} Lambda errors alarms {alarms}: put it in exactly one "
                f"that has room (at most {ALARM_MAX_METRIC_STATS} metrics each)"
            )
    return problems


def _compiles(pattern: str) -> bool:
    # Some models spell Unicode ranges as Java surrogate pairs (Glue names): Python's re cannot
    # read them, and those patterns admit every ordinary character anyway; the length still counts.
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def check_names(d: Deployment) -> list[str]:
    problems = []
    for logical_id, rtype, prop, value in name_properties(d.template):
        if logical_id not in d.resources:
            continue
        name = str(d.resolver.resolve(value))
        limit, pattern = name_constraint(NAME_RULES[(rtype, prop)])
        if limit is not None and len(name) > limit:
            problems.append(
                f"{logical_id}.{prop} is {len(name)} characters at a {len(d.stack_name)}-character stack "
                f"name; AWS allows {limit}: {name}"
            )
        if pattern is not None and _compiles(pattern) and not re.fullmatch(pattern, name):
            problems.append(f"{logical_id}.{prop} = {name!r} does not match AWS's pattern {pattern}")
    return problems


def check_names_unique_per_stack(d: Deployment) -> list[str]:
    """Names unique per account and region (per group for schedules) must differ between stacks:
    each takes the stack name, or a parameter the deployer chooses."""
    problems = []
    for logical_id, rtype, prop, value in name_properties(d.template):
        if (rtype, prop) in UNIQUE_WITHIN_PARENT:
            continue
        text = json.dumps(value)
        if "AWS::StackName" not in text and '"Ref"' not in text:
            problems.append(
                f"{logical_id}.{prop} is the same in every stack ({text}): a second stack in the account "
                "and region would collide; put ${AWS::StackName} in it"
            )
    # SAM names some resources itself when the template gives no name; a ScheduleV2 without Name is
    # one (<state machine><event> in every stack).
    for logical_id, schedule in d.of_type("AWS::Scheduler::Schedule").items():
        if d.stack_name not in str(schedule.get("Name", "")):
            problems.append(f"{logical_id} has no name with the stack name in it")
    return problems


def check_iam_role_sizes(d: Deployment) -> list[str]:
    inline: dict[str, int] = {}
    problems = []
    for logical_id, role in d.of_type("AWS::IAM::Role").items():
        inline[logical_id] = sum(_without_whitespace(p["PolicyDocument"]) for p in role.get("Policies", []))
        trust = _without_whitespace(role["AssumeRolePolicyDocument"])
        if trust > IAM_TRUST_POLICY_CHARACTERS:
            problems.append(
                f"{logical_id}: trust policy of {trust} characters, over {IAM_TRUST_POLICY_CHARACTERS}"
            )
        managed = len(role.get("ManagedPolicyArns", []))
        if managed > IAM_MANAGED_POLICIES_PER_ROLE:
            problems.append(f"{logical_id}: {managed} managed policies, over {IAM_MANAGED_POLICIES_PER_ROLE}")
    # AWS::IAM::Policy is an inline policy of each role it names (PutRolePolicy).
    for logical_id, policy in d.template["Resources"].items():
        if policy["Type"] != "AWS::IAM::Policy" or logical_id not in d.resources:
            continue
        for role in policy["Properties"].get("Roles", []):
            role_id = role["Ref"]
            document = d.resources[logical_id]["Properties"]["PolicyDocument"]
            inline[role_id] = inline.get(role_id, 0) + _without_whitespace(document)
    for logical_id, size in inline.items():
        if size > IAM_ROLE_INLINE_POLICY_CHARACTERS:
            problems.append(
                f"{logical_id}: inline policies of {size} characters (whitespace not counted), over IAM's "
                f"{IAM_ROLE_INLINE_POLICY_CHARACTERS} per role"
            )
    return problems


def check_lambda_settings(d: Deployment) -> list[str]:
    problems = []
    for logical_id, function in d.of_type("AWS::Lambda::Function").items():
        variables = function.get("Environment", {}).get("Variables", {})
        size = len(json.dumps(variables, separators=(",", ":")).encode())
        if size > LAMBDA_ENVIRONMENT_BYTES:
            problems.append(
                f"{logical_id}: environment of {size} bytes, over Lambda's {LAMBDA_ENVIRONMENT_BYTES}"
            )
        if int(function.get("Timeout", 3)) > LAMBDA_MAX_TIMEOUT:
            problems.append(f"{logical_id}: Timeout {function['Timeout']} over {LAMBDA_MAX_TIMEOUT} s")
        memory = int(function.get("MemorySize", 128))
        if not LAMBDA_MEMORY_MB[0] <= memory <= LAMBDA_MEMORY_MB[1]:
            problems.append(f"{logical_id}: MemorySize {memory} outside {LAMBDA_MEMORY_MB} MB")
        ephemeral = int(function.get("EphemeralStorage", {}).get("Size", 512))
        if not LAMBDA_EPHEMERAL_MB[0] <= ephemeral <= LAMBDA_EPHEMERAL_MB[1]:
            problems.append(f"{logical_id}: EphemeralStorage {ephemeral} outside {LAMBDA_EPHEMERAL_MB} MB")
        if len(function.get("Layers", [])) > LAMBDA_MAX_LAYERS:
            problems.append(f"{logical_id}: more than {LAMBDA_MAX_LAYERS} layers")
    return problems


def check_texts(d: Deployment) -> list[str]:
    problems = []
    for (rtype, prop), (service, operation, path) in TEXT_RULES.items():
        limit, _ = api_constraint(service, operation, path)
        for logical_id, properties in d.of_type(rtype).items():
            text = str(properties.get(prop, ""))
            if limit is not None and len(text) > limit:
                problems.append(f"{logical_id}.{prop} is {len(text)} characters; {operation} allows {limit}")
    for logical_id, topic in d.of_type("AWS::SNS::Topic").items():
        if len(topic.get("DisplayName", "")) > SNS_DISPLAY_NAME:
            problems.append(f"{logical_id}.DisplayName over {SNS_DISPLAY_NAME} characters")
    return problems


def check_state_machine_definition(d: Deployment) -> list[str]:
    limit, _ = api_constraint("stepfunctions", "CreateStateMachine", ("definition",))
    problems = []
    for logical_id, machine in d.of_type("AWS::StepFunctions::StateMachine").items():
        text = substitute_definition(machine["DefinitionString"], machine.get("DefinitionSubstitutions", {}))
        if limit is not None and len(text) > limit:
            problems.append(f"{logical_id}: definition of {len(text)} characters, over {limit}")
    return problems


def check_event_rules(d: Deployment) -> list[str]:
    limit, _ = api_constraint("events", "PutRule", ("EventPattern",))
    problems = []
    for logical_id, rule in d.of_type("AWS::Events::Rule").items():
        pattern = json.dumps(rule.get("EventPattern", {}), separators=(",", ":"))
        if limit is not None and len(pattern) > limit:
            problems.append(f"{logical_id}: event pattern of {len(pattern)} characters, over {limit}")
        if len(rule.get("Targets", [])) > EVENTBRIDGE_TARGETS_PER_RULE:
            problems.append(f"{logical_id}: more than {EVENTBRIDGE_TARGETS_PER_RULE} targets")
    return problems


def check_template_quotas(d: Deployment) -> list[str]:
    counts = {
        "resources": (len(d.template["Resources"]), CFN_MAX_RESOURCES),
        "parameters": (len(d.template.get("Parameters", {})), CFN_MAX_PARAMETERS),
        "outputs": (len(d.template.get("Outputs", {})), CFN_MAX_OUTPUTS),
        "bytes of template body": (len(json.dumps(d.template).encode()), CFN_MAX_TEMPLATE_BYTES),
    }
    return [
        f"{count} {what}, over CloudFormation's {limit}"
        for what, (count, limit) in counts.items()
        if count > limit
    ]


CHECKS: dict[str, Check] = {
    "alarm-metrics": check_alarm_metrics,
    "lambda-errors-alarms": check_every_function_has_an_errors_alarm,
    "resource-names": check_names,
    "names-per-stack": check_names_unique_per_stack,
    "iam-role-size": check_iam_role_sizes,
    "lambda-settings": check_lambda_settings,
    "descriptions": check_texts,
    "definition-size": check_state_machine_definition,
    "event-rules": check_event_rules,
    "template-quotas": check_template_quotas,
}


# ------------------------------------------------------------------ fixtures and tests


@pytest.fixture(scope="session")
def transformed(sam_cli: Path, sam_env: dict[str, str]) -> dict[str, Any]:
    """template.yaml as SAM hands it to CloudFormation (samtranslator runs in .venv-sam)."""
    python = sam_cli.parent / ("python.exe" if sys.platform == "win32" else "python")
    result = subprocess.run(
        [str(python), str(TRANSFORM_SCRIPT), str(REPO_ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        env=sam_env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"SAM transform failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout)


@pytest.fixture(scope="session", params=["aws", "aws-cn", "aws-us-gov"])
def deployment(request: pytest.FixtureRequest, transformed: dict[str, Any]) -> Deployment:
    return Deployment(transformed, request.param)


@pytest.mark.parametrize("row", sorted(CHECKS))
def test_deploy_time_limit(row: str, deployment: Deployment) -> None:
    problems = CHECKS[row](deployment)
    assert not problems, f"docs/LIMITS.md row {row} ({deployment.partition}):\n" + "\n".join(problems)


def test_documented_stack_name_limit_is_the_tightest_name(transformed: dict[str, Any]) -> None:
    computed = max_stack_name_length(transformed)
    assert documented_max_stack_name() == computed, (
        f"the longest stack name every derived name allows is {computed} characters: "
        "say so in docs/LIMITS.md ('stack names of at most **N characters**')"
    )


def test_every_check_is_a_row_of_the_limits_table() -> None:
    text = LIMITS_DOC.read_text(encoding="utf-8")
    missing = [row for row in CHECKS if f"`{row}`" not in text]
    assert not missing, f"docs/LIMITS.md has no row for {missing}"


def test_every_named_resource_type_has_a_naming_rule(transformed: dict[str, Any]) -> None:
    """A resource with a Name-like property this test does not know is a rule to look up."""
    known = {(rtype, prop.split(".")[0]) for rtype, prop in NAME_RULES}
    unknown = sorted(
        f"{logical_id} ({resource['Type']}.{prop})"
        for logical_id, resource in transformed["Resources"].items()
        for prop, value in resource.get("Properties", {}).items()
        if prop.endswith("Name")
        and "AWS::StackName" in json.dumps(value)
        and (resource["Type"], prop) not in known
    )
    assert not unknown, f"names without a naming rule in NAME_RULES (look up the API's constraint): {unknown}"


def _alarm_with_metrics(template: dict[str, Any], count: int) -> None:
    alarm = next(
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and "Metrics" in r["Properties"]
    )
    stat = next(q for q in alarm["Properties"]["Metrics"] if "MetricStat" in q)
    others = [q for q in alarm["Properties"]["Metrics"] if "MetricStat" not in q]
    alarm["Properties"]["Metrics"] = others + [{**copy.deepcopy(stat), "Id": f"m{i}"} for i in range(count)]


def _unwatched_function(template: dict[str, Any]) -> None:
    function = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    template["Resources"]["NewFunction"] = copy.deepcopy(function)


def _long_name(template: dict[str, Any]) -> None:
    machine = next(
        r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    )
    machine["Properties"]["StateMachineName"] = {"Fn::Sub": "${AWS::StackName}-pipeline-with-a-longer-name"}


def _fixed_name(template: dict[str, Any]) -> None:
    group = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Athena::WorkGroup")
    group["Properties"]["Name"] = "batchpipe"


def _big_role(template: dict[str, Any]) -> None:
    role = template["Resources"]["BatchOperationsRole"]["Properties"]
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::" + "x" * 63 + "/*"}
    role["Policies"].append(
        {"PolicyName": "More", "PolicyDocument": {"Version": "2012-10-17", "Statement": [statement] * 120}}
    )


def _big_environment(template: dict[str, Any]) -> None:
    function = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    function["Properties"]["Environment"]["Variables"]["NOTES"] = "n" * 4000


def _long_description(template: dict[str, Any]) -> None:
    function = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function")
    function["Properties"]["Description"] = "d" * 257


def _big_definition(template: dict[str, Any]) -> None:
    machine = next(
        r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    )
    machine["Properties"]["DefinitionString"] = json.dumps(
        {"Comment": "c" * 1_048_576, "StartAt": "A", "States": {"A": {"Type": "Succeed"}}}
    )


def _big_pattern(template: dict[str, Any]) -> None:
    rule = next(r for r in template["Resources"].values() if r["Type"] == "AWS::Events::Rule")
    rule["Properties"]["EventPattern"]["detail"]["jobId"] = [f"job-{i:05d}" for i in range(500)]


def _too_many_resources(template: dict[str, Any]) -> None:
    topic = next(r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::Topic")
    for i in range(CFN_MAX_RESOURCES):
        template["Resources"][f"Extra{i}"] = copy.deepcopy(topic)


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "alarm-metrics": (lambda t: _alarm_with_metrics(t, 11), "at most 10 metrics"),
    "lambda-errors-alarms": (_unwatched_function, "NewFunction is in 0 Lambda errors alarms"),
    "resource-names": (_long_name, "AWS allows 80"),
    "names-per-stack": (_fixed_name, "the same in every stack"),
    "iam-role-size": (_big_role, "over IAM's 10240"),
    "lambda-settings": (_big_environment, "over Lambda's 4096"),
    "descriptions": (_long_description, "allows 256"),
    "definition-size": (_big_definition, "over 1048576"),
    "event-rules": (_big_pattern, "over 4096"),
    "template-quotas": (_too_many_resources, "over CloudFormation's 500"),
}


def test_every_check_has_a_breakage() -> None:
    assert BREAKAGES.keys() == CHECKS.keys()


@pytest.mark.parametrize("row", sorted(BREAKAGES))
def test_each_check_catches_a_broken_template(row: str, transformed: dict[str, Any]) -> None:
    """The template as it is passes; a copy broken just past the limit fails, naming the limit."""
    broken = copy.deepcopy(transformed)
    breakage, expected = BREAKAGES[row]
    breakage(broken)
    problems = CHECKS[row](Deployment(broken))
    assert any(expected in problem for problem in problems), f"{row} did not catch its breakage: {problems}"
