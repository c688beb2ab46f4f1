"""BuildManifest on moto: Athena's output files become one manifest; rows stay in S3 when they can.

moto's Athena reports a fixed statistic (2 output rows, 0 bytes scanned) for any query, so these tests
write 2-row outputs where the count matters; the DuckDB-backed stand-in covers real counts end to end.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from urllib.parse import quote_plus, unquote, unquote_plus

import boto3
import pytest
from moto import mock_aws

from batchpipe.local.lambdas import LambdaContext
from batchpipe_core.errors import BatchPipeError, TooManyObjectsError
from batchpipe_core.multipart import Limits, MiB, concatenate
from batchpipe_core.observability import metrics

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from build_manifest import app  # noqa: E402

REGION = "us-east-1"
PIPELINE = "pipeline"
RUN_PREFIX = "runs/retag/retag-1/"
OUTPUT = f"{RUN_PREFIX}athena/"
ENV = {
    "ACCOUNT_ID": "123456789012",
    "PIPELINE_BUCKET": PIPELINE,
    "TOKEN_TABLE": "tokens",
    "INVENTORY_BUCKET": "inventory-dest",
    "INVENTORY_PREFIX": "inventory/src/all",
    "INVENTORY_FORMAT": "CSV",
    "INVENTORY_VERSIONS": "Current",
    "INVENTORY_DATABASE": "batchpipe_inventory",
    "INVENTORY_TABLE": "inventory",
    "ATHENA_WORKGROUP": "wg",
    "BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/batch",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:topic",
    "DEFAULT_MAX_OBJECTS": "1000000000",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "BatchPipe",
    "POWERTOOLS_SERVICE_NAME": "batchpipe",
    "AWS_DEFAULT_REGION": REGION,
}
KEYS = [
    "photos/a b+c%20d=e,f'g\"h#i?j ünï 🎉.jpg",
    "k/" + "x" * 1022,
]


def manifest_key(key: str) -> str:
    """Athena's replace(url_encode(key), '+', '%20'): Java's URLEncoder, then a space as %20."""
    return quote_plus(key, safe="*").replace("~", "%7E").replace("+", "%20")


def rows(keys) -> bytes:
    return "".join(f"src-bucket,{manifest_key(k)}\n" for k in keys).encode()


# PlanQuery emits no metric of its own; Powertools warns about that on every call.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture(autouse=True)
def _fresh_metrics():
    """Powertools keeps metric values while metrics are disabled and raises at 100: start each test empty."""
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


@pytest.fixture
def aws(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=PIPELINE)
        athena = boto3.client("athena", region_name=REGION)
        athena.create_work_group(
            Name="wg", Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{PIPELINE}/athena/"}}
        )
        query_id = athena.start_query_execution(QueryString="SELECT 1", WorkGroup="wg")["QueryExecutionId"]
        yield s3, query_id


def event(query_id: str, max_objects: int | None = 10, dry_run: bool = False) -> dict:
    return {
        "spec": {"name": "retag", "maxObjects": max_objects, "dryRun": dry_run, "filter": {"prefixes": None}},
        "run": {
            "name": "retag",
            "executionId": "arn:aws:states:us-east-1:123456789012:execution:sm:retag-1",
            "executionName": "retag-1",
            "prefix": RUN_PREFIX,
            "bucket": PIPELINE,
        },
        "query": {
            "sql": "UNLOAD (...)",
            "workGroup": "wg",
            "database": "batchpipe_inventory",
            "partition": "2024-05-01-00-00",
            "outputPrefix": f"s3://{PIPELINE}/{OUTPUT}",
            "execution": {"id": query_id},
            "status": {"state": "SUCCEEDED", "status": {"State": "SUCCEEDED"}},
        },
    }


def invoke(payload: dict) -> dict:
    context = LambdaContext("BuildManifestFunction", "arn:aws:lambda:us-east-1:123456789012:function:bm")
    return app.handler(json.loads(json.dumps(payload)), context)


def body(s3, key: str) -> bytes:
    return s3.get_object(Bucket=PIPELINE, Key=key)["Body"].read()


def test_outputs_become_one_manifest_with_count_etag_size_and_decoded_sample(aws):
    s3, query_id = aws
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_0", Body=rows(KEYS))
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_1", Body=b"")
    result = invoke(event(query_id, dry_run=True))  # a dry run counts the rows itself
    assert set(result) == {
        "location",
        "bucket",
        "key",
        "etag",
        "objects",
        "empty",
        "estimatedObjects",
        "sizeBytes",
        "bytesScanned",
        "sample",
        "why",
        "fields",
    }
    assert result["fields"] == ["Bucket", "Key"]  # a current-versions stack: CreateJob names these
    assert result["why"] is None
    assert result["location"] == f"s3://{PIPELINE}/{RUN_PREFIX}manifest.csv"
    assert (result["bucket"], result["key"]) == (PIPELINE, f"{RUN_PREFIX}manifest.csv")
    assert body(s3, result["key"]) == rows(KEYS)
    assert result["etag"] == s3.head_object(Bucket=PIPELINE, Key=result["key"])["ETag"].strip('"')
    assert (result["objects"], result["sizeBytes"], result["bytesScanned"]) == (2, len(rows(KEYS)), 0)
    assert result["sample"] == KEYS
    for line in body(s3, result["key"]).decode().splitlines():
        encoded = line.split(",")[1]
        assert unquote(encoded) == unquote_plus(encoded) and unquote(encoded) in KEYS


def test_a_dry_run_over_max_objects_fails(aws):
    s3, query_id = aws
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_0", Body=rows(KEYS))
    with pytest.raises(TooManyObjectsError, match=r"2 objects, more than maxObjects \(1\)"):
        invoke(event(query_id, max_objects=1, dry_run=True))


def test_nothing_to_do_follows_from_no_bytes_written_not_from_athenas_statistics(aws):
    _, query_id = aws
    result = invoke(event(query_id))
    assert (result["objects"], result["empty"], result["location"]) == (0, True, None)


def test_a_real_run_leaves_the_count_to_s3(aws):
    s3, query_id = aws
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_0", Body=rows(KEYS))
    result = invoke(event(query_id, max_objects=1))  # maxObjects is checked on S3's count (ConfirmJob)
    assert (result["objects"], result["empty"]) == (None, False)


def probes(keys) -> list[tuple[str, int]]:
    """PackManifest and BuildManifest read the first 2 bytes of each output file: gzip or not is told
    by the content, not the name. A fixed read per file, whatever its size: no row passes."""
    return [(key, len(app.GZIP_MAGIC)) for key in keys]


def test_no_row_passes_through_the_lambda_when_outputs_are_at_least_5_mib(aws, reads):
    s3, query_id = aws
    big = [rows(f"part{p}/key {i:07d}" for i in range(200_000)) for p in range(2)]
    big = [data[: 5 * MiB + 17 * p] for p, data in enumerate(big)]
    assert all(len(data) >= 5 * MiB for data in big)
    for index, data in enumerate(big):
        s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_{index}", Body=data)
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_9", Body=b"")
    reads.clear()
    result = invoke(event(query_id))
    lambda_reads = list(reads)
    assert body(s3, result["key"]) == b"".join(big)
    # One bounded ranged GET for the sample; the 10 MiB of rows were copied inside S3.
    assert sorted(lambda_reads) == sorted(
        [
            *probes([f"{OUTPUT}20240501_0", f"{OUTPUT}20240501_1"]),
            (f"{RUN_PREFIX}manifest.csv", app.SAMPLE_BYTES),
        ]
    )
    assert result["sample"] == [f"part0/key {i:07d}" for i in range(20)]


def test_past_the_part_limit_outputs_are_joined_into_intermediates_and_still_not_read(
    aws, reads, monkeypatch
):
    """The 10,000-part rule (here 2 parts): Athena's output files are first joined into intermediate
    objects inside S3, the manifest from those, and the intermediates removed; no row passes."""
    s3, query_id = aws
    big = [rows(f"part{p}/key {i:07d}" for i in range(200_000))[: 5 * MiB + 11 * p] for p in range(3)]
    for index, data in enumerate(big):
        s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_{index}", Body=data)
    monkeypatch.setitem(concatenate.__kwdefaults__, "limits", Limits(max_parts=2, max_part=16 * MiB))
    deleted: list[str] = []
    remove = app._delete_quietly
    monkeypatch.setattr(
        app, "_delete_quietly", lambda s3, bucket, keys: (deleted.extend(keys), remove(s3, bucket, keys))
    )
    reads.clear()
    result = invoke(event(query_id))
    lambda_reads = list(reads)
    assert body(s3, result["key"]) == b"".join(big)
    assert deleted and all(key.startswith(f"{RUN_PREFIX}manifest-parts/") for key in deleted)
    assert "Contents" not in s3.list_objects_v2(Bucket=PIPELINE, Prefix=f"{RUN_PREFIX}manifest-parts/")
    assert sorted(lambda_reads) == sorted(
        [
            *probes([f"{OUTPUT}20240501_{n}" for n in range(3)]),
            (f"{RUN_PREFIX}manifest.csv", app.SAMPLE_BYTES),
        ]
    )


def test_small_outputs_are_read_and_nothing_else(aws, reads):
    s3, query_id = aws
    big = rows(f"big/key {i:07d}" for i in range(200_000))[: 5 * MiB]
    small = [rows([f"small{n}/key"]) for n in range(3)]
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}a", Body=big)
    for n, data in enumerate(small):
        s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}b{n}", Body=data)
    reads.clear()
    result = invoke(event(query_id))
    lambda_reads = list(reads)
    assert body(s3, result["key"]) == big + b"".join(small)
    assert sorted(lambda_reads) == sorted(
        [(f"{RUN_PREFIX}manifest.csv", app.SAMPLE_BYTES)]
        + [(f"{OUTPUT}b{n}", len(small[n])) for n in range(3)]
        + probes([f"{OUTPUT}a", *(f"{OUTPUT}b{n}" for n in range(3))])
    )


def test_sample_of_a_versioned_manifest_is_keys_only(aws):
    s3, query_id = aws
    data = b"".join(
        f"src,{manifest_key(k)},{v}\n".encode() for k, v in zip(KEYS, ["null", "3HL4kqtJ+/x"], strict=True)
    )
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}0", Body=data)
    assert invoke(event(query_id))["sample"] == KEYS


def test_compressed_athena_output_is_never_handed_to_batch_operations(aws):
    """BuildManifest without PackManifest's decompression (never so in the state machine) refuses."""
    s3, query_id = aws
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}0.gz", Body=gzip.compress(rows(KEYS)))
    with pytest.raises(BatchPipeError, match="gzip"):
        invoke(event(query_id))


