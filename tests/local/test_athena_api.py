"""The Athena stand-in's API behaviour as boto3 and the Step Functions interpreter see it: polling,
results and where they go, statistics, workgroup rules, partitions, and failures in Athena's shape."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from batchpipe.local.athena import install_athena
from batchpipe.local.glue import create_inventory_table
from batchpipe.local.inventory import (
    generate_objects,
    write_inventory,
    write_inventory_dir,
)
from batchpipe.local.inventory.reader import read_inventory_dir
from batchpipe_core.s3uri import split_s3_uri

REGION = "us-east-1"
FIRST, SECOND, TOO_EARLY = (
    datetime(2024, 3, 1, 0, 0, tzinfo=UTC),
    datetime(2024, 3, 2, 0, 0, tzinfo=UTC),
    datetime(2023, 6, 1, 0, 0, tzinfo=UTC),
)
PREFIX = "inventory/source-bucket/all-objects"


@pytest.fixture(scope="module")
def aws():
    with (
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
        install_athena(polls_before_done=1, unload_rows_per_file=70) as service,
    ):
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("inventory-dest", "results", "elsewhere"):
            s3.create_bucket(Bucket=bucket)
        athena = boto3.client("athena", region_name=REGION)
        athena.create_work_group(
            Name="enforced",
            Configuration={
                "EnforceWorkGroupConfiguration": True,
                "ResultConfiguration": {"OutputLocation": "s3://results/athena/"},
            },
        )
        athena.create_work_group(
            Name="open",
            Configuration={
                "EnforceWorkGroupConfiguration": False,
                "ResultConfiguration": {"OutputLocation": "s3://results/open/"},
            },
        )
        # AWS's minimum cutoff is 10 MB; the rule is the same at any size, and a 10 KB cutoff needs
        # no 10 MB inventory, so this one workgroup is created without client-side validation.
        unvalidated = boto3.client("athena", region_name=REGION, config=Config(parameter_validation=False))
        unvalidated.create_work_group(
            Name="tiny",
            Configuration={
                "ResultConfiguration": {"OutputLocation": "s3://results/tiny/"},
                "BytesScannedCutoffPerQuery": 10_000,
            },
        )
        deliveries = {}
        for when, seed in ((FIRST, 1), (SECOND, 2), (TOO_EARLY, 3)):
            deliveries[when] = write_inventory(
                s3,
                source_bucket="source-bucket",
                dest_bucket="inventory-dest",
                dest_prefix="inventory",
                config_id="all-objects",
                objects=generate_objects(200, seed=seed, bucket="source-bucket"),
                fmt="CSV",
                delivery_time=when,
                rows_per_file=80,
            )
        glue = boto3.client("glue", region_name=REGION)
        create_inventory_table(
            glue,
            {"InventoryBucket": "inventory-dest", "InventoryPrefix": PREFIX, "InventoryDatabaseName": "inv"},
        )
        yield {"s3": s3, "athena": athena, "glue": glue, "service": service, "deliveries": deliveries}


def start(aws, sql: str, workgroup: str = "enforced", database: str = "inv", **kwargs) -> str:
    return aws["athena"].start_query_execution(
        QueryString=sql, WorkGroup=workgroup, QueryExecutionContext={"Database": database}, **kwargs
    )["QueryExecutionId"]


def wait(aws, query_id: str) -> dict:
    for _ in range(10):
        execution = aws["athena"].get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        if execution["Status"]["State"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return execution
    raise AssertionError(f"query {query_id} never finished")


def dt(when: datetime) -> str:
    return when.strftime("%Y-%m-%d-%H-%M")


def data_bytes(aws, when: datetime) -> int:
    return sum(f["size"] for f in aws["deliveries"][when].manifest["files"])


def read(aws, uri: str) -> bytes:
    bucket, key = split_s3_uri(uri)
    return aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read()


# ------------------------------------------------------------------------------------------ lifecycle
def test_a_query_runs_and_callers_poll_for_it(aws):
    query_id = start(
        aws,
        f"SELECT url_decode(key) AS k, CAST(size AS bigint) AS s FROM inventory WHERE dt = '{dt(FIRST)}' ORDER BY k LIMIT 5",
    )
    with pytest.raises(ClientError, match="not yet finished"):
        aws["athena"].get_query_results(QueryExecutionId=query_id)
    first = aws["athena"].get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert first["Status"]["State"] == "RUNNING"
    assert "CompletionDateTime" not in first["Status"]
    execution = wait(aws, query_id)
    assert execution["Status"]["State"] == "SUCCEEDED"
    results = aws["athena"].get_query_results(QueryExecutionId=query_id)["ResultSet"]
    assert [c["Name"] for c in results["ResultSetMetadata"]["ColumnInfo"]] == ["k", "s"]
    assert [c["Type"] for c in results["ResultSetMetadata"]["ColumnInfo"]] == ["varchar", "bigint"]
    header, *rows = [[d.get("VarCharValue") for d in r["Data"]] for r in results["Rows"]]
    assert header == ["k", "s"] and len(rows) == 5
    assert query_id in aws["athena"].list_query_executions(WorkGroup="enforced")["QueryExecutionIds"]


def test_statistics_count_the_partition_read(aws):
    query_id = start(aws, f"SELECT count(*) FROM inventory WHERE dt = '{dt(FIRST)}'")
    execution = wait(aws, query_id)
    assert execution["Statistics"]["DataScannedInBytes"] == data_bytes(aws, FIRST)
    assert execution["Statistics"]["EngineExecutionTimeInMillis"] >= 0
    stats = aws["athena"].get_query_runtime_statistics(QueryExecutionId=query_id)["QueryRuntimeStatistics"]
    assert stats["Rows"]["InputRows"] == 200 and stats["Rows"]["OutputRows"] == 1
    rows = aws["athena"].get_query_results(QueryExecutionId=query_id)["ResultSet"]["Rows"]
    assert rows[1]["Data"] == [{"VarCharValue": "200"}]


def test_without_a_partition_predicate_every_projected_partition_is_read(aws):
    """The 2023 delivery is older than the projection range's start (InventoryStartDate): not a partition."""
    execution = wait(aws, start(aws, "SELECT dt, count(*) FROM inventory GROUP BY dt ORDER BY dt"))
    assert execution["Statistics"]["DataScannedInBytes"] == data_bytes(aws, FIRST) + data_bytes(aws, SECOND)
    rows = aws["athena"].get_query_results(QueryExecutionId=execution["QueryExecutionId"])["ResultSet"][
        "Rows"
    ][1:]
    assert [[d["VarCharValue"] for d in r["Data"]] for r in rows] == [[dt(FIRST), "200"], [dt(SECOND), "200"]]
    out_of_range = wait(aws, start(aws, f"SELECT count(*) FROM inventory WHERE dt = '{dt(TOO_EARLY)}'"))
    assert out_of_range["Statistics"]["DataScannedInBytes"] == 0


