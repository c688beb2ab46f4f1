"""The join's regroup level (issue 23 §3): its plan at the boundaries, and that a partition read
through the regroup objects gets exactly the rows it gets reading every scattered window itself.

Real moto S3 and the real writer and reader of the scatter's layouts (strided and indexed); the
windows are hand-made: rows of chosen partitions, so every partition's expected rows are known.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core import fanout  # noqa: E402
from batchpipe_core.csv_upload import CsvUpload  # noqa: E402
from batchpipe_core.errors import TransientError  # noqa: E402

BUCKET = "pipeline-bucket"
PREFIX = "runs/r/attempt-1/parts/join/"


# ------------------------------------------------------------------------------ the plan, pure


def test_no_regroup_up_to_the_fan_in_and_one_past_it():
    partitions = 10_000  # sqrt: 100, so the fan-in (64) sets k
    assert fanout.regroup_fan_in(64, partitions, 64) is None  # W = F: partitions read the windows
    assert fanout.regroup_fan_in(65, partitions, 64) == 64  # W = F + 1
    assert fanout.join_reads(65, partitions, 64) == 65 * 64 + 64 * 2 + partitions * 2
    assert fanout.join_reads(65, partitions, 64) < fanout.join_reads(65, partitions, None) == 650_000


def test_no_regroup_of_one_window_one_partition_or_one_group():
    assert fanout.regroup_fan_in(1, 10_000, 64) is None  # one window
    assert fanout.regroup_fan_in(10_000, 1, 64) is None  # one partition
    assert fanout.regroup_fan_in(10_000, 3, 64) is None  # isqrt(3) = 1: one group
    # Two groups of two, batches of two: 2W + 6 x W/2 = 5W reads, not fewer than 4W.
    assert fanout.regroup_fan_in(10_000, 4, 64) is None
    assert fanout.regroup_fan_in(10_000, 9, 64) == 3  # 3W + 12 x W/3 = 7W < 9W


def test_k_is_about_the_square_root_of_the_partitions_at_the_default_bounds():
    # docs/PERFORMANCE.md: 200 windows x 252 partitions at 1e9 objects, 4,000 x 5,026 at 2e10.
    assert fanout.regroup_fan_in(200, 252, fanout.REGROUP_FAN_IN) == 15
    assert fanout.join_reads(200, 252, 15) == 6_738
    assert fanout.regroup_fan_in(4_000, 5_026, fanout.REGROUP_FAN_IN) == 64
    assert fanout.join_reads(4_000, 5_026, 64) == 576_670


def test_group_partitions_are_adjacent_and_tile_the_partitions():
    for partitions in (4, 9, 10, 98, 252):
        for groups in range(2, math.isqrt(partitions) + 1):
            members = [fanout.group_partitions(g, groups, partitions) for g in range(groups)]
            assert [p for r in members for p in r] == list(range(partitions))
            assert all(len(r) >= 1 for r in members)
            for g, r in enumerate(members):
                assert all(fanout.group_of(p, groups, partitions) == g for p in r)


def test_batches_tile_every_file_in_the_order_the_join_reads_it():
    mib = 1 << 20
    sizes = [("manifest", 0, 68 * mib), ("report", 0, 93 * mib), ("report", 1, 0)]
    regroup = fanout.plan_regroup(sizes, 1_000_000, 98, part_rows=10_000, fan_in=8)
    assert regroup is not None
    groups, batches = regroup
    assert groups == 8
    by_file: dict[tuple[str, int], list[fanout.Batch]] = {}
    for batch in batches:
        by_file.setdefault((batch.side, batch.file), []).append(batch)
    assert list(by_file) == [("manifest", 0), ("report", 0), ("report", 1)]
    for batches in by_file.values():
        assert batches[0].start == 0 and batches[-1].end is None
        assert all(a.end == b.start for a, b in itertools.pairwise(batches))
    # A window of 10,000 rows of 71 B (the manifest's) is ~0.68 MiB: batches of 8 such windows.
    assert len(by_file[("manifest", 0)]) == math.ceil(68 * mib / (8 * 10_000 * 71))
    # Too few windows for the fan-in: no regroup.
    assert fanout.plan_regroup(sizes, 1_000_000, 98, part_rows=10_000_000, fan_in=8) is None


# ------------------------------------------------------------------- the regroup, against moto


@pytest.fixture
def s3(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def plan(partitions: int, groups: int, batches: list[fanout.Batch]) -> fanout.Plan:
    ref = fanout.FileRef(bucket=BUCKET, key="manifest.csv")
    return fanout.Plan(
        mode="join",
        bucket=BUCKET,
        prefix=PREFIX,
        attemptPrefix="runs/r/attempt-1/",
        attempt=1,
        lastAttempt=False,
        fields=2,
        scope="AllTasks",
        cancelledBy=None,
        manifest=ref,
        results=[ref],
        report=None,
        objects=None,
        partitions=partitions,
        absent="notRun",
        notRunMessage="not run",
        partRows=10,
        joinRows=10,
        regroup=fanout.Regroup(groups=groups, batches=len(batches)),
        batches=batches,
    )


def write_window(s3, side: str, offset: int, rows: list[int], partitions: int, layout: str) -> None:
    """A scattered window of ``rows`` (each the partition of one row), written by the scatter's own
    writer: each row names its window and place, so every row is told apart."""
    spill = fanout._ScatterSpill(partitions)
    with spill:
        for place, partition in enumerate(rows):
            spill.writer(partition).writerow([BUCKET, f"{side}/ünï,{offset}/{place}", "x" * (place % 7)])
        stride = spill.layout()  # every row spilled to the file; then the layout asked for
        stride = stride if layout == "stride" else None
        name = "indexed" if stride is None else f"stride-{stride}"
        upload = CsvUpload(s3, BUCKET, f"{PREFIX}scatter/{side}-00000-{offset:015d}.{name}.bin")
        spill.write_to(upload, stride)
        upload.close()


def direct_rows(s3, the_plan: fanout.Plan, partition: int) -> bytes:
    sources = sorted(
        s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}scatter/").get("Contents", []),
        key=lambda o: o["Key"],
    )
    out = b""
    for source in sources:
        body = fanout._scattered_rows(s3, BUCKET, source["Key"], partition, the_plan.partitions)
        out += body.read() if body is not None else b""
    return out


def regrouped_rows(s3, the_plan: fanout.Plan, partition: int) -> tuple[bytes, int]:
    sources, windows = fanout._regrouped_sources(s3, the_plan, partition)
    out = b""
    for _, key, place, places in sources:
        body = fanout._scattered_rows(s3, BUCKET, key, place, places)
        out += body.read() if body is not None else b""
    return out, windows


def regroup_all(s3, the_plan: fanout.Plan) -> None:
    assert the_plan.regroup is not None
    for group in range(the_plan.regroup.groups):
        for number, batch in enumerate(the_plan.batches):
            fanout._regroup(s3, the_plan, fanout.RegroupItem(group=group, batch=number, source=batch))


@st.composite
def joins(draw):
    partitions = draw(st.integers(4, 24))
    groups = draw(st.integers(2, partitions))
    windows = draw(st.integers(1, 7))
    offsets = [100 * i for i in range(windows)]
    rows = [draw(st.lists(st.integers(0, partitions - 1), max_size=40)) for _ in offsets]
    layouts = [draw(st.sampled_from(["stride", "indexed"])) for _ in offsets]
    # Batches: cut points anywhere in the file's bytes (windows start at 0, 100, ...).
    cuts = sorted(set(draw(st.lists(st.integers(1, 100 * windows + 50), max_size=4))))
    starts = [0, *cuts]
    batches = [
        fanout.Batch(side="manifest", file=0, start=a, end=b)
        for a, b in zip(starts, [*cuts, None], strict=True)
    ]
    return partitions, groups, offsets, rows, layouts, batches


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(joins())
def test_a_partition_reads_through_the_regroup_exactly_the_rows_it_reads_directly(s3, join):
    partitions, groups, offsets, rows, layouts, batches = join
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]:
        s3.delete_object(Bucket=BUCKET, Key=key)
    for offset, window_rows, layout in zip(offsets, rows, layouts, strict=True):
        write_window(s3, "manifest", offset, window_rows, partitions, layout)
    the_plan = plan(partitions, groups, batches)
    regroup_all(s3, the_plan)
    for partition in range(partitions):
        expected = direct_rows(s3, the_plan, partition)
        got, windows = regrouped_rows(s3, the_plan, partition)
        assert got == expected  # the same bytes, in the same order
        assert windows == len(offsets)
        assert expected.count(b"\n") == sum(r.count(partition) for r in rows)


def test_a_retried_regroup_invocation_leaves_the_same_outputs(s3):
    partitions = 12
    for offset in (0, 100, 200, 300):
        write_window(
            s3,
            "manifest",
            offset,
            [(offset // 100 + i) % partitions for i in range(50)],
            partitions,
            "stride",
        )
    batches = [
        fanout.Batch(side="manifest", file=0, start=0, end=150),
        fanout.Batch(side="manifest", file=0, start=150, end=None),
    ]
    the_plan = plan(partitions, 3, batches)

    def outputs() -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}regroup/")["Contents"]
        return {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}

    regroup_all(s3, the_plan)
    first = outputs()
    assert len(first) == 3 * 2 and all(".manifest.w2." in key for key in first)  # two windows a batch
    fanout._regroup(s3, the_plan, fanout.RegroupItem(group=1, batch=0, source=batches[0]))  # retried
    regroup_all(s3, the_plan)  # every one retried
    assert outputs() == first


def test_a_missing_regroup_object_fails_the_partition_loudly(s3):
    partitions = 8
    for offset in (0, 100, 200):
        write_window(s3, "manifest", offset, list(range(partitions)) * 3, partitions, "indexed")
    batches = [
        fanout.Batch(side="manifest", file=0, start=0, end=100),
        fanout.Batch(side="manifest", file=0, start=100, end=None),
    ]
    the_plan = plan(partitions, 2, batches)
    regroup_all(s3, the_plan)
    lost = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}regroup/g00001-b00001")["Contents"][0]["Key"]
    s3.delete_object(Bucket=BUCKET, Key=lost)
    assert regrouped_rows(s3, the_plan, 0)[1] == 3  # group 0 is whole
    with pytest.raises(TransientError, match="1 of group 1's 2 regroup objects"):
        regrouped_rows(s3, the_plan, partitions - 1)
