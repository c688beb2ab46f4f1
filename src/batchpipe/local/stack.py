"""The stack of template.yaml, stood up on the embedded AWS in this process.

moto provides S3, DynamoDB, Glue, SNS, IAM, Lambda and the Step Functions interpreter; the project's
own emulation adds what moto lacks (S3 Batch Operations jobs, Athena that runs SQL, EventBridge to
Lambda). Resources are created from the template's own properties, so a change to the template is a
change to what the tests and the local run exercise.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import os
import tempfile
import threading
import time
import types
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID

from batchpipe.outcome import readable_cause
from batchpipe_core.metadata_table import TABLE_BUCKET

from . import template as tpl
from .isolation import REGION, isolated_environment
from .lambdas import FunctionRegistry, InProcessFunction, code_root
from .s3_rules import documented_s3_rules
from .world import required_parameters

if TYPE_CHECKING:
    from .events import EventRouter, Rule

# The S3 Batch engine, EventBridge, the fault rules and moto's Step Functions are imported where a
# LocalStack starts them: a FilterStack (preview) needs none of them, and they cost seconds to import.

TERMINAL_EXECUTION_STATUSES = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass
class Execution:
    arn: str
    name: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    history: list[dict]

    @property
    def states_entered(self) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.history if e["type"].endswith("StateEntered")
        ]

    def events_of(self, state: str) -> list[dict]:
        """History events that belong to one state visit sequence (entered..exited), flattened."""
        events, inside = [], False
        for event in self.history:
            details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
            if event["type"].endswith("StateEntered"):
                inside = details["name"] == state
            if inside:
                events.append(event)
        return events

    @property
    def message(self) -> str:
        """The failure as a person reads it (see :func:`readable_cause`)."""
        return readable_cause(self.cause)

    def task_outputs(self, state: str) -> list[Any]:
        return [
            json.loads(e["stateExitedEventDetails"]["output"])
            for e in self.history
            if e["type"].endswith("StateExited") and e["stateExitedEventDetails"]["name"] == state
        ]


@dataclass
class LocalStack:
    """Context manager: everything of template.yaml running in-process on emulated AWS.

    ``time_scale`` multiplies every Wait state and Retry interval (0 = no real sleeping), so the
    backoff and polling logic runs exactly as written, only faster.

    ``timeout_scale`` multiplies every Task state's timeout (``TimeoutSeconds``/``TimeoutSecondsPath``)
    while the interpreter waits on it; the execution history keeps the seconds the definition gave.
    It is how a test or a local run compresses the job waits: the parameters themselves stay within
    what template.yaml accepts (``LocalStack`` refuses any other value, as CloudFormation would), e.g.
    ``timeout_scale=seconds_per_long_wait(1.0)`` makes the default ``JobWaitTimeoutSeconds`` one real second.
    """

    parameters: Mapping[str, Any] = field(default_factory=dict)
    stack_name: str = "batchpipe"
    time_scale: float = 0.0
    timeout_scale: float = 1.0
    event_delivery: str = "normal"
    faults: list[dict] = field(default_factory=list)
    key_decoding: str = "percent"
    engine_options: Mapping[str, Any] = field(default_factory=dict)  # extra BatchEngine settings
    # The AWS managed table bucket aws-s3 (S3 Metadata tables) as a folder; a temporary one if None.
    table_bucket_dir: Path | None = None

    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = REGION

    def __post_init__(self) -> None:
        self._load_template()
        self._parse_faults()
        self.engine: Any = None
        self.athena: Any = None
        self.router: EventRouter | None = None

    def _load_template(self) -> None:
        """The template, its parameters resolved, and the functions' registry (still empty)."""
        self.template = tpl.load_template()
        self.parameter_values = tpl.parameter_values(
            self.template, {**required_parameters(self.template), **self.parameters}
        )
        self.functions = FunctionRegistry()
        self.physical: dict[str, dict[str, Any]] = {}
        self._exit = ExitStack()
        self.resolver = tpl.Resolver(
            template=self.template,
            parameters=self.parameter_values,
            pseudo={
                "AWS::AccountId": self.account_id,
                "AWS::Region": self.region,
                "AWS::Partition": "aws",
                "AWS::StackName": self.stack_name,
                "AWS::StackId": (
                    f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/"
                    "00000000-0000-4000-8000-000000000000"
                ),
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::NoValue": None,
            },
            attr=self._attr,
        )

    def _parse_faults(self) -> None:
        from .lambda_faults import LambdaTimeouts
        from .s3batch.faults import LambdaTimeoutRule, parse_rules

        # Rules given as JSON are parsed here, once, so that an error names the rule's index in the list.
        given = [rule for rule in self.faults if isinstance(rule, Mapping)]
        parsed = iter(parse_rules(given))
        self.fault_rules = [next(parsed) if isinstance(rule, Mapping) else rule for rule in self.faults]
        # lambdaTimeout rules act on Step Functions' Lambda invocations; the rest on the S3 Batch engine.
        self.lambda_timeouts = LambdaTimeouts(
            [rule for rule in self.fault_rules if isinstance(rule, LambdaTimeoutRule)],
            timeout_of=lambda name: self.functions.resolve(name).timeout_seconds,
        )

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.router is not None:
            self.router.close()
        if self.engine is not None and hasattr(self.engine, "close"):
            self.engine.close()
        self._exit.close()

    def _start(self) -> None:
        self._exit.enter_context(isolated_environment())
        self._exit.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        self._exit.enter_context(self.functions.patched_moto())
        self._exit.enter_context(_scaled_sfn_time(self.time_scale))
        self._exit.enter_context(_scaled_task_timeouts(self.timeout_scale))
        self._exit.enter_context(_atomic_dynamodb_writes())
        self._exit.enter_context(_whole_task_timeouts_in_history())
        self._exit.enter_context(_execution_status_events(self._put_execution_event))
        self._exit.enter_context(_stop_wakes_task_token_waits())
        self._exit.enter_context(_stop_at_any_moment_with_its_cause())
        self._exit.enter_context(_map_output_within_payload_limit())
        self._exit.enter_context(documented_s3_rules())
        self._exit.enter_context(self.lambda_timeouts.installed())
        self._exit.enter_context(_map_runs_fail_past_tolerance())
        self._create_resources()
        self._start_emulation()

    def _put_execution_event(self, event: dict) -> None:
        if self.router is not None:
            self.router.put_event(event)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region)

    def _call(self, service: str, operation: str, **params: Any) -> Any:
        """Calls an API with template values coerced to the API's types (CloudFormation passes
        numbers and booleans as strings; the API's model says what they should be)."""
        client = self.client(service)
        shape = client.meta.service_model.operation_model(operation).input_shape
        method = getattr(client, _snake(operation))
        return method(**_coerce(params, shape))

    # ------------------------------------------------------------------ names
    def _physical_name(self, logical_id: str, lowercase: bool = False) -> str:
        name = f"{self.stack_name}-{logical_id}"
        return name.lower() if lowercase else name

    def _attr(self, logical_id: str, attribute: str | None) -> Any:
        resource = self.template["Resources"][logical_id]
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            name = self._physical_name(logical_id)
            arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
            return {None: name, "Arn": arn}[attribute]
        if kind == "AWS::S3::Bucket":
            name = self._physical_name(logical_id, lowercase=True)
            return {None: name, "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}[
                attribute
            ]
        if kind == "AWS::DynamoDB::Table":
            name = self._physical_name(logical_id)
            return {None: name, "Arn": f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{name}"}[
                attribute
            ]
        if kind == "AWS::SNS::Topic":
            name = self._physical_name(logical_id)
            arn = f"arn:aws:sns:{self.region}:{self.account_id}:{name}"
            return {None: arn, "TopicArn": arn, "TopicName": name}[attribute]
        if kind == "AWS::IAM::Role":
            name = self._physical_name(logical_id)
            return {None: name, "Arn": f"arn:aws:iam::{self.account_id}:role/{name}"}[attribute]
        if kind == "AWS::Glue::Database":
            return self.resolver.resolve(props["DatabaseInput"]["Name"])
        if kind == "AWS::Glue::Table":
            return self.resolver.resolve(props["TableInput"]["Name"])
        if kind == "AWS::Athena::WorkGroup":
            return self.resolver.resolve(props["Name"])
        if kind == "AWS::Serverless::StateMachine":
            name = self.resolver.resolve(props.get("Name", self._physical_name(logical_id)))
            arn = f"arn:aws:states:{self.region}:{self.account_id}:stateMachine:{name}"
            return {None: arn, "Arn": arn, "Name": name}[attribute]
        if kind == "AWS::Logs::LogGroup":
            name = self.resolver.resolve(props.get("LogGroupName", self._physical_name(logical_id)))
            return {None: name, "Arn": f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{name}:*"}[
                attribute
            ]
        if kind == "AWS::KMS::Key":
            key_id = str(uuid.uuid5(uuid.NAMESPACE_URL, self._physical_name(logical_id)))
            return {None: key_id, "Arn": f"arn:aws:kms:{self.region}:{self.account_id}:key/{key_id}"}[
                attribute
            ]
        if kind == "AWS::SQS::Queue":
            name = self._physical_name(logical_id)
            url = f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"
            return {
                None: url,
                "Arn": f"arn:aws:sqs:{self.region}:{self.account_id}:{name}",
                "QueueName": name,
            }[attribute]
        if kind == "AWS::Serverless::LayerVersion":
            # Layers are not emulated (the functions run in this process with the venv's packages,
            # pyarrow included); a Ref is the layer version ARN CloudFormation would give.
            arn = f"arn:aws:lambda:{self.region}:{self.account_id}:layer:{self._physical_name(logical_id)}:1"
            return {None: arn, "Arn": arn}[attribute]
        raise tpl.UnresolvableError(f"the embedded AWS does not know {kind} ({logical_id}.{attribute})")

    def ref(self, logical_id: str) -> Any:
        return self._attr(logical_id, None)

    def arn(self, logical_id: str) -> str:
        return self._attr(logical_id, "Arn")

    @property
    def pipeline_bucket(self) -> str:
        return self.ref("PipelineBucket")

    @property
    def state_machine_arn(self) -> str:
        return self.ref("PipelineStateMachine")

    def function_environment(self) -> dict[str, str]:
        """The union of every function's environment (they share Globals; a conflict is an error)."""
        env: dict[str, str] = {}
        for logical_id in tpl.resources_of_type(self.template, "AWS::Serverless::Function"):
            props = tpl.function_properties(self.template, logical_id)
            for key, value in self.resolver.resolve(props["Environment"]["Variables"]).items():
                value = str(value)
                if env.get(key, value) != value:
                    raise tpl.UnresolvableError(f"functions disagree on environment variable {key}")
                env[key] = value
        return env

    # ------------------------------------------------------------------ resources
    def _create_resources(self) -> None:
        iam = self.client("iam")
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        self._execution_role = iam.create_role(
            RoleName=f"{self.stack_name}-execution", AssumeRolePolicyDocument=trust
        )["Role"]["Arn"]
        self._create_template_resources()
        # The state machine last: its definition refers to everything else.
        self._create_state_machine()
        os.environ.update(self.function_environment())

    def _create_template_resources(self) -> None:
        """Each resource whose type has a ``_create_<type>`` method, its condition permitting."""
        for logical_id, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.resolver.condition(resource["Condition"]):
                continue
            creator = getattr(self, "_create_" + resource["Type"].replace("::", "_").lower(), None)
            if creator is not None:
                creator(logical_id, self.resolver.resolve(resource.get("Properties", {})))

    def _create_aws_iam_role(self, logical_id: str, props: dict) -> None:
        iam = self.client("iam")
        name = self.ref(logical_id)
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
        for policy in props.get("Policies", []):
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )

    def _create_aws_s3_bucket(self, logical_id: str, props: dict) -> None:
        s3 = self.client("s3")
        name = self.ref(logical_id)
        s3.create_bucket(Bucket=name)
        if "BucketEncryption" in props:
            rules = [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )

    def _create_aws_dynamodb_table(self, logical_id: str, props: dict) -> None:
        ddb = self.client("dynamodb")
        name = self.ref(logical_id)
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)

    def _create_aws_sns_topic(self, logical_id: str, props: dict) -> None:
        self.client("sns").create_topic(Name=self._attr(logical_id, "TopicName"))

    def _create_aws_sqs_queue(self, logical_id: str, props: dict) -> None:
        attributes = {
            name: str(props[name]).lower() if isinstance(props[name], bool) else str(props[name])
            for name in ("MessageRetentionPeriod", "SqsManagedSseEnabled", "VisibilityTimeout")
            if name in props
        }
        self.client("sqs").create_queue(QueueName=self._attr(logical_id, "QueueName"), Attributes=attributes)

    def _create_aws_glue_database(self, logical_id: str, props: dict) -> None:
        self.client("glue").create_database(DatabaseInput=props["DatabaseInput"])

    def _create_aws_glue_table(self, logical_id: str, props: dict) -> None:
        self.client("glue").create_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])

    def _create_aws_athena_workgroup(self, logical_id: str, props: dict) -> None:
        self._call(
            "athena",
            "CreateWorkGroup",
            Name=props["Name"],
            Configuration=props.get("WorkGroupConfiguration", {}),
            Description=props.get("Description", ""),
        )

    def _create_aws_serverless_function(self, logical_id: str, props: dict) -> None:
        merged = self._register_function(logical_id)
        self.client("lambda").create_function(
            FunctionName=self.ref(logical_id),
            Runtime=merged["Runtime"],
            Role=self._execution_role,
            Handler=merged["Handler"],
            Code={"ZipFile": _placeholder_zip()},
            Timeout=int(merged.get("Timeout", 3)),
            MemorySize=int(merged.get("MemorySize", 128)),
            Environment={"Variables": {k: str(v) for k, v in merged["Environment"]["Variables"].items()}},
        )

    def _register_function(self, logical_id: str) -> dict:
        """The function's handler, run in this process when the function is invoked; its properties."""
        merged = self.resolver.resolve(tpl.function_properties(self.template, logical_id))
        name = self.ref(logical_id)
        self.functions.add(
            InProcessFunction(
                logical_id=logical_id,
                name=name,
                arn=self.arn(logical_id),
                handler_path=merged["Handler"],
                code_uri=code_root(merged["CodeUri"]),
                memory_mb=int(merged.get("MemorySize", 128)),
                timeout_seconds=int(merged.get("Timeout", 3)),
            )
        )
        return merged

    def _substituted_definition(self) -> tuple[str, str]:
        """The state machine's logical ID and its definition with the template's substitutions."""
        ((logical_id, resource),) = tpl.resources_of_type(
            self.template, "AWS::Serverless::StateMachine"
        ).items()
        props = resource["Properties"]
        substitutions = self.resolver.resolve(props.get("DefinitionSubstitutions", {}))
        definition = tpl.substitute_definition(
            (tpl.REPO_ROOT / props["DefinitionUri"]).read_text(), substitutions
        )
        self.definition = json.loads(definition)
        return logical_id, definition

    def _create_state_machine(self) -> None:
        from .lambda_faults import check_states, lambda_task_states

        logical_id, definition = self._substituted_definition()
        check_states(self.fault_rules, lambda_task_states(self.definition))
        self.client("stepfunctions").create_state_machine(
            name=self._attr(logical_id, "Name"), definition=definition, roleArn=self._execution_role
        )

    # ------------------------------------------------------------------ emulation beyond moto
    def event_rules(self) -> list[Rule]:
        """One rule per EventBridgeRule or Schedule event of a function (SAM names the rule it makes
        <function logical ID><event name>), with the target's asynchronous invocation settings: its
        EventInvokeConfig's retries (Lambda's default 2 without one) and on-failure destination."""
        from .events import LAMBDA_ASYNC_RETRIES, Rule

        rules = []
        for logical_id, resource in tpl.resources_of_type(self.template, "AWS::Serverless::Function").items():
            invoke_config = self.resolver.resolve(resource.get("Properties", {}).get("EventInvokeConfig", {}))
            retries = int(invoke_config.get("MaximumRetryAttempts", LAMBDA_ASYNC_RETRIES))
            on_failure = (invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}
            for event_name, event in resource.get("Properties", {}).get("Events", {}).items():
                if event["Type"] not in ("EventBridgeRule", "Schedule"):
                    continue
                pattern = self.resolver.resolve(event["Properties"]).get("Pattern")
                rules.append(
                    Rule(
                        f"{logical_id}{event_name}",
                        pattern,
                        logical_id,
                        retries,
                        on_failure.get("Destination"),
                    )
                )
        return rules

    def fire_schedule(self, rule_name: str) -> None:
        """One tick of a function's Schedule event (``<function logical ID><event name>``): its target
        is invoked asynchronously, as EventBridge does; ``router.flush()`` waits for it."""
        from .events import scheduled_event

        assert self.router is not None
        rule_arn = f"arn:aws:events:{self.region}:{self.account_id}:rule/{self.stack_name}-{rule_name}"
        self.router.fire(
            rule_name, scheduled_event(account_id=self.account_id, region=self.region, rule_arn=rule_arn)
        )

    def _send_invocation_record(
        self, rule: Rule, event: dict, error: BaseException, invocations: int
    ) -> None:
        """Lambda's on-failure destination: the invocation record goes to the SQS queue the ARN names."""
        from .events import invocation_record

        assert rule.on_failure is not None
        _, _, service, _, account, name = rule.on_failure.split(":", 5)
        if service != "sqs":
            raise ValueError(
                f"the embedded AWS sends invocation records to SQS queues only, not {rule.on_failure}"
            )
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        record = invocation_record(
            function_arn=self.functions.resolve(rule.target).arn,
            event=event,
            error=error,
            invocations=invocations,
        )
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))

    def _start_emulation(self) -> None:
        from .events import EventRouter
        from .s3batch.faults import LambdaTimeoutRule

        self.router = EventRouter(
            self.event_rules(),
            self.functions.invoke,
            mode=self.event_delivery,
            on_failure=self._send_invocation_record,
        )
        self._install_athena()
        try:
            from .s3batch import BatchEngine
        except ImportError:
            BatchEngine = None
        if BatchEngine is not None:
            self.engine = BatchEngine(
                account_id=self.account_id,
                region=self.region,
                event_sink=self.router,
                lambda_invoker=self.functions.invoke,
                key_decoding=self.key_decoding,
                faults=[rule for rule in self.fault_rules if not isinstance(rule, LambdaTimeoutRule)],
                **self.engine_options,
            )
            self._exit.enter_context(self.engine.installed())

    def _install_athena(self, step_functions: bool = True) -> bool:
        """Athena's query operations, on DuckDB, with the table bucket aws-s3 as a folder; False
        without the Athena stand-in's dependencies."""
        try:
            from .athena import install_athena
        except ImportError:
            return False
        self.athena = self._exit.enter_context(install_athena(step_functions=step_functions))
        if self.table_bucket_dir is None:
            self.table_bucket_dir = Path(self._exit.enter_context(tempfile.TemporaryDirectory()))
        self.athena.table_buckets[TABLE_BUCKET] = self.table_bucket_dir
        return True

    def write_metadata_table(self, bucket: str) -> Path:
        """S3 Metadata's backfill of ``bucket``'s live inventory table, from what the bucket holds now
        (batchpipe.local.metadata_table); the table's folder. Later changes need another call."""
        from .metadata_table import backfill

        if self.table_bucket_dir is None:
            raise RuntimeError("the stack is not started (no table bucket folder yet)")
        namespace = self.parameter_values.get("MetadataTableNamespace") or None
        return backfill(self.client("s3"), bucket, self.table_bucket_dir, namespace)

    # ------------------------------------------------------------------ executions
    def start(self, spec: dict, name: str) -> str:
        """Starts an execution. Names are explicit: moto's generated names break `$$.Execution.Name`."""
        response = self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(spec)
        )
        return response["executionArn"]

    def wait(self, execution_arn: str, timeout: float = 120.0, poll: float = 0.05) -> Execution:
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] in TERMINAL_EXECUTION_STATUSES:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still {described['status']} after {timeout}s")
            time.sleep(poll)
        history = list(_paginate_history(sfn, execution_arn))
        output = described.get("output")
        return Execution(
            arn=execution_arn,
            name=described["name"],
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            history=history,
        )

    def history_after(self, execution_arn: str, seen: int) -> list[dict]:
        """The execution's history events after its first ``seen``, oldest first, as
        GetExecutionHistory gives them, read from the emulator in this process.

        For the local run's progress lines, which follow the history as it grows: moto's
        GetExecutionHistory deep-copies and serialises the whole history on every call (it ignores
        maxResults and nextToken), so polling it five times a second cost CPU in proportion to the
        history, which grows with every round of a job's wait: quadratic in the job's duration (issue
        23 §5). Here only the new events are copied."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[self.account_id][self.region]
        execution = backend.describe_execution(execution_arn)
        environment = execution.exec_worker.env if execution.exec_worker is not None else None
        if environment is None:  # not started yet
            return []
        events = environment.event_manager
        with events._mutex:  # the list the emulator appends to; get_event_history copies it whole
            return copy.deepcopy(events._history_event_list[seen:])

    def forget_execution(self, execution_arn: str) -> None:
        """What Step Functions does once an ended execution's history expires (90 days after the end):
        the execution is no longer listed and its name may be used again. Only an ended execution."""
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        backend = stepfunctions_parser_backends[self.account_id][self.region]
        machine = backend.describe_state_machine(self.state_machine_arn)
        (execution,) = [e for e in machine.executions if e.execution_arn == execution_arn]
        if execution.status == "RUNNING":
            raise ValueError(f"{execution_arn} is still running: only ended executions are forgotten")
        machine.executions.remove(execution)

    def run(self, spec: dict, name: str = "run-1", timeout: float = 120.0) -> Execution:
        return self.wait(self.start(spec, name), timeout=timeout)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _coerce(value: Any, shape: Any) -> Any:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: _coerce(v, shape.members[k]) if k in shape.members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [_coerce(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _coerce(v, shape.value) for k, v in value.items()}
    if kind in ("integer", "long") and isinstance(value, str):
        return int(value)
    if kind == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    return value


def _paginate_history(sfn: Any, execution_arn: str) -> Iterator[dict]:
    kwargs = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        yield from page["events"]
        if not page.get("nextToken"):
            return
        kwargs["nextToken"] = page["nextToken"]


def _placeholder_zip() -> bytes:
    """moto wants a code package; the handler actually runs in-process from CodeUri."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "batchpipe functions run in-process from template.yaml CodeUri\n")
    return buffer.getvalue()


