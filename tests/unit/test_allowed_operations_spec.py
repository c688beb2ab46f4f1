"""ValidateSpec refuses an operation the stack's AllowedOperations parameter does not name, naming
the parameter and the entry to add, before any job could fail 403 on every task."""

from __future__ import annotations

import pytest

from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError
from batchpipe_core.spec import normalize_spec
from batchpipe_core.spec_stack import BYPASS_GOVERNANCE, COMPLIANCE_RETENTION

from .test_spec import STACK_ENV

DEFAULT_ALLOWED = "S3PutObjectTagging,S3PutObjectCopy,S3PutObjectRetention,S3PutObjectLegalHold"
RETAIN = {"RetainUntilDate": "2030-01-01T00:00:00Z"}


def config(monkeypatch: pytest.MonkeyPatch, allowed: str | None) -> Config:
    for name, value in STACK_ENV.items():
        monkeypatch.setenv(name, value)
    if allowed is None:
        monkeypatch.delenv("ALLOWED_OPERATIONS", raising=False)
    else:
        monkeypatch.setenv("ALLOWED_OPERATIONS", allowed)
    return Config.from_env()


def refusal(operation: dict, cfg: Config) -> str:
    with pytest.raises(SpecValidationError) as raised:
        normalize_spec({"operation": operation}, cfg)
    return str(raised.value)


def test_an_operation_the_stack_does_not_allow_is_refused_naming_the_parameter(monkeypatch) -> None:
    message = refusal(
        {"S3PutObjectAcl": {"AccessControlPolicy": {"CannedAccessControlList": "public-read"}}},
        config(monkeypatch, DEFAULT_ALLOWED),
    )
    assert message.startswith("operation: S3PutObjectAcl is not allowed by this stack")
    assert "AllowedOperations" in message and "\n" not in message


def test_an_allowed_operation_passes(monkeypatch) -> None:
    cfg = config(monkeypatch, DEFAULT_ALLOWED)
    spec = normalize_spec({"operation": {"S3PutObjectTagging": {"TagSet": []}}}, cfg)
    assert "S3PutObjectTagging" in spec["operation"]


def test_compliance_retention_needs_its_own_entry(monkeypatch) -> None:
    operation = {"S3PutObjectRetention": {"Retention": {"Mode": "COMPLIANCE", **RETAIN}}}
    message = refusal(operation, config(monkeypatch, DEFAULT_ALLOWED))
    assert message.startswith("operation.S3PutObjectRetention.Retention.Mode: COMPLIANCE")
    assert COMPLIANCE_RETENTION in message
    governance = {"S3PutObjectRetention": {"Retention": {"Mode": "GOVERNANCE", **RETAIN}}}
    normalize_spec({"operation": governance}, config(monkeypatch, DEFAULT_ALLOWED))
    normalize_spec({"operation": operation}, config(monkeypatch, f"{DEFAULT_ALLOWED},{COMPLIANCE_RETENTION}"))


def test_a_compliance_copy_needs_the_entry_too(monkeypatch) -> None:
    copy = {
        "S3PutObjectCopy": {
            "TargetResource": "arn:aws:s3:::my-source-bucket",
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": "2030-01-01T00:00:00Z",
        }
    }
    assert refusal(copy, config(monkeypatch, DEFAULT_ALLOWED)).startswith(
        "operation.S3PutObjectCopy.ObjectLockMode: COMPLIANCE"
    )


def test_bypassing_governance_retention_needs_its_own_entry(monkeypatch) -> None:
    operation = {
        "S3PutObjectRetention": {
            "BypassGovernanceRetention": True,
            "Retention": {"Mode": "GOVERNANCE", **RETAIN},
        }
    }
    message = refusal(operation, config(monkeypatch, DEFAULT_ALLOWED))
    assert message.startswith("operation.S3PutObjectRetention.BypassGovernanceRetention:")
    assert BYPASS_GOVERNANCE in message
    normalize_spec({"operation": operation}, config(monkeypatch, f"{DEFAULT_ALLOWED},{BYPASS_GOVERNANCE}"))
