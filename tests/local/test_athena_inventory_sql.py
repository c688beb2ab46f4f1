"""The Athena stand-in over generated S3 Inventories, through plain boto3 clients.

One 10,000-object inventory is delivered as CSV.gz, Parquet and ORC; the Glue tables come from
template.yaml's InventoryTable for each format. The same query shape (only the column adapters a
query builder would apply differ: CSV stores encoded keys and text) must give the same rows in every
format, and the rows a Python reference computes from the generated objects.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from batchpipe.local.athena import install_athena
from batchpipe.local.glue import create_inventory_table
from batchpipe.local.inventory import (
    current_objects,
    generate_objects,
    write_inventory,
)
from batchpipe_core.s3uri import split_s3_uri

REGION = "us-east-1"
DELIVERY = datetime(2024, 5, 6, 7, 8, tzinfo=UTC)
DT = "2024-05-06-07-08"
FORMATS = ("CSV", "Parquet", "ORC")
ROWS_PER_UNLOAD_FILE = 2_500

# What a query builder puts in place of a column, per format (CSV columns are all text, keys encoded).
ADAPTERS = {
    "CSV": {
        "key": "url_decode(key)",
        "size": "CAST(size AS bigint)",
        "modified": "from_iso8601_timestamp(last_modified_date)",
        "latest": "is_latest = 'true'",
        "marker": "is_delete_marker = 'true'",
    },
    "Parquet": {
        "key": "key",
        "size": "size",
        "modified": "last_modified_date",
        "latest": "is_latest",
        "marker": "is_delete_marker",
    },
    "ORC": {
        "key": "key",
        "size": "size",
        "modified": "last_modified_date",
        "latest": "is_latest",
        "marker": "is_delete_marker",
    },
}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# (name, SQL predicate template, Python reference)
FILTERS = [
    ("everything", "true", lambda o: True),
    ("prefix", "starts_with({key}, 'photos/2020/')", lambda o: o.key.startswith("photos/2020/")),
    ("prefix with space", "{key} LIKE 'My Documents/%'", lambda o: o.key.startswith("My Documents/")),
    ("unicode prefix", "starts_with({key}, 'données/été/')", lambda o: o.key.startswith("données/été/")),
    ("size range", "{size} BETWEEN 1048576 AND 1073741824", lambda o: 1048576 <= o.size <= 1073741824),
    ("empty objects", "{size} = 0", lambda o: o.size == 0),
    (
        "modified window",
        "{modified} < from_iso8601_timestamp('2022-01-01T00:00:00Z') "
        "AND {modified} >= from_iso8601_timestamp('2020-06-01T00:00:00Z')",
        lambda o: when("2020-06-01T00:00:00Z") <= o.last_modified_date < when("2022-01-01T00:00:00Z"),
    ),
    (
        "storage classes",
        "storage_class IN ('STANDARD_IA', 'GLACIER')",
        lambda o: o.storage_class in ("STANDARD_IA", "GLACIER"),
    ),
    ("encryption", "encryption_status = 'NOT-SSE'", lambda o: o.encryption_status == "NOT-SSE"),
    ("regex", "regexp_like({key}, '\\.jpe?g$')", lambda o: o.key.endswith((".jpg", ".jpeg"))),
    (
        "combined",
        "starts_with({key}, 'photos/') AND {size} > 10000 AND storage_class = 'STANDARD' "
        "AND {modified} < from_iso8601_timestamp('2024-01-01T00:00:00Z')",
        lambda o: (
            o.key.startswith("photos/")
            and o.size > 10000
            and o.storage_class == "STANDARD"
            and o.last_modified_date < when("2024-01-01T00:00:00Z")
        ),
    ),
]


@pytest.fixture(scope="module")
def aws():
    with (
        mock_aws(),
        install_athena(polls_before_done=0, unload_rows_per_file=ROWS_PER_UNLOAD_FILE) as service,
    ):
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("inventory-dest", "results"):
            s3.create_bucket(Bucket=bucket)
        athena = boto3.client("athena", region_name=REGION)
        athena.create_work_group(
            Name="batchpipe",
            Configuration={
                "EnforceWorkGroupConfiguration": True,
                "ResultConfiguration": {"OutputLocation": "s3://results/athena/"},
            },
        )
        yield {
            "s3": s3,
            "athena": athena,
            "glue": boto3.client("glue", region_name=REGION),
            "service": service,
        }


def deliver(aws, objects, fmt: str, versions: str, name: str) -> str:
    """Writes the inventory and its template-declared Glue table; returns the database name."""
    delivery = write_inventory(
        aws["s3"],
        source_bucket="source-bucket",
        dest_bucket="inventory-dest",
        dest_prefix=f"inventory/{name}",
        config_id="all-objects",
        objects=objects,
        fmt=fmt,
        versions=versions,
        delivery_time=DELIVERY,
        rows_per_file=4_000,
    )
    database, _ = create_inventory_table(
        aws["glue"],
        {
            "InventoryFormat": fmt,
            "InventoryVersions": versions,
            "InventoryBucket": "inventory-dest",
            "InventoryPrefix": delivery.prefix,
            "InventoryDatabaseName": name,
        },
    )
    return database


@pytest.fixture(scope="module")
def objects():
    return generate_objects(10_000, seed=7, bucket="source-bucket")


@pytest.fixture(scope="module")
def databases(aws, objects):
    return {fmt: deliver(aws, objects, fmt, "Current", f"inv_{fmt.lower()}") for fmt in FORMATS}


def run(aws, sql: str, database: str) -> dict:
    athena = aws["athena"]
    query_id = athena.start_query_execution(
        QueryString=sql, WorkGroup="batchpipe", QueryExecutionContext={"Database": database}
    )["QueryExecutionId"]
    execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
    assert execution["Status"]["State"] == "SUCCEEDED", execution["Status"]
    return execution


def result_rows(aws, execution: dict) -> list[list[str]]:
    """The query's result file, as Athena wrote it (header row, every value quoted)."""
    bucket, key = split_s3_uri(execution["ResultConfiguration"]["OutputLocation"])
    text = aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    _header, *rows = list(csv.reader(io.StringIO(text)))
    return rows


