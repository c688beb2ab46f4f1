"""The job spec (README, "Job spec reference"): every field, its defaults, exact error messages, and ValidateSpec."""

from __future__ import annotations

import copy
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError
from batchpipe_core.operation import operation_names
from batchpipe_core.runlock import LEASE_MARGIN_SECONDS
from batchpipe_core.spec import normalize_spec
from batchpipe_core.spec_fields import INVENTORY_ENCRYPTION_STATUSES, INVENTORY_STORAGE_CLASSES

REPO = Path(__file__).resolve().parents[2]

# The Globals environment of template.yaml, as a deployed stack would set it.
STACK_ENV = {
    "POWERTOOLS_SERVICE_NAME": "batchpipe",
    "POWERTOOLS_METRICS_NAMESPACE": "BatchPipe",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "ACCOUNT_ID": "123456789012",
    "PIPELINE_BUCKET": "batchpipe-pipelinebucket-1a2b3c4d5e6f",
    "TOKEN_TABLE": "batchpipe-TokenTable-1A2B3C",
    "INVENTORY_BUCKET": "my-inventory-destination-bucket",
    "INVENTORY_PREFIX": "inventory/my-source-bucket/all-objects",
    "INVENTORY_FORMAT": "CSV",
    "INVENTORY_VERSIONS": "Current",
    "INVENTORY_DATABASE": "batchpipe_inventory",
    "INVENTORY_TABLE": "inventory",
    "ATHENA_WORKGROUP": "batchpipe-batchpipe",
    "BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/batchpipe-BatchOperationsRole",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:batchpipe-NotificationTopic",
    "SOURCE_BUCKETS": "my-source-bucket",
    "DEFAULT_MAX_ATTEMPTS": "3",
    "DEFAULT_BACKOFF_SECONDS": "300",
    "DEFAULT_PRIORITY": "10",
    "DEFAULT_MAX_OBJECTS": "1000000000",
    "DEFAULT_REPORT_SCOPE": "AllTasks",
    "UNKNOWN_ERROR_POLICY": "permanent",
    "JOB_WAIT_TIMEOUT_SECONDS": "3600",
    "STATE_MACHINE_NAME": "batchpipe-pipeline",
}

TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "environment", "Value": "production"}]}}
FAILURES_URI = f"s3://{STACK_ENV['PIPELINE_BUCKET']}/runs/retag-prod/run-7/permanent-failures.csv"
OPERATIONS = ", ".join(operation_names())

FULL_SPEC = {
    "name": "retag-prod",
    "inventory": {"database": "s3_inventory", "table": "prod_bucket", "date": "latest"},
    "filter": {
        "prefixes": ["photos/2023/"],
        "keyRegex": "\\.jpe?g$",
        "storageClasses": ["STANDARD", "STANDARD_IA"],
        "minSizeBytes": 1,
        "maxSizeBytes": 5368709120,
        "modifiedBefore": "2024-01-01T00:00:00Z",
        "modifiedAfter": "2020-01-01T00:00:00Z",
        "encryptionStatuses": ["NOT-SSE"],
        "latestOnly": True,
        "versions": "current",
        "where": "size > 0 AND replication_status = 'FAILED'",
    },
    "operation": TAGGING,
    "report": {"scope": "AllTasks"},
    "retry": {"maxAttempts": 3, "backoffSeconds": 300},
    "priority": 10,
    "confirmationRequired": False,
    "dryRun": False,
    "maxObjects": 100000000,
    "concurrency": "skip",
}

DEFAULTS = {
    "name": "batchpipe",
    "inventory": {"database": "batchpipe_inventory", "table": "inventory", "date": "latest"},
    "filter": {
        "prefixes": None,
        "keyRegex": None,
        "storageClasses": None,
        "minSizeBytes": None,
        "maxSizeBytes": None,
        "modifiedBefore": None,
        "modifiedAfter": None,
        "encryptionStatuses": None,
        "latestOnly": True,
        "versions": "current",
        "where": None,
    },
    "operation": TAGGING,
    "report": {"scope": "AllTasks"},
    "retry": {"maxAttempts": 3, "backoffSeconds": 300},
    "priority": 10,
    "confirmationRequired": False,
    "dryRun": False,
    "maxObjects": 1000000000,
    "concurrency": "skip",
}


@pytest.fixture
def stack_env(monkeypatch):
    for name, value in STACK_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.fixture
def config(stack_env) -> Config:
    return Config.from_env()


