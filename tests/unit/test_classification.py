"""The transient-vs-permanent table (functions/batchpipe_core/classification.py) and the unknown-error policy."""

from __future__ import annotations

import pytest

from batchpipe_core.classification import (
    NOT_RUN,
    Disposition,
    classify,
    error_label,
    policy_disposition,
)

R, P = Disposition.RETRIABLE, Disposition.PERMANENT


@pytest.mark.parametrize(
    ("http", "code", "expected"),
    [
        # the classification table, row by row
        (500, "InternalError", R),
        (503, "SlowDown", R),
        (503, "ServiceUnavailable", R),
        (429, "TooManyRequests", R),
        (503, "Throttling", R),
        (400, "RequestTimeout", R),  # S3 sends RequestTimeout as a 400: the code decides
        (200, "TemporaryFailure", R),  # LambdaInvoke result code
        (None, NOT_RUN, R),
        (400, "InvalidRequest", P),
        (403, "AccessDenied", P),
        (404, "NoSuchKey", P),
        (404, "NoSuchVersion", P),
        (405, "MethodNotAllowed", P),
        (409, "OperationAborted", P),
        (412, "PreconditionFailed", P),
        (403, "InvalidObjectState", P),  # archived object not restored
        (200, "PermanentFailure", P),  # LambdaInvoke result code
        # statuses alone
        (502, "", R),
        (504, "GatewayTimeout", R),
        (429, "", R),
        (404, "", P),
        (None, "SlowDown", R),
        (None, "AccessDenied", P),
    ],
)
def test_known_errors(http, code, expected):
    verdict = classify(http, code)
    assert verdict.disposition is expected
    assert verdict.known


@pytest.mark.parametrize(
    ("http", "code"), [(200, "SomethingNew"), (None, ""), (418, "Teapot"), (301, "Moved")]
)
def test_unknown_errors_follow_the_policy(http, code):
    assert classify(http, code) == classify(http, code, P)
    assert not classify(http, code).known
    assert classify(http, code).disposition is P
    assert classify(http, code, R).retriable


def test_policy_setting_is_validated():
    assert policy_disposition("permanent") is P
    assert policy_disposition("retriable") is R
    with pytest.raises(ValueError, match="UNKNOWN_ERROR_POLICY"):
        policy_disposition("retryable")


@pytest.mark.parametrize(
    ("http", "code", "label"),
    [(503, "SlowDown", "503 SlowDown"), (None, NOT_RUN, "NotRun"), (500, "", "500"), (None, "", "unknown")],
)
def test_error_labels(http, code, label):
    assert error_label(http, code) == label