@pytest.fixture(scope="module")
def filter_answers(aws, databases):
    """format -> filter name -> sorted (key, size, storage class) the query selected.

    One query per format evaluates every filter as a column, so 10,000 rows are read three times,
    not thirty-three."""
    answers = {}
    for fmt in FORMATS:
        a = ADAPTERS[fmt]
        flags = ", ".join(f"coalesce({predicate.format(**a)}, false)" for _, predicate, _ in FILTERS)
        sql = f"SELECT {a['key']} AS k, {a['size']} AS s, storage_class, {flags} FROM inventory WHERE dt = '{DT}'"
        rows = result_rows(aws, run(aws, sql, databases[fmt]))
        answers[fmt] = {
            name: sorted((r[0], r[1], r[2]) for r in rows if r[3 + i] == "true")
            for i, (name, _, _) in enumerate(FILTERS)
        }
    return answers


@pytest.mark.parametrize(("name", "predicate", "reference"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filters_agree_with_python_in_every_format(objects, filter_answers, name, predicate, reference):
    expected = sorted((o.key, str(o.size), o.storage_class) for o in objects if reference(o))
    assert expected, f"the generated objects should exercise {name}"
    for fmt in FORMATS:
        assert filter_answers[fmt][name] == expected, f"{fmt}: {name}"


def test_same_rows_in_every_format_including_dates_and_flags(aws, databases):
    answers = {}
    for fmt in FORMATS:
        a = ADAPTERS[fmt]
        sql = (
            f"SELECT {a['key']} AS k, {a['size']} AS s, to_unixtime({a['modified']}) AS modified, e_tag, "
            f"encryption_status, coalesce(replication_status, '') AS replication, object_lock_legal_hold_status "
            f"FROM inventory WHERE dt = '{DT}' ORDER BY k"
        )
        answers[fmt] = result_rows(aws, run(aws, sql, databases[fmt]))
    assert len(answers["CSV"]) == 10_000
    assert answers["CSV"] == answers["Parquet"] == answers["ORC"]


def test_unload_writes_exactly_the_manifest_lines(aws, objects, databases):
    """Bucket first, key encoded so percent- and form-decoding agree (S3 user guide, "Specifying a manifest"; docs/FILTERS.md, "How keys are handled")."""
    wanted = [o for o in objects if o.storage_class == "STANDARD"]
    expected = sorted(f"source-bucket,{quote(o.key, safe='*').replace('~', '%7E')}" for o in wanted)
    for fmt in FORMATS:
        a = ADAPTERS[fmt]
        destination = f"s3://results/runs/{fmt}/athena/"
        sql = (
            f"UNLOAD (SELECT bucket, replace(url_encode({a['key']}), '+', '%20') FROM inventory "
            f"WHERE dt = '{DT}' AND storage_class = 'STANDARD') "
            f"TO '{destination}' WITH (format = 'TEXTFILE', field_delimiter = ',', compression = 'NONE')"
        )
        execution = run(aws, sql, databases[fmt])
        listed = aws["s3"].list_objects_v2(Bucket="results", Prefix=f"runs/{fmt}/athena/")["Contents"]
        assert len(listed) == -(-len(expected) // ROWS_PER_UNLOAD_FILE)  # several files, none empty
        lines = []
        for item in listed:
            body = aws["s3"].get_object(Bucket="results", Key=item["Key"])["Body"].read().decode()
            assert body.endswith("\n") and '"' not in body
            lines += body.splitlines()
        assert sorted(lines) == expected, fmt

        manifest_uri = execution["Statistics"]["DataManifestLocation"]
        bucket, key = split_s3_uri(manifest_uri)
        listed_in_manifest = aws["s3"].get_object(Bucket=bucket, Key=key)["Body"].read().decode().split()
        assert sorted(listed_in_manifest) == sorted(f"s3://results/{i['Key']}" for i in listed)
        statistics = aws["athena"].get_query_runtime_statistics(
            QueryExecutionId=execution["QueryExecutionId"]
        )
        # An UNLOAD returns no rows: no OutputRows, so nothing can count on the emulator's kindness.
        assert "OutputRows" not in statistics["QueryRuntimeStatistics"]["Rows"]
        assert statistics["QueryRuntimeStatistics"]["Rows"]["InputRows"] == 10_000


def test_unload_defaults_to_gzip_and_writes_nulls_as_hive_does(aws, databases):
    sql = (
        f"UNLOAD (SELECT key, replication_status, {ADAPTERS['Parquet']['size']} > 0 FROM inventory "
        f"WHERE dt = '{DT}' AND key = 'photos/2020/01/none' OR key LIKE 'trailing/%') "
        "TO 's3://results/gz/' WITH (format = 'TEXTFILE', field_delimiter = '\\t')"
    )
    run(aws, sql, databases["Parquet"])
    import gzip

    items = aws["s3"].list_objects_v2(Bucket="results", Prefix="gz/")["Contents"]
    assert all(i["Key"].endswith(".gz") for i in items)
    lines = [
        line
        for i in items
        for line in gzip.decompress(aws["s3"].get_object(Bucket="results", Key=i["Key"])["Body"].read())
        .decode()
        .split("\n")
        if line
    ]
    assert lines
    for line in lines:
        key, replication, positive = line.split("\t")
        assert key.startswith("trailing/")
        assert replication in ("\\N", "COMPLETED", "PENDING", "FAILED", "REPLICA")
        assert positive in ("true", "false")


def test_versioned_inventories_in_every_format(aws):
    history = generate_objects(3_000, seed=11, bucket="source-bucket", versioned=True)
    assert any(o.version_id is None for o in history) and any(o.is_delete_marker for o in history)
    expected = sorted(
        (o.key, o.version_id or "null") for o in current_objects(history)
    )  # latest, not deleted; the null version written as Batch Operations wants it
    for fmt in FORMATS:
        database = deliver(aws, history, fmt, "All", f"versions_{fmt.lower()}")
        a = ADAPTERS[fmt]
        sql = (
            f"SELECT {a['key']} AS k, coalesce(nullif(version_id, ''), 'null') AS v FROM inventory "
            f"WHERE dt = '{DT}' AND {a['latest']} AND NOT ({a['marker']})"
        )
        rows = result_rows(aws, run(aws, sql, database))
        assert sorted(tuple(r) for r in rows) == expected, fmt
