"""Security and operability properties of template.yaml, read from the parsed template (not grep).

Secure by default: encrypted, private, TLS-only, expiring storage; least-privilege IAM; traced and
logged compute; alarms that reach someone. Each test names the property and, on failure, the
resource and the fix. The template is read with `batchpipe.local.template.load_template(TEMPLATE_PATH)`, which
keeps intrinsic functions as dicts ({"Ref": ...}, {"Fn::GetAtt": [...]}, ...).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchpipe.local.template import every_branch, function_properties, load_template, resources_of_type

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
FUNCTIONS_ROOT = REPO_ROOT / "functions"

BUCKET = "AWS::S3::Bucket"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
FUNCTION = "AWS::Serverless::Function"
ALARM = "AWS::CloudWatch::Alarm"
LOG_GROUP = "AWS::Logs::LogGroup"
KMS_KEY = "AWS::KMS::Key"

# Allow statements may use Resource "*" only for actions that have no resource type in the Service
# Authorization Reference ("If there is no value in the Resource types column, you must specify all
# resources ("*")"). Each entry says where that is documented.
STAR_RESOURCE_ACTIONS = {
    # Amazon S3 actions table: CreateJob has no resource type (only condition keys such as
    # s3:RequestJobOperation / s3:RequestJobPriority). DescribeJob, GetJobTagging, PutJobTagging and
    # UpdateJobStatus DO have one (job: arn:${Partition}:s3:${Region}:${Account}:job/${JobId}) and
    # must be scoped to it.
    "s3:CreateJob": "SAR, Amazon S3: CreateJob has no resource type",
    "s3:ListJobs": "SAR, Amazon S3: ListJobs has no resource type",
    # Step Functions developer guide, "Logging using CloudWatch Logs": the state machine role's
    # log-delivery policy uses Resource "*"; SAR, CloudWatch Logs: the *LogDelivery actions are
    # permission-only actions without a resource type.
    "logs:CreateLogDelivery": "Step Functions guide, logging IAM policy; SAR: no resource type",
    "logs:GetLogDelivery": "Step Functions guide, logging IAM policy; SAR: no resource type",
    "logs:UpdateLogDelivery": "Step Functions guide, logging IAM policy; SAR: no resource type",
    "logs:DeleteLogDelivery": "Step Functions guide, logging IAM policy; SAR: no resource type",
    "logs:ListLogDeliveries": "Step Functions guide, logging IAM policy; SAR: no resource type",
    "logs:PutResourcePolicy": "Step Functions guide, logging IAM policy (Resource *)",
    "logs:DescribeResourcePolicies": "Step Functions guide, logging IAM policy (Resource *)",
    "logs:DescribeLogGroups": "Step Functions guide, logging IAM policy (Resource *)",
    # SAR, AWS Lake Formation: no action has a resource type (Lake Formation grants decide access);
    # GetDataAccess is what Athena needs to read a table under Lake Formation access control.
    "lakeformation:GetDataAccess": "SAR, AWS Lake Formation: no resource types",
}

BATCH_OPERATIONS_PRINCIPAL = "batchoperations.s3.amazonaws.com"
CLOUDWATCH_PRINCIPAL = "cloudwatch.amazonaws.com"


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def ref_target(node: Any) -> str | None:
    """The logical ID or parameter a Ref / GetAtt / Sub-of-one-name points at."""
    if isinstance(node, dict) and len(node) == 1:
        ((function, argument),) = node.items()
        if function == "Ref":
            return argument
        if function == "Fn::GetAtt":
            return argument[0] if isinstance(argument, list) else argument.split(".", 1)[0]
    return None


def mentions(node: Any, name: str) -> bool:
    """Whether an intrinsic expression refers to ``name`` (Ref, GetAtt or ${name...} in a Sub)."""
    text = json.dumps(node)
    return bool(re.search(rf'"{re.escape(name)}"|\$\{{{re.escape(name)}[.}}]', text))


def _every_form(statements: Any) -> Iterator[dict[str, Any]]:
    """Each statement in every form its conditions allow, its conditional actions spelled out, so
    that a check sees the widest grant any parameter values give."""
    for entry in as_list(statements):
        for statement in every_branch(entry):
            if isinstance(statement, dict) and isinstance(statement.get("Action"), list):
                actions = [a for entry in statement["Action"] for a in every_branch(entry)]
                statement = {**statement, "Action": actions}
            yield statement


def identity_statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(principal, statement) of every identity policy the template writes out itself.

    SAM policy templates are expanded by test_iam_usage; here they only must be scoped by their
    parameters (test_sam_policy_templates_are_scoped).
    """
    for logical_id, resource in cfn["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            for policy in as_list(properties.get("Policies", [])):
                if isinstance(policy, dict) and "Statement" in policy:
                    for statement in _every_form(policy["Statement"]):
                        yield logical_id, statement
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                for statement in _every_form(policy["PolicyDocument"]["Statement"]):
                    yield logical_id, statement
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for statement in _every_form(properties["PolicyDocument"]["Statement"]):
                yield logical_id, statement


def allow_statements(cfn: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(who, s) for who, s in identity_statements(cfn) if s.get("Effect") == "Allow"]


def bucket_policies_for(cfn: dict[str, Any], bucket_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (logical_id, policy)
        for logical_id, policy in resources_of_type(cfn, BUCKET_POLICY).items()
        if ref_target(policy["Properties"]["Bucket"]) == bucket_id
    ]


# ------------------------------------------------------------------ S3 buckets


def test_pipeline_bucket_is_sse_s3(cfn: dict[str, Any]) -> None:
    # S3 Batch Operations reads CSV manifests only if they are unencrypted or SSE-S3, not SSE-KMS.
    rules = cfn["Resources"]["PipelineBucket"]["Properties"]["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ]
    defaults = [rule["ServerSideEncryptionByDefault"] for rule in rules]
    assert defaults == [{"SSEAlgorithm": "AES256"}], f"PipelineBucket encryption must be SSE-S3: {defaults}"


@pytest.mark.parametrize("bucket_id", sorted(resources_of_type(load_template(TEMPLATE_PATH), BUCKET)))
def test_bucket_is_encrypted_private_and_owner_enforced(cfn: dict[str, Any], bucket_id: str) -> None:
    properties = cfn["Resources"][bucket_id]["Properties"]
    rules = properties.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
    assert rules and all(
        rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms") for rule in rules
    ), f"{bucket_id}: default encryption missing"
    assert properties.get("PublicAccessBlockConfiguration") == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }, f"{bucket_id}: public access must be fully blocked"
    assert properties.get("OwnershipControls") == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}, (
        f"{bucket_id}: ObjectOwnership must be BucketOwnerEnforced (ACLs disabled)"
    )