def rejected(spec: Any, config: Config) -> list[str]:
    with pytest.raises(SpecValidationError) as raised:
        normalize_spec(spec, config)
    return str(raised.value).splitlines()


def with_field(path: str, value: Any) -> dict[str, Any]:
    """A minimal valid spec with one (dotted) field set."""
    spec: dict[str, Any] = {"operation": copy.deepcopy(TAGGING)}
    *parents, leaf = path.split(".")
    node = spec
    for parent in parents:
        node = node.setdefault(parent, {})
    node[leaf] = value
    return spec


def field_of(document: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        document = document[part]
    return document


# ---------------------------------------------------------------- valid specs


def test_the_brief_example_is_valid_and_already_normal(config):
    assert normalize_spec(FULL_SPEC, config) == FULL_SPEC


def test_only_operation_is_required_and_everything_else_defaults(config):
    normalized = normalize_spec({"operation": TAGGING}, config)

    assert normalized == DEFAULTS
    assert json.loads(json.dumps(normalized)) == normalized


def test_defaults_come_from_the_stack_environment(stack_env):
    stack_env.setenv("DEFAULT_MAX_ATTEMPTS", "5")
    stack_env.setenv("DEFAULT_BACKOFF_SECONDS", "0")
    stack_env.setenv("DEFAULT_PRIORITY", "0")
    stack_env.setenv("DEFAULT_MAX_OBJECTS", "250")
    stack_env.setenv("DEFAULT_REPORT_SCOPE", "FailedTasksOnly")
    stack_env.setenv("INVENTORY_DATABASE", "other_db")
    stack_env.setenv("INVENTORY_TABLE", "other_table")

    normalized = normalize_spec({"operation": TAGGING}, Config.from_env())

    assert normalized["retry"] == {"maxAttempts": 5, "backoffSeconds": 0}
    assert normalized["priority"] == 0
    assert normalized["maxObjects"] == 250
    assert normalized["report"] == {"scope": "FailedTasksOnly"}
    assert normalized["inventory"] == {"database": "other_db", "table": "other_table", "date": "latest"}


def test_a_bad_stack_default_is_a_deployment_fault_not_a_spec_error(stack_env):
    stack_env.setenv("DEFAULT_REPORT_SCOPE", "Everything")

    with pytest.raises(
        RuntimeError, match=r"^the stack's defaults make an invalid spec: report\.scope: 'Everything'"
    ):
        normalize_spec({"operation": TAGGING}, Config.from_env())


def test_null_sections_and_fields_mean_not_given(config):
    spec = {
        "operation": TAGGING,
        "inventory": None,
        "filter": {"prefixes": None, "where": None},
        "retry": None,
    }

    assert normalize_spec(spec, config) == DEFAULTS


ACCEPTED_FIELDS = [
    ("name", "retag-prod.v2_1", "retag-prod.v2_1"),
    ("name", "a" * 64, "a" * 64),
    ("inventory.database", "s3_inventory", "s3_inventory"),
    ("inventory.table", "Prod_Bucket_2", "Prod_Bucket_2"),
    ("inventory.date", "latest", "latest"),
    ("inventory.date", "2024-02-29", "2024-02-29"),
    ("inventory.date", "2024-05-01-00-00", "2024-05-01-00-00"),
    ("filter.prefixes", ["photos/", "video/2023/", "photos/"], ["photos/", "video/2023/"]),
    ("filter.prefixes", ["日本/ key with spaces+plus"], ["日本/ key with spaces+plus"]),
    ("filter.keyRegex", "\\.jpe?g$", "\\.jpe?g$"),
    ("filter.keyRegex", "^(?<year>\\d{4})/\\p{L}+\\z", "^(?<year>\\d{4})/\\p{L}+\\z"),
    ("filter.storageClasses", list(INVENTORY_STORAGE_CLASSES), list(INVENTORY_STORAGE_CLASSES)),
    ("filter.storageClasses", ["GLACIER", "GLACIER"], ["GLACIER"]),
    ("filter.minSizeBytes", 0, 0),
    ("filter.maxSizeBytes", 5 * 1024**4, 5 * 1024**4),
    ("filter.modifiedBefore", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"),
    ("filter.modifiedAfter", "2024-01-01T12:30:45.250Z", "2024-01-01T12:30:45.25Z"),
    ("filter.modifiedAfter", "2024-01-01T12:30:45.000Z", "2024-01-01T12:30:45Z"),
    ("filter.encryptionStatuses", list(INVENTORY_ENCRYPTION_STATUSES), list(INVENTORY_ENCRYPTION_STATUSES)),
    ("filter.latestOnly", True, True),
    ("filter.latestOnly", False, False),
    (
        "filter.where",
        "SIZE > 0 and storage_class in ('STANDARD')",
        "size > 0 AND storage_class IN ('STANDARD')",
    ),
    ("report.scope", "AllTasks", "AllTasks"),
    ("report.scope", "FailedTasksOnly", "FailedTasksOnly"),
    ("retry.maxAttempts", 1, 1),
    ("retry.maxAttempts", 10, 10),
    ("retry.backoffSeconds", 0, 0),
    ("retry.backoffSeconds", 86400, 86400),
    ("priority", 0, 0),
    ("priority", 2147483647, 2147483647),
    ("confirmationRequired", True, True),
    ("dryRun", True, True),
    ("maxObjects", 1, 1),
    ("maxObjects", 20_000_000_000, 20_000_000_000),
]


@pytest.mark.parametrize(("path", "value", "normalized"), ACCEPTED_FIELDS)
def test_each_field_accepts_valid_values(config, path, value, normalized):
    assert field_of(normalize_spec(with_field(path, value), config), path) == normalized


def test_size_and_date_ranges_may_be_tight(config):
    spec = with_field("filter.minSizeBytes", 7)
    spec["filter"].update(
        maxSizeBytes=7, modifiedAfter="2024-01-01T00:00:00Z", modifiedBefore="2024-01-01T00:00:00.001Z"
    )

    assert normalize_spec(spec, config)["filter"]["maxSizeBytes"] == 7


@pytest.mark.parametrize("name", sorted(operation_names()))
def test_any_operation_of_the_model_is_accepted(config, name):
    minimal = {
        "LambdaInvoke": {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"},
        "S3PutObjectCopy": {"TargetResource": "arn:aws:s3:::target-bucket"},
        "S3PutObjectLegalHold": {"LegalHold": {"Status": "ON"}},
        "S3PutObjectRetention": {
            "Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": "2030-01-01T00:00:00Z"}
        },
    }
    operation = {name: minimal.get(name, {})}

    assert normalize_spec({"operation": operation}, config)["operation"] == operation


def test_where_may_use_version_columns_when_the_inventory_lists_all_versions(stack_env):
    stack_env.setenv("INVENTORY_VERSIONS", "All")

    normalized = normalize_spec(
        with_field("filter.where", "is_latest AND version_id <> 'null'"), Config.from_env()
    )

    assert normalized["filter"]["where"] == "is_latest AND version_id <> 'null'"


@pytest.mark.parametrize(
    ("given", "normal"), [(None, "pinned"), ("pinned", "pinned"), ("current", "current")]
)
def test_versions_choice_on_an_all_versions_stack(stack_env, given, normal):
    stack_env.setenv("INVENTORY_VERSIONS", "All")
    spec = with_field("filter.versions", given) if given else {"operation": TAGGING}

    assert normalize_spec(spec, Config.from_env())["filter"]["versions"] == normal


def test_current_versions_need_latest_only(stack_env):
    stack_env.setenv("INVENTORY_VERSIONS", "All")
    spec = {"operation": TAGGING, "filter": {"latestOnly": False, "versions": "current"}}

    with pytest.raises(SpecValidationError) as caught:
        normalize_spec(spec, Config.from_env())

    assert str(caught.value).splitlines() == [
        'filter.versions: "current" acts on each key\'s current version, which only means something with '
        'filter.latestOnly true; remove latestOnly: false or use filter.versions "pinned"'
    ]


def test_a_current_versions_stack_refuses_pinned_versions(config):
    assert normalize_spec(with_field("filter.versions", "current"), config)["filter"]["versions"] == "current"
    with pytest.raises(SpecValidationError) as caught:
        normalize_spec(with_field("filter.versions", "pinned"), config)

    assert str(caught.value).splitlines() == [
        'filter.versions: "pinned" needs an inventory that lists version IDs, but the stack\'s '
        "InventoryVersions is Current (jobs act on each key's current version); remove filter.versions "
        "or use a stack with InventoryVersions=All"
    ]


@pytest.mark.parametrize(("given", "normal"), [(None, "pinned"), ("current", "current")])
def test_a_rerun_chooses_its_versions_too(stack_env, given, normal):
    stack_env.setenv("INVENTORY_VERSIONS", "All")
    rerun = {"failures": FAILURES_URI, **({"versions": given} if given else {})}

    assert (
        normalize_spec({"operation": TAGGING, "rerun": rerun}, Config.from_env())["rerun"]["versions"]
        == normal
    )


def test_a_current_versions_stack_refuses_pinned_reruns(config):
    with pytest.raises(SpecValidationError) as caught:
        normalize_spec(
            {"operation": TAGGING, "rerun": {"failures": FAILURES_URI, "versions": "pinned"}}, config
        )

    assert str(caught.value).splitlines() == [
        'rerun.versions: "pinned" needs an inventory that lists version IDs, but the stack\'s '
        "InventoryVersions is Current (jobs act on each key's current version); remove rerun.versions "
        "or use a stack with InventoryVersions=All"
    ]


def test_an_unknown_versions_choice_names_the_choices(config):
    with pytest.raises(SpecValidationError) as caught:
        normalize_spec(with_field("filter.versions", "Current"), config)

    assert str(caught.value).splitlines() == [
        "filter.versions: 'Current' is not a version choice; did you mean 'current'? use one of: pinned, current"
    ]


# ---------------------------------------------------------------- invalid specs, exact messages

STORAGE_CLASSES = ", ".join(INVENTORY_STORAGE_CLASSES)
FILTER_FIELDS = (
    "prefixes, suffixes, substrings, keyRegex, storageClasses, minSizeBytes, maxSizeBytes, modifiedBefore, "
    "modifiedAfter, encryptionStatuses, replicationStatuses, eligibleForReplication, latestOnly, versions, where, "
    "tags, metadata"
)
TOP_FIELDS = "name, inventory, source, filter, rerun, operation, report, retry, priority, confirmationRequired, dryRun, maxObjects, concurrency"
TIMESTAMP_FORMAT = "must be an ISO 8601 UTC timestamp ending in Z, e.g. 2024-01-01T00:00:00Z"

REJECTED = [
    ({}, [
        'operation: missing required field; give exactly one S3 Batch Operations operation, e.g. '
        '{"S3PutObjectTagging": {"TagSet": [{"Key": "project", "Value": "blue"}]}} '
        f"(one of: {OPERATIONS})"
    ]),
    (["operation"], ['spec: must be a JSON object with at least "operation", got a list']),
    (with_field("name", "retag prod"), [
        "name: 'retag prod' cannot name S3 keys and tags; use 1-64 letters, digits, '.', '_' or '-' "
        "(not '.' or '..' alone)"
    ]),
    (with_field("name", ".."), [
        "name: '..' cannot name S3 keys and tags; use 1-64 letters, digits, '.', '_' or '-' (not '.' or '..' alone)"
    ]),
    (with_field("name", 7), ["name: must be a string, got the number 7"]),
    (with_field("inventory.database", "my-db"), [
        "inventory.database: 'my-db' is not a usable Athena name; use letters, digits and underscores (1-255)"
    ]),
    (with_field("inventory.date", "yesterday"), [
        'inventory.date: must be "latest", a day YYYY-MM-DD or an inventory partition YYYY-MM-DD-HH-MM, '
        "got 'yesterday'"
    ]),
    (with_field("inventory.date", "2023-02-29"), [
        "inventory.date: '2023-02-29' is not a real date; check the month, day, hour and minute"
    ]),
    (with_field("inventory.date", "2024-05-01T00-00Z"), [
        'inventory.date: must be "latest", a day YYYY-MM-DD or an inventory partition YYYY-MM-DD-HH-MM, '
        "got '2024-05-01T00-00Z'"
    ]),
    (with_field("filter.prefixes", "photos/"), ["filter.prefixes: must be a list, got the string 'photos/'"]),
    (with_field("filter.prefixes", []), [
        "filter.prefixes: is an empty list; omit the field (or use null) to apply no such condition"
    ]),
    (with_field("filter.prefixes", ["a/", ""]), [
        "filter.prefixes[1]: is empty; remove it (omit filter.prefixes to select every key)"
    ]),
    (with_field("filter.prefixes", ["a/", 3]), ["filter.prefixes[1]: must be a string, got the number 3"]),
    (with_field("filter.prefixes", ["é" * 513]), [
        "filter.prefixes[0]: is longer than an S3 key can be (1024 bytes); shorten it"
    ]),
    (with_field("filter.keyRegex", "(unclosed"), [
        "filter.keyRegex: is not a valid regular expression (missing ), unterminated subpattern at position 0); "
        "Athena's regexp_like takes Java syntax, e.g. \\.jpe?g$"
    ]),
    (with_field("filter.keyRegex", "(?P<ext>jpe?g)$"), [
        "filter.keyRegex: uses Python-only syntax '(?P<'; Athena's regexp_like takes Java regular expressions: "
        "write a named group as (?<name>...) and avoid conditionals"
    ]),
    (with_field("filter.keyRegex", ""), ["filter.keyRegex: is empty; omit it (or use null) to match every key"]),
    (with_field("filter.storageClasses", ["standard"]), [
        "filter.storageClasses[0]: 'standard' is not an inventory storage class; did you mean 'STANDARD'? "
        f"use one of: {STORAGE_CLASSES}"
    ]),
    (with_field("filter.storageClasses", ["EXPRESS"]), [
        f"filter.storageClasses[0]: 'EXPRESS' is not an inventory storage class; use one of: {STORAGE_CLASSES}"
    ]),
    (with_field("filter.encryptionStatuses", ["SSE_KMS"]), [
        "filter.encryptionStatuses[0]: 'SSE_KMS' is not an inventory encryption status; did you mean 'SSE-KMS'? "
        "use one of: SSE-S3, SSE-C, SSE-KMS, DSSE-KMS, NOT-SSE"
    ]),
    (with_field("filter.minSizeBytes", -1), ["filter.minSizeBytes: must be between 0 and 9223372036854775807, got -1"]),
    (with_field("filter.maxSizeBytes", 1.5), ["filter.maxSizeBytes: must be an integer, got the number 1.5"]),
    ({"operation": TAGGING, "filter": {"minSizeBytes": 100, "maxSizeBytes": 99}}, [
        "filter.maxSizeBytes: 99 is below filter.minSizeBytes (100); raise it or lower minSizeBytes"
    ]),
    (with_field("filter.modifiedBefore", "2024-01-01"), [
        f"filter.modifiedBefore: {TIMESTAMP_FORMAT}, got '2024-01-01'"
    ]),
    (with_field("filter.modifiedBefore", "2024-01-01T00:00:00+02:00"), [
        f"filter.modifiedBefore: {TIMESTAMP_FORMAT}, got '2024-01-01T00:00:00+02:00'"
    ]),
    (with_field("filter.modifiedAfter", "2024-04-31T00:00:00Z"), [
        "filter.modifiedAfter: '2024-04-31T00:00:00Z' is not a real point in time (day is out of range for month); "
        "fix the date or time"
    ]),
    ({"operation": TAGGING, "filter": {"modifiedBefore": "2020-01-01T00:00:00Z", "modifiedAfter": "2024-01-01T00:00:00Z"}}, [
        "filter.modifiedAfter: 2024-01-01T00:00:00Z is not earlier than filter.modifiedBefore "
        "(2020-01-01T00:00:00Z); swap them or widen the range"
    ]),
    ({"operation": TAGGING, "filter": {"modifiedBefore": "2024-01-01T00:00:00Z", "modifiedAfter": "2024-01-01T00:00:00Z"}}, [
        "filter.modifiedAfter: 2024-01-01T00:00:00Z is not earlier than filter.modifiedBefore "
        "(2024-01-01T00:00:00Z); swap them or widen the range"
    ]),
    (with_field("filter.latestOnly", "true"), ["filter.latestOnly: must be true or false, got the string 'true'"]),
    (with_field("filter.where", "size > 0; DROP TABLE x"), [
        "filter.where: ';' is not allowed: give one condition, not statements; remove the ';'"
    ]),
    (with_field("filter.where", "is_latest"), [
        "filter.where: column 'is_latest' exists only in inventories that list all object versions, and this "
        "stack's inventory lists current versions only; remove it"
    ]),
    (with_field("report.scope", "Failed"), [
        "report.scope: 'Failed' is not a report scope; use one of: AllTasks, FailedTasksOnly"
    ]),
    (with_field("retry.maxAttempts", 0), ["retry.maxAttempts: must be between 1 and 10, got 0"]),
    (with_field("retry.maxAttempts", 11), ["retry.maxAttempts: must be between 1 and 10, got 11"]),
    (with_field("retry.maxAttempts", True), ["retry.maxAttempts: must be an integer, got true"]),
    (with_field("retry.backoffSeconds", -5), ["retry.backoffSeconds: must be between 0 and 86400, got -5"]),
    (with_field("retry.backoffSeconds", "300"), ["retry.backoffSeconds: must be an integer, got the string '300'"]),
    (with_field("priority", -1), ["priority: must be between 0 and 2147483647, got -1"]),
    (with_field("priority", 2.0), ["priority: must be an integer, got the number 2.0"]),
    (with_field("confirmationRequired", 1), ["confirmationRequired: must be true or false, got the number 1"]),
    (with_field("dryRun", None), []),  # null = not given: valid (kept here as the boundary case)
    (with_field("maxObjects", 0), ["maxObjects: must be between 1 and 9223372036854775807, got 0"]),
    (with_field("operation", {"S3PutObjectTagging": {"TagSet": [{"Key": "environment"}]}}), [
        "operation.S3PutObjectTagging.TagSet[0].Value: missing required field; add it"
    ]),
    (with_field("operation", {"S3PutObjectTagging": {}, "S3DeleteObjectTagging": {}}), [
        "operation: has 2 operations (S3PutObjectTagging, S3DeleteObjectTagging); a job runs exactly one, keep one of them"
    ]),
    (with_field("filter", ["prefixes"]), ["filter: must be an object, got a list"]),
    ({"operation": TAGGING, "rerun": {}}, [
        "rerun.failures: missing required field; give the s3:// URI of the failures file to rerun "
        "(the permanentFailures of the run's summary)"
    ]),
    ({"operation": TAGGING, "rerun": {"failures": "runs/a/permanent-failures.csv"}}, [
        "rerun.failures: must be the s3:// URI of a run's failures file (its summary's permanentFailures), "
        "e.g. s3://<pipeline bucket>/runs/<name>/<execution>/<start>/permanent-failures.csv, "
        "got 'runs/a/permanent-failures.csv'"
    ]),
    ({"operation": TAGGING, "rerun": {"failures": "s3://elsewhere/runs/a/permanent-failures.csv"}}, [
        "rerun.failures: is in bucket 'elsewhere', but the stack reads failures files only from its "
        f"pipeline bucket {STACK_ENV['PIPELINE_BUCKET']!r}, where runs write them; copy the file there"
    ]),
    ({"operation": TAGGING, "filter": {"prefixes": ["photos/"]}, "rerun": {"failures": FAILURES_URI}}, [
        "rerun: cannot be combined with filter: a rerun acts on the objects of its failures file, not on an "
        "inventory selection; remove filter (or remove rerun to select from the inventory)"
    ]),
    ({"operation": TAGGING, "inventory": {"date": "latest"}, "filter": {}, "rerun": {"failures": FAILURES_URI}}, [
        "rerun: cannot be combined with inventory and filter: a rerun acts on the objects of its failures "
        "file, not on an inventory selection; remove inventory and filter (or remove rerun to select from "
        "the inventory)"
    ]),
    ({"operation": TAGGING, "rerun": {"failures": FAILURES_URI, "errorCodes": []}}, [
        "rerun.errorCodes: is an empty list; omit the field (or use null) to apply no such condition"
    ]),
    ({"operation": TAGGING, "rerun": {"failures": FAILURES_URI, "errorCodes": ["AccessDenied", ""]}}, [
        "rerun.errorCodes[1]: '' is not an error code; use the errorCode column's values, e.g. AccessDenied"
    ]),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "problems"), [case for case in REJECTED if case[1]])
def test_invalid_specs_are_rejected_with_exact_messages(config, spec, problems):
    assert rejected(spec, config) == problems


def test_there_are_many_exact_message_cases():
    assert len([case for case in REJECTED if case[1]]) >= 15


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            {"operation": TAGGING, "dryrun": True},
            f"dryrun: unknown field; did you mean 'dryRun'? allowed at the top level: {TOP_FIELDS}",
        ),
        (
            with_field("inventory.partition", "latest"),
            "inventory.partition: unknown field; allowed in inventory: database, table, date",
        ),
        (
            with_field("filter.key_regex", "x"),
            f"filter.key_regex: unknown field; did you mean 'keyRegex'? allowed in filter: {FILTER_FIELDS}",
        ),
        (
            {"operation": TAGGING, "rerun": {"failures": FAILURES_URI, "errorcode": ["AccessDenied"]}},
            "rerun.errorcode: unknown field; did you mean 'errorCodes'? allowed in rerun: failures, errorCodes, versions",
        ),
        (
            with_field("report.format", "CSV"),
            "report.format: unknown field; allowed in report: scope",
        ),
        (
            with_field("retry.attempts", 3),
            "retry.attempts: unknown field; did you mean 'maxAttempts'? allowed in retry: maxAttempts, backoffSeconds",
        ),
        (
            with_field("operation", {"S3PutObjectTagging": {"TagSet": [], "Tags": []}}),
            "operation.S3PutObjectTagging.Tags: unknown field; did you mean TagSet? use one of: TagSet",
        ),
        (
            with_field("operation", {"PutObjectTagging": {}}),
            f"operation.PutObjectTagging: unknown operation; did you mean S3PutObjectTagging? use one of: {OPERATIONS}",
        ),
    ],
)
def test_unknown_fields_are_rejected_at_every_level(config, spec, problem):
    assert rejected(spec, config) == [problem]


