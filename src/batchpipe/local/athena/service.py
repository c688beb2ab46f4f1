"""moto's Athena API, with queries that really run (DuckDB over the data in moto S3, per moto Glue).

moto answers StartQueryExecution with a canned execution and no SQL. Here its Athena response
handlers for the query operations are replaced, so ordinary boto3 clients - and the Step Functions
interpreter's ``aws-sdk:athena:*`` tasks, which call boto3 in-process - see Athena's behaviour:
workgroup result location and bytes-scanned cutoff, results written to S3, statistics, FAILED with
Athena's error shape. The query runs when it is started; ``polls_before_done`` GetQueryExecution
calls report QUEUED/RUNNING first, so callers' polling loops run as they would on AWS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
from botocore.exceptions import ClientError
from moto.athena.models import Execution as MotoExecution
from moto.athena.responses import AthenaResponse
from moto.core.models import botocore_stubber
from moto.settings import moto_server_port

from . import errors
from .engine import Limits, QueryResult, run_query

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


# ------------------------------------------------------------------------------------------ moto adapters
def moto_client(service: str, region: str) -> Any:
    """A boto3 client that reaches moto from inside a moto request handler, in decorator or server mode."""
    if botocore_stubber.enabled:
        return boto3.client(service, region_name=region)
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=f"http://localhost:{moto_server_port()}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
    )


class S3Store:
    """``tables.ObjectStore`` over (moto) S3."""

    def __init__(self, s3: Any):
        self.s3 = s3

    def list(self, bucket: str, prefix: str) -> list[str]:
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        except ClientError as error:
            raise _s3_error(error, bucket) from error

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise errors.AthenaQueryError(
                    f"HIVE_FILE_NOT_FOUND: s3://{bucket}/{key} does not exist", error_type=1302
                ) from error
            raise _s3_error(error, bucket) from error

    def put(self, bucket: str, key: str, body: bytes) -> None:
        try:
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        except ClientError as error:
            raise _s3_error(error, bucket) from error


def _s3_error(error: ClientError, bucket: str) -> errors.AthenaQueryError:
    code = error.response["Error"]["Code"]
    if code == "NoSuchBucket":
        return errors.AthenaQueryError(f"Amazon S3 bucket not found: {bucket}", error_type=1306)
    return errors.AthenaQueryError(
        f"Amazon S3 error {code}: {error}", error_type=1501 if code == "AccessDenied" else 401, category=1
    )


class GlueCatalog:
    """``tables.Catalog`` over (moto) Glue."""

    def __init__(self, glue: Any):
        self.glue = glue

    def get_table(self, database: str, name: str) -> dict | None:
        try:
            return self.glue.get_table(DatabaseName=database, Name=name)["Table"]
        except self.glue.exceptions.EntityNotFoundException as error:
            if "database" in str(error).lower() and "table" not in str(error).lower():
                raise errors.schema_not_found("awsdatacatalog", database) from error
            if database == "default":
                return None  # Athena's catalog always has a default database
            try:
                self.glue.get_database(Name=database)
            except self.glue.exceptions.EntityNotFoundException:
                raise errors.schema_not_found("awsdatacatalog", database) from error
            return None

    def get_partitions(self, database: str, name: str) -> list[dict]:
        pages = self.glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=name)
        return [p for page in pages for p in page.get("Partitions", [])]


# ------------------------------------------------------------------------------------------ executions
@dataclass
class QueryExecution:
    id: str
    query: str
    context: dict
    workgroup: str
    result_configuration: dict  # as in effect: the workgroup's when it is enforced
    submitted: float
    completed: float | None = None
    state: str = "QUEUED"
    error: errors.AthenaQueryError | None = None
    result: QueryResult | None = None
    scanned_bytes: int = 0
    polls_left: int = 0

    @property
    def visible_state(self) -> str:
        if self.polls_left > 0:
            return "QUEUED" if self.polls_left > 1 else "RUNNING"
        return self.state

    @property
    def output_directory(self) -> str:
        location = str(self.result_configuration["OutputLocation"])
        return location if location.endswith("/") else location + "/"

    def describe(self) -> dict:
        state = self.visible_state
        done = state in TERMINAL
        result = self.result if done else None
        kind = (
            result.kind
            if result
            else ("UNLOAD" if self.query.lstrip().upper().startswith("UNLOAD") else "SELECT")
        )
        configuration = dict(self.result_configuration)
        configuration["OutputLocation"] = (
            self.output_directory + self.id + (".csv" if kind == "SELECT" else "")
        )
        status: dict[str, Any] = {"State": state, "SubmissionDateTime": self.submitted}
        if done:
            status["CompletionDateTime"] = self.completed
        if done and self.error is not None:
            status["StateChangeReason"] = self.error.message
            status["AthenaError"] = self.error.athena_error()
        engine_ms = result.engine_ms if result else 0
        statistics: dict[str, Any] = {
            "EngineExecutionTimeInMillis": engine_ms,
            "DataScannedInBytes": self.scanned_bytes if done else 0,
            "TotalExecutionTimeInMillis": engine_ms,
            "QueryQueueTimeInMillis": 0,
            "ServicePreProcessingTimeInMillis": 0,
            "QueryPlanningTimeInMillis": 0,
            "ServiceProcessingTimeInMillis": 0,
            "ResultReuseInformation": {"ReusedPreviousResult": False},
        }
        if result and result.data_manifest_location:
            statistics["DataManifestLocation"] = result.data_manifest_location
        return {
            "QueryExecutionId": self.id,
            "Query": self.query,
            "StatementType": "DML",
            "SubstatementType": kind,
            "ResultConfiguration": configuration,
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": self.context,
            "Status": status,
            "Statistics": statistics,
            "WorkGroup": self.workgroup,
            "EngineVersion": {
                "SelectedEngineVersion": "AUTO",
                "EffectiveEngineVersion": "Athena engine version 3",
            },
        }


@dataclass
class AthenaSql:
    """The installed stand-in: settings, and every execution it ran (for tests and the local run)."""

    polls_before_done: int = 1
    unload_rows_per_file: int = 50_000
    cutoff_state: str = "FAILED"
    # S3 table buckets (folders of Iceberg tables) by name: Athena's catalogs s3tablescatalog/<name>.
    table_buckets: dict[str, Path] = field(default_factory=dict)
    executions: dict[str, QueryExecution] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _clients: dict[tuple[str, str, bool], Any] = field(default_factory=dict)

    def _client(self, service: str, region: str) -> Any:
        """Clients are reused: creating one costs more than a small query."""
        key = (service, region, botocore_stubber.enabled)
        if key not in self._clients:
            self._clients[key] = moto_client(service, region)
        return self._clients[key]

    # ---------------------------------------------------------------- API operations
    def start_query_execution(self, response: AthenaResponse) -> Any:
        query = response._get_param("QueryString")
        context = response._get_param("QueryExecutionContext") or {}
        requested = response._get_param("ResultConfiguration") or {}
        workgroup_name = response._get_param("WorkGroup") or "primary"
        token = response._get_param("ClientRequestToken")
        if token and token in self._tokens:
            return json.dumps({"QueryExecutionId": self._tokens[token]})
        backend = response.athena_backend
        workgroup = backend.work_groups.get(workgroup_name)
        if workgroup is None:
            return response.error(f"WorkGroup {workgroup_name} is not found.", 400)
        if getattr(workgroup, "state", "ENABLED") == "DISABLED":
            return response.error(f"WorkGroup {workgroup_name} is disabled.", 400)
        configuration = workgroup.configuration or {}
        own = configuration.get("ResultConfiguration") or {}
        enforced = configuration.get("EnforceWorkGroupConfiguration", True) and own.get("OutputLocation")
        effective = dict(own) if enforced else {**own, **requested}
        if not effective.get("OutputLocation"):
            return response.error(
                "No output location provided. An output location is required either through the Workgroup "
                "result configuration setting or as an API input.",
                400,
            )
        if response._get_param("ExecutionParameters"):
            return response.error("ExecutionParameters are not supported by the local Athena stand-in.", 400)

        moto_execution = MotoExecution(query, context, dict(effective), workgroup, None)
        backend.executions[moto_execution.id] = moto_execution  # ListQueryExecutions stays moto's
        execution = QueryExecution(
            id=moto_execution.id,
            query=query,
            context={
                "Database": context.get("Database", "default"),
                "Catalog": context.get("Catalog", "AwsDataCatalog"),
            },
            workgroup=workgroup_name,
            result_configuration=effective,
            submitted=time.time(),
            polls_left=self.polls_before_done,
        )
        self._run(execution, response.region, configuration.get("BytesScannedCutoffPerQuery"))
        moto_execution.status = execution.state
        self.executions[execution.id] = execution
        if token:
            self._tokens[token] = execution.id
        return json.dumps({"QueryExecutionId": execution.id})

    def _run(self, execution: QueryExecution, region: str, cutoff: Any) -> None:
        limits = Limits(
            bytes_scanned_cutoff=int(cutoff) if cutoff else None,
            cutoff_state=self.cutoff_state,
            unload_rows_per_file=self.unload_rows_per_file,
        )
        try:
            execution.result = run_query(
                execution.query,
                query_id=execution.id,
                database=execution.context["Database"].lower(),
                default_catalog=execution.context["Catalog"],
                table_buckets=self.table_buckets,
                catalog=GlueCatalog(self._client("glue", region)),
                store=S3Store(self._client("s3", region)),
                output_location=execution.output_directory,
                limits=limits,
            )
            execution.state = "SUCCEEDED"
            execution.scanned_bytes = execution.result.scanned.bytes
        except errors.AthenaQueryError as error:
            execution.state, execution.error, execution.scanned_bytes = (
                error.state,
                error,
                error.scanned_bytes,
            )
        except Exception as error:  # noqa: BLE001 - a stand-in bug must surface as a failed query, not a 500
            execution.state = "FAILED"
            execution.error = errors.AthenaQueryError(
                f"INTERNAL_ERROR: the local Athena stand-in failed: {type(error).__name__}: {error}",
                error_type=100,
                category=1,
            )
        execution.completed = time.time()

    def _find(self, response: AthenaResponse, execution_id: str | None) -> QueryExecution | Any:
        execution = self.executions.get(execution_id or "")
        if execution is None:
            return response.error(f"QueryExecution {execution_id} was not found", 400)
        return execution

    def get_query_execution(self, response: AthenaResponse) -> Any:
        execution = self._find(response, response._get_param("QueryExecutionId"))
        if not isinstance(execution, QueryExecution):
            return execution
        described = execution.describe()
        if execution.polls_left > 0:
            execution.polls_left -= 1
        return json.dumps({"QueryExecution": described})

    def batch_get_query_execution(self, response: AthenaResponse) -> Any:
        found, missing = [], []
        for execution_id in response._get_param("QueryExecutionIds") or []:
            execution = self.executions.get(execution_id)
            if execution is None:
                missing.append(
                    {
                        "QueryExecutionId": execution_id,
                        "ErrorCode": "INVALID_INPUT",
                        "ErrorMessage": "not found",
                    }
                )
            else:
                found.append(execution.describe())
        return json.dumps({"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing})

    def get_query_results(self, response: AthenaResponse) -> Any:
        execution = self._find(response, response._get_param("QueryExecutionId"))
        if not isinstance(execution, QueryExecution):
            return execution
        state = execution.visible_state
        if state != "SUCCEEDED":
            if state in TERMINAL:
                reason = execution.error.message if execution.error else state
                return response.error(
                    f"Query did not finish successfully. Final query state: {state}\n{reason}", 400
                )
            return response.error(f"Query has not yet finished. Current state: {state}", 400)
        result = execution.result
        assert result is not None
        max_results = min(int(response._get_param("MaxResults") or 1000), 1000)
        start = int(response._get_param("NextToken") or 0)  # index of the next data row
        rows: list[dict] = []
        if result.kind == "SELECT" and start == 0:
            rows.append(
                {"Data": [{"VarCharValue": c.name} for c in result.columns]}
            )  # header, first page only
        end = min(start + max_results - len(rows), len(result.rows))
        rows += [
            {"Data": [{} if v is None else {"VarCharValue": v} for v in row]}
            for row in result.rows[start:end]
        ]
        body: dict[str, Any] = {
            "UpdateCount": 0,
            "ResultSet": {
                "Rows": rows,
                "ResultSetMetadata": {"ColumnInfo": [c.info() for c in result.columns]},
            },
        }
        if end < len(result.rows):
            body["NextToken"] = str(end)
        return json.dumps(body)

    def get_query_runtime_statistics(self, response: AthenaResponse) -> Any:
        execution = self._find(response, response._get_param("QueryExecutionId"))
        if not isinstance(execution, QueryExecution):
            return execution
        result = execution.result if execution.visible_state in TERMINAL else None
        engine_ms = result.engine_ms if result else 0
        rows = {
            "InputRows": result.scanned.rows if result else 0,
            "InputBytes": result.scanned.bytes if result else 0,
            "OutputBytes": result.output_bytes if result else 0,
        }
        # OutputRows is documented as the rows a query returns, and the statistics as possibly
        # missing; nothing documents it as the rows an UNLOAD wrote. So an UNLOAD gets none here,
        # and the pipeline cannot come to rely on a count only this emulator would give.
        if result is not None and result.kind != "UNLOAD":
            rows["OutputRows"] = result.output_rows
        return json.dumps(
            {
                "QueryRuntimeStatistics": {
                    "Timeline": {
                        "QueryQueueTimeInMillis": 0,
                        "ServicePreProcessingTimeInMillis": 0,
                        "QueryPlanningTimeInMillis": 0,
                        "EngineExecutionTimeInMillis": engine_ms,
                        "ServiceProcessingTimeInMillis": 0,
                        "TotalExecutionTimeInMillis": engine_ms,
                    },
                    "Rows": rows,
                    "OutputStage": {
                        "StageId": 0,
                        "State": execution.visible_state,
                        "ExecutionTime": engine_ms,
                        **rows,
                    },
                }
            }
        )

    def stop_query_execution(self, response: AthenaResponse) -> Any:
        execution = self._find(response, response._get_param("QueryExecutionId"))
        if not isinstance(execution, QueryExecution):
            return execution
        if execution.visible_state not in TERMINAL:
            # It already ran; like Athena, data written before the cancel is left where it is.
            execution.polls_left = 0
            execution.state = "CANCELLED"
            execution.error = errors.AthenaQueryError("Query cancelled by user", error_type=1011)
            response.athena_backend.executions[execution.id].status = "CANCELLED"
        return json.dumps({})


_OPERATIONS = (
    "start_query_execution",
    "get_query_execution",
    "batch_get_query_execution",
    "get_query_results",
    "get_query_runtime_statistics",
    "stop_query_execution",
)


def sfn_timestamps(value: Any) -> Any:
    """Step Functions hands aws-sdk results to the state machine as JSON, timestamps as ISO strings
    (``2024-01-02T03:04:05.000Z``); moto's interpreter keeps boto3's datetimes, which then break
    ``States.JsonToString`` (the pipeline's QueryFailed state uses it on the query status)."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC) if value.tzinfo else value
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, dict):
        return {k: sfn_timestamps(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sfn_timestamps(v) for v in value]
    return value


def _athena_sdk_task_patch() -> Any:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    original = aws_sdk.StateTaskServiceAwsSdk._eval_service_task

    def eval_service_task(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
        original(self, env, *args, **kwargs)
        if self._get_boto_service_name() == "athena":
            env.stack.append(sfn_timestamps(env.stack.pop()))

    return mock.patch.object(aws_sdk.StateTaskServiceAwsSdk, "_eval_service_task", eval_service_task)


@contextmanager
def install_athena(step_functions: bool = True, **settings: Any) -> Iterator[AthenaSql]:
    """Inside a moto mock: Athena's query operations run SQL until the block exits, and (with
    ``step_functions``) moto's interpreter hands their results to a state machine as Step Functions does.

    ``settings``: ``polls_before_done`` (GetQueryExecution calls that report QUEUED/RUNNING first,
    default 1), ``unload_rows_per_file`` (default 50,000), ``cutoff_state`` (state of a query over the
    workgroup's BytesScannedCutoffPerQuery, default FAILED).
    """
    service = AthenaSql(**settings)
    with ExitStack() as stack:
        for name in _OPERATIONS:
            handler = getattr(service, name)
            stack.enter_context(
                mock.patch.object(
                    AthenaResponse, name, lambda response, _h=handler: _h(response), create=True
                )
            )
        if step_functions:
            stack.enter_context(_athena_sdk_task_patch())
        yield service