def test_gzip_output_is_decompressed_streamed_and_bounded_into_a_plain_manifest(aws, monkeypatch):
    """Whether or not Athena honours compression = 'NONE': gzip files (one of two members, as
    concatenated gzip streams are) are decompressed, one bounded step at a time, in parts of
    PLAIN_PART_BYTES, and the manifest is the plain rows in the files' key order."""
    s3, query_id = aws
    monkeypatch.setattr(app, "PLAIN_PART_BYTES", 5 * MiB)  # the smallest part S3 takes
    monkeypatch.setenv("MANIFEST_PACK_BYTES", "1")  # one file per step
    many = [f"photos/2024/{i:08d} ünï+{'y' * 90}.jpg" for i in range(60_000)]  # ~9 MB of rows
    two_members = gzip.compress(rows(many[:30_000])) + gzip.compress(rows(many[30_000:]))
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}0.gz", Body=two_members)
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}1", Body=rows(KEYS))
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}2.gz", Body=gzip.compress(rows(["z/last"])))
    steps = len(pack_loop(query_id, most=19))
    assert steps >= 3  # each gzip file in a step of its own, then the packing
    manifest = invoke(event(query_id, max_objects=None, dry_run=True))
    assert body(s3, manifest["key"]) == rows(many) + rows(KEYS) + rows(["z/last"])
    assert manifest["objects"] == len(many) + len(KEYS) + 1
    assert manifest["sample"][:2] == many[:2]
    plain = s3.list_objects_v2(Bucket=PIPELINE, Prefix=f"{RUN_PREFIX}{app.PLAIN_FOLDER}")["Contents"]
    assert len(plain) == 2 and max(o["Size"] for o in plain) > 5 * MiB  # a multipart-uploaded copy