def test_every_problem_is_listed_once_in_a_stable_order(config):
    spec = {
        "nam": "x",
        "name": "bad name",
        "filter": {
            "minSizeBytes": 10,
            "maxSizeBytes": 5,
            "keyRegex": "(",
            "storageClasses": ["X"],
            "where": "dt = 1",
        },
        "operation": {"S3PutObjectTagging": {"TagSet": [{"Key": "k"}]}},
        "retry": {"maxAttempts": 0},
        "maxObjects": 0,
    }

    problems = rejected(spec, config)

    assert [line.split(":")[0] for line in problems] == [
        "name",
        "filter.keyRegex",
        "filter.storageClasses[0]",
        "filter.maxSizeBytes",
        "filter.where",
        "operation.S3PutObjectTagging.TagSet[0].Value",
        "retry.maxAttempts",
        "maxObjects",
        "nam",
    ]
    assert rejected(copy.deepcopy(spec), config) == problems


def test_where_is_checked_against_the_stacks_table_even_when_other_fields_fail(config):
    spec = with_field("filter.where", "version_id = 'x'")
    spec["priority"] = -1

    assert rejected(spec, config) == [
        "priority: must be between 0 and 2147483647, got -1",
        "filter.where: column 'version_id' exists only in inventories that list all object versions, and this "
        "stack's inventory lists current versions only; remove it",
    ]


