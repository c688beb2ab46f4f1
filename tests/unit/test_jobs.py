"""batchpipe_core.jobs: the CreateJob request, tags, the job outcome and error classification."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.validate import ParamValidator
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core import jobs
from batchpipe_core.errors import TransientError
from batchpipe_core.operation import create_job_request_errors

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.json"))
EXECUTION_ID = "arn:aws:states:us-east-1:123456789012:execution:batchpipe-pipeline:retag-prod-1"

SETTINGS = jobs.JobSettings(
    account_id="123456789012",
    pipeline_bucket="batchpipe-pipelinebucket",
    batch_role_arn="arn:aws:iam::123456789012:role/batchpipe-BatchOperationsRole",
    inventory_versions="Current",
    pipeline_name="batchpipe-pipeline",
    default_priority=10,
    default_report_scope="AllTasks",
)
RUN = jobs.JobRunRef(
    executionId=EXECUTION_ID,
    runId=EXECUTION_ID + "@20261120T150000.000Z",
    executionName="retag-prod-1",
    prefix="runs/retag-prod/retag-prod-1/",
    name="retag-prod",
)
CURRENT = jobs.CurrentAttempt(
    attempt=2,
    manifest=jobs.ManifestRef(
        bucket="batchpipe-pipelinebucket",
        key="runs/retag-prod/retag-prod-1/attempt-1/retry-manifest.csv",
        etag='"0123456789abcdef0123456789abcdef"',
    ),
)
TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "k", "Value": "v"}]}}


def create_job_shape():
    model = botocore.session.get_session().get_service_model("s3control")
    return model.operation_model("CreateJob").input_shape


def assert_valid_create_job(params: dict) -> None:
    """botocore's own validator plus the model's maximums, enums and patterns (which it skips)."""
    report = ParamValidator().validate(params, create_job_shape())
    assert not report.has_errors(), report.generate_report()
    assert create_job_request_errors(params) == []


def spec_of(document: dict) -> jobs.SpecView:
    return jobs.SpecView.model_validate(document)


# ------------------------------------------------------------------ the request


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_builds_a_valid_create_job_request(example: Path) -> None:
    spec = spec_of(json.loads(example.read_text()))
    for versions in ("Current", "All"):
        settings_ = jobs.JobSettings(**{**SETTINGS.__dict__, "inventory_versions": versions})
        assert_valid_create_job(jobs.build_create_job_request(spec, RUN, CURRENT, settings_))


def test_examples_cover_every_operation_in_the_model() -> None:
    used = {next(iter(json.loads(p.read_text())["operation"])) for p in EXAMPLES}
    assert used == set(create_job_shape().members["Operation"].members)


def test_request_has_the_contracted_shape() -> None:
    spec = spec_of({"name": "retag-prod", "operation": TAGGING, "report": {"scope": "FailedTasksOnly"}})
    request = jobs.build_create_job_request(spec, RUN, CURRENT, SETTINGS)

    assert request["Operation"] == TAGGING
    assert request["AccountId"] == "123456789012"
    assert request["RoleArn"] == SETTINGS.batch_role_arn
    assert request["Priority"] == 10
    assert request["ConfirmationRequired"] is True  # always: S3 counts, ConfirmJob checks, then Ready
    assert request["Manifest"] == {
        "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
        "Location": {
            "ObjectArn": "arn:aws:s3:::batchpipe-pipelinebucket/runs/retag-prod/retag-prod-1/attempt-1/"
            "retry-manifest.csv",
            "ETag": "0123456789abcdef0123456789abcdef",
        },
    }
    assert request["Report"] == {
        "Bucket": "arn:aws:s3:::batchpipe-pipelinebucket",
        "Format": "Report_CSV_20180820",
        "Enabled": True,
        "Prefix": "runs/retag-prod/retag-prod-1/attempt-2/report",
        "ReportScope": "FailedTasksOnly",
        "ExpectedBucketOwner": "123456789012",
    }
    tags = jobs.tags_as_dict(request["Tags"])
    assert tags["batchpipe:pipeline"] == "batchpipe-pipeline"
    assert tags["batchpipe:run"] == "retag-prod"
    assert tags["batchpipe:attempt"] == "2"
    assert tags["batchpipe:execution"].startswith("retag-prod-1-")
    assert tags["batchpipe:ref"] == jobs.job_ref(RUN.runId, 2) == request["ClientRequestToken"]


def test_spec_values_override_stack_defaults() -> None:
    spec = spec_of({"operation": TAGGING, "priority": 0, "confirmationRequired": True})
    request = jobs.build_create_job_request(spec, RUN, CURRENT, SETTINGS)
    assert request["Priority"] == 0
    assert request["ConfirmationRequired"] is True
    assert request["Report"]["ReportScope"] == "AllTasks"


def test_all_versions_inventory_adds_the_version_column() -> None:
    settings_ = jobs.JobSettings(**{**SETTINGS.__dict__, "inventory_versions": "All"})
    request = jobs.build_create_job_request(spec_of({"operation": TAGGING}), RUN, CURRENT, settings_)
    assert request["Manifest"]["Spec"]["Fields"] == ["Bucket", "Key", "VersionId"]


@pytest.mark.parametrize("fields", [["Bucket", "Key"], ["Bucket", "Key", "VersionId"]])
def test_the_manifest_document_names_its_own_fields(fields: list[str]) -> None:
    """filter.versions "current" on an all-versions stack: BuildManifest wrote no version column."""
    settings_ = jobs.JobSettings(**{**SETTINGS.__dict__, "inventory_versions": "All"})
    current = CURRENT.model_copy(update={"manifest": CURRENT.manifest.model_copy(update={"fields": fields})})
    request = jobs.build_create_job_request(spec_of({"operation": TAGGING}), RUN, current, settings_)
    assert request["Manifest"]["Spec"]["Fields"] == fields
    assert_valid_create_job(request)


@pytest.mark.parametrize(
    ("stack", "versions", "fields"),
    [
        ("All", None, ["Bucket", "Key", "VersionId"]),
        ("All", "pinned", ["Bucket", "Key", "VersionId"]),
        ("All", "current", ["Bucket", "Key"]),
        ("Current", "current", ["Bucket", "Key"]),
    ],
)
def test_manifest_fields_follow_the_versions_choice(
    stack: str, versions: str | None, fields: list[str]
) -> None:
    assert jobs.manifest_fields(stack, versions) == fields


def test_partition_follows_the_role_arn() -> None:
    settings_ = jobs.JobSettings(
        **{**SETTINGS.__dict__, "batch_role_arn": "arn:aws-cn:iam::123456789012:role/batch"}
    )
    request = jobs.build_create_job_request(spec_of({"operation": TAGGING}), RUN, CURRENT, settings_)
    assert request["Report"]["Bucket"] == "arn:aws-cn:s3:::batchpipe-pipelinebucket"
    assert request["Manifest"]["Location"]["ObjectArn"].startswith(
        "arn:aws-cn:s3:::batchpipe-pipelinebucket/"
    )
    assert_valid_create_job(request)


def test_request_is_deterministic_so_a_retry_is_idempotent() -> None:
    spec = spec_of({"operation": TAGGING})
    first = jobs.build_create_job_request(spec, RUN, CURRENT, SETTINGS)
    again = jobs.build_create_job_request(copy.deepcopy(spec), RUN, CURRENT, SETTINGS)
    assert first == again
    other_attempt = jobs.CurrentAttempt(attempt=3, manifest=CURRENT.manifest)
    assert (
        jobs.build_create_job_request(spec, RUN, other_attempt, SETTINGS)["ClientRequestToken"]
        != (first["ClientRequestToken"])
    )


def test_token_key_and_ref() -> None:
    assert jobs.token_key(RUN.runId, 1) == RUN.runId + "#1"
    ref = jobs.job_ref(RUN.runId, 1)
    assert len(ref) == 64 and int(ref, 16) >= 0
    assert ref == jobs.job_ref(RUN.runId, 1) != jobs.job_ref(RUN.runId, 2)
    # The same execution name started again (allowed 90 days after the first ended) is another run.
    reused = EXECUTION_ID + "@20270301T080000.000Z"
    assert jobs.token_key(reused, 1) != jobs.token_key(RUN.runId, 1)
    assert jobs.job_ref(reused, 1) != ref


# Step Functions execution names may hold almost any printable character; S3 tag values may not.
names = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=300)


@settings(max_examples=60, deadline=None)
@given(execution_name=names, run_name=names, attempt=st.integers(min_value=1, max_value=10))
def test_any_names_give_valid_tags_and_description(execution_name: str, run_name: str, attempt: int) -> None:
    execution_id = f"arn:aws:states:us-east-1:123456789012:execution:batchpipe-pipeline:{execution_name}"
    run = jobs.JobRunRef(
        executionId=execution_id,
        runId=execution_id + "@20261120T150000.000Z",
        executionName=execution_name,
        prefix="runs/x/y/",
        name=run_name,
    )
    current = jobs.CurrentAttempt(attempt=attempt, manifest=CURRENT.manifest)
    request = jobs.build_create_job_request(spec_of({"operation": TAGGING}), run, current, SETTINGS)
    assert_valid_create_job(request)
    assert jobs.pipeline_ref(request["Tags"], SETTINGS.pipeline_name) == jobs.job_ref(run.runId, attempt)


# ------------------------------------------------------------------ tags -> token


def test_pipeline_ref_ignores_foreign_jobs() -> None:
    ours = jobs.job_tags(SETTINGS, RUN, 1)
    assert jobs.pipeline_ref(ours, "batchpipe-pipeline") == jobs.job_ref(RUN.runId, 1)
    assert jobs.pipeline_ref(ours, "other-stack-pipeline") is None
    assert jobs.pipeline_ref([], "batchpipe-pipeline") is None
    assert jobs.pipeline_ref([{"Key": "team", "Value": "x"}], "batchpipe-pipeline") is None


# ------------------------------------------------------------------ the job outcome


def describe_job(status: str, **extra) -> dict:
    job = {
        "JobId": "job-1",
        "Status": status,
        "ProgressSummary": {
            "TotalNumberOfTasks": 120,
            "NumberOfTasksSucceeded": 118,
            "NumberOfTasksFailed": 2,
        },
        "Report": {
            "Bucket": "arn:aws:s3:::batchpipe-pipelinebucket",
            "Format": "Report_CSV_20180820",
            "Enabled": True,
            "Prefix": "runs/retag-prod/retag-prod-1/attempt-1/report",
            "ReportScope": "AllTasks",
        },
    }
    job.update(extra)
    return job


def test_outcome_of_a_complete_job() -> None:
    created, ended = datetime(2026, 11, 20, 15, 0, tzinfo=UTC), datetime(2026, 11, 20, 15, 4, 30, tzinfo=UTC)
    job = describe_job("Complete", CreationTime=created, TerminationDate=ended)
    assert jobs.job_outcome(job) == {
        "jobId": "job-1",
        "status": "Complete",
        "terminal": True,
        "needsCount": False,
        "total": 120,
        "succeeded": 118,
        "failed": 2,
        "failureReasons": [],
        "statusUpdateReason": "",
        "suspended": False,
        "report": {
            "bucket": "batchpipe-pipelinebucket",
            "prefix": "runs/retag-prod/retag-prod-1/attempt-1/report",
            "scope": "AllTasks",
        },
        "created": "2026-11-20T15:00:00+00:00",
        "ended": "2026-11-20T15:04:30+00:00",
    }


def test_outcome_of_a_failed_job_carries_the_reasons() -> None:
    job = describe_job(
        "Failed",
        StatusUpdateReason="Job failed",
        FailureReasons=[{"FailureCode": "ManifestETagMismatch", "FailureReason": "ETag does not match"}],
    )
    outcome = jobs.job_outcome(job)
    assert outcome["terminal"] is True
    assert outcome["failureReasons"] == [{"code": "ManifestETagMismatch", "reason": "ETag does not match"}]
    assert outcome["statusUpdateReason"] == "Job failed"
    json.dumps(outcome)  # the task-token output must be JSON


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        ("New", False),
        ("Preparing", False),
        ("Suspended", False),
        ("Ready", False),
        ("Active", False),
        ("Pausing", False),
        ("Paused", False),
        ("Completing", False),
        ("Cancelling", False),
        ("Failing", False),
        ("Complete", True),
        ("Cancelled", True),
        ("Failed", True),
    ],
)
def test_only_complete_cancelled_failed_are_terminal(status: str, terminal: bool) -> None:
    assert jobs.is_terminal(status) is terminal
    assert jobs.job_outcome({"JobId": "j", "Status": status})["terminal"] is terminal


def test_every_status_in_the_model_is_classified() -> None:
    model = botocore.session.get_session().get_service_model("s3control")
    statuses = set(model.shape_for("JobStatus").enum)
    assert jobs.TERMINAL_STATUSES <= statuses


def test_outcome_without_counts_says_unknown_never_zero() -> None:
    # Every JobProgressSummary member is optional (S3 API reference).
    outcome = jobs.job_outcome({"JobId": "j", "Status": "Preparing"})
    assert outcome["total"] is outcome["succeeded"] is outcome["failed"] is None
    suspended = jobs.job_outcome(
        {"JobId": "j", "Status": "Suspended", "ProgressSummary": {"NumberOfTasksFailed": 0}}
    )
    assert (suspended["total"], suspended["failed"], suspended["needsCount"]) == (None, 0, True)
    assert outcome["report"] == {"bucket": None, "prefix": None, "scope": None}


def test_no_job_outcome_is_not_terminal() -> None:
    outcome = jobs.no_job_outcome(RUN, CURRENT, SETTINGS)
    assert outcome["terminal"] is False and outcome["status"] == "Unknown" and outcome["jobId"] is None
    assert outcome["report"]["prefix"] == "runs/retag-prod/retag-prod-1/attempt-2/report"


# ------------------------------------------------------------------ AWS errors


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "CreateJob"
    )


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("TooManyRequestsException", 400, True),
        ("ThrottlingException", 400, True),
        ("InternalServiceException", 500, True),
        ("ServiceUnavailable", 503, True),
        ("Whatever", 502, True),
        ("Whatever", 429, True),
        ("BadRequestException", 400, False),
        ("IdempotencyException", 400, False),
        ("AccessDenied", 403, False),
    ],
)
def test_transient_errors(code: str, status: int, transient: bool) -> None:
    assert jobs.is_transient(client_error(code, status)) is transient


def test_transient_as_retryable_renames_only_transient_errors() -> None:
    with pytest.raises(TransientError), jobs.transient_as_retryable("CreateJob"):
        raise client_error("TooManyRequestsException", 400)
    with pytest.raises(TransientError), jobs.transient_as_retryable("CreateJob"):
        raise EndpointConnectionError(endpoint_url="https://s3-control.example")
    with pytest.raises(ClientError), jobs.transient_as_retryable("CreateJob"):
        raise client_error("BadRequestException", 400)


# ------------------------------------------------------------------ the sample events in events/


def test_sample_create_job_event_builds_a_valid_request() -> None:
    event = jobs.CreateJobInput.model_validate(json.loads((REPO / "events" / "create_job.json").read_text()))
    request = jobs.build_create_job_request(event.spec, event.run, event.current, SETTINGS)
    assert_valid_create_job(request)
    assert (
        request["Report"]["Prefix"]
        == "runs/retag-prod/retag-prod-2026-11-20/20261120T150000.000Z/attempt-1/report"
    )


def test_sample_check_job_event_names_the_same_attempt() -> None:
    check = jobs.CheckJobInput.model_validate(json.loads((REPO / "events" / "check_job.json").read_text()))
    create = jobs.CreateJobInput.model_validate(json.loads((REPO / "events" / "create_job.json").read_text()))
    assert jobs.token_key(check.run.runId, check.current.attempt) == jobs.token_key(
        create.run.runId, create.current.attempt
    )
