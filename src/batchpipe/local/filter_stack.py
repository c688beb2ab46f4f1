"""What evaluates a spec's filter, and nothing else: the stack `batchpipe preview` stands up.

A dry run passes ValidateSpec, AcquireRunLock, PlanQuery, the Athena query and its polling,
PackManifest, BuildManifest and Summarize. :class:`FilterStack` creates what those touch, from
template.yaml as :class:`LocalStack` does (the buckets, the token table, the Glue inventory table, the
Athena workgroup on DuckDB, the notification topic, every function's environment), and walks the
definition's dry-run path with :mod:`batchpipe.local.asl_walk`, the handlers called in this process.
No state machine, no moto Lambda, no S3 Batch engine, no EventBridge, no IAM role or queue (only a
job and EventBridge use those): a preview starts in a fraction of a whole stack's time, and its count,
sample and SQL are the pipeline's own (tests/local/test_preview_agrees.py compares them with a dry run
on a LocalStack).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from moto import mock_aws

from .asl_walk import StatesError, Walk, WalkUnsupported, now_iso
from .isolation import isolated_environment
from .lambdas import error_payload
from .s3_rules import documented_s3_rules
from .stack import Execution, LocalStack, _snake

_LAMBDA_INVOKE = ":states:::lambda:invoke"
_AWS_SDK = ":states:::aws-sdk:"
# The services whose SDK integration the dry-run path calls, by the PascalCase name Step Functions
# gives their errors ("<Service>.<Error>Exception": developer guide, "AWS SDK service integrations").
_SDK_SERVICES = {"athena": "Athena"}


@dataclass
class FilterStack(LocalStack):
    """Context manager: the resources a dry run uses, on moto in this process; :meth:`run` walks it."""

    def __post_init__(self) -> None:
        if self.faults:
            raise ValueError("a FilterStack runs no job: fault rules have nothing to act on")
        self._load_template()
        self.fault_rules: list[Any] = []
        self.engine: Any = None
        self.athena: Any = None
        self.router: Any = None

    def _start(self) -> None:
        self._exit.enter_context(isolated_environment())
        self._exit.enter_context(mock_aws())
        self._exit.enter_context(documented_s3_rules())
        self._create_template_resources()
        self._substituted_definition()
        os.environ.update(self.function_environment())
        if not self._install_athena(step_functions=False):
            raise RuntimeError("the Athena stand-in (DuckDB, sqlglot) is not installed: run `make venv`")

    # The functions run in this process only; the role and the queue serve a job and EventBridge.
    def _create_aws_serverless_function(self, logical_id: str, props: dict) -> None:
        self._register_function(logical_id)

    def _create_aws_iam_role(self, logical_id: str, props: dict) -> None:
        pass

    def _create_aws_sqs_queue(self, logical_id: str, props: dict) -> None:
        pass

    # ------------------------------------------------------------------ the walk
    def start(self, spec: dict, name: str) -> str:
        raise NotImplementedError("a FilterStack has no state machine to start: use run()")

    def run(self, spec: dict, name: str = "preview", timeout: float = 0.0) -> Execution:
        """The dry run of ``spec`` (which must ask for one) through the definition, as an execution
        named ``name`` would go."""
        if not (isinstance(spec, dict) and spec.get("dryRun") is True):
            raise ValueError('a FilterStack runs dry runs only: the spec needs "dryRun": true')
        machine = self.state_machine_arn
        arn = machine.replace(":stateMachine:", ":execution:", 1) + f":{name}"
        context = {
            "Execution": {"Id": arn, "Input": spec, "Name": name, "StartTime": now_iso()},
            "StateMachine": {"Id": machine, "Name": machine.rsplit(":", 1)[-1]},
        }
        walked = Walk(self.definition, context, self._task).run(spec)
        return Execution(
            arn=arn,
            name=name,
            status=walked.status,
            output=walked.output,
            error=walked.error,
            cause=walked.cause,
            history=walked.history,
        )

    def _task(self, resource: str, parameters: Any) -> Any:
        if resource.endswith(_LAMBDA_INVOKE):
            function = self.functions.resolve(parameters["FunctionName"])
            try:
                payload = function(parameters.get("Payload"))
            except Exception as exc:  # noqa: BLE001 - Lambda's contract: any exception is the function's error
                # The error is the errorType, the cause Lambda's error payload (Step Functions developer
                # guide, "Handling errors": Lambda function errors).
                raise StatesError(type(exc).__name__, json.dumps(error_payload(exc))) from None
            # Lambda's answer is JSON; the integration's result carries it as Payload.
            return {
                "ExecutedVersion": "$LATEST",
                "Payload": json.loads(json.dumps(payload)),
                "StatusCode": 200,
            }
        _, sdk, target = resource.partition(_AWS_SDK)
        service, _, action = target.partition(":")
        if not sdk or service not in _SDK_SERVICES or not action.isalnum():
            raise WalkUnsupported(f"the task resource {resource}")
        return self._sdk_call(service, action, parameters)

    def _sdk_call(self, service: str, action: str, parameters: dict) -> Any:
        from .athena.service import sfn_timestamps

        try:
            response = getattr(self.client(service), _snake(action))(**parameters)
        except ClientError as exc:
            name = _SDK_SERVICES[service]
            code = exc.response["Error"]["Code"]
            meta = exc.response["ResponseMetadata"]
            cause = (
                f"{exc.response['Error'].get('Message', '')} (Service: {name}, Status Code: "
                f"{meta.get('HTTPStatusCode')}, Request ID: {meta.get('RequestId')})"
            )
            raise StatesError(f"{name}.{code.removesuffix('Exception')}Exception", cause) from None
        response.pop("ResponseMetadata", None)
        return sfn_timestamps(response)