# ---------------------------------------------------------------- normal form is a fixed point

NAME = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", fullmatch=True)
TIMESTAMPS = st.datetimes(min_value=__import__("datetime").datetime(2000, 1, 1)).map(
    lambda moment: (
        moment.strftime("%Y-%m-%dT%H:%M:%S")
        + (f".{moment.microsecond:06d}" if moment.microsecond else "")
        + "Z"
    )
)
FILTER = st.fixed_dictionaries(
    {},
    optional={
        "prefixes": st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4),
        "keyRegex": st.sampled_from(["\\.jpe?g$", "^logs/\\d{4}/", "(?i)readme", "a|b"]),
        "storageClasses": st.lists(st.sampled_from(INVENTORY_STORAGE_CLASSES), min_size=1, max_size=4),
        "minSizeBytes": st.integers(min_value=0, max_value=10**6),
        "modifiedAfter": TIMESTAMPS,
        "encryptionStatuses": st.lists(
            st.sampled_from(INVENTORY_ENCRYPTION_STATUSES), min_size=1, max_size=3
        ),
        "latestOnly": st.booleans(),
        "where": st.sampled_from(
            ["size > 0", "key LIKE 'a%' OR storage_class <> 'GLACIER'", "e_tag IS NOT NULL"]
        ),
    },
)
SPEC = st.fixed_dictionaries(
    {"operation": st.sampled_from([TAGGING, {"S3DeleteObjectTagging": {}}, {"S3ReplicateObject": {}}])},
    optional={
        "name": NAME,
        "inventory": st.fixed_dictionaries(
            {}, optional={"date": st.sampled_from(["latest", "2024-05-01", "2024-05-01-00-00"])}
        ),
        "filter": FILTER,
        "report": st.fixed_dictionaries(
            {}, optional={"scope": st.sampled_from(["AllTasks", "FailedTasksOnly"])}
        ),
        "retry": st.fixed_dictionaries(
            {},
            optional={
                "maxAttempts": st.integers(min_value=1, max_value=10),
                "backoffSeconds": st.integers(min_value=0, max_value=86400),
            },
        ),
        "priority": st.integers(min_value=0, max_value=2147483647),
        "confirmationRequired": st.booleans(),
        "dryRun": st.booleans(),
        "maxObjects": st.integers(min_value=1, max_value=2**63 - 1),
        "concurrency": st.sampled_from(["skip", "wait", "force"]),
    },
)


