"""Serves the s3control job API to ordinary boto3 clients inside ``mock_aws`` (in-process mode).

moto has no job routes. Every request of a mocked client passes through moto's one
``BotocoreStubber`` instance, whose ``__call__`` asks ``self.process_request``; we wrap that
instance's method so ``https://<account>.s3-control.<region>.amazonaws.com/v20180820/jobs...`` is
answered by the engine and everything else goes to moto as before. Requests are routed, parsed and
answered with moto's own protocol machinery, driven by botocore's s3control model, so the client
parses a real REST-XML response.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any, Protocol

from moto.core import models as moto_models
from moto.core.parse import RestXMLParser
from moto.core.request import normalize_request
from moto.core.routing import get_service_router
from moto.core.serialize import SerializationContext, get_serializer_class
from werkzeug.exceptions import NotFound

from .errors import InternalServiceException, S3ControlError


class JobApi(Protocol):
    """What the routes answer job requests with: the engine's ``handle`` (one API operation)."""

    def handle(self, operation: str, params: dict, *, region: str | None = None) -> dict: ...


JOB_URL = re.compile(
    r"^https?://(?P<account>\d{12})\.s3-control(?:-fips)?(?:\.dualstack)?\.(?P<region>[a-z0-9-]+)"
    r"\.amazonaws\.com(?:\.cn)?/v20180820/jobs(?:[/?]|$)"
)

_lock = threading.Lock()
_installed: dict[str, Any] = {}


def install(engine: JobApi) -> None:
    """Routes job requests to ``engine``. One engine at a time; safe inside an active mock."""
    stubber = moto_models.botocore_stubber
    with _lock:
        if _installed.get("engine") is engine:
            return
        if _installed:
            raise RuntimeError("another S3 Batch engine is installed; uninstall it first")
        delegate = stubber.process_request

        def process_request(request: Any) -> Any:
            match = JOB_URL.match(request.url)
            answered = answer(engine, request, region=match["region"]) if match else None
            return delegate(request) if answered is None else answered

        # Another wrapper set on the instance before us is restored on uninstall; moto's own method
        # lives on the class, so removing ours from the instance restores it.
        _installed.update(
            engine=engine, wrapper=process_request, previous=vars(stubber).get("process_request")
        )
        stubber.process_request = process_request


def uninstall(engine: JobApi | None = None) -> None:
    """Gives job URLs back to moto (which answers them 404). No-op if ``engine`` is not installed."""
    stubber = moto_models.botocore_stubber
    with _lock:
        if not _installed or (engine is not None and _installed["engine"] is not engine):
            return
        if vars(stubber).get("process_request") is _installed["wrapper"]:
            if _installed["previous"] is not None:
                stubber.process_request = _installed["previous"]
            else:
                del stubber.process_request
        _installed.clear()


def answer(engine: JobApi, request: Any, *, region: str) -> tuple[int, dict, str] | None:
    """(status, headers, body) of the engine's response to one prepared botocore request; None if
    the request is no s3control operation (moto then answers it)."""
    normalized = normalize_request(request)
    try:
        operation, uri_params = get_service_router("s3control").match(normalized)
    except NotFound:
        return None
    params = RestXMLParser(operation).parse(
        {
            "method": normalized.method,
            "values": normalized.values,
            "headers": normalized.headers,
            "body": normalized.data,
            "url_path": normalized.path,
            "url_params": uri_params,
        }
    )
    request_id = uuid.uuid4().hex.upper()[:16]
    serializer = get_serializer_class("s3control", "rest-xml")(
        operation, context=SerializationContext(request_id=request_id)
    )
    status = None
    try:
        response = serializer.serialize(engine.handle(operation.name, params, region=region))
    except S3ControlError as exc:
        response, status = serializer.serialize(exc), exc.http_status
    except Exception as exc:  # noqa: BLE001 - a bug answers 500 like the service, not a client crash
        error = InternalServiceException(f"Local S3 Batch engine error: {type(exc).__name__}: {exc}")
        response, status = serializer.serialize(error), error.http_status
    headers = {**response["headers"], "x-amz-request-id": request_id}
    return status or response["status_code"], headers, response["body"]
