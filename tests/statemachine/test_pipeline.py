"""The whole pipeline: real pipeline.asl.json, real handlers, embedded AWS (moto + the project's S3 Batch
engine, DuckDB Athena and EventBridge router). Assertions are on outcomes: objects' tags in S3, the
files the run wrote, the execution's output and history."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from contextlib import contextmanager
from urllib.parse import unquote, unquote_plus

import pytest

from batchpipe.local.stack import LocalStack, seconds_per_long_wait
from batchpipe.local.world import World
from batchpipe_core.accounting import estimate_transitions
from batchpipe_core.s3uri import split_s3_uri

TAG = {"Key": "batchpipe", "Value": "done"}
TAGGING = {"S3PutObjectTagging": {"TagSet": [TAG]}}

KEYS = [
    "photos/2023/a b.jpg",
    "photos/2023/plus+sign.jpg",
    "photos/2023/100%.jpg",
    'photos/2023/eq=comma,quote"hash#q?.jpg',
    "photos/2023/ünïcödé/日本.jpg",
    "photos/2024/new.jpg",
    "docs/readme.txt",
    "slow/one.bin",
    "slow/two words.bin",
    "gone/missing.bin",
    "gone/also+missing.bin",
]
SLOW = [k for k in KEYS if k.startswith("slow/")]
GONE = [k for k in KEYS if k.startswith("gone/")]
HAPPY_PATH = [
    "ValidateSpec",
    "AcquireRunLock",
    "RunLockTaken?",
    "RerunOfFailures?",
    "PlanQuery",
    "StartQuery",
    "WaitForQuery",
    "GetQueryStatus",
    "QueryFinished?",
]


# The job waits (JobWaitTimeoutSeconds, in range as on AWS) compressed to one real second each, for
# the tests that go through the DescribeJob fallback.
ONE_SECOND_WAITS = seconds_per_long_wait(1.0)


@contextmanager
def pipeline(keys=KEYS, *, fmt="CSV", versions="Current", objects=None, **stack_options):
    world = World(fmt=fmt, versions=versions)
    parameters = world.parameters(**stack_options.pop("parameters", {}))
    with LocalStack(parameters=parameters, **stack_options) as stack:
        world.seed(stack.client("s3"), objects if objects is not None else world.objects_with_keys(keys))
        stack.world = world
        yield stack


def tags_by_key(stack) -> dict[str, dict[str, str]]:
    s3 = stack.client("s3")
    bucket = stack.world.source_bucket
    result = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            tag_set = s3.get_object_tagging(Bucket=bucket, Key=obj["Key"])["TagSet"]
            result[obj["Key"]] = {t["Key"]: t["Value"] for t in tag_set}
    return result


def read_s3_uri(stack, uri: str) -> str:
    bucket, key = split_s3_uri(uri)
    return stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def run_folder_uri(execution) -> str:
    """s3:// of the run's folder, as ValidateSpec chose it (the manifest lies at its top)."""
    return execution.output["manifest"]["location"].rsplit("/", 1)[0] + "/"


def jobs(stack) -> list[dict]:
    return stack.client("s3control").list_jobs(AccountId=stack.account_id).get("Jobs", [])