def test_a_rerun_takes_the_place_of_inventory_and_filter(config):
    spec = {
        "operation": TAGGING,
        "rerun": {"failures": FAILURES_URI, "errorCodes": ["AccessDenied", "AccessDenied"]},
    }

    normalized = normalize_spec(spec, config)

    assert normalized == {
        "name": "batchpipe",
        "rerun": {"failures": FAILURES_URI, "errorCodes": ["AccessDenied"], "versions": "current"},
        **{k: v for k, v in DEFAULTS.items() if k not in ("name", "inventory", "filter")},
    }
    assert normalize_spec(normalized, config) == normalized
    assert normalize_spec({"operation": TAGGING, "rerun": {"failures": FAILURES_URI}}, config)["rerun"] == {
        "failures": FAILURES_URI,
        "errorCodes": None,
        "versions": "current",
    }


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=SPEC)
def test_any_valid_spec_normalizes_to_a_complete_fixed_point(config, spec):
    normalized = normalize_spec(spec, config)

    assert normalize_spec(normalized, config) == normalized
    assert json.loads(json.dumps(normalized)) == normalized
    assert list(normalized) == list(DEFAULTS)
    assert list(normalized["filter"]) == list(DEFAULTS["filter"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    spec=SPEC, extra=st.text(min_size=1, max_size=12).filter(lambda key: key not in TOP_FIELDS.split(", "))
)
def test_any_unknown_top_level_field_is_rejected_by_name(config, spec, extra):
    problems = rejected({**spec, extra: True}, config)

    shown = extra if extra.isprintable() else json.dumps(extra)
    assert any(line.startswith(f"{shown}: unknown field; ") for line in problems)


# ---------------------------------------------------------------- the ValidateSpec handler


@dataclass
class LambdaContext:
    function_name: str = "batchpipe-ValidateSpecFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:batchpipe-ValidateSpecFunction"
    )
    aws_request_id: str = "0f6b1d5e-0000-4000-8000-000000000000"


