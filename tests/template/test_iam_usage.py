"""No dead permissions: every IAM action template.yaml grants is needed by code or ASL that exists.

And the converse: every action the code, the ASL and the S3 Batch operations need is granted. For
each principal the test computes two sets and fails with both differences:

* granted - the actions of its policy statements, with SAM policy templates (DynamoDBCrudPolicy,
  StepFunctionsCallbackPolicy, ...) expanded from samtranslator's own policy_templates.json when
  `.venv-sam` has it, else from the small copy in ``FALLBACK_POLICY_TEMPLATES``;
* needed - for a function, the boto3 calls reachable from its handler (a static scan: clients made
  with ``boto3.client("<service>")``, methods called on anything, kept when they are operations of
  a service the function makes a client for), mapped to IAM actions; for the state machine, its
  Task states and its logging configuration; for BatchOperationsRole, what each S3 Batch operation
  the stack accepts needs, per resource scope (source objects, copy targets, pipeline bucket, ...).

Permissions SAM adds on its own (AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess for tracing)
are not in the template and not checked here.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from batchpipe.local.template import every_branch, function_properties, load_template, resources_of_type

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
FUNCTION_TYPE = "AWS::Serverless::Function"
STATE_MACHINE_ID = "PipelineStateMachine"
BATCH_ROLE_ID = "BatchOperationsRole"
TOPIC_ID = "NotificationTopic"

# ------------------------------------------------------------------ botocore operation -> IAM action

# boto3 service name (and the ASL aws-sdk service name) -> IAM service prefix.
IAM_PREFIX = {
    "athena": "athena",
    "cloudwatch": "cloudwatch",
    "dynamodb": "dynamodb",
    "events": "events",
    "glue": "glue",
    "kms": "kms",
    "lambda": "lambda",
    "logs": "logs",
    "s3": "s3",
    "s3control": "s3",  # S3 Batch Operations actions live in the s3 namespace
    "sfn": "states",
    "sns": "sns",
    "sqs": "sqs",
    "stepfunctions": "states",
    "sts": "sts",
}

# Operations whose IAM action is not "<prefix>:<OperationName>" (Service Authorization Reference,
# "Actions, resources, and condition keys for Amazon S3", and the S3 API reference's Permissions
# sections). Anything absent maps to "<prefix>:<OperationName>".
OPERATION_ACTIONS: dict[tuple[str, str], frozenset[str]] = {
    ("s3", "ListObjectsV2"): frozenset({"s3:ListBucket"}),
    ("s3", "ListObjects"): frozenset({"s3:ListBucket"}),
    ("s3", "HeadBucket"): frozenset({"s3:ListBucket"}),
    ("s3", "HeadObject"): frozenset({"s3:GetObject"}),
    ("s3", "CreateMultipartUpload"): frozenset({"s3:PutObject"}),
    ("s3", "UploadPart"): frozenset({"s3:PutObject"}),
    ("s3", "CompleteMultipartUpload"): frozenset({"s3:PutObject"}),
    ("s3", "ListParts"): frozenset({"s3:ListMultipartUploadParts"}),
    ("s3", "ListMultipartUploads"): frozenset({"s3:ListBucketMultipartUploads"}),
    ("s3", "DeleteObjects"): frozenset({"s3:DeleteObject"}),
    # A copy reads its source and writes its target.
    ("s3", "UploadPartCopy"): frozenset({"s3:PutObject", "s3:GetObject"}),
    ("s3", "CopyObject"): frozenset({"s3:PutObject", "s3:GetObject"}),
    # S3 user guide, "Granting permissions for Batch Operations": the creator needs s3:CreateJob and
    # iam:PassRole for the job's role. The pipeline creates its jobs with Tags; whether CreateJob
    # with Tags also checks s3:PutJobTagging is not stated clearly by AWS, so it counts as needed
    # (granted on job ARNs only, it lets nothing else happen).
    ("s3control", "CreateJob"): frozenset({"s3:CreateJob", "iam:PassRole", "s3:PutJobTagging"}),
}

# Task-state integrations that need more than their own action: Athena runs the query with the
# caller's credentials, so the state machine role also needs the Glue catalog reads and the S3
# reads (inventory) and writes (UNLOAD output, query results) of the query (Athena user guide:
# "Configure access to databases and tables in the AWS Glue Data Catalog" and "Access to Amazon S3").
ATHENA_QUERY_ACTIONS = frozenset(
    {
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetPartitions",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }
)
TASK_EXTRA_ACTIONS: dict[tuple[str, str], frozenset[str]] = {
    ("athena", "StartQueryExecution"): ATHENA_QUERY_ACTIONS,
}

# Step Functions developer guide, "Logging using CloudWatch Logs": the state machine role needs
# these to set up log delivery (SAM does not add them).
LOG_DELIVERY_ACTIONS = frozenset(
    {
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
)

# SNS developer guide, "Managing Amazon SNS encryption keys": publishing to a topic encrypted with a
# customer managed key needs these on the key (the AWS managed alias/aws/sns key allows it itself).
SNS_CMK_PUBLISH_ACTIONS = frozenset({"kms:GenerateDataKey", "kms:Decrypt"})

# The SAM policy templates this template may use, as in samtranslator's policy_templates.json;
# only used when .venv-sam (or an installed samtranslator) is not there to read them from.
FALLBACK_POLICY_TEMPLATES: dict[str, frozenset[str]] = {
    "LambdaInvokePolicy": frozenset({"lambda:InvokeFunction"}),
    "SNSPublishMessagePolicy": frozenset({"sns:Publish"}),
    "StepFunctionsCallbackPolicy": frozenset(
        {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
    ),
    "DynamoDBReadPolicy": frozenset(
        {
            "dynamodb:GetItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
        }
    ),
    "DynamoDBCrudPolicy": frozenset(
        {
            "dynamodb:GetItem",
            "dynamodb:DeleteItem",
            "dynamodb:PutItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
            "dynamodb:ConditionCheckItem",
        }
    ),
}

# ------------------------------------------------------------------ S3 Batch Operations role

# What the Batch Operations role needs per JobOperation member, on the objects the job acts on
# (SourceBuckets). S3 user guide, "Granting permissions for Batch Operations" (one policy per
# operation; version-specific actions because InventoryVersions=All manifests carry version IDs),
# "Configuring IAM policies for Batch Replication" (user-supplied manifest) and the S3 API reference
# of UpdateObjectEncryption (its Permissions section).
SOURCE_ACTIONS_BY_OPERATION: dict[str, frozenset[str]] = {
    "LambdaInvoke": frozenset(),
    "S3PutObjectCopy": frozenset(
        {
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:GetObjectAcl",
            "s3:GetObjectVersionAcl",
            "s3:GetObjectTagging",
            "s3:GetObjectVersionTagging",
        }
    ),
    "S3PutObjectAcl": frozenset({"s3:PutObjectAcl", "s3:PutObjectVersionAcl"}),
    "S3PutObjectTagging": frozenset({"s3:PutObjectTagging", "s3:PutObjectVersionTagging"}),
    "S3DeleteObjectTagging": frozenset({"s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"}),
    "S3InitiateRestoreObject": frozenset({"s3:RestoreObject"}),
    "S3PutObjectLegalHold": frozenset({"s3:GetBucketObjectLockConfiguration", "s3:PutObjectLegalHold"}),
    # The guide's policy also has s3:BypassGovernanceRetention, needed when a spec sets
    # BypassGovernanceRetention: true: granted only when AllowedOperations names
    # S3PutObjectRetention:BypassGovernanceRetention (BYPASS_ACTIONS below).
    "S3PutObjectRetention": frozenset({"s3:GetBucketObjectLockConfiguration", "s3:PutObjectRetention"}),
    "S3ReplicateObject": frozenset({"s3:InitiateReplication"}),
    # Not documented by AWS at the time of writing: reading the object is the assumption.
    "S3ComputeObjectChecksum": frozenset({"s3:GetObject", "s3:GetObjectVersion"}),
    "S3UpdateObjectEncryption": frozenset({"s3:UpdateObjectEncryption"}),
}
# On every source bucket, whatever the operation: without s3:ListBucket a missing key answers 403,
# not 404, and is classified as the wrong error (S3 API reference, GetObject "Permissions").
SOURCE_BUCKET_ACTIONS = frozenset({"s3:ListBucket"})
BYPASS_ACTIONS = frozenset({"s3:BypassGovernanceRetention"})
# On copy targets (TargetBuckets): the copy policy of the same guide, plus the Object Lock settings
# a copy may set on the new object (S3PutObjectCopy ObjectLockMode, ObjectLockLegalHoldStatus).
TARGET_ACTIONS = frozenset(
    {
        "s3:PutObject",
        "s3:PutObjectAcl",
        "s3:PutObjectTagging",
        "s3:PutObjectRetention",
        "s3:PutObjectLegalHold",
    }
)
# On the functions LambdaInvoke jobs may call.
LAMBDA_ACTIONS = frozenset({"lambda:InvokeFunction"})
# On the KMS keys UpdateObjectEncryption may apply (its API reference: kms:ReEncrypt* spelled out).
KMS_ACTIONS = frozenset(
    {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"}
)
# On the pipeline bucket: read the manifest, write the completion report (every policy of the guide);
# s3:GetObjectVersion only when CreateJob names the manifest's ObjectVersionId.
PIPELINE_ACTIONS = frozenset({"s3:GetObject", "s3:PutObject", "s3:GetBucketLocation"})

# Resource scope of a Batch Operations role statement, by the name its Resource refers to.
SCOPE_MARKERS = {
    "SourceBuckets": "source objects",
    "TargetBuckets": "copy targets",
    "LambdaInvokeFunctionArns": "LambdaInvoke functions",
    "KmsKeyArns": "KMS keys",
    "PipelineBucket": "pipeline bucket",
}


# ------------------------------------------------------------------ template side


@cache
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@cache
def sam_policy_templates() -> dict[str, frozenset[str]]:
    """Policy template name -> actions, from samtranslator's JSON when available."""
    candidates = sorted(REPO_ROOT.glob(".venv-sam/lib/python*/site-packages/samtranslator"))
    try:
        import samtranslator  # optional: cfn-lint may or may not bring it

        candidates.append(Path(samtranslator.__file__).parent)
    except ImportError:
        pass
    for root in candidates:
        path = root / "policy_templates_data" / "policy_templates.json"
        if path.is_file():
            templates = json.loads(path.read_text(encoding="utf-8"))["Templates"]
            return {
                name: frozenset(
                    action
                    for statement in body["Definition"]["Statement"]
                    for action in _as_list(statement["Action"])
                )
                for name, body in templates.items()
            }
    return FALLBACK_POLICY_TEMPLATES