@contextmanager
def _execution_status_events(sink: Any) -> Iterator[None]:
    """Step Functions sends an execution status change event when an execution ends (Step Functions
    developer guide, EventBridge events); moto's interpreter sends none, so its end hook does here."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    from .events import execution_status_change

    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: Any) -> None:
        original(self)
        execution = self.execution
        sink(
            execution_status_change(
                account_id=execution.account_id,
                region=execution.region_name,
                execution_arn=execution.exec_arn,
                state_machine_arn=execution.state_machine.arn,
                name=execution.name,
                status=execution.exec_status.value,
                start=execution.start_date,
                stop=execution.stop_date,
                input_text=json.dumps(execution.input_data) if execution.input_data is not None else None,
                output_text=execution.output
                if isinstance(execution.output, str) or execution.output is None
                else json.dumps(execution.output),
                error=execution.error,
                cause=execution.cause,
            )
        )

    with mock.patch.object(BaseExecutionWorkerCommunication, "terminated", terminated):
        yield


@contextmanager
def _stop_wakes_task_token_waits() -> Iterator[None]:
    """StopExecution ends an execution at once, ABORTED, and its status event follows (Step Functions
    API reference, StopExecution). moto's interpreter leaves a stopped execution blocked in a
    .waitForTaskToken task until the token comes back or times out, so the status event, and the
    cleanup it triggers, came only when the job itself had ended. Waking the stopped execution's
    pending token waits lets it end when it is stopped, as on AWS; the woken task's error (moto calls
    it States.Timeout) must not turn the stopped execution into a FAILED one."""
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    original_stop, original_error = Environment.set_stop, Environment.set_error

    def set_stop(self: Any, stop_date: Any, cause: str | None, error: str | None) -> None:
        original_stop(self, stop_date=stop_date, cause=cause, error=error)
        for endpoint in list(self.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()

    def set_error(self: Any, error: Any) -> None:
        if not isinstance(self.program_state(), ProgramStopped):
            original_error(self, error)

    with (
        mock.patch.object(Environment, "set_stop", set_stop),
        mock.patch.object(Environment, "set_error", set_error),
    ):
        yield


@contextmanager
def _stop_at_any_moment_with_its_cause() -> Iterator[None]:
    """StopExecution stops a RUNNING execution whenever it is sent, and its ``error`` and ``cause``
    are the ExecutionAborted history event's (Step Functions API reference, StopExecution and
    ExecutionAbortedEventDetails). moto's interpreter drops both (it stops with empty ones), and a
    stop sent while a new execution's worker was still parsing the definition found no environment:
    an AttributeError answered the caller, and the execution ran on, holding its run's name. Here
    such a stop waits on the worker and applies when the program starts, before its first state,
    so the history reads ExecutionStarted, ExecutionAborted."""
    from moto.stepfunctions.parser.api import ExecutionAbortedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.backend.execution import Execution
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.responses import StepFunctionResponse

    given = threading.local()
    starting = threading.Lock()
    original_response, original_stop = StepFunctionResponse.stop_execution, Execution.stop
    original_environment = ExecutionWorker._get_evaluation_environment
    next_state = Environment.next_state_name

    def stop_execution(self: Any) -> Any:
        given.reason = {"error": self._get_param("error"), "cause": self._get_param("cause")}
        try:
            return original_response(self)
        finally:
            del given.reason

    def stop(self: Any, stop_date: Any, error: str | None, cause: str | None) -> None:
        reason = getattr(given, "reason", None) or {"error": error or None, "cause": cause or None}
        self.stop_date = stop_date  # StopExecution's answer carries it (moto's had none)
        worker = self.exec_worker
        with starting:
            env = worker.env if worker is not None else None
            if worker is not None and (env is None or env.program_state() is None):
                (env or worker).pending_stop = {"stop_date": stop_date, **reason}
                return
        original_stop(self, stop_date=stop_date, **reason)

    def environment(self: Any) -> Any:
        with starting:
            env = original_environment(self)
            env.pending_stop = getattr(self, "pending_stop", None)
            self.env = env
        return env

    def set_next_state(self: Any, name: str) -> None:
        with starting:
            pending = self.__dict__.pop("pending_stop", None)
            if isinstance(self.program_state(), ProgramStopped):
                return  # a stopped program goes nowhere (moto raised RuntimeError)
            next_state.fset(self, name)
            if pending is None:
                return
            self.set_stop(**pending)
        self.event_history_context.source_event_id = 0
        self.event_manager.add_event(
            context=self.event_history_context,
            event_type=HistoryEventType.ExecutionAborted,
            event_details=EventDetails(
                executionAbortedEventDetails=ExecutionAbortedEventDetails(
                    error=pending["error"], cause=pending["cause"]
                )
            ),
        )

    # An ExecutionAborted event ends the history: the Task a stop interrupts does not go on writing
    # (TaskSubmitted after ExecutionAborted, as moto's Lambda thread did), until a redrive reopens it.
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    original_add_event = EventManager.add_event

    # A Task that timed out has ended: the Lambda invocation moto's thread still runs for it must not
    # write its TaskSubmitted into a later state's events (it did, pointing back at the old Task's
    # events). Step Functions records TaskSubmitted only for the Task that is running, once.
    def add_event(self: Any, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> int:
        if event_type == HistoryEventType.ExecutionRedriven:
            self.aborted = False
        elif getattr(self, "aborted", False):
            return context.last_published_event_id
        elif event_type == HistoryEventType.TaskSubmitted and context.source_event_id < getattr(
            self, "last_task_entered", 0
        ):
            return context.last_published_event_id
        event_id = original_add_event(self, context, event_type, *args, **kwargs)
        if event_type == HistoryEventType.ExecutionAborted:
            self.aborted = True
        elif event_type == HistoryEventType.TaskStateEntered:
            self.last_task_entered = event_id
        return event_id

    with (
        mock.patch.object(EventManager, "add_event", add_event),
        mock.patch.object(StepFunctionResponse, "stop_execution", stop_execution),
        mock.patch.object(Execution, "stop", stop),
        mock.patch.object(ExecutionWorker, "_get_evaluation_environment", environment),
        mock.patch.object(Environment, "next_state_name", property(next_state.fget, set_next_state)),
    ):
        yield


# Step Functions quotas: 256 KiB per state's input or output (the UTF-8 encoded JSON). A Map's
# output is its children's results aggregated into one array, so it counts too.
STATE_PAYLOAD_LIMIT_BYTES = 256 * 1024


@contextmanager
def _map_output_within_payload_limit() -> Iterator[None]:
    """A Map whose aggregated output exceeds 256 KiB fails the execution with
    States.DataLimitExceeded, which no Catch, not even States.ALL, handles (Step Functions developer
    guide, "Error handling": States.ALL does not match States.DataLimitExceeded or States.Runtime).
    moto's interpreter checks no payload size; a definition that AWS would fail must fail here too."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = StateMap._eval_execution
    error = StatesErrorNameType.StatesStatesDataLimitExceeded  # moto's spelling of States.DataLimitExceeded

    def eval_execution(self: Any, env: Any) -> None:
        original(self, env)
        size = len(json.dumps(env.stack[-1], separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size <= STATE_PAYLOAD_LIMIT_BYTES:
            return
        cause = (
            f"The state/task '{self.name}' returned a result with a size exceeding the maximum number of "
            f"bytes service limit ({size} bytes > {STATE_PAYLOAD_LIMIT_BYTES})."
        )
        raise FailureEventException(
            failure_event=FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=error),
                event_type=HistoryEventType.ExecutionFailed,
                event_details=EventDetails(
                    executionFailedEventDetails=ExecutionFailedEventDetails(
                        error=error.to_name(), cause=cause
                    )
                ),
            )
        )

    def uncatchable(method_name: str) -> Any:
        # moto's Catch and Retry on States.ALL would take it; AWS's do not.
        original_handler = getattr(StateMap, method_name)

        def handler(self: Any, env: Any, failure_event: Any) -> Any:
            name = getattr(failure_event.error_name, "error_name", None)
            if name == error.to_name():
                self._terminate_with_event(env=env, failure_event=failure_event)
            return original_handler(self, env=env, failure_event=failure_event)

        return handler

    with (
        mock.patch.object(StateMap, "_eval_execution", eval_execution),
        mock.patch.object(StateMap, "_handle_catch", uncatchable("_handle_catch")),
        mock.patch.object(StateMap, "_handle_retry", uncatchable("_handle_retry")),
    ):
        yield


