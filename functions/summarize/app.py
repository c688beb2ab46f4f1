"""SummarizeFunction: the run summary (docs/OPERATIONS.md, "Reading a run summary"), which is also the execution's output.

Wiring only: the summary is built by ``batchpipe_core.summary.summarize_run``, then written next to
the run's files with the run page (``report.html``, batchpipe_core.runpage), published to SNS and
turned into EMF metrics here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parser import event_parser

from batchpipe_core.config import Config
from batchpipe_core.jobs import transient_as_retryable
from batchpipe_core.observability import instrumented, logger
from batchpipe_core.runlock import RunLock
from batchpipe_core.s3uri import s3_uri
from batchpipe_core.summary import (
    RUN_PAGE,
    SummarizeInput,
    emit_metrics,
    notification_message,
    notification_subject,
    run_page,
    run_prefix,
    summarize_run,
)


@instrumented
@event_parser(model=SummarizeInput)
def handler(event: SummarizeInput, context: Any) -> dict[str, Any]:
    config = Config.from_env()
    s3 = boto3.client("s3")
    summary_key = f"{run_prefix(event.run)}summary.json"
    with transient_as_retryable("summarizing the run"):
        summary, records = summarize_run(s3, event)
    try:
        page = run_page(summary, records, event.run.startTime, datetime.now(UTC)).encode("utf-8")
    except Exception:  # noqa: BLE001 - any fault of the drawing, logged with its traceback
        # The page is a view of the summary; a fault in drawing it must not cost the run its summary.
        logger.exception("run page not drawn")
        summary.pop("report", None)
        page = None
    if not event.skipped:
        # Every way a run ends passes here (Catch paths included); a Summarize that fails for good
        # fails the execution, and the execution-status cleanup releases the name instead.
        name = summary["name"]
        released = RunLock(config.token_table, boto3.client("dynamodb")).release_name(
            name, event.run.executionId
        )
        logger.info("run lock released" if released else "run lock not held", extra={"runName": name})
    with transient_as_retryable("publishing the run summary"):
        s3.put_object(
            Bucket=event.run.bucket,
            Key=summary_key,
            Body=json.dumps(summary, indent=1).encode(),
            ContentType="application/json",
        )
        if page is not None:
            s3.put_object(
                Bucket=event.run.bucket,
                Key=f"{run_prefix(event.run)}{RUN_PAGE}",
                Body=page,
                ContentType="text/html; charset=utf-8",
            )
        boto3.client("sns").publish(
            TopicArn=config.notification_topic_arn,
            Subject=notification_subject(summary),
            Message=notification_message(summary, s3_uri(event.run.bucket, summary_key)),
        )
    emit_metrics(summary, event.run.startTime)
    logger.info("run summarized", extra={"status": summary["status"], "totals": summary.get("totals")})
    return summary