def statement_actions(statements: Iterable[dict[str, Any]]) -> set[str]:
    return {
        action
        for statement in statements
        if statement.get("Effect") == "Allow"
        for action in _as_list(statement.get("Action", []))
    }


def sam_policies_statements(policies: Any) -> Iterator[dict[str, Any]]:
    """Statements of a SAM ``Policies`` list, policy templates expanded to their actions."""
    templates = sam_policy_templates()
    for policy in _as_list(policies or []):
        if isinstance(policy, dict) and "Statement" in policy:
            yield from _as_list(policy["Statement"])
        elif isinstance(policy, dict) and len(policy) == 1 and next(iter(policy)) in templates:
            name = next(iter(policy))
            yield {"Effect": "Allow", "Action": sorted(templates[name]), "Template": name}
        else:
            raise AssertionError(
                f"policy {policy!r} is neither an inline statement list nor a known SAM policy "
                "template; managed policies are not allowed (they grant what no code here needs)"
            )


def granted_to_function(logical_id: str) -> set[str]:
    properties = template()["Resources"][logical_id].get("Properties", {})
    return statement_actions(sam_policies_statements(properties.get("Policies")))


def role_statements(logical_id: str) -> list[dict[str, Any]]:
    properties = template()["Resources"][logical_id]["Properties"]
    return [
        statement
        for policy in properties.get("Policies", [])
        for entry in _as_list(policy["PolicyDocument"]["Statement"])
        for statement in every_branch(entry)
    ]


