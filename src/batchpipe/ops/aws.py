"""boto3 clients for the operator commands, and the one-line errors a user meets on AWS."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from batchpipe.inputs import UsageError

# boto3 reads this variable itself (botocore >= 1.31); the flag only overrides it.
ENDPOINT_ENV = "AWS_ENDPOINT_URL"


class OperatorError(UsageError):
    """Something about the account, the stack or the run; printed as one line, exit status 2."""


@dataclass
class Aws:
    """One boto3 session; clients made on first use."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    debug: bool = False  # --debug: each AWS call on stderr, as it is made and as it is answered
    _clients: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            # botocore reads AWS_DEFAULT_REGION; Lambda and most docs set AWS_REGION, so both count.
            region = self.region or os.environ.get("AWS_REGION") or None
            self.session = boto3.Session(region_name=region, profile_name=self.profile)
        except BotoCoreError as exc:  # e.g. ProfileNotFound
            raise OperatorError(str(exc)) from None
        if self.session.region_name is None:
            raise OperatorError("no AWS region: pass --region or set AWS_REGION (or a profile's region)")

    @property
    def endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get(ENDPOINT_ENV) or None

    def client(self, service: str) -> Any:
        if service not in self._clients:
            # A watch lasts hours: throttling and dropped connections are retried, not fatal.
            options: dict[str, Any] = {"config": BotoConfig(retries={"mode": "standard", "max_attempts": 8})}
            if self.endpoint_url:
                options["endpoint_url"] = self.endpoint_url
            try:
                client = self.session.client(service, **options)
            except ValueError as exc:  # AWS_ENDPOINT_URL=http://[::1 and the like
                raise OperatorError(
                    f"endpoint {self.endpoint!r} is not a usable URL ({exc}); fix --endpoint-url or "
                    f"{ENDPOINT_ENV}, e.g. http://127.0.0.1:4566"
                ) from None
            if self.endpoint and service == "s3control":
                # s3control's endpoint rules put the account ID in front of any endpoint's host
                # (inject_host_prefix=False does not stop them); a local endpoint has no such name.
                # Rewritten before signing, so the signature covers the host actually called.
                client.meta.events.register("before-sign.s3-control", _without_account_host)
            if self.debug:
                client.meta.events.register("before-parameter-build", _show_call)
                client.meta.events.register("after-call", _show_answer)
            self._clients[service] = client
        return self._clients[service]


def _show_call(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["batchpipe_started"] = time.monotonic()
    shown = json.dumps(params, default=str, ensure_ascii=False)
    shown = shown if len(shown) <= 300 else shown[:300] + "..."
    print(f"aws: {model.service_model.service_name} {model.name} {shown}", file=sys.stderr, flush=True)


def _show_answer(http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
    took = time.monotonic() - context.get("batchpipe_started", time.monotonic())
    print(
        f"aws: {model.service_model.service_name} {model.name} -> HTTP {http_response.status_code} in {took:.2f} s",
        file=sys.stderr,
        flush=True,
    )


def _without_account_host(request: Any, **_: Any) -> None:
    request.url = _ACCOUNT_HOST.sub(r"\1", request.url, count=1)


_ACCOUNT_HOST = re.compile(r"^(https?://)\d{12}\.")


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Turns what boto3 raises into one line that says what failed and what to do."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise OperatorError(
            f"{doing}: no AWS credentials found (configure a profile, `aws sso login`, or set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; for the embedded AWS any non-empty values do)"
        ) from None
    except NoRegionError:
        raise OperatorError(f"{doing}: no AWS region: pass --region or set AWS_REGION") from None
    except EndpointConnectionError as exc:
        raise OperatorError(
            f"{doing}: cannot reach {exc.kwargs.get('endpoint_url')} (wrong region, no network, or "
            "`batchpipe local serve` not running?)"
        ) from None
    except ParamValidationError as exc:
        raise OperatorError(f"{doing}: {exc}") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", "")
        hint = ""
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            hint = " (your credentials lack this permission: see docs/SECURITY.md, 'Operator permissions')"
        elif code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            hint = " (refresh your credentials)"
        elif code in ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException"):
            hint = " (these credentials are not valid in this account or region)"
        raise OperatorError(f"{doing}: {code}: {message}{hint}") from None
    except BotoCoreError as exc:
        raise OperatorError(f"{doing}: {exc}") from None
