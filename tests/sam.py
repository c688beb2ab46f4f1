"""SAM CLI as the tests run it (tests/template and tests/samlocal): a region and dummy credentials,
never the shell's profile or endpoint."""

from __future__ import annotations

import os

REGION = "us-east-1"


def sam_env(region: str = REGION) -> dict[str, str]:
    """The environment of a SAM CLI run. `sam validate --lint` and `sam build` call no AWS API but
    insist on a region; `sam local invoke` passes the credentials into its containers, and the served
    embedded AWS accepts them. Dummy credentials make sure a stray call never reaches a real account."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in {"SAM_CLI", "PYTHONPATH", "VIRTUAL_ENV"}
    }
    env.update(
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
        SAM_CLI_TELEMETRY="0",
    )
    return env
