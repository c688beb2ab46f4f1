"""`batchpipe stop | confirm | cancel | jobs`: act on one run of a deployed stack, as an AWS engineer
would with the console, in one command each.

A run's S3 Batch Operations jobs are found by what the pipeline writes on them: each job's
Description reads ``batchpipe <run name> attempt <n> (<execution name>)`` (batchpipe_core.jobs), and
ListJobs returns it with the job's status and progress, so one listing serves every job of a run.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

from batchpipe.output import JSON, TEXT, iso_time, print_json, print_table
from batchpipe_core.jobs import CONFIRM_BY_OPERATOR, TAG_CONFIRMATION, TAG_OBJECTS

from .aws import Aws, OperatorError, aws_errors
from .stack import describe

# A job the pipeline created for an execution: its Description (batchpipe_core.jobs.create_job_request).
_JOB_OF = re.compile(r"^batchpipe \S+ attempt (?P<attempt>\d+) \((?P<execution>[^)]+)\)$")
# The statuses in which a person can still act on a job (S3 user guide, "Job statuses").
CANCELLABLE = ("New", "Preparing", "Suspended", "Ready", "Active", "Paused", "Pausing")


def _account_of(arn: str) -> str:
    return arn.split(":")[4]


def run_jobs(aws: Aws, execution_arn: str) -> list[dict[str, Any]]:
    """Every job of one execution, oldest attempt first, from ListJobs (all its pages)."""
    name = execution_arn.rsplit(":", 1)[1]
    s3control = aws.client("s3control")
    jobs = []
    request: dict[str, Any] = {"AccountId": _account_of(execution_arn), "MaxResults": 1000}
    with aws_errors(f"listing the S3 Batch Operations jobs of {name}"):
        while True:  # botocore has no paginator for ListJobs: NextToken by hand
            page = s3control.list_jobs(**request)
            for job in page.get("Jobs", []):
                found = _JOB_OF.match(job.get("Description") or "")
                if found and found["execution"] == name:
                    jobs.append(
                        {
                            **job,
                            "attempt": int(found["attempt"]),
                            **_left_for_a_person(aws, request["AccountId"], job),
                        }
                    )
            if not page.get("NextToken"):
                break
            request["NextToken"] = page["NextToken"]
    return sorted(jobs, key=lambda j: (j["attempt"], j.get("CreationTime") or 0))


def _left_for_a_person(aws: Aws, account: str, job: dict[str, Any]) -> dict[str, Any]:
    """A Suspended job the pipeline left for a person carries its tags (batchpipe_core.control): which
    says so, and the count the pipeline checked (S3 may withhold its own until the job runs)."""
    if job.get("Status") != "Suspended":
        return {"waitsForPerson": False, "counted": None}
    with aws_errors(f"reading the tags of job {job['JobId']}"):
        tags = aws.client("s3control").get_job_tagging(AccountId=account, JobId=job["JobId"])
    values = {tag["Key"]: tag["Value"] for tag in tags.get("Tags", [])}
    counted = values.get(TAG_OBJECTS)
    return {
        "waitsForPerson": values.get(TAG_CONFIRMATION) == CONFIRM_BY_OPERATOR,
        "counted": int(counted) if counted and counted.isdigit() else None,
    }


def jobs(aws: Aws, execution_arn: str, *, output: str, out: TextIO) -> int:
    rows = [_job_row(job) for job in run_jobs(aws, execution_arn)]
    if output == JSON:
        print_json(rows, out)
    elif rows:
        print_table(
            rows, ["attempt", "jobId", "status", "total", "succeeded", "failed", "created", "ended"], out
        )
    else:
        print(f"(no S3 Batch Operations job of {execution_arn.rsplit(':', 1)[1]} yet)", file=out)
    return 0


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    progress = job.get("ProgressSummary") or {}
    return {
        "attempt": job["attempt"],
        "jobId": job["JobId"],
        "status": job.get("Status"),
        # S3 leaves the count out until it has counted the manifest: unknown, never 0.
        "total": progress.get("TotalNumberOfTasks", job["counted"]),
        "succeeded": progress.get("NumberOfTasksSucceeded"),
        "failed": progress.get("NumberOfTasksFailed"),
        "created": iso_time(job.get("CreationTime")),
        "ended": iso_time(job.get("TerminationDate")),
        "waitsForPerson": job["waitsForPerson"],
    }


def stop(aws: Aws, execution_arn: str, *, reason: str, out: TextIO, output: str = TEXT) -> int:
    """StopExecution with the reason as its cause; the pipeline then cancels the run's jobs that are
    still going (CancelJobsFunction takes the ABORTED status event) and frees the run's name."""
    described = describe(aws, execution_arn)
    if described["status"] != "RUNNING":
        raise OperatorError(f"{described['name']} already ended {described['status']}: nothing to stop")
    with aws_errors(f"stopping {execution_arn}"):
        stopped = aws.client("stepfunctions").stop_execution(
            executionArn=execution_arn, error="StoppedByOperator", cause=reason
        )
    when = iso_time(stopped.get("stopDate"))
    if output == JSON:
        print_json({"executionArn": execution_arn, "stopDate": when, "reason": reason}, out)
        return 0
    print(
        f"stopped {described['name']} at {when or 'now'} ({reason}); the pipeline cancels its jobs that "
        "are still going and frees the run's name",
        file=out,
    )
    return 0