def topic_uses_customer_managed_key() -> bool:
    key = template()["Resources"][TOPIC_ID].get("Properties", {}).get("KmsMasterKeyId")
    return key is not None and not (isinstance(key, str) and key.startswith("alias/aws/"))


# ------------------------------------------------------------------ code side


@dataclass
class CodeUse:
    """What a handler's reachable code does with boto3, and where."""

    clients: set[str] = field(default_factory=set)
    calls: dict[str, set[str]] = field(default_factory=dict)  # method name -> files
    constants: set[str] = field(default_factory=set)
    handled: set[str] = field(default_factory=set)  # exception names in except clauses

    def add_call(self, name: str, where: str) -> None:
        self.calls.setdefault(name, set()).add(where)


# Methods that run without being named at the call site.
IMPLICIT_METHODS = frozenset(
    {"__init__", "__post_init__", "__enter__", "__exit__", "__call__", "__iter__", "__next__", "__del__"}
)


def _module_file(code_root: Path, module: str) -> Path | None:
    base = code_root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(code_root: Path, path: Path, tree: ast.Module) -> set[Path]:
    package = ".".join(path.relative_to(code_root).with_suffix("").parts[:-1])
    found: set[Path] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            module_path = _module_file(code_root, name) if name else None
            if module_path is not None:
                found.add(module_path)
    return found