def test_results_go_where_the_workgroup_says_when_it_is_enforced(aws):
    query_id = start(
        aws,
        "SELECT 'a\"b' AS q, NULL AS n, true AS t",
        ResultConfiguration={"OutputLocation": "s3://elsewhere/x/"},
    )
    execution = wait(aws, query_id)
    assert execution["ResultConfiguration"]["OutputLocation"] == f"s3://results/athena/{query_id}.csv"
    assert read(aws, execution["ResultConfiguration"]["OutputLocation"]) == b'"q","n","t"\n"a""b",,"true"\n'
    assert aws["s3"].head_object(Bucket="results", Key=f"athena/{query_id}.csv.metadata")
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket="elsewhere")


def test_a_workgroup_that_is_not_enforced_takes_the_callers_location(aws):
    execution = wait(
        aws,
        start(
            aws, "SELECT 1", workgroup="open", ResultConfiguration={"OutputLocation": "s3://elsewhere/mine"}
        ),
    )
    assert execution["ResultConfiguration"]["OutputLocation"].startswith("s3://elsewhere/mine/")
    assert read(aws, execution["ResultConfiguration"]["OutputLocation"]) == b'"_col0"\n"1"\n'


def test_no_output_location_is_refused_at_start(aws):
    with pytest.raises(ClientError, match="No output location provided"):
        start(aws, "SELECT 1", workgroup="primary")


def test_results_are_paged(aws):
    query_id = start(aws, f"SELECT key FROM inventory WHERE dt = '{dt(SECOND)}'")
    wait(aws, query_id)
    pages = (
        aws["athena"]
        .get_paginator("get_query_results")
        .paginate(QueryExecutionId=query_id, PaginationConfig={"PageSize": 60})
    )
    rows = [r for page in pages for r in page["ResultSet"]["Rows"]]
    assert len(rows) == 201 and rows[0]["Data"] == [{"VarCharValue": "key"}]
    assert len({r["Data"][0]["VarCharValue"] for r in rows[1:]}) == 200


def test_client_request_token_makes_start_idempotent(aws):
    first = start(aws, "SELECT 1", ClientRequestToken="same-token-000000000000000000000001")
    again = start(aws, "SELECT 1", ClientRequestToken="same-token-000000000000000000000001")
    assert first == again


def test_stop_cancels_a_query_still_reported_running(aws):
    query_id = start(aws, "SELECT 1")
    aws["athena"].stop_query_execution(QueryExecutionId=query_id)
    assert wait(aws, query_id)["Status"]["State"] == "CANCELLED"