def confirm(aws: Aws, execution_arn: str, *, out: TextIO, output: str = TEXT) -> int:
    """Confirms the run's job that waits for a person (confirmationRequired): UpdateJobStatus Ready."""
    # Only a job the pipeline left for a person: every job starts Suspended until the pipeline has
    # checked S3's count against maxObjects, and confirming it before that would skip the check.
    waiting = [job for job in run_jobs(aws, execution_arn) if job["waitsForPerson"]]
    if not waiting:
        raise OperatorError(_none_that(aws, execution_arn, "waits for confirmation"))
    job = waiting[-1]
    _set_status(aws, execution_arn, job, "Ready", "confirmed with batchpipe confirm")
    if output == JSON:
        print_json({"jobId": job["JobId"], "attempt": job["attempt"], "objects": job["counted"]}, out)
        return 0
    print(
        f"confirmed job {job['JobId']} (attempt {job['attempt']}, {job['counted']} objects): it runs now",
        file=out,
    )
    return 0


def cancel(aws: Aws, execution_arn: str, *, out: TextIO, output: str = TEXT) -> int:
    """Cancels the run's job as a person: the run then ends CANCELLED and counts the objects the job
    never ran as not run (its failures file lists them for a rerun)."""
    going = [job for job in run_jobs(aws, execution_arn) if job.get("Status") in CANCELLABLE]
    if not going:
        raise OperatorError(_none_that(aws, execution_arn, "can still be cancelled"))
    for job in going:
        _set_status(aws, execution_arn, job, "Cancelled", "cancelled by a person with batchpipe cancel")
        if output == TEXT:
            print(
                f"cancelled job {job['JobId']} (attempt {job['attempt']}, was {job.get('Status')})", file=out
            )
    if output == JSON:
        print_json(
            [{"jobId": j["JobId"], "attempt": j["attempt"], "was": j.get("Status")} for j in going], out
        )
    return 0


def _set_status(aws: Aws, execution_arn: str, job: dict[str, Any], status: str, reason: str) -> None:
    with aws_errors(f"setting job {job['JobId']} to {status}"):
        aws.client("s3control").update_job_status(
            AccountId=_account_of(execution_arn),
            JobId=job["JobId"],
            RequestedJobStatus=status,
            StatusUpdateReason=reason,
        )


def _none_that(aws: Aws, execution_arn: str, what: str) -> str:
    listed = run_jobs(aws, execution_arn)
    seen = ", ".join(f"{j['JobId']} {j.get('Status')}" for j in listed) or "none yet"
    return f"no job of {execution_arn.rsplit(':', 1)[1]} {what} (its jobs: {seen}; see `batchpipe jobs`)"