@contextmanager
def _map_runs_fail_past_tolerance() -> Iterator[None]:
    """A Distributed Map child execution that fails (an error no Retry of its states handled) counts
    against the Map Run's tolerated failures, which default to none: past them the Map Run fails and
    the Map state fails with States.ExceedToleratedFailureThreshold, for its Retry and Catch (Step
    Functions developer guide, "Setting failure thresholds for Distributed Map states" and "Error
    names"). moto's interpreter counts the failed children and lets the Map succeed with null results;
    here the count is compared with the thresholds once every child has ended (AWS may stop the
    remaining children as soon as the threshold is passed: a child that ran here may not have run
    there, never the other way round)."""
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = DistributedIterationComponent._map_run
    exceeded = StatesErrorNameType.StatesExceedToleratedFailureThreshold

    def map_run(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        record = eval_input.map_run_record
        items = record.item_counter
        failed, total = items.failed.get() + items.timed_out.get(), items.total.get()
        # Both thresholds default to 0 (none tolerated); the Map Run fails past either.
        if failed > record.tolerated_failure_count or (
            total and 100.0 * failed / total > record.tolerated_failure_percentage
        ):
            env.stack.pop()  # the Map's results: there are none
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=StatesErrorName(typ=exceeded),
                    event_type=HistoryEventType.MapStateFailed,
                    event_details=EventDetails(
                        mapRunFailedEventDetails=MapRunFailedEventDetails(
                            error=exceeded.to_name(),
                            cause="The specified tolerated failure threshold was exceeded",
                        )
                    ),
                )
            )

    with mock.patch.object(DistributedIterationComponent, "_map_run", map_run):
        yield


