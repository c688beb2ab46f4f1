"""The operator's stand-in for `local run`: answers jobs that the pipeline left for a person to confirm.

On AWS a job created with ``ConfirmationRequired`` waits in ``Suspended`` until someone confirms it
(``UpdateJobStatus`` with ``RequestedJobStatus=Ready``) or cancels it (S3 user guide, "Managing S3
Batch Operations jobs", job statuses). Nobody is at hand in a local run, so without a stand-in the
run would wait until the Step Functions timeout. The stand-in prints which job waits and for what,
then does what ``--confirm`` says: ``auto`` confirms it, ``decline`` cancels it as a person would.

It answers only jobs left for a person: the pipeline tags such a job
``batchpipe:confirmation=operator`` once its own checks pass (jobs it confirms itself must never be
touched here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

CONFIRMATION_TAG = {"Key": "batchpipe:confirmation", "Value": "operator"}
REASON = "batchpipe local run: the operator's stand-in ({mode})"


class OperatorStandIn:
    def __init__(
        self,
        s3control: Any,
        account_id: str,
        *,
        mode: str,
        say: Callable[[str], None],
        spec_asks_confirmation: bool,
        poll_seconds: float = 0.2,
    ) -> None:
        if mode not in ("auto", "decline"):
            raise ValueError(f"mode must be auto or decline, not {mode!r}")
        self.s3control = s3control
        self.account_id = account_id
        self.mode = mode
        self.say = say
        self.spec_asks_confirmation = spec_asks_confirmation
        self.poll_seconds = poll_seconds
        self.answered: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="operator-stand-in", daemon=True)

    def __enter__(self) -> OperatorStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.step()
            except ClientError:
                continue  # the emulated API is shutting down, or the job moved on meanwhile

    def step(self) -> None:
        """Answers every job that waits for a person now (one poll)."""
        listed = self.s3control.list_jobs(AccountId=self.account_id, JobStatuses=["Suspended"])["Jobs"]
        for entry in listed:
            job_id = entry["JobId"]
            if job_id in self.answered:
                continue
            # Tags first: a person looks only at the jobs left for them, and the pipeline's own jobs'
            # DescribeJob answers (the first may be NotFound) are not spent here.
            if not self._left_for_a_person(job_id):
                continue
            job = self.s3control.describe_job(AccountId=self.account_id, JobId=job_id)["Job"]
            if job["Status"] != "Suspended":
                continue
            # S3's count if it gives one, else the count the pipeline checked (its batchpipe:objects tag).
            tasks = job.get("ProgressSummary", {}).get("TotalNumberOfTasks", self._tagged_count(job_id))
            objects = f"{tasks} objects" if tasks is not None else "an uncounted number of objects"
            operation = next(iter(job.get("Operation") or {"?": None}))
            action = (
                "confirms it (UpdateJobStatus Ready)" if self.mode == "auto" else "declines it (Cancelled)"
            )
            self.say(
                f"  ⏸ job {job_id[:8]} waits for a person to confirm {operation} on {objects}: "
                f"the operator's stand-in {action}; --confirm {'decline' if self.mode == 'auto' else 'auto'} "
                "does the other"
            )
            self.s3control.update_job_status(
                AccountId=self.account_id,
                JobId=job_id,
                RequestedJobStatus="Ready" if self.mode == "auto" else "Cancelled",
                StatusUpdateReason=REASON.format(mode=self.mode),
            )
            self.answered.append(job_id)

    def _tagged_count(self, job_id: str) -> str | None:
        tags = self.s3control.get_job_tagging(AccountId=self.account_id, JobId=job_id)["Tags"]
        return next((tag["Value"] for tag in tags if tag["Key"] == "batchpipe:objects"), None)

    def _left_for_a_person(self, job_id: str) -> bool:
        tags = self.s3control.get_job_tagging(AccountId=self.account_id, JobId=job_id)["Tags"]
        # Every job is created with ConfirmationRequired (S3 counts it while it waits): only the tag
        # says the pipeline has checked the count and left the job for a person.
        return CONFIRMATION_TAG in tags