def _module_closure(code_root: Path, entry: Path) -> dict[Path, ast.Module]:
    trees: dict[Path, ast.Module] = {}
    pending = [entry]
    while pending:
        path = pending.pop()
        if path in trees:
            continue
        trees[path] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        pending.extend(_imported_files(code_root, path, trees[path]) - trees.keys())
    return trees


def _referenced_names(node: ast.AST) -> set[str]:
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            names.add(child.id)
        elif isinstance(child, ast.Attribute):
            names.add(child.attr)
    return names


@cache
def code_use(handler: str, code_uri: str) -> CodeUse:
    """Reachability by name from the handler over the modules it imports, then boto3 use in it.

    A name-based call graph (any def or method with a referenced name counts) over-approximates
    what runs, which is the safe side for "needed"; it stays within the handler's own imports, so
    a function is never charged with calls it cannot reach.
    """
    code_root = REPO_ROOT / code_uri
    module, function = handler.rsplit(".", 1)
    entry = _module_file(code_root, module)
    assert entry is not None, f"handler module {module} not found under {code_root}"
    trees = _module_closure(code_root, entry)

    defs: dict[str, list[tuple[Path, ast.AST]]] = {}
    roots: list[tuple[Path, ast.AST]] = []
    for path, tree in trees.items():
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defs.setdefault(node.name, []).append((path, node))
            elif isinstance(node, ast.ClassDef):
                # Referencing a class reaches its body and the methods Python calls implicitly;
                # other methods are reached by their own names (``table.get(...)``).
                implicit = [
                    item
                    for item in node.body
                    if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    or item.name in IMPLICIT_METHODS
                ]
                defs.setdefault(node.name, []).extend((path, item) for item in implicit)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        defs.setdefault(item.name, []).append((path, item))
            else:
                roots.append((path, node))  # module-level code runs at import
    handler_defs = [d for d in defs.get(function, []) if d[0] == entry]
    assert handler_defs, f"{handler}: no function {function} in {entry}"
    roots.extend(handler_defs)

    use = CodeUse()
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        path, node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        where = str(path.relative_to(REPO_ROOT))
        for child in ast.walk(node):
            if isinstance(child, ast.Constant) and isinstance(child.value, str):
                use.constants.add(child.value)
            if isinstance(child, ast.ExceptHandler) and child.type is not None:
                use.handled |= _referenced_names(child.type)
            if not isinstance(child, ast.Call) or not isinstance(child.func, ast.Attribute):
                continue
            method = child.func.attr
            use.add_call(method, where)
            first = child.args[0] if child.args else None
            literal = first.value if isinstance(first, ast.Constant) else None
            if method == "client" and isinstance(literal, str):
                use.clients.add(literal)
            elif method == "get_paginator" and isinstance(literal, str):
                use.add_call(literal, where)
        for name in _referenced_names(node):
            pending.extend(defs.get(name, []))
    return use