ASL = Path(__file__).resolve().parents[2] / "statemachine" / "pipeline.asl.json"


def carried(step: dict) -> dict:
    """What the state keeps of a PackManifest step for the next one: its ResultSelector's fields."""
    selector = json.loads(ASL.read_text())["States"]["PackManifest"]["ResultSelector"]
    return {name.removesuffix(".$"): step[path.removeprefix("$.Payload.")] for name, path in selector.items()}


def pack(query_id: str, packing: dict | None = None) -> dict:
    query = event(query_id)["query"] | ({"packing": packing} if packing is not None else {})
    return invoke({"run": event(query_id)["run"], "query": query, "pack": True})


def pack_loop(query_id: str, most: int) -> list[dict]:
    """The PackManifest loop as the state machine runs it: each step given the last one's cursor."""
    steps: list[dict] = []
    while not steps or not steps[-1]["done"]:
        steps.append(pack(query_id, carried(steps[-1]) if steps else None))
        assert len(steps) <= most, "PackManifest never finished"
    return steps


def test_small_outputs_are_packed_a_bounded_group_per_step_then_only_copied(aws, reads, monkeypatch):
    monkeypatch.setenv("MANIFEST_PACK_BYTES", str(5 * MiB))
    s3, query_id = aws
    big = rows(f"big/key {i:07d}" for i in range(200_000))[: 5 * MiB]
    small = [rows(f"small{n}/key {i:06d}" for i in range(60_000))[: 3 * MiB // 2 + n] for n in range(9)]
    s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}a", Body=big)
    for n, data in enumerate(small):
        s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}b{n}", Body=data)

    steps, per_step, probed = [], [], []
    while not steps or not steps[-1]["done"]:
        reads.clear()
        steps.append(pack(query_id, carried(steps[-1]) if steps else None))
        probed.extend(key for key, size in reads if size == len(app.GZIP_MAGIC))
        per_step.append(sum(size for _, size in reads if size != len(app.GZIP_MAGIC)))
        assert len(steps) <= 5, "packing did not end"
    reads.clear()
    result = invoke(event(query_id))
    final_reads = list(reads)

    # 9 files of 1.5 MiB: groups of 4 (6 MiB >= the 5 MiB budget), 4, and the last 1, which is
    # copied as it is (a lone small source may be the last part).
    assert [s["groups"] for s in steps] == [1, 2, 3]
    outputs = [f"{OUTPUT}a", *(f"{OUTPUT}b{n}" for n in range(9))]
    assert per_step == [sum(map(len, small[:4])), sum(map(len, small[4:8])), 0]
    assert max(per_step) <= 5 * MiB + 3 * MiB // 2 + 8  # the budget and one file
    # Gzip or not is told by a file's first 2 bytes: a few looks per file in all (the gzip pass,
    # its group's and the look-ahead for the next group), not one per step and file.
    assert set(probed) == set(outputs) and max(map(probed.count, outputs)) <= 3
    # The rest copied in S3.
    assert sorted(final_reads) == sorted([*probes(outputs), (f"{RUN_PREFIX}manifest.csv", app.SAMPLE_BYTES)])
    assert sorted(body(s3, result["key"]).splitlines()) == sorted(b"".join([big, *small]).splitlines())