@pytest.fixture
def handler(stack_env):
    # Lambda's code root is functions/: handlers import as <function>.app, as they do there.
    stack_env.syspath_prepend(str(REPO / "functions"))
    return importlib.import_module("validate_spec.app").handler


def test_handler_turns_the_sample_event_into_spec_and_run(handler):
    event = json.loads((REPO / "events" / "validate_spec.json").read_text())

    output = handler(event, LambdaContext())

    assert output["run"] == {
        "name": "retag-prod",
        "executionId": event["execution"]["id"],
        "executionName": "retag-prod-2026-11-20",
        "startTime": "2026-11-20T15:00:00.000Z",
        "runId": event["execution"]["id"] + "@20261120T150000.000Z",
        "bucket": STACK_ENV["PIPELINE_BUCKET"],
        "prefix": "runs/retag-prod/retag-prod-2026-11-20/20261120T150000.000Z/",
        "jobWaitTimeoutSeconds": 3600,
        # The first wait for S3's count: the template's JobCountWaitSeconds default (no env here).
        "countWaitSeconds": 60,
        "scheduledTime": None,
        # One job wait, the backoff before the last of 3 attempts (300 s doubled) and the margin.
        "leaseSeconds": 3600 + 600 + LEASE_MARGIN_SECONDS,
    }
    assert output["spec"]["inventory"] == {
        "database": "batchpipe_inventory",
        "table": "inventory",
        "date": "latest",
    }
    assert output["spec"]["filter"]["where"] == "size > 0 AND replication_status <> 'FAILED'"
    assert json.loads(json.dumps(output)) == output


def test_handler_names_the_run_batchpipe_by_default(handler):
    event = {
        "spec": {"operation": TAGGING},
        "execution": {"id": "arn:x", "name": "nightly", "startTime": "2026-11-20T03:00:00.5Z"},
    }

    output = handler(event, LambdaContext())

    assert output["spec"] == DEFAULTS
    assert output["run"]["name"] == "batchpipe"
    assert output["run"]["prefix"] == "runs/batchpipe/nightly/20261120T030000.500Z/"


def test_handler_fails_with_spec_validation_error_naming_the_field(handler):
    event = {
        "spec": {"operation": TAGGING, "retry": {"maxAttempts": 99}},
        "execution": {"id": "arn:x", "name": "bad", "startTime": "2026-11-20T03:00:00Z"},
    }

    with pytest.raises(SpecValidationError, match=r"^retry\.maxAttempts: must be between 1 and 10, got 99$"):
        handler(event, LambdaContext())


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.json")), ids=lambda p: p.stem)
def test_every_example_is_a_valid_spec(config, example):
    text = example.read_text().replace("<pipeline bucket>", STACK_ENV["PIPELINE_BUCKET"])

    normalized = normalize_spec(json.loads(text), config)

    assert normalize_spec(normalized, config) == normalized