@pytest.mark.parametrize("bucket_id", sorted(resources_of_type(load_template(TEMPLATE_PATH), BUCKET)))
def test_bucket_objects_expire_after_retention_days(cfn: dict[str, Any], bucket_id: str) -> None:
    rules = cfn["Resources"][bucket_id]["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
    whole_bucket_expiry = [
        rule
        for rule in rules
        if rule.get("Status") == "Enabled"
        and rule.get("ExpirationInDays") == {"Ref": "RetentionDays"}
        and not rule.get("Prefix")
        and not rule.get("Filter")
    ]
    assert whole_bucket_expiry, (
        f"{bucket_id}: no enabled whole-bucket rule ExpirationInDays: !Ref RetentionDays"
    )


def test_pipeline_bucket_aborts_incomplete_multipart_uploads(cfn: dict[str, Any]) -> None:
    # BuildManifest and ProcessReport write with multipart uploads; a crash leaves parts that cost
    # storage until aborted, and expiry rules do not remove them.
    rules = cfn["Resources"]["PipelineBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    days = [
        r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        for r in rules
        if "AbortIncompleteMultipartUpload" in r
    ]
    assert days and min(days) <= 7, "PipelineBucket: add AbortIncompleteMultipartUpload to its lifecycle"


@pytest.mark.parametrize("bucket_id", sorted(resources_of_type(load_template(TEMPLATE_PATH), BUCKET)))
def test_bucket_policy_denies_requests_without_tls(cfn: dict[str, Any], bucket_id: str) -> None:
    bucket = cfn["Resources"][bucket_id]
    policies = bucket_policies_for(cfn, bucket_id)
    assert policies, f"{bucket_id}: no AWS::S3::BucketPolicy; add one with a TLS-only Deny"
    for policy_id, policy in policies:
        # A conditional bucket needs a policy under the same condition (and vice versa).
        assert policy.get("Condition") == bucket.get("Condition"), (
            f"{policy_id}: Condition differs from {bucket_id}'s"
        )
        tls_denies = [
            statement
            for statement in as_list(policy["Properties"]["PolicyDocument"]["Statement"])
            if statement.get("Effect") == "Deny"
            and statement.get("Principal") in ("*", {"AWS": "*"})
            and set(as_list(statement.get("Action"))) & {"s3:*", "*"}
            and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert tls_denies, f"{policy_id}: no Deny of s3:* when aws:SecureTransport is false"
        resources = [r for s in tls_denies for r in as_list(s["Resource"])]
        assert any(ref_target(r) == bucket_id for r in resources), (
            f"{policy_id}: TLS Deny must cover the bucket ARN"
        )
        assert any(
            isinstance(r, dict) and "Fn::Sub" in r and mentions(r, bucket_id) and "/*" in json.dumps(r)
            for r in resources
        ), f"{policy_id}: TLS Deny must cover the objects (<bucket ARN>/*)"


def test_athena_results_are_encrypted_and_bounded(cfn: dict[str, Any]) -> None:
    workgroups = resources_of_type(cfn, "AWS::Athena::WorkGroup")
    assert workgroups, "no Athena workgroup"
    for workgroup_id, workgroup in workgroups.items():
        configuration = workgroup["Properties"]["WorkGroupConfiguration"]
        assert configuration.get("EnforceWorkGroupConfiguration") is True, (
            f"{workgroup_id}: clients could override"
        )
        assert configuration["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_S3"
        assert mentions(configuration["ResultConfiguration"]["OutputLocation"], "PipelineBucket")
        assert configuration.get("BytesScannedCutoffPerQuery") == {"Ref": "AthenaBytesScannedCutoff"}


# ------------------------------------------------------------------ DynamoDB and SNS


def test_token_table_has_ttl_pitr_and_encryption(cfn: dict[str, Any]) -> None:
    properties = cfn["Resources"]["TokenTable"]["Properties"]
    ttl = properties.get("TimeToLiveSpecification", {})
    assert ttl.get("Enabled") is True and ttl.get("AttributeName") == "expiresAt", (
        "TokenTable: TTL on expiresAt (the attribute batchpipe_core.tokens writes)"
    )
    assert properties.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True
    assert properties.get("SSESpecification", {}).get("SSEEnabled") is True


def test_token_ttl_attribute_is_the_one_the_code_writes() -> None:
    source = (FUNCTIONS_ROOT / "batchpipe_core" / "tokens.py").read_text(encoding="utf-8")
    assert '"expiresAt"' in source or "expiresAt =" in source, "tokens.py no longer writes expiresAt"


def test_notification_topic_is_encrypted(cfn: dict[str, Any]) -> None:
    assert cfn["Resources"]["NotificationTopic"]["Properties"].get("KmsMasterKeyId"), (
        "NotificationTopic: set KmsMasterKeyId"
    )


def test_alarms_can_publish_to_the_encrypted_topic(cfn: dict[str, Any]) -> None:
    """CloudWatch alarms need kms:GenerateDataKey*/kms:Decrypt on the topic's key.

    The AWS managed key alias/aws/sns has a key policy nobody can change that does not allow the
    CloudWatch service principal, so alarm notifications to such a topic are dropped (SNS developer
    guide, "Enable compatibility between event sources from AWS services and encrypted topics").
    The topic must use a customer managed key of this stack whose policy allows CloudWatch.
    """
    key = cfn["Resources"]["NotificationTopic"]["Properties"].get("KmsMasterKeyId")
    key_id = ref_target(key)
    assert key_id in resources_of_type(cfn, KMS_KEY), (
        f"NotificationTopic KmsMasterKeyId is {key!r}: CloudWatch alarms cannot publish with the AWS "
        "managed key. Use !Ref a stack AWS::KMS::Key whose policy allows cloudwatch.amazonaws.com."
    )
    properties = cfn["Resources"][key_id]["Properties"]
    assert properties.get("EnableKeyRotation") is True, f"{key_id}: EnableKeyRotation: true"
    allowed = {
        action
        for statement in as_list(properties["KeyPolicy"]["Statement"])
        if statement.get("Effect") == "Allow"
        and statement.get("Principal") == {"Service": CLOUDWATCH_PRINCIPAL}
        for action in as_list(statement["Action"])
    }
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= allowed or {
        "kms:Decrypt",
        "kms:GenerateDataKey",
    } <= allowed, (
        f"{key_id}: key policy must allow {CLOUDWATCH_PRINCIPAL} kms:Decrypt and kms:GenerateDataKey*"
    )


# ------------------------------------------------------------------ IAM


def test_no_wildcard_actions(cfn: dict[str, Any]) -> None:
    offending = [
        f"{who}: {action}"
        for who, statement in allow_statements(cfn)
        for action in as_list(statement.get("Action", []))
        if action == "*" or action.endswith(":*")
    ]
    not_actions = [
        who
        for who, statement in allow_statements(cfn)
        if "NotAction" in statement or "NotResource" in statement
    ]
    assert not offending, f"Allow statements with * or service:* actions: {offending}"
    assert not not_actions, f"Allow statements with NotAction/NotResource: {not_actions}"


def test_star_resource_only_for_actions_without_resource_level_permissions(cfn: dict[str, Any]) -> None:
    offending = []
    for who, statement in allow_statements(cfn):
        if "*" not in as_list(statement.get("Resource")):
            continue
        scoped = sorted(set(as_list(statement["Action"])) - STAR_RESOURCE_ACTIONS.keys())
        if scoped:
            offending.append(f"{who}: {scoped}")
    assert not offending, (
        "Resource '*' for actions that support resource-level permissions (scope them; S3 job "
        "actions to arn:${AWS::Partition}:s3:${AWS::Region}:${AWS::AccountId}:job/*): " + "; ".join(offending)
    )


def test_every_allow_statement_names_its_resources(cfn: dict[str, Any]) -> None:
    missing = [who for who, statement in allow_statements(cfn) if not statement.get("Resource")]
    assert not missing, f"Allow statements without Resource: {missing}"


def test_pass_role_only_to_batch_operations(cfn: dict[str, Any]) -> None:
    statements = [(who, s) for who, s in allow_statements(cfn) if "iam:PassRole" in as_list(s["Action"])]
    assert statements, "no iam:PassRole: CreateJobFunction cannot hand BatchOperationsRole to S3"
    for who, statement in statements:
        assert as_list(statement["Action"]) == ["iam:PassRole"], (
            f"{who}: keep iam:PassRole in its own statement"
        )
        assert [ref_target(r) for r in as_list(statement["Resource"])] == ["BatchOperationsRole"], (
            f"{who}: iam:PassRole must name only BatchOperationsRole"
        )
        assert statement.get("Condition") == {
            "StringEquals": {"iam:PassedToService": BATCH_OPERATIONS_PRINCIPAL}
        }, (
            f"{who}: iam:PassRole needs Condition StringEquals iam:PassedToService {BATCH_OPERATIONS_PRINCIPAL}"
        )


def test_batch_operations_role_trust_policy_is_exactly_the_documented_one(cfn: dict[str, Any]) -> None:
    """S3 user guide, "Granting permissions for Batch Operations", trust policy: no Condition.

    AWS documents no aws:SourceAccount / aws:SourceArn sent by S3 Batch Operations when it assumes
    the role; a condition on a key that is not sent denies the AssumeRole and no job could start.
    """
    document = cfn["Resources"]["BatchOperationsRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": BATCH_OPERATIONS_PRINCIPAL},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def test_no_managed_policies(cfn: dict[str, Any]) -> None:
    """Managed policies grant what no code here needs; SAM adds only its execution/X-Ray ones itself."""
    offending = []
    for logical_id, resource in cfn["Resources"].items():
        properties = resource.get("Properties", {})
        if properties.get("ManagedPolicyArns"):
            offending.append(logical_id)
        if resource["Type"].startswith("AWS::Serverless::"):
            offending += [
                f"{logical_id}: {p}" for p in as_list(properties.get("Policies", [])) if isinstance(p, str)
            ]
    assert not offending, f"managed policies attached: {offending}"


def test_sam_policy_templates_are_scoped(cfn: dict[str, Any]) -> None:
    """Policy template parameters name resources of this stack, never '*' or a literal wildcard."""
    offending = []
    for logical_id, resource in cfn["Resources"].items():
        if not resource["Type"].startswith("AWS::Serverless::"):
            continue
        for policy in as_list(resource.get("Properties", {}).get("Policies", [])):
            if not isinstance(policy, dict) or "Statement" in policy:
                continue
            ((name, parameters),) = policy.items()
            for value in parameters.values():
                if not isinstance(value, dict) or "*" in json.dumps(value):
                    offending.append(f"{logical_id}: {name} {parameters}")
    assert not offending, f"SAM policy templates with literal or wildcard parameters: {offending}"


# ------------------------------------------------------------------ tracing and logs


def test_state_machine_logs_and_traces(cfn: dict[str, Any]) -> None:
    properties = cfn["Resources"]["PipelineStateMachine"]["Properties"]
    assert properties.get("Tracing") == {"Enabled": True}, "PipelineStateMachine: Tracing: {Enabled: true}"
    logging = properties.get("Logging", {})
    assert logging.get("Level") in ("ALL", "ERROR", "FATAL"), "PipelineStateMachine: Logging.Level"
    # Execution data holds object keys and specs; the execution history already has it.
    assert logging.get("IncludeExecutionData") is False
    (destination,) = logging["Destinations"]
    group_id = ref_target(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])
    group = cfn["Resources"][group_id]
    assert group["Type"] == LOG_GROUP
    assert group["Properties"].get("RetentionInDays"), f"{group_id}: set RetentionInDays"
    # /aws/vendedlogs/ keeps CloudWatch Logs resource policies small (Step Functions logging guide).
    assert mentions(group["Properties"]["LogGroupName"], "AWS::StackName")
    assert "/aws/vendedlogs/" in json.dumps(group["Properties"]["LogGroupName"])


@pytest.mark.parametrize("function_id", sorted(resources_of_type(load_template(TEMPLATE_PATH), FUNCTION)))
def test_function_traces_with_xray(cfn: dict[str, Any], function_id: str) -> None:
    assert function_properties(cfn, function_id).get("Tracing") == "Active", f"{function_id}: Tracing: Active"


@pytest.mark.parametrize("function_id", sorted(resources_of_type(load_template(TEMPLATE_PATH), FUNCTION)))
def test_function_logs_expire(cfn: dict[str, Any], function_id: str) -> None:
    """Lambda's default log group /aws/lambda/<name> keeps logs forever; retention must be set.

    Either LoggingConfig.LogGroup names a log group of this stack, or the stack declares the
    function's /aws/lambda/<name> group; either way with RetentionInDays.
    """
    configured = function_properties(cfn, function_id).get("LoggingConfig", {}).get("LogGroup")
    groups = resources_of_type(cfn, LOG_GROUP)
    if configured is not None:
        group_id = ref_target(configured)
        assert group_id in groups, f"{function_id}: LoggingConfig.LogGroup must !Ref a log group of the stack"
    else:
        matching = [
            g for g, r in groups.items() if mentions(r["Properties"].get("LogGroupName"), function_id)
        ]
        assert matching, (
            f"{function_id}: logs go to /aws/lambda/<name> with no expiry. Set Globals.Function."
            "LoggingConfig.LogGroup to a stack log group with RetentionInDays"
        )
        group_id = matching[0]
    assert groups[group_id]["Properties"].get("RetentionInDays"), f"{group_id}: set RetentionInDays"


# ------------------------------------------------------------------ alarms


def _alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """(Namespace, MetricName, Dimensions) of a plain or metric-math alarm."""
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return [properties]
    return [query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query]


def _dimension(metric: dict[str, Any], name: str) -> Any:
    return next((d["Value"] for d in metric.get("Dimensions", []) if d["Name"] == name), None)


def test_every_alarm_notifies_the_topic(cfn: dict[str, Any]) -> None:
    alarms = resources_of_type(cfn, ALARM)
    assert alarms, "no alarms"
    for alarm_id, alarm in alarms.items():
        actions = [ref_target(a) for a in alarm["Properties"].get("AlarmActions", [])]
        assert "NotificationTopic" in actions, f"{alarm_id}: AlarmActions must include !Ref NotificationTopic"
        assert alarm["Properties"].get("TreatMissingData") == "notBreaching", f"{alarm_id}: no data = no run"


@pytest.mark.parametrize(
    ("namespace", "metric_name"),
    [
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("BatchPipe", "RunsFailed"),
        ("BatchPipe", "RunsPartial"),
    ],
)
def test_alarm_exists_for(cfn: dict[str, Any], namespace: str, metric_name: str) -> None:
    watched = [
        metric
        for alarm in resources_of_type(cfn, ALARM).values()
        for metric in _alarm_metrics(alarm)
        if metric["Namespace"] == namespace and metric["MetricName"] == metric_name
    ]
    assert watched, f"no alarm on {namespace} {metric_name}"
    for metric in watched:
        if namespace == "AWS/States":
            assert ref_target(_dimension(metric, "StateMachineArn")) == "PipelineStateMachine"
        else:
            # Powertools adds the service dimension from POWERTOOLS_SERVICE_NAME.
            service = cfn["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
            assert _dimension(metric, "service") == service


def test_lambda_errors_alarm_covers_every_function(cfn: dict[str, Any]) -> None:
    watched = {
        ref_target(_dimension(metric, "FunctionName"))
        for alarm in resources_of_type(cfn, ALARM).values()
        for metric in _alarm_metrics(alarm)
        if metric["Namespace"] == "AWS/Lambda" and metric["MetricName"] == "Errors"
    }
    missing = sorted(set(resources_of_type(cfn, FUNCTION)) - watched)
    assert not missing, f"functions whose Errors no alarm watches: {missing}"


def _dashboard_metrics(cfn: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, metric) of every dashboard widget, with CloudWatch's "." and "..." shorthands."""
    found = set()
    for dashboard in resources_of_type(cfn, "AWS::CloudWatch::Dashboard").values():
        body = dashboard["Properties"]["DashboardBody"]
        text = (
            body["Fn::Sub"][0] if isinstance(body, dict) and isinstance(body.get("Fn::Sub"), list) else body
        )
        text = text["Fn::Sub"] if isinstance(text, dict) else text
        parsed = json.loads(re.sub(r"\$\{[^}]+\}", "x", text))
        for widget in parsed["widgets"]:
            previous: list[Any] = []
            for row in widget.get("properties", {}).get("metrics", []):
                items = [item for item in row if not isinstance(item, dict)]
                if items and items[0] == "...":
                    items = previous[: len(previous) - len(items) + 1] + items[1:]
                items = [
                    previous[i] if item == "." and i < len(previous) else item for i, item in enumerate(items)
                ]
                previous = items
                found.add((items[0], items[1]))
    return found


def _emitted_metric_names() -> set[str]:
    """Metric names SummarizeFunction emits, for every run status (docs/OPERATIONS.md, "Reading a run summary")."""
    if str(FUNCTIONS_ROOT) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_ROOT))
    # Imported here, once functions/ (the Lambda code root) is importable.
    from batchpipe_core.observability import metrics
    from batchpipe_core.summary import emit_metrics

    names: set[str] = set()
    try:
        for status in ("SUCCEEDED", "PARTIAL", "NOTHING_TO_DO", "DRY_RUN", "SKIPPED", "FAILED"):
            summary = {
                "status": status,
                "attempts": [{"total": 2}, {"total": 1}],
                "totals": {"succeeded": 1, "failedPermanent": 1, "failedRetriesExhausted": 0},
                "estimatedCostUsd": 0.26,
            }
            emit_metrics(summary, "2024-01-01T00:00:00+00:00")
            names |= set(metrics.metric_set)
            metrics.clear_metrics()
    finally:
        metrics.clear_metrics()
    return names


def test_alarms_and_dashboard_watch_metrics_the_code_emits(cfn: dict[str, Any]) -> None:
    watched = {
        metric["MetricName"]
        for alarm in resources_of_type(cfn, ALARM).values()
        for metric in _alarm_metrics(alarm)
        if metric["Namespace"] == "BatchPipe"
    } | {name for namespace, name in _dashboard_metrics(cfn) if namespace == "BatchPipe"}
    assert watched, "nothing watches the BatchPipe namespace"
    namespace = cfn["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    assert namespace == "BatchPipe"
    never_emitted = sorted(watched - _emitted_metric_names())
    assert not never_emitted, f"alarms/dashboard watch metrics SummarizeFunction never emits: {never_emitted}"


def test_the_report_reader_gets_pyarrow_from_its_own_pinned_layer_unless_an_aws_layer_is_named(
    cfn: dict[str, Any],
) -> None:
    """No code from outside the repository's pins: ArrowLayer is built by `sam build` from a pinned
    requirements file for the functions' runtime and architecture; the AWS SDK for pandas managed layer
    (AWS's account) replaces it only when a team names it. Only ReportPartFunction (the report reader) and
    ConfirmJobFunction (which converts a generated manifest) have a layer."""
    parameter = cfn["Parameters"]["AWSSDKPandasLayerArn"]
    pattern = parameter["AllowedPattern"]
    assert parameter["Default"] == ""  # deploys as is in any region, with ArrowLayer
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python313-Arm64:5")
    assert not re.fullmatch(
        pattern, "arn:aws:lambda:eu-west-1:336392948345:layer:AWSSDKPandas-Python313-Arm64"
    )
    assert cfn["Conditions"]["HasAWSSDKPandasLayer"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AWSSDKPandasLayerArn"}, ""]}]
    }
    assert cfn["Conditions"]["UsesArrowLayer"] == {
        "Fn::And": [
            {"Fn::Equals": [{"Ref": "AWSSDKPandasLayerArn"}, ""]},
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "PythonRuntime"}, "python3.11"]}]},
        ]
    }
    layer = cfn["Resources"]["ArrowLayer"]
    assert layer["Condition"] == "UsesArrowLayer"
    assert layer["Metadata"] == {
        "BuildMethod": {"Ref": "PythonRuntime"},
        "BuildArchitecture": {"Ref": "Architecture"},
    }
    assert layer["Properties"]["CompatibleRuntimes"] == [{"Ref": "PythonRuntime"}]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    requirements = (REPO_ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").read_text()
    pins = [line for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    assert len(pins) == 1 and re.fullmatch(r'pyarrow==([0-9.]+); python_version >= "3\.12"', pins[0]), pins
    version = pins[0].split(";")[0]
    dev_pins = (REPO_ROOT / "requirements" / "dev.txt").read_text().split()
    assert version in dev_pins, f"tests run another pyarrow than ArrowLayer deploys ({version})"
    layers = {
        function_id: function_properties(cfn, function_id)["Layers"]
        for function_id in resources_of_type(cfn, "AWS::Serverless::Function")
        if "Layers" in function_properties(cfn, function_id)
    }
    arrow = {
        "Fn::If": [
            "HasAWSSDKPandasLayer",
            [{"Ref": "AWSSDKPandasLayerArn"}],
            {"Fn::If": ["UsesArrowLayer", [{"Ref": "ArrowLayer"}], []]},
        ]
    }
    assert layers == {"ReportPartFunction": arrow, "ConfirmJobFunction": arrow, "PlanReportFunction": arrow}