def test_a_manifest_built_without_packing_still_has_every_row(aws, monkeypatch):
    monkeypatch.setenv("MANIFEST_PACK_BYTES", "10")
    s3, query_id = aws
    small = [rows([f"small{n}/key"]) for n in range(4)]
    for n, data in enumerate(small):
        s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}b{n}", Body=data)
    pack(query_id)  # one group of four packed; the rest left as they are

    result = invoke(event(query_id))

    assert sorted(body(s3, result["key"]).splitlines()) == sorted(b"".join(small).splitlines())


def test_the_packing_loop_lists_each_output_file_a_bounded_number_of_times_not_once_per_step(
    aws, reads, monkeypatch
):
    """Issue 23 §5: the PackManifest loop carries a cursor (query.packing), so a step lists Athena's
    output only from where the last one stopped (ListObjectsV2 StartAfter): each file is listed a few
    times in all (the gzip pass, its group's listing, a look-ahead and the rest of a page), however
    many steps the loop takes. Pages are 5 keys here instead of S3's 1,000, so that 90 files make 18
    pages, and some files are gzip (decompressed first, then packed by their plain copies)."""
    from batchpipe_core import multipart

    monkeypatch.setattr(multipart, "LIST_PAGE_KEYS", 5)
    monkeypatch.setenv("MANIFEST_PACK_BYTES", "15000")
    s3, query_id = aws
    files = [[f"photos/ünïcødé 日本+{n:02d}/{i:03d} {'y' * 80}.jpg" for i in range(40)] for n in range(90)]
    for n, keys in enumerate(files):
        data = gzip.compress(rows(keys)) if n % 30 == 7 else rows(keys)
        s3.put_object(Bucket=PIPELINE, Key=f"{OUTPUT}20240501_{n:03d}_q", Body=data)
    listed: list[str] = []
    calls = []

    def record(parsed, **kwargs):
        calls.append(1)
        listed.extend(item["Key"] for item in parsed.get("Contents", []) if item["Key"].startswith(OUTPUT))

    boto3.DEFAULT_SESSION.events.register("after-call.s3.ListObjectsV2", record)  # `reads`' session
    steps = pack_loop(query_id, most=90)
    outputs = sorted(set(listed))
    per_file, loop_calls = max(map(listed.count, outputs)), len(calls)
    reads.clear()
    manifest = invoke(event(query_id, max_objects=None, dry_run=True))
    # BuildManifest found every packed object (gzip files' groups too): it joined those (small here,
    # so read), never an output file or a plain copy.
    joined = sorted(key for key, size in reads if size > len(app.GZIP_MAGIC) and key != manifest["key"])

    everything = [key for keys in files for key in keys]
    assert body(s3, manifest["key"]) == rows(everything)  # the files' rows, in the files' key order
    assert manifest["objects"] == len(everything) == 3600
    # The 3 gzip files (a few KB) decompressed in the first step, which then packs the first group.
    assert len(outputs) == 90 and steps[-1]["groups"] == len(steps) == 30  # groups of 3 files (~16 KB)
    packed = s3.list_objects_v2(Bucket=PIPELINE, Prefix=f"{RUN_PREFIX}{app.PACKED_FOLDER}g")["Contents"]
    assert joined == [item["Key"] for item in packed] and len(packed) == steps[-1]["groups"]
    # Re-listing at every step would list every file once per step (and 18 pages per step).
    assert per_file <= 5 < len(steps), f"an output file was listed {per_file} times in {len(steps)} steps"
    assert loop_calls <= 18 + 3 * len(steps), f"{loop_calls} ListObjectsV2 calls in {len(steps)} steps"
    print(f"{len(steps)} steps: {loop_calls} ListObjectsV2 calls, each file listed at most {per_file} times")