@pytest.mark.parametrize("fmt", ["CSV", "Parquet", "ORC"])
def test_happy_path_tags_exactly_the_selected_objects(fmt):
    spec = {"name": "retag", "filter": {"prefixes": ["photos/2023/"]}, "operation": TAGGING}

    with pipeline(fmt=fmt) as stack:
        execution = stack.run(spec, name=f"happy-{fmt.lower()}")
        tags = tags_by_key(stack)
        summary_in_s3 = json.loads(read_s3_uri(stack, run_folder_uri(execution) + "summary.json"))

    selected = [k for k in KEYS if k.startswith("photos/2023/")]
    assert execution.status == "SUCCEEDED"
    assert execution.states_entered[: len(HAPPY_PATH)] == HAPPY_PATH
    entered = execution.states_entered
    # No event says a job was counted (Suspended): the short first wait times out, and DescribeJob
    # finds the job prepared after as many doubled waits as its preparation takes, in CheckJob or in
    # CreateJobAndWait's own look when it is entered again (which one depends on timing).
    waits = entered[entered.index("FirstAttempt") + 1 : entered.index("ConfirmJob") - 1]
    loops = ["CreateJobAndWait", "CheckJob", "JobFinished?"] * (len(waits) // 3)
    assert waits in ([*loops, "UseCheckedJob"], [*loops, "CreateJobAndWait"])
    assert len(waits) >= 4
    assert entered[entered.index("ConfirmJob") - 1 :] == [
        "CountNeeded?",
        "ConfirmJob",  # maxObjects on the count, then Ready
        "DryRunCounted?",  # no: not a source.bucket dry run
        "CreateJobAndWait",  # until the job ends
        "CountNeeded?",
        "PlanReport",  # a Complete job: its report's files, counted window by window
        "ReadReportParts",
        "JoinNeeded?",  # no: nothing to join
        "PackParts",  # the parts' small failure files (none here): one step finds nothing to pack
        "PartsPacked?",
        "ProcessReport",
        "MoreToRetry?",
        "Summarize",
    ]
    polls = entered.count("GetQueryStatus")
    further_waits = len(waits) - 4  # the estimate counts one timed-out wait, found by CheckJob
    assert len(entered) == estimate_transitions(1, query_polls=polls, children=False) + further_waits
    summary = execution.output
    assert summary == summary_in_s3
    assert summary["status"] == "SUCCEEDED"
    assert summary["manifest"]["objects"] == len(selected)
    assert summary["totals"] == {
        "objects": len(selected),
        "succeeded": len(selected),
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert {k for k, t in tags.items() if t == {"batchpipe": "done"}} == set(selected)
    assert all(tags[k] == {} for k in KEYS if k not in selected)


def test_history_after_gives_the_events_get_execution_history_gives_from_where_it_is_asked():
    """The local run's progress lines read only the events since their last poll
    (LocalStack.history_after): the same events, in the same order, as the API's history."""
    spec = {"name": "retag", "filter": {"prefixes": ["photos/2023/"]}, "operation": TAGGING}

    with pipeline() as stack:
        execution = stack.run(spec, name="history-after")
        direct = stack.history_after(execution.arn, 0)
        later = stack.history_after(execution.arn, 10)
        none_new = stack.history_after(execution.arn, len(direct))

    def shown(events: list[dict]) -> list[tuple]:
        return [
            (
                e["id"],
                e["type"],
                json.dumps({k: v for k, v in e.items() if k.endswith("EventDetails")}, sort_keys=True),
            )
            for e in events
        ]

    assert len(execution.history) > 10
    assert shown(direct) == shown(execution.history)
    assert shown(later) == shown(execution.history[10:])
    assert none_new == []


def test_manifest_and_report_keys_decode_back_to_the_exact_keys():
    with pipeline() as stack:
        execution = stack.run({"name": "keys", "operation": TAGGING}, name="keys")
        manifest = read_s3_uri(stack, execution.output["manifest"]["location"])
        report_manifest = json.loads(read_s3_uri(stack, execution.output["attempts"][0]["report"]))
        results = "".join(
            stack.client("s3").get_object(Bucket=r["Bucket"], Key=r["Key"])["Body"].read().decode()
            for r in report_manifest["Results"]
        )

    rows = list(csv.reader(io.StringIO(manifest)))
    assert sorted(unquote(row[1]) for row in rows) == sorted(KEYS)
    assert sorted(unquote_plus(row[1]) for row in rows) == sorted(KEYS)
    assert all("+" not in row[1] for row in rows)
    report_rows = list(csv.reader(io.StringIO(results)))
    assert sorted(unquote(row[1]) for row in report_rows) == sorted(KEYS)
    assert {row[3] for row in report_rows} == {"succeeded"}


def test_retriable_failures_rerun_as_a_new_job_and_permanent_ones_are_reported():
    faults = [
        {"keyRegex": "^slow/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
        {"keyRegex": "^gone/", "httpStatus": 404, "errorCode": "NoSuchKey"},
    ]
    with pipeline(faults=faults) as stack:
        execution = stack.run({"name": "faults", "operation": TAGGING}, name="faults")
        tags = tags_by_key(stack)
        failures = list(
            csv.DictReader(io.StringIO(read_s3_uri(stack, execution.output["permanentFailures"])))
        )
        retry_manifest = read_s3_uri(stack, run_folder_uri(execution) + "attempt-1/retry-manifest.csv")

    summary = execution.output
    first, second = summary["attempts"]
    assert execution.status == "SUCCEEDED"
    assert summary["status"] == "PARTIAL"
    assert first | {"jobId": None, "report": None} == {
        "attempt": 1,
        "jobId": None,
        "jobStatus": "Complete",
        "total": len(KEYS),
        "succeeded": len(KEYS) - len(SLOW) - len(GONE),
        "failedRetriable": len(SLOW),
        "failedPermanent": len(GONE),
        "errors": {"503 SlowDown": len(SLOW), "404 NoSuchKey": len(GONE)},
        "report": None,
    }
    # Attempt 2 runs only the 503 keys, and they succeed.
    assert (second["total"], second["succeeded"], second["failedRetriable"], second["failedPermanent"]) == (
        len(SLOW),
        len(SLOW),
        0,
        0,
    )
    assert sorted(unquote(row.split(",")[1]) for row in retry_manifest.splitlines()) == sorted(SLOW)
    assert summary["totals"] == {
        "objects": len(KEYS),
        "succeeded": len(KEYS) - len(GONE),
        "failedPermanent": len(GONE),
        "failedRetriesExhausted": 0,
    }
    assert sorted(f["key"] for f in failures) == sorted(GONE)
    assert {(f["httpStatus"], f["errorCode"]) for f in failures} == {("404", "NoSuchKey")}
    # The operation really happened to every retried object, and never to the missing ones.
    assert all(tags[k] == {"batchpipe": "done"} for k in SLOW)
    assert all(tags[k] == {} for k in GONE)
    # Per job: waits until counted (a timed-out first wait, then as many doubled waits as the job's
    # preparation takes under load: JobFinished? loops back), then one wait until it ended.
    entered = execution.states_entered
    came_from = {entered[i - 1] for i, name in enumerate(entered) if name == "CreateJobAndWait"}
    assert came_from <= {"FirstAttempt", "NextAttempt", "JobFinished?", "DryRunCounted?"}
    assert entered.count("ConfirmJob") == 2
    assert entered.count("CreateJobAndWait") >= 4
    assert execution.states_entered.count("Backoff") == 1


def read_items(stack, execution, attempt: int = 1) -> list[dict]:
    """The report files the attempt's counted report stage read (PlanReport's ReadReportParts items)."""
    return json.loads(
        read_s3_uri(stack, run_folder_uri(execution) + f"attempt-{attempt}/parts/count/read-items.json")
    )


def report_results(stack, report_uri: str) -> list[dict]:
    return json.loads(read_s3_uri(stack, report_uri))["Results"]


@pytest.mark.parametrize("counts", ["given", "withheld"])
@pytest.mark.parametrize("failures", [True, False], ids=["some failed", "none failed"])
def test_a_complete_jobs_files_of_successes_are_read_only_where_s3_gives_no_counts(counts, failures):
    """Where DescribeJob gives NumberOfTasksSucceeded and NumberOfTasksFailed (optional; the embedded
    S3 withholds them by default) a Complete job's files of successes are not read - with no failure,
    no report file at all: ReadReportParts maps over no item - and the outcomes are the same."""
    broken = GONE + SLOW if failures else []
    faults = [{"keyRegex": "^(gone|slow)/", "httpStatus": 404, "errorCode": "NoSuchKey"}] if failures else []
    options = {"engine_options": {"withhold_counts": False}} if counts == "given" else {}
    with pipeline(faults=faults, **options) as stack:
        execution = stack.run({"name": "counts", "operation": TAGGING}, name=f"counts-{counts}-{failures}")
        (attempt,) = execution.output["attempts"]
        items = read_items(stack, execution)
        results = report_results(stack, attempt["report"])
        listed = read_s3_uri(stack, execution.output["permanentFailures"])
        tags = tags_by_key(stack)

    assert execution.status == "SUCCEEDED"
    assert execution.output["status"] == ("PARTIAL" if failures else "SUCCEEDED")
    assert execution.output["totals"] == {
        "objects": len(KEYS),
        "succeeded": len(KEYS) - len(broken),
        "failedPermanent": len(broken),
        "failedRetriesExhausted": 0,
    }
    assert sorted(row["key"] for row in csv.DictReader(io.StringIO(listed))) == sorted(broken)
    assert {k for k, t in tags.items() if t == {"batchpipe": "done"}} == set(KEYS) - set(broken)
    read = [results[item["file"]]["TaskExecutionStatus"] for item in items]
    statuses = [result["TaskExecutionStatus"] for result in results]
    if counts == "given":
        assert read == [status for status in statuses if status == "failed"]
    else:
        assert sorted(read) == sorted(statuses) and "succeeded" in read
    assert execution.states_entered.count("ReadReportParts") == 1


def test_when_attempts_run_out_the_remaining_keys_are_reported():
    faults = [{"keyRegex": "^slow/", "httpStatus": 503, "errorCode": "SlowDown"}]
    spec = {"name": "exhaust", "operation": TAGGING, "retry": {"maxAttempts": 2, "backoffSeconds": 1}}

    with pipeline(faults=faults) as stack:
        execution = stack.run(spec, name="exhaust")
        failures = list(
            csv.DictReader(io.StringIO(read_s3_uri(stack, execution.output["permanentFailures"])))
        )

    summary = execution.output
    assert summary["status"] == "PARTIAL"
    assert [a["attempt"] for a in summary["attempts"]] == [1, 2]
    assert summary["attempts"][1]["failedRetriable"] == len(SLOW)
    assert summary["totals"]["failedRetriesExhausted"] == len(SLOW)
    assert summary["totals"]["succeeded"] + summary["totals"]["failedRetriesExhausted"] == len(KEYS)
    assert sorted(f["key"] for f in failures) == sorted(SLOW)
    assert {f["errorCode"] for f in failures} == {"SlowDown"}


def test_a_job_failed_at_the_threshold_gives_its_untried_tasks_another_attempt():
    # 1,200 objects, 80% failing once with 503: S3 fails the job after 1,000 tasks (> 50% failed).
    keys = [f"{'bad' if i % 5 else 'ok'}/{i:05d}.bin" for i in range(1200)]
    faults = [{"keyRegex": "^bad/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1}]

    with pipeline(keys, faults=faults) as stack:
        execution = stack.run({"name": "threshold", "operation": TAGGING}, name="threshold", timeout=300)
        tags = tags_by_key(stack)

    summary = execution.output
    first = summary["attempts"][0]
    assert first["jobStatus"] == "Failed"
    assert first["succeeded"] + first["failedRetriable"] + first["failedPermanent"] == 1200
    assert any(code.endswith("NotRun") for code in first["errors"])
    assert summary["status"] == "SUCCEEDED"
    assert summary["totals"]["succeeded"] == 1200
    assert all(t == {"batchpipe": "done"} for t in tags.values())


def test_a_run_finishes_through_describe_job_when_every_event_is_lost():
    lost = {"event_delivery": "drop", "timeout_scale": ONE_SECOND_WAITS}
    # The job is still Active when CreateJob looks, so only the fallback can see it finish.
    with pipeline(**lost, engine_options={"active_seconds": 1.5}) as stack:
        execution = stack.run({"name": "lost", "operation": TAGGING}, name="lost")
        delivered = [d for d in stack.router.deliveries if d.status == "delivered"]
        all_jobs = jobs(stack)

    # Without events, DescribeJob tells the run about the job, either in CheckJob (the wait timed
    # out) or in CreateJobAndWait's own look when it is entered again: which one depends on timing,
    # so the test asserts only what both paths promise.
    assert execution.output["status"] == "SUCCEEDED"
    assert execution.output["totals"]["succeeded"] == len(KEYS)
    assert [a["total"] for a in execution.output["attempts"]] == [len(KEYS)]
    assert delivered == []
    assert len(all_jobs) == 1
    # The waits were compressed to a second (timeout_scale), not shortened: the history records the
    # seconds the definition asked for (TimeoutSecondsPath: the state's current.waitSeconds, which its
    # parameters show), as AWS would. timeoutInSeconds is optional in TaskScheduledEventDetails, and
    # moto's interpreter, rarely and only under load, schedules a wait without it (the embedded stack
    # then leaves it out, batchpipe.local.stack._whole_task_timeouts_in_history): where it is given, it
    # is the declared wait, and the waits are told from the parameters that always are.
    scheduled = [
        e["taskScheduledEventDetails"]
        for e in execution.history
        if e["type"] == "TaskScheduled"
        and e["taskScheduledEventDetails"]["resource"] == "invoke.waitForTaskToken"
    ]
    waits = [json.loads(s["parameters"])["Payload"]["current"]["waitSeconds"] for s in scheduled]
    assert [s.get("timeoutInSeconds", wait) for s, wait in zip(scheduled, waits, strict=True)] == waits
    assert any("timeoutInSeconds" in s for s in scheduled)
    assert waits[-1] == int(stack.parameter_values["JobWaitTimeoutSeconds"])
    assert waits[0] == int(stack.parameter_values["JobCountWaitSeconds"])


@pytest.mark.parametrize("mode", ["duplicate", "shuffle"])
def test_duplicated_or_reordered_events_complete_each_wait_once(mode):
    faults = [{"keyRegex": "^slow/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1}]
    with pipeline(event_delivery=mode, faults=faults) as stack:
        execution = stack.run({"name": "events", "operation": TAGGING}, name=f"events-{mode}")
        stack.router.flush()
        all_jobs = jobs(stack)

    assert execution.output["status"] == "SUCCEEDED"
    assert len(all_jobs) == 2
    assert execution.states_entered.count("ProcessReport") == 2
    # Each wait ends once, by its token or by its timeout: the duplicates and stragglers were
    # refused harmlessly. (No event says Suspended: a job's count is found by DescribeJob.)
    completions = [
        e
        for e in execution.history
        if e["type"] == "TaskSucceeded"
        and e["taskSucceededEventDetails"]["resource"] == "invoke.waitForTaskToken"
    ]
    timeouts = [e for e in execution.history if e["type"] == "TaskTimedOut"]
    assert len(completions) + len(timeouts) == execution.states_entered.count("CreateJobAndWait")
    assert len(completions) >= 2  # at least each job's end


def test_a_retried_create_job_lambda_creates_one_job():
    # The first wait's timeout (JobCountWaitSeconds, real seconds) must outlast the crash and its
    # retry, or under load the wait times out first and CheckJob, not the retry, finds the job.
    with pipeline(parameters={"JobCountWaitSeconds": "60"}) as stack:
        create_job = stack.functions.by_logical_id["CreateJobFunction"]
        real_load = create_job.load
        calls = []

        def crash_after_first_create(event, context):
            result = real_load()(event, context)
            calls.append(event["current"]["attempt"])
            if len(calls) == 1:
                from batchpipe_core.errors import TransientError

                raise TransientError("simulated crash after CreateJob returned")
            return result

        create_job.load = lambda: crash_after_first_create
        execution = stack.run({"name": "retry", "operation": TAGGING}, name="retry-create")
        all_jobs = jobs(stack)

    assert execution.output["status"] == "SUCCEEDED"
    assert len(calls) == 3  # the crash, its retry, the wait after ConfirmJob
    assert len(all_jobs) == 1
    assert any(e["type"] == "TaskFailed" for e in execution.events_of("CreateJobAndWait"))


def test_confirmation_required_waits_until_the_job_is_confirmed():
    spec = {"name": "confirm", "operation": TAGGING, "confirmationRequired": True}
    with pipeline(timeout_scale=ONE_SECOND_WAITS) as stack:
        arn = stack.start(spec, "confirm")
        s3control = stack.client("s3control")
        sfn = stack.client("stepfunctions")
        deadline = time.monotonic() + 60

        def timeouts() -> int:
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            return sum(e["type"] == "TaskTimedOut" for e in events)

        # Counted and tagged for a person (ConfirmJob), however long a loaded machine takes.
        while True:
            suspended = [j for j in jobs(stack) if j["Status"] == "Suspended"]
            tags = (
                suspended
                and s3control.get_job_tagging(AccountId=stack.account_id, JobId=suspended[0]["JobId"])["Tags"]
            )
            if tags and {"Key": "batchpipe:confirmation", "Value": "operator"} in tags:
                break
            assert time.monotonic() < deadline, "the job was never counted and left for a person"
            time.sleep(0.1)
        # A further wait times out (a second each): the run keeps waiting, it does not give up.
        seen = timeouts()
        while timeouts() <= seen:
            assert time.monotonic() < deadline, "no wait timed out after the count"
            time.sleep(0.1)
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        (job,) = jobs(stack)
        assert {"Key": "batchpipe:confirmation", "Value": "operator"} in tags  # counted, left for a person
        assert {"Key": "batchpipe:attempt", "Value": "1"} in tags  # PutJobTagging kept the others
        s3control.update_job_status(
            AccountId=stack.account_id, JobId=job["JobId"], RequestedJobStatus="Ready"
        )
        execution = stack.wait(arn)

    assert execution.output["status"] == "SUCCEEDED"
    assert execution.output["totals"]["succeeded"] == len(KEYS)
    assert "CheckJob" in execution.states_entered


def test_nothing_selected_ends_nothing_to_do_without_a_job():
    spec = {"name": "empty", "filter": {"prefixes": ["no/such/prefix/"]}, "operation": TAGGING}
    with pipeline() as stack:
        execution = stack.run(spec, name="empty")
        all_jobs = jobs(stack)

    assert execution.output["status"] == "NOTHING_TO_DO"
    assert execution.output["manifest"]["objects"] == 0
    assert all_jobs == []
    assert execution.states_entered[-2:] == ["AnythingToDo?", "Summarize"]


def test_dry_run_stops_after_the_manifest():
    spec = {"name": "dry", "filter": {"prefixes": ["photos/"]}, "operation": TAGGING, "dryRun": True}
    with pipeline() as stack:
        execution = stack.run(spec, name="dry")
        all_jobs = jobs(stack)
        tags = tags_by_key(stack)

    summary = execution.output
    assert summary["status"] == "DRY_RUN"
    assert summary["manifest"]["objects"] == sum(k.startswith("photos/") for k in KEYS)
    assert all_jobs == []
    assert all(t == {} for t in tags.values())
    assert "CreateJobAndWait" not in execution.states_entered
    assert summary["estimatedCostUsd"] > 0
    sample = json.dumps(summary)
    assert "photos/2023/a b.jpg" in sample


def test_an_athena_error_fails_the_run_with_athenas_reason():
    """A value Athena cannot convert fails the query itself: its reason becomes the run's failure."""
    spec = {"name": "badcast", "filter": {"where": "CAST(key AS bigint) > 0"}, "operation": TAGGING}
    with pipeline() as stack:
        execution = stack.run(spec, name="badcast")

    assert execution.output["status"] == "FAILED"
    assert "QueryFailed" in execution.states_entered
    assert execution.output["error"] == "AthenaQueryFailed"


def test_a_table_that_does_not_exist_fails_before_any_query():
    spec = {"name": "badtable", "inventory": {"table": "no_such_table"}, "operation": TAGGING}
    with pipeline() as stack:
        execution = stack.run(spec, name="badtable")

    assert execution.output["status"] == "FAILED"
    assert execution.output["error"] == "InventoryNotReadableError"
    assert "StartQuery" not in execution.states_entered
    assert "batchpipe_inventory.no_such_table does not exist" in execution.output["cause"]


def test_all_versions_inventory_acts_on_latest_versions_with_null_versions():
    world = World(versions="All")
    objects = world.generated(40, seed=3)
    spec = {"name": "versions", "operation": TAGGING}
    with pipeline(versions="All", objects=objects) as stack:
        execution = stack.run(spec, name="versions")
        manifest = read_s3_uri(stack, execution.output["manifest"]["location"])

    latest = [o for o in stack.world.objects if o.is_latest and not o.is_delete_marker]
    rows = list(csv.reader(io.StringIO(manifest)))
    assert execution.output["status"] == "SUCCEEDED"
    assert len(rows) == len(latest)
    assert all(len(row) == 3 for row in rows)
    assert {row[2] for row in rows if row[2] == "null"} == (
        {"null"} if any(o.version_id is None for o in latest) else set()
    )
    assert execution.output["totals"]["succeeded"] == len(latest)


def test_concurrent_runs_do_not_share_state():
    with pipeline() as stack:
        arns = [stack.start({"name": f"par{i}", "operation": TAGGING}, f"par-{i}") for i in range(2)]
        results = [stack.wait(arn) for arn in arns]

    assert [r.output["status"] for r in results] == ["SUCCEEDED", "SUCCEEDED"]
    assert len({r.output["attempts"][0]["jobId"] for r in results}) == 2


def test_a_reused_execution_name_is_a_new_run_that_never_touches_the_old_one():
    """Step Functions allows a name again 90 days after its execution ended; RetentionDays may keep
    the first run's files (and the token table its items) much longer than that."""
    first_spec = {"name": "nightly", "filter": {"prefixes": ["photos/2023/"]}, "operation": TAGGING}
    second_spec = {"name": "nightly", "filter": {"prefixes": ["docs/"]}, "operation": TAGGING}
    with pipeline() as stack:
        first = stack.run(first_spec, name="nightly")
        first_files = _objects_under(stack, run_folder_uri(first))
        stack.forget_execution(first.arn)

        second = stack.run(second_spec, name="nightly")
        first_files_after = _objects_under(stack, run_folder_uri(first))
        tags = tags_by_key(stack)
        every_job = jobs(stack)
        athena_tokens = [
            json.loads(e["taskScheduledEventDetails"]["parameters"])["ClientRequestToken"]
            for run in (first, second)
            for e in run.history
            if e["type"] == "TaskScheduled"
            and "startQueryExecution" in e["taskScheduledEventDetails"]["resource"]
        ]

    assert second.arn == first.arn  # the same execution ARN names both runs
    assert (first.status, second.status) == ("SUCCEEDED", "SUCCEEDED")
    assert run_folder_uri(second) != run_folder_uri(first)
    assert first_files_after == first_files  # nothing of the first run was overwritten or added to
    # The second run created its own job and counted only its own objects.
    assert len(every_job) == 2
    assert first.output["attempts"][0]["jobId"] != second.output["attempts"][0]["jobId"]
    assert second.output["totals"]["objects"] == 1 and second.output["attempts"] == [
        {**second.output["attempts"][0], "total": 1, "succeeded": 1}
    ]
    assert {k for k, t in tags.items() if t} == {k for k in KEYS if k.startswith(("photos/2023/", "docs/"))}
    # Athena's idempotency token is per run too: the second query is a new query, not the first's.
    assert len(set(athena_tokens)) == 2 and all(32 <= len(t) <= 128 for t in athena_tokens)


def _objects_under(stack, folder_uri: str) -> dict[str, str]:
    bucket, prefix = split_s3_uri(folder_uri)
    paginator = stack.client("s3").get_paginator("list_objects_v2")
    return {
        o["Key"]: o["ETag"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    }


# ------------------------------------------------------------------ reruns of a run's failures

DENIED = ["denied/a b+c.jpg", 'denied/100%,"q"#?.jpg', "denied/ünï/日本 x.jpg"]
RERUN_TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "batchpipe", "Value": "rerun"}]}}


def test_a_rerun_acts_on_exactly_the_failures_with_the_chosen_error_codes():
    # First run: 403 for DENIED (the cause gets fixed: the fault fires once), 404 for GONE (for good).
    faults = [
        {"keyRegex": "^gone/", "httpStatus": 404, "errorCode": "NoSuchKey"},
        {"keyRegex": "^denied/", "httpStatus": 403, "errorCode": "AccessDenied", "times": 1},
    ]
    with pipeline(KEYS + DENIED, faults=faults) as stack:
        first = stack.run({"name": "first", "operation": TAGGING}, name="first")
        rerun = {"failures": first.output["permanentFailures"], "errorCodes": ["AccessDenied"]}
        second = stack.run({"name": "fix", "rerun": rerun, "operation": RERUN_TAGGING}, name="fix")
        manifest = read_s3_uri(stack, second.output["manifest"]["location"])
        tags = tags_by_key(stack)

    assert first.output["status"] == "PARTIAL"
    assert first.output["totals"]["failedPermanent"] == len(GONE) + len(DENIED)
    summary = second.output
    assert summary["status"] == "SUCCEEDED"
    assert summary["rerunOf"] == first.output["permanentFailures"]
    assert "rerunOf" not in first.output
    assert summary["manifest"]["objects"] == len(DENIED)
    assert summary["totals"] == {
        "objects": len(DENIED),
        "succeeded": len(DENIED),
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert second.states_entered[:5] == [
        "ValidateSpec",
        "AcquireRunLock",
        "RunLockTaken?",
        "RerunOfFailures?",
        "ImportFailures",
    ]
    assert "PlanQuery" not in second.states_entered
    # Manifest keys decode back exactly, under percent and form decoding alike.
    rows = list(csv.reader(io.StringIO(manifest)))
    assert sorted(unquote(row[1]) for row in rows) == sorted(DENIED)
    assert sorted(unquote_plus(row[1]) for row in rows) == sorted(DENIED)
    # Only the rerun's objects carry its tag; the first run's successes and the 404s were not touched.
    assert {k for k, t in tags.items() if t == {"batchpipe": "rerun"}} == set(DENIED)
    assert all(tags[k] == {"batchpipe": "done"} for k in KEYS if k not in GONE)
    assert all(tags[k] == {} for k in GONE)


def test_a_rerun_of_every_failure_reports_the_ones_that_fail_again():
    faults = [{"keyRegex": "^gone/", "httpStatus": 404, "errorCode": "NoSuchKey"}]
    with pipeline(faults=faults) as stack:
        first = stack.run({"name": "first", "operation": TAGGING}, name="first")
        rerun = {"failures": first.output["permanentFailures"]}
        dry = stack.run({"name": "again", "rerun": rerun, "operation": TAGGING, "dryRun": True}, name="dry")
        second = stack.run({"name": "again", "rerun": rerun, "operation": TAGGING}, name="again")
        failures = list(csv.DictReader(io.StringIO(read_s3_uri(stack, second.output["permanentFailures"]))))

    assert dry.output["status"] == "DRY_RUN"
    assert sorted(dry.output["manifest"]["sample"]) == sorted(GONE)
    assert second.output["status"] == "PARTIAL"
    assert second.output["totals"]["objects"] == len(GONE)
    assert sorted(f["key"] for f in failures) == sorted(GONE)


def test_a_rerun_keeps_the_version_ids_of_a_versioned_inventory():
    world = World(versions="All")
    objects = world.generated(40, seed=3)
    latest = [o for o in objects if o.is_latest and not o.is_delete_marker][:3]
    pattern = "^(" + "|".join(re.escape(o.key) for o in latest) + ")$"
    faults = [{"keyRegex": pattern, "httpStatus": 403, "errorCode": "AccessDenied", "times": 1}]
    with pipeline(versions="All", objects=objects, faults=faults) as stack:
        first = stack.run({"name": "first", "operation": TAGGING}, name="first")
        first_rows = list(csv.reader(io.StringIO(read_s3_uri(stack, first.output["manifest"]["location"]))))
        rerun = {"failures": first.output["permanentFailures"]}
        second = stack.run({"name": "fix", "rerun": rerun, "operation": TAGGING}, name="fix")
        rerun_rows = list(csv.reader(io.StringIO(read_s3_uri(stack, second.output["manifest"]["location"]))))

    failed = {unquote(row[1]) for row in rerun_rows}
    assert failed == {o.key for o in latest}
    assert all(len(row) == 3 for row in rerun_rows)
    # Athena encodes "/" and Python does not; both decode to the same key, and versions are kept.
    decoded = sorted((b, unquote(k), v) for b, k, v in rerun_rows)
    assert decoded == sorted((b, unquote(k), v) for b, k, v in first_rows if unquote(k) in failed)
    assert second.output["status"] == "SUCCEEDED"


def test_a_file_that_is_not_a_failures_file_fails_the_rerun_before_any_job():
    with pipeline() as stack:
        first = stack.run({"name": "first", "operation": TAGGING}, name="first")
        rerun = {"failures": first.output["manifest"]["location"]}  # a manifest, not a failures file
        second = stack.run({"name": "wrong", "rerun": rerun, "operation": TAGGING}, name="wrong")
        all_jobs = jobs(stack)

    assert second.output["status"] == "FAILED"
    assert second.output["error"] == "FailuresFileError"
    assert "rerun.failures takes a run's permanentFailures file" in second.output["cause"]
    assert len(all_jobs) == 1


def test_a_tampered_failures_file_naming_another_bucket_fails_the_rerun_before_any_job():
    # Someone who can write the pipeline bucket appends a row for a bucket outside SourceBuckets.
    faults = [{"keyRegex": "^gone/", "httpStatus": 404, "errorCode": "NoSuchKey"}]
    with pipeline(faults=faults) as stack:
        s3 = stack.client("s3")
        s3.create_bucket(Bucket="victim-bucket")
        s3.put_object(Bucket="victim-bucket", Key="payroll.csv", Body=b"x")
        first = stack.run({"name": "first", "operation": TAGGING}, name="first")
        uri = first.output["permanentFailures"]
        bucket, key = split_s3_uri(uri)
        tampered = read_s3_uri(stack, uri) + "victim-bucket,payroll.csv,,404,NoSuchKey,x\n"
        s3.put_object(Bucket=bucket, Key=key, Body=tampered.encode())
        second = stack.run(
            {"name": "evil", "rerun": {"failures": uri}, "operation": RERUN_TAGGING}, name="evil"
        )
        all_jobs = jobs(stack)
        victim_tags = s3.get_object_tagging(Bucket="victim-bucket", Key="payroll.csv")["TagSet"]

    assert second.output["status"] == "FAILED"
    assert second.output["error"] == "FailuresFileError"
    line = len(GONE) + 2  # the header, then the run's own rows, then the planted one
    assert (
        f"{uri} line {line}: bucket 'victim-bucket' is not the bucket the stack's runs act on"
        in (second.output["cause"])
    )
    assert len(all_jobs) == 1  # the first run's only
    assert victim_tags == []
