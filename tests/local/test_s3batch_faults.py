"""Fault injection from a `local run --faults` file: chosen tasks fail before they run."""

from __future__ import annotations

import pytest

from batchpipe.local.s3batch import KIND_ANSWERS, FaultInjector, FaultRule
from batchpipe.local.s3batch.faults import FaultRuleError

from .conftest import S3BATCH_ACCOUNT

TAGGING = {"S3PutObjectTagging": {"TagSet": [{"Key": "done", "Value": "yes"}]}}
FAULTS = [
    {"keyRegex": "^bad/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
    {"keyRegex": "gone", "httpStatus": 404, "errorCode": "NoSuchKey"},
]


@pytest.fixture
def faulty(s3batch_world):
    s3batch_world.start(faults=FAULTS)
    s3batch_world.bucket("src-bkt")
    for key in ("bad/one", "bad/two", "good", "gone-but-present"):
        s3batch_world.put("src-bkt", key)
    return s3batch_world


def test_times_limits_a_fault_per_object_across_jobs(faulty):
    manifest = faulty.manifest(
        [["src-bkt", key] for key in ("bad/one", "bad/two", "good", "gone-but-present")]
    )

    first = faulty.run(TAGGING, manifest)
    assert faulty.report_lines(first["JobId"])["failed"] == [
        "src-bkt,bad/one,,failed,503,SlowDown,Injected fault: 503 SlowDown",
        "src-bkt,bad/two,,failed,503,SlowDown,Injected fault: 503 SlowDown",
        "src-bkt,gone-but-present,,failed,404,NoSuchKey,Injected fault: 404 NoSuchKey",
    ]
    assert faulty.tags("src-bkt", "bad/one") == {}
    assert faulty.tags("src-bkt", "gone-but-present") == {}
    assert faulty.tags("src-bkt", "good") == {"done": "yes"}

    rerun = faulty.run(TAGGING, faulty.manifest([["src-bkt", "bad/one"], ["src-bkt", "gone-but-present"]]))
    assert faulty.report_lines(rerun["JobId"]) == {
        "succeeded": ["src-bkt,bad/one,,succeeded,200,,Successful"],
        "failed": ["src-bkt,gone-but-present,,failed,404,NoSuchKey,Injected fault: 404 NoSuchKey"],
    }
    assert faulty.tags("src-bkt", "bad/one") == {"done": "yes"}
    assert faulty.engine.faults.applied() == 4


def test_rules_match_the_decoded_key(s3batch_world):
    s3batch_world.start(
        faults=[{"keyRegex": r"^with space/\d+$", "httpStatus": 500, "errorCode": "InternalError"}]
    )
    s3batch_world.bucket("src-bkt")
    s3batch_world.put("src-bkt", "with space/1")

    job = s3batch_world.run(TAGGING, s3batch_world.manifest([["src-bkt", "with%20space/1"]]))

    assert s3batch_world.report_lines(job["JobId"]) == {
        "failed": ["src-bkt,with%20space/1,,failed,500,InternalError,Injected fault: 500 InternalError"]
    }


def test_an_exhausted_rule_lets_the_next_matching_rule_apply(s3batch_world):
    rules = [
        {"keyRegex": "x", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
        {"keyRegex": "x", "httpStatus": 403, "errorCode": "AccessDenied", "times": 1, "message": "nope"},
    ]
    s3batch_world.start(faults=rules)
    s3batch_world.bucket("src-bkt")
    s3batch_world.put("src-bkt", "x")
    manifest = s3batch_world.manifest([["src-bkt", "x"]])

    outcomes = [s3batch_world.report_lines(s3batch_world.run(TAGGING, manifest)["JobId"]) for _ in range(3)]

    assert outcomes == [
        {"failed": ["src-bkt,x,,failed,503,SlowDown,Injected fault: 503 SlowDown"]},
        {"failed": ["src-bkt,x,,failed,403,AccessDenied,nope"]},
        {"succeeded": ["src-bkt,x,,succeeded,200,,Successful"]},
    ]


@pytest.mark.parametrize(
    "rule",
    [
        {"keyRegex": "(", "httpStatus": 503, "errorCode": "SlowDown"},
        {"keyRegex": "a", "errorCode": "SlowDown"},
        {"keyRegex": "a", "httpStatus": 503, "errorCode": "SlowDown", "times": -1},
        {"keyRegex": "a", "httpStatus": 42, "errorCode": "SlowDown"},
        {"keyRegex": "a", "httpStatus": 503, "errorCode": "SlowDown", "time": 1},
    ],
)
def test_malformed_rules_are_refused(rule):
    with pytest.raises(ValueError, match="fault rule"):
        FaultRule.from_dict(rule)


def test_a_cancel_job_rule_cancels_that_attempts_job_as_a_person_would(s3batch_world):
    s3batch_world.start(faults=[{"cancelJob": {"attempt": 2, "afterTasks": 2}}])
    s3batch_world.bucket("src-bkt")
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        s3batch_world.put("src-bkt", key)
    manifest = s3batch_world.manifest([["src-bkt", key] for key in keys])
    attempt = [{"Key": "batchpipe:attempt", "Value": "2"}]

    other = s3batch_world.run(TAGGING, manifest, Tags=[{"Key": "batchpipe:attempt", "Value": "1"}])
    cancelled = s3batch_world.run(TAGGING, manifest, Tags=attempt)
    again = s3batch_world.run(TAGGING, manifest, Tags=attempt)

    assert other["Status"] == "Complete"
    assert cancelled["Status"] == "Cancelled"
    assert cancelled["StatusUpdateReason"] == "Cancelled by an operator (local fault rule cancelJob)"
    assert cancelled["ProgressSummary"]["NumberOfTasksSucceeded"] == 2
    assert s3batch_world.statuses(cancelled["JobId"])[-2:] == ["Cancelling", "Cancelled"]
    assert s3batch_world.report_lines(cancelled["JobId"])["succeeded"] == [
        "src-bkt,k0,,succeeded,200,,Successful",
        "src-bkt,k1,,succeeded,200,,Successful",
    ]
    assert again["Status"] == "Complete"  # a rule fires once: one person, one cancel


@pytest.mark.parametrize(
    "rule",
    [
        {"cancelJob": {"attempt": 0, "afterTasks": 1}},
        {"cancelJob": {"attempt": 1, "afterTasks": -1}},
        {"cancelJob": {"attempt": True}},
        {"cancelJob": {"attempt": 1, "after": 3}},
        {"cancelJob": 1},
        {"cancelJob": {"attempt": 1}, "keyRegex": "a"},
    ],
)
def test_malformed_cancel_job_rules_are_refused(rule):
    with pytest.raises(FaultRuleError, match=r"^faults\[0\].*cancelJob"):
        FaultInjector([rule])


def _attempt(number: int) -> list[dict]:
    return [{"Key": "batchpipe:attempt", "Value": str(number)}]


def test_job_answer_rules_apply_to_their_attempts_job_even_on_a_kind_engine(s3batch_world):
    rules = [
        {"describeJobNotFound": {"attempt": 1, "times": 3}},
        {"withholdTotal": {"attempt": 1}},
        {"expireSuspended": {"attempt": 2}},
    ]
    s3batch_world.start(faults=rules, **KIND_ANSWERS)
    s3batch_world.bucket("src-bkt")
    s3batch_world.put("src-bkt", "k")
    manifest = s3batch_world.manifest([["src-bkt", "k"]])
    control = s3batch_world.s3control

    first = s3batch_world.create_job(TAGGING, manifest, ConfirmationRequired=True, Tags=_attempt(1))
    second = s3batch_world.create_job(TAGGING, manifest, ConfirmationRequired=True, Tags=_attempt(2))
    other = s3batch_world.create_job(TAGGING, manifest, ConfirmationRequired=True, Tags=_attempt(3))
    assert s3batch_world.engine.wait_idle(30)

    missed = 0
    for _ in range(3):
        with pytest.raises(control.exceptions.NotFoundException):
            control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=first)
        missed += 1
    suspended = control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=first)["Job"]
    control.update_job_status(AccountId=S3BATCH_ACCOUNT, JobId=first, RequestedJobStatus="Ready")
    assert s3batch_world.engine.wait_idle(30)
    ran = control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=first)["Job"]
    expired = control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=second)["Job"]
    untouched = control.describe_job(AccountId=S3BATCH_ACCOUNT, JobId=other)["Job"]

    assert missed == 3
    assert suspended["Status"] == "Suspended" and "TotalNumberOfTasks" not in suspended["ProgressSummary"]
    assert (ran["Status"], ran["ProgressSummary"]["TotalNumberOfTasks"]) == ("Complete", 1)
    # Failed as a job left Suspended for 30 days, before anyone confirmed it: nothing ran.
    assert expired["Status"] == "Failed" and "SuspendedDate" in expired
    assert expired["FailureReasons"][0]["FailureCode"] == "SuspendedJobExpired"
    assert expired["ProgressSummary"]["NumberOfTasksSucceeded"] == 0
    assert s3batch_world.statuses(second)[-2:] == ["Suspended", "Failed"]
    # The kind engine's answers for a job no rule names.
    assert untouched["Status"] == "Suspended" and untouched["ProgressSummary"]["TotalNumberOfTasks"] == 1


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"describeJobNotFound": {"attempt": 1, "times": 0}}, "describeJobNotFound.times"),
        ({"describeJobNotFound": {"attempt": "1"}}, "describeJobNotFound.attempt"),
        ({"describeJobNotFound": {"attempt": 1, "after": 3}}, "describeJobNotFound.after"),
        ({"withholdTotal": {"attempt": 0}}, "withholdTotal.attempt"),
        ({"withholdTotal": {"attempt": 1, "times": 2}}, "withholdTotal.times"),
        ({"withholdTotal": True}, "withholdTotal"),
        ({"expireSuspended": {"attempt": 1.5}}, "expireSuspended.attempt"),
        ({"expireSuspended": {"attempt": 1}, "cancelJob": {}}, ""),
    ],
)
def test_malformed_job_answer_rules_are_refused_naming_the_field(rule, field):
    with pytest.raises(FaultRuleError) as raised:
        FaultInjector([{"keyRegex": "x", "httpStatus": 503, "errorCode": "SlowDown"}, rule])
    assert str(raised.value).startswith(f"faults[1]{'.' + field if field else ''}:")
    assert "\n" not in str(raised.value)
