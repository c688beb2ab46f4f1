"""The ``JobStatusChanged`` event S3 Batch Operations sends through CloudTrail to EventBridge.

Shape: the S3 user guide's sample ("Tracking a job in EventBridge through CloudTrail"), kept as
tests/fixtures/job-status-changed-complete.json.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from ..events import eventbridge_event


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def job_status_changed(
    *,
    account_id: str,
    region: str,
    job_id: str,
    job_arn: str,
    status: str,
    at: datetime,
    failure_codes: Sequence[str] = (),
    status_change_reasons: Sequence[str] = (),
) -> dict:
    """A fresh event (new ids) for one status the job entered at ``at`` (UTC)."""
    moment = _timestamp(at)
    return eventbridge_event(
        source="aws.s3",
        detail_type="AWS Service Event via CloudTrail",
        account_id=account_id,
        region=region,
        time=moment,
        resources=[],
        detail={
            "eventVersion": "1.05",
            "userIdentity": {"accountId": account_id, "invokedBy": "s3.amazonaws.com"},
            "eventTime": moment,
            "eventSource": "s3.amazonaws.com",
            "eventName": "JobStatusChanged",
            "awsRegion": region,
            "sourceIPAddress": "s3.amazonaws.com",
            "userAgent": "s3.amazonaws.com",
            "eventID": str(uuid.uuid4()),
            "readOnly": False,
            "eventType": "AwsServiceEvent",
            "serviceEventDetails": {
                "jobId": job_id,
                "jobArn": job_arn,
                "status": status,
                "jobEventId": uuid.uuid4().hex,
                "failureCodes": list(failure_codes),
                "statusChangeReason": list(status_change_reasons),
            },
        },
    )