@contextmanager
def _scaled_sfn_time(scale: float) -> Iterator[None]:
    """Scales Wait states and Retry intervals in moto's interpreter; timeouts stay real."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function

    original_wait = wait_function.WaitFunction._wait_interval

    def scaled_wait(self: Any, env: Any, wait_seconds: int) -> None:
        return original_wait(self, env, wait_seconds * scale)  # a fraction waits too (an Event's timeout)

    scaled_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    scaled_time.sleep = lambda seconds: time.sleep(seconds * scale)
    with (
        mock.patch.object(wait_function.WaitFunction, "_wait_interval", scaled_wait),
        mock.patch.object(retrier_decl, "time", scaled_time),
    ):
        yield


def seconds_per_long_wait(real_seconds: float) -> float:
    """The ``timeout_scale`` that makes the template's default ``JobWaitTimeoutSeconds`` last
    ``real_seconds`` (the other task timeouts shrink in proportion)."""
    default = int(tpl.load_template()["Parameters"]["JobWaitTimeoutSeconds"]["Default"])
    return real_seconds / default


class ScaledSeconds(float):
    """A task timeout as the interpreter waits on it (compressed by ``timeout_scale``), which still
    knows the whole seconds the definition gave, for the execution history."""

    declared: int

    def __new__(cls, declared: int, scale: float) -> ScaledSeconds:
        scaled = super().__new__(cls, declared * scale)
        scaled.declared = declared
        return scaled


@contextmanager
def _scaled_task_timeouts(scale: float) -> Iterator[None]:
    """Scales every Task state's timeout in moto's interpreter (TimeoutSeconds, TimeoutSecondsPath);
    the TaskScheduled event still records the declared seconds (``_whole_task_timeouts_in_history``)."""
    if scale <= 0:
        raise ValueError(f"timeout_scale must be above 0, not {scale}")
    if scale == 1:
        yield
        return
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import Timeout

    def eval_body(self: Any, env: Any) -> None:
        seconds = self._eval_seconds(env=env)
        # A Task without a timeout (moto's default, ~3 years) keeps it: only declared waits shrink.
        env.stack.append(seconds if self.is_default_value() else ScaledSeconds(seconds, scale))

    with mock.patch.object(Timeout, "_eval_body", eval_body):
        yield


@contextmanager
def _whole_task_timeouts_in_history() -> Iterator[None]:
    """A Task state's TaskScheduled event carries its timeout in seconds, a whole number (Step
    Functions API reference, TaskScheduledEventDetails). moto's interpreter, when an execution is
    stopped just as a Task with TimeoutSecondsPath is scheduled, can record the state's input there
    instead (its path evaluation stops without a result); GetExecutionHistory then fails to
    serialize. Such a value is left out of the event, as AWS would never have written it."""
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    original = EventManager.add_event

    def add_event(
        self: Any, context: Any, event_type: Any, event_details: Any = None, *args: Any, **kwargs: Any
    ) -> int:
        scheduled = (
            (event_details or {}).get("taskScheduledEventDetails")
            if isinstance(event_details, dict)
            else None
        )
        if isinstance(scheduled, dict):
            for name in ("timeoutInSeconds", "heartbeatInSeconds"):
                if isinstance(scheduled.get(name), ScaledSeconds):
                    scheduled[name] = scheduled[name].declared  # compressed locally, declared in history
                if name in scheduled and not isinstance(scheduled[name], int):
                    del scheduled[name]
        return original(self, context, event_type, event_details, *args, **kwargs)

    with mock.patch.object(EventManager, "add_event", add_event):
        yield


@contextmanager
def _atomic_dynamodb_writes() -> Iterator[None]:
    """DynamoDB checks a write's condition and applies the write as one step (DynamoDB developer guide,
    "Condition expressions": conditional writes for optimistic locking); moto's backend reads and then
    writes, so two executions of this process could both pass one condition. One lock per write."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.Lock()

    def serialized(method: Any) -> Any:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return call

    with ExitStack() as stack:
        for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
            stack.enter_context(
                mock.patch.object(DynamoDBBackend, name, serialized(getattr(DynamoDBBackend, name)))
            )
        yield