@cache
def _operations(service: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def operation_actions(service: str, operation: str) -> frozenset[str]:
    if (service, operation) in OPERATION_ACTIONS:
        return OPERATION_ACTIONS[(service, operation)]
    assert service in IAM_PREFIX, f"no IAM prefix known for service {service!r}: add it to IAM_PREFIX"
    return frozenset({f"{IAM_PREFIX[service]}:{operation}"})


def needed_by_function(logical_id: str) -> dict[str, set[str]]:
    """IAM action -> why (``service.Operation in file``) for one function's reachable code."""
    properties = function_properties(template(), logical_id)
    use = code_use(properties["Handler"], properties["CodeUri"])
    needed: dict[str, set[str]] = {}
    for service in sorted(use.clients):
        for method, files in use.calls.items():
            operation = _operations(service).get(method)
            if operation is None:
                continue
            actions = set(operation_actions(service, operation))
            if (service, operation) == ("sns", "Publish") and topic_uses_customer_managed_key():
                actions |= SNS_CMK_PUBLISH_ACTIONS
            for action in actions:
                needed.setdefault(action, set()).update(f"{service}.{operation} in {f}" for f in files)
    if "s3" in use.clients and "NoSuchKey" in use.handled:
        # S3 API reference, GetObject: without s3:ListBucket a missing key is 403 AccessDenied,
        # not the 404 NoSuchKey the code handles.
        needed.setdefault("s3:ListBucket", set()).add("except NoSuchKey (404 needs s3:ListBucket)")
    return needed


# ------------------------------------------------------------------ the state machine


def asl_definition() -> dict[str, Any]:
    properties = template()["Resources"][STATE_MACHINE_ID]["Properties"]
    return json.loads((REPO_ROOT / properties["DefinitionUri"]).read_text(encoding="utf-8"))


def _task_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state.get("Type") == "Task":
            yield name, state
        for branch in state.get("Branches", []):
            yield from _task_states(branch["States"])
        if "Iterator" in state:
            yield from _task_states(state["Iterator"]["States"])
        if "ItemProcessor" in state:
            yield from _task_states(state["ItemProcessor"]["States"])


def task_actions(resource: str) -> frozenset[str]:
    """IAM actions a Task state's Resource ARN needs from the state machine role."""
    integration = resource.split(":::", 1)[1] if ":::" in resource else ""
    if integration.startswith("lambda:invoke"):
        return frozenset({"lambda:InvokeFunction"})
    if integration.startswith("aws-sdk:"):
        _, service, api_action = integration.split(":", 2)
        api_action = api_action.split(".", 1)[0]
        operation = api_action[0].upper() + api_action[1:]
        return operation_actions(service, operation) | TASK_EXTRA_ACTIONS.get(
            (service, operation), frozenset()
        )
    if resource.startswith("arn:") and ":function:" in resource:
        return frozenset({"lambda:InvokeFunction"})
    if integration.startswith("s3:"):  # a Distributed Map's ItemReader: arn:aws:states:::s3:getObject
        api_action = integration.split(":", 1)[1]
        return operation_actions("s3", api_action[0].upper() + api_action[1:])
    raise AssertionError(f"no IAM mapping for Task resource {resource!r}: add one to task_actions")


def _map_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        if state.get("Type") == "Map":
            yield name, state
            yield from _map_states(state.get("ItemProcessor", state.get("Iterator", {})).get("States", {}))
        for branch in state.get("Branches", []):
            yield from _map_states(branch["States"])


# Step Functions developer guide, "IAM policies for using Distributed Map states": the state machine
# role starts the children as executions of the state machine and may describe and stop them.
DISTRIBUTED_MAP_ACTIONS = frozenset(
    {"states:StartExecution", "states:DescribeExecution", "states:StopExecution"}
)


def needed_by_state_machine() -> dict[str, set[str]]:
    needed: dict[str, set[str]] = {}
    for name, state in _task_states(asl_definition()["States"]):
        for action in task_actions(state["Resource"]):
            needed.setdefault(action, set()).add(f"Task {name} ({state['Resource']})")
    for name, state in _map_states(asl_definition()["States"]):
        if state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED":
            for action in DISTRIBUTED_MAP_ACTIONS:
                needed.setdefault(action, set()).add(f"Distributed Map {name}")
        if "ItemReader" in state:
            for action in task_actions(state["ItemReader"]["Resource"]):
                needed.setdefault(action, set()).add(f"ItemReader of {name}")
    properties = template()["Resources"][STATE_MACHINE_ID]["Properties"]
    if properties.get("Logging", {}).get("Level", "OFF") != "OFF":
        for action in LOG_DELIVERY_ACTIONS:
            needed.setdefault(action, set()).add("Logging (CloudWatch Logs delivery)")
    return needed


# ------------------------------------------------------------------ reporting


def _report(principal: str, granted: set[str], needed: dict[str, set[str]]) -> str:
    unused = sorted(granted - needed.keys())
    missing = sorted(needed.keys() - granted)
    lines = [f"{principal}: granted and needed actions differ"]
    if unused:
        lines.append("  granted but not needed by any code/ASL (remove them): " + ", ".join(unused))
    for action in missing:
        lines.append(f"  needed but not granted: {action}  <- {'; '.join(sorted(needed[action]))}")
    return "\n".join(lines)


FUNCTION_IDS = sorted(resources_of_type(load_template(TEMPLATE_PATH), FUNCTION_TYPE))


@pytest.mark.parametrize("logical_id", FUNCTION_IDS)
def test_function_permissions_match_its_code(logical_id: str) -> None:
    granted = granted_to_function(logical_id)
    needed = needed_by_function(logical_id)
    assert granted == needed.keys(), _report(logical_id, granted, needed)


def test_state_machine_permissions_match_its_definition() -> None:
    granted = granted_to_function(STATE_MACHINE_ID)
    needed = needed_by_state_machine()
    assert granted == needed.keys(), _report(STATE_MACHINE_ID, granted, needed)


def test_every_lambda_task_is_a_function_the_state_machine_may_invoke() -> None:
    """LambdaInvokePolicy entries and the ASL's FunctionName placeholders name the same functions."""
    properties = template()["Resources"][STATE_MACHINE_ID]["Properties"]
    invokable = {
        policy["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for policy in properties.get("Policies", [])
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy
    }
    substitutions = properties["DefinitionSubstitutions"]
    invoked = set()
    for _, state in _task_states(asl_definition()["States"]):
        if state["Resource"].partition(":::")[2].startswith("lambda:invoke"):
            placeholder = state["Parameters"]["FunctionName"].strip("${}")
            invoked.add(substitutions[placeholder]["Fn::GetAtt"][0])
    assert invokable == invoked, f"may invoke {sorted(invokable)}, the ASL invokes {sorted(invoked)}"


# ------------------------------------------------------------------ BatchOperationsRole


def job_operations() -> list[str]:
    """Every JobOperation member of the botocore model: the spec accepts them all (README, "Job spec reference")."""
    shape = botocore.session.get_session().get_service_model("s3control").shape_for("JobOperation")
    return sorted(shape.members)


def batch_role_needed() -> dict[str, set[str]]:
    """Resource scope -> actions the role needs there for the operations the stack accepts."""
    needed = {scope: set() for scope in SCOPE_MARKERS.values()}
    for operation in job_operations():
        needed["source objects"] |= SOURCE_ACTIONS_BY_OPERATION[operation]
    needed["source objects"] |= SOURCE_BUCKET_ACTIONS | BYPASS_ACTIONS
    needed["copy targets"] |= TARGET_ACTIONS
    needed["LambdaInvoke functions"] |= LAMBDA_ACTIONS
    needed["KMS keys"] |= KMS_ACTIONS
    needed["pipeline bucket"] |= PIPELINE_ACTIONS
    create_job = function_properties(template(), "CreateJobFunction")
    constants = code_use(create_job["Handler"], create_job["CodeUri"]).constants
    if "ObjectVersionId" in constants:
        needed["pipeline bucket"].add("s3:GetObjectVersion")
    # A spec.source run's job lists the source bucket itself (CreateJob's ManifestGenerator).
    if "ManifestGenerator" in constants:
        needed["source objects"].add("s3:ListBucket")
    return needed


def batch_role_granted() -> dict[str, set[str]]:
    granted = {scope: set() for scope in SCOPE_MARKERS.values()}
    for statement in role_statements(BATCH_ROLE_ID):
        if statement.get("Effect") != "Allow":
            continue
        resource = json.dumps(statement.get("Resource"))
        scopes = [scope for marker, scope in SCOPE_MARKERS.items() if marker in resource]
        assert len(scopes) == 1, (
            f"cannot tell the resource scope of {statement}: one of {list(SCOPE_MARKERS)}"
        )
        granted[scopes[0]] |= {
            action for entry in _as_list(statement["Action"]) for action in every_branch(entry)
        }
    return granted


def test_every_job_operation_has_documented_permissions() -> None:
    unknown = sorted(set(job_operations()) - SOURCE_ACTIONS_BY_OPERATION.keys())
    assert not unknown, (
        f"botocore knows S3 Batch operations this test does not: {unknown}. Look up the permissions "
        "their Batch Operations role needs and add them to SOURCE_ACTIONS_BY_OPERATION."
    )


@pytest.mark.parametrize("scope", list(SCOPE_MARKERS.values()))
def test_batch_operations_role_grants_what_the_operations_need(scope: str) -> None:
    granted, needed = batch_role_granted()[scope], batch_role_needed()[scope]
    assert granted == needed, (
        f"BatchOperationsRole on {scope}:\n"
        f"  granted but not needed (remove them): {sorted(granted - needed)}\n"
        f"  needed but not granted: {sorted(needed - granted)}"
    )


# ------------------------------------------------------------------ the scanner itself


def test_scanner_sees_the_calls_the_handlers_make() -> None:
    """Guards the static scan: known calls of known handlers must be found, or every check is void."""
    assert "s3:CreateJob" in needed_by_function("CreateJobFunction")
    assert "states:SendTaskSuccess" in needed_by_function("JobStatusFunction")
    assert "dynamodb:GetItem" in needed_by_function("CheckJobFunction")
    # UploadPartCopy through batchpipe_core.multipart, reached from BuildManifest's handler.
    assert {"s3:PutObject", "s3:GetObject"} <= needed_by_function("BuildManifestFunction").keys()
    # CheckJob imports the run lock but never releases it: reachability, not imports, decides.
    assert "dynamodb:DeleteItem" not in needed_by_function("CheckJobFunction")