def test_unload_lists_its_files_in_the_data_manifest(aws):
    destination = "s3://results/runs/r1/athena/"
    execution = wait(
        aws,
        start(
            aws,
            f"UNLOAD (SELECT bucket, key FROM inventory WHERE dt = '{dt(FIRST)}') TO '{destination}' "
            "WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')",
        ),
    )
    assert execution["Status"]["State"] == "SUCCEEDED"
    assert execution["SubstatementType"] == "UNLOAD"
    files = read(aws, execution["Statistics"]["DataManifestLocation"]).decode().split()
    assert len(files) == 3  # 200 rows, 70 a file
    lines = [line for uri in files for line in read(aws, uri).decode().splitlines()]
    assert len(lines) == 200 and all(line.startswith("source-bucket,") for line in lines)
    assert (
        aws["athena"].get_query_results(QueryExecutionId=execution["QueryExecutionId"])["ResultSet"]["Rows"]
        == []
    )


# ------------------------------------------------------------------------------------------ failures
FAILURES = [
    ("SELECT key FROM inventory WHERE", "SYNTAX_ERROR", 1006),
    ("SELEC key FROM inventory", "SYNTAX_ERROR", 1006),
    (
        "SELECT key FROM no_such_table",
        "TABLE_NOT_FOUND: Table 'awsdatacatalog.inv.no_such_table' does not exist",
        1110,
    ),
    ("SELECT key FROM no_such_db.inventory", "SCHEMA_NOT_FOUND", 1301),
    (
        "SELECT no_such_column FROM inventory",
        "COLUMN_NOT_FOUND: Column 'no_such_column' cannot be resolved",
        1301,
    ),
    ("SELECT url_decode('%zz')", "INVALID_FUNCTION_ARGUMENT", 1106),
    ("DROP TABLE inventory", "NOT_SUPPORTED", 1200),
]


@pytest.mark.parametrize(
    ("sql", "reason", "error_type"),
    FAILURES,
    ids=[f[1].split(":")[0] + f"-{i}" for i, f in enumerate(FAILURES)],
)
def test_failures_have_athenas_shape(aws, sql, reason, error_type):
    query_id = start(aws, sql)
    execution = wait(aws, query_id)
    status = execution["Status"]
    assert status["State"] == "FAILED"
    assert status["StateChangeReason"].startswith(reason)
    assert status["AthenaError"] == {
        "ErrorCategory": 2,
        "ErrorType": error_type,
        "Retryable": False,
        "ErrorMessage": status["StateChangeReason"],
    }
    with pytest.raises(ClientError, match="Final query state: FAILED"):
        aws["athena"].get_query_results(QueryExecutionId=query_id)


def test_unload_to_a_location_that_has_data_fails_and_writes_nothing(aws):
    aws["s3"].put_object(Bucket="results", Key="runs/busy/athena/existing.txt", Body=b"x")
    execution = wait(
        aws,
        start(
            aws,
            f"UNLOAD (SELECT bucket, key FROM inventory WHERE dt = '{dt(FIRST)}') TO 's3://results/runs/busy/athena/' "
            "WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')",
        ),
    )
    assert execution["Status"]["State"] == "FAILED"
    assert execution["Status"]["StateChangeReason"].startswith("HIVE_PATH_ALREADY_EXISTS")
    listed = aws["s3"].list_objects_v2(Bucket="results", Prefix="runs/busy/")["Contents"]
    assert [o["Key"] for o in listed] == ["runs/busy/athena/existing.txt"]


def test_bytes_scanned_cutoff_stops_the_query(aws):
    query_id = start(aws, f"SELECT key FROM inventory WHERE dt = '{dt(FIRST)}'", workgroup="tiny")
    execution = wait(aws, query_id)
    assert execution["Status"]["State"] == "FAILED"
    assert "BytesScannedCutoffPerQuery" in execution["Status"]["StateChangeReason"]
    assert execution["Statistics"]["DataScannedInBytes"] > 10_000
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket="results", Prefix="tiny/")


def test_unknown_query_execution_is_an_invalid_request(aws):
    with pytest.raises(ClientError, match="was not found"):
        aws["athena"].get_query_execution(QueryExecutionId="00000000-0000-0000-0000-000000000000")


