"""Powertools Logger/Tracer/Metrics shared by the handlers, and the execution-ID correlation."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

# From their own modules: the package's top level also imports the Tracer, whose X-Ray SDK builds an
# X-Ray client on import (slow, and a traceback under an unknown AWS_PROFILE). The `batchpipe`
# command imports this module through the spec's checks and never traces.
from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics

logger = Logger()
# template.yaml sets POWERTOOLS_METRICS_NAMESPACE; the fallback only matters when this module is
# imported before the environment is set (tests, the local run), where a missing namespace would
# make every add_metric fail schema validation.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "BatchPipe"))


def execution_id_of(event: Any) -> str | None:
    """The Step Functions execution ID carried by a pipeline event, wherever the state put it."""
    if not isinstance(event, dict):
        return None
    run = event.get("run")
    if isinstance(run, dict) and run.get("executionId"):
        return str(run["executionId"])
    execution = event.get("execution")
    if isinstance(execution, dict) and execution.get("id"):
        return str(execution["id"])
    plan = event.get("plan")  # a report part, in a Distributed Map's child execution
    if isinstance(plan, dict) and plan.get("executionId"):
        return str(plan["executionId"])
    return None


def instrumented(handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
    """Logger context + execution-ID correlation + tracing + metrics flush, in that order."""

    @functools.wraps(handler)
    def correlated(event: dict, context: Any) -> Any:
        logger.set_correlation_id(execution_id_of(event))
        try:
            return handler(event, context)
        finally:
            # With POWERTOOLS_METRICS_DISABLED (local runs) Powertools never flushes, so values would
            # pile up across invocations of this warm process until add_metric overflows.
            if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
                metrics.clear_metrics()

    wrapped = correlated
    if not _tracing_disabled():
        wrapped = _tracer().capture_lambda_handler(correlated, capture_response=False)
    wrapped = logger.inject_lambda_context(wrapped, clear_state=True)
    wrapped = metrics.log_metrics(wrapped)

    @functools.wraps(handler)
    def serviced(event: dict, context: Any) -> Any:
        _default_service(os.environ.get("POWERTOOLS_SERVICE_NAME"))
        return wrapped(event, context)

    return serviced


def _tracing_disabled() -> bool:
    """POWERTOOLS_TRACE_DISABLED, read as Powertools reads it. A disabled Tracer's wrapper only calls
    the handler, and making the Tracer imports the X-Ray SDK (a third of a second): a local run or a
    preview, which disable tracing (batchpipe.local.isolation), skip both."""
    from aws_lambda_powertools.shared import constants
    from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice

    return resolve_truthy_env_var_choice(env=os.getenv(constants.TRACER_DISABLED_ENV, "false"))


@functools.cache
def _tracer() -> Any:
    """The handlers' Tracer, made when the first handler is wrapped (a Lambda's init), not on import."""
    from aws_lambda_powertools.tracing import Tracer

    return Tracer()


def _default_service(service: str | None) -> None:
    """Makes ``service`` the logger's own, the value every invocation's clear_state starts from.

    On AWS the environment exists before this module is imported, so Logger() reads it. Locally one
    process hosts every function and may import this module first: a service appended per
    invocation would be wiped by another thread's clear_state (Distributed Map children run
    concurrently) and its records would say ``service_undefined``.
    """
    if service and logger.service != service:
        # What clear_state restores, in its two steps (Powertools 3: the formatter's keys, then the
        # logger's defaults): both must name the service, or a record logged between them does not.
        logger.service = service
        logger._default_log_keys["service"] = service
        logger.registered_formatter.keys_combined["service"] = service
        logger.append_keys(service=service)
