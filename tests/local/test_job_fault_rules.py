"""The job fault rules from `batchpipe local run --faults`: each AWS answer a user can rehearse.

Outcomes only: the summary, the jobs the run created and what the handlers logged.
"""

from __future__ import annotations

import json

from batchpipe.cli import main
from batchpipe.outcome import EXIT_STATUS


def local_run(tmp_path, capsys, rules: list[dict], name: str) -> tuple[int, dict, list[dict]]:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps(rules))
    out = tmp_path / "run"
    code = main(
        [
            "local",
            "run",
            "--objects",
            "40",
            "--faults",
            str(faults),
            "--json",
            "--out",
            str(out),
            "--name",
            name,
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    logs = [json.loads(line) for line in (out / "lambda-logs.jsonl").read_text().splitlines()]
    return code, summary, logs


def test_describe_job_not_found_is_waited_out_with_the_same_job(tmp_path, capsys):
    code, summary, logs = local_run(
        tmp_path, capsys, [{"describeJobNotFound": {"attempt": 1, "times": 3}}], "not-found"
    )

    assert code == EXIT_STATUS["SUCCEEDED"] == 0
    assert summary["totals"] == {
        "objects": 40,
        "succeeded": 40,
        "failedPermanent": 0,
        "failedRetriesExhausted": 0,
    }
    assert len(summary["attempts"]) == 1
    created = [r for r in logs if r.get("message") == "job created"]
    assert [r["jobId"] for r in created] == [summary["attempts"][0]["jobId"]]  # one job, not a second
    unseen = [r for r in logs if r.get("message", "").endswith("not visible yet")]
    assert len(unseen) >= 2  # CreateJob's own look and at least one CheckJob found nothing yet


def test_a_withheld_total_is_counted_by_the_pipeline_with_exact_totals(tmp_path, capsys):
    code, summary, logs = local_run(tmp_path, capsys, [{"withholdTotal": {"attempt": 1}}], "withheld")

    assert code == 0
    assert summary["status"] == "SUCCEEDED"
    assert summary["manifest"]["objects"] == summary["attempts"][0]["total"] == 40
    assert summary["totals"]["succeeded"] == 40
    (counted,) = [r for r in logs if r.get("message") == "the job's objects are counted"]
    assert (counted["countedBy"], counted["objects"]) == ("pipeline", 40)


def test_a_job_expired_in_suspended_ends_the_run_unconfirmed(tmp_path, capsys):
    code, summary, logs = local_run(tmp_path, capsys, [{"expireSuspended": {"attempt": 1}}], "expired")

    assert code == EXIT_STATUS["UNCONFIRMED"] == 7
    assert summary["status"] == "UNCONFIRMED"
    assert summary["totals"]["notRun"] == summary["totals"]["objects"] == 40
    assert len([r for r in logs if r.get("message") == "job created"]) == 1  # no new job