# ------------------------------------------------------------------------------------------ integrations
def query_loop(sql: str) -> dict:
    """The pipeline's StartQuery / WaitForQuery / GetQueryStatus / QueryFinished? / QueryFailed shape."""
    return {
        "StartAt": "StartQuery",
        "States": {
            "StartQuery": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:athena:startQueryExecution",
                "Parameters": {
                    "QueryString": sql,
                    "WorkGroup": "enforced",
                    "QueryExecutionContext": {"Database": "inv"},
                },
                "ResultSelector": {"id.$": "$.QueryExecutionId"},
                "ResultPath": "$.query",
                "Next": "WaitForQuery",
            },
            "WaitForQuery": {"Type": "Wait", "Seconds": 0, "Next": "GetQueryStatus"},
            "GetQueryStatus": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:athena:getQueryExecution",
                "Parameters": {"QueryExecutionId.$": "$.query.id"},
                "ResultSelector": {
                    "state.$": "$.QueryExecution.Status.State",
                    "status.$": "$.QueryExecution.Status",
                    "scanned.$": "$.QueryExecution.Statistics.DataScannedInBytes",
                },
                "ResultPath": "$.status",
                "Next": "QueryFinished?",
            },
            "QueryFinished?": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.status.state", "StringEquals": "SUCCEEDED", "Next": "Done"},
                    {"Variable": "$.status.state", "StringEquals": "FAILED", "Next": "QueryFailed"},
                ],
                "Default": "WaitForQuery",
            },
            "QueryFailed": {
                "Type": "Pass",
                "Parameters": {
                    "Error": "AthenaQueryFailed",
                    "Cause.$": "States.JsonToString($.status.status)",
                },
                "End": True,
            },
            "Done": {"Type": "Succeed"},
        },
    }


def run_machine(name: str, definition: dict) -> tuple[dict, list[dict]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="run-1", input="{}")["executionArn"]
    for _ in range(400):
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.05)
    return described, sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def test_step_functions_aws_sdk_tasks_run_the_query(aws):
    """What the pipeline's query loop does, on moto's interpreter with plain aws-sdk tasks."""
    described, history = run_machine(
        "athena-loop", query_loop(f"SELECT count(*) FROM inventory WHERE dt = '{dt(SECOND)}'")
    )
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["status"]["state"] == "SUCCEEDED"
    assert output["status"]["scanned"] == data_bytes(aws, SECOND)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", output["status"]["status"]["CompletionDateTime"]
    )
    polls = [
        e
        for e in history
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "GetQueryStatus"
    ]
    assert len(polls) == 2  # RUNNING first, as on AWS, so the loop is exercised


def test_step_functions_sees_a_failed_query_with_its_reason(aws):
    described, _ = run_machine("athena-fails", query_loop("SELECT key FROM no_such_table"))
    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["Error"] == "AthenaQueryFailed"
    cause = json.loads(output["Cause"])
    assert cause["State"] == "FAILED" and cause["AthenaError"]["ErrorType"] == 1110
    assert cause["StateChangeReason"].startswith("TABLE_NOT_FOUND")


def test_a_real_inventory_folder_uploaded_elsewhere_is_what_athena_reads(aws, tmp_path):
    """``local run --inventory DIR``: the folder lands under the stack's prefix, symlinks rewritten."""
    objects = generate_objects(150, seed=5, bucket="customer-bucket")
    write_inventory_dir(
        tmp_path / "daily",
        source_bucket="customer-bucket",
        dest_bucket="customer-inventories",
        dest_prefix="reports",
        config_id="daily",
        objects=objects,
        fmt="Parquet",
        delivery_time=datetime(2024, 4, 1, 1, 0, tzinfo=UTC),
        rows_per_file=60,
    )
    inventory = read_inventory_dir(tmp_path / "daily")
    assert (
        inventory.source_bucket == "customer-bucket"
        and inventory.original_prefix == "reports/customer-bucket/daily"
    )
    inventory.upload(aws["s3"], "inventory-dest", "uploaded/customer-bucket/daily")
    symlink = read(
        aws, f"s3://inventory-dest/uploaded/customer-bucket/daily/hive/dt={inventory.dt}/symlink.txt"
    ).decode()
    assert all(
        line.startswith("s3://inventory-dest/uploaded/customer-bucket/daily/data/")
        for line in symlink.split()
    )
    create_inventory_table(
        aws["glue"],
        {
            "InventoryFormat": "Parquet",
            "InventoryBucket": "inventory-dest",
            "InventoryPrefix": "uploaded/customer-bucket/daily",
            "InventoryDatabaseName": "uploaded",
        },
    )
    query_id = start(aws, f"SELECT key FROM inventory WHERE dt = '{inventory.dt}'", database="uploaded")
    assert wait(aws, query_id)["Status"]["State"] == "SUCCEEDED"
    pages = aws["athena"].get_paginator("get_query_results").paginate(QueryExecutionId=query_id)
    keys = [r["Data"][0]["VarCharValue"] for page in pages for r in page["ResultSet"]["Rows"]][1:]
    assert sorted(keys) == sorted(o.key for o in objects)
