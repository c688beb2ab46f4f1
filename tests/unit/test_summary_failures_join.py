"""The run's failures file is joined inside S3 from the attempts' files, one header in front.

Summarize must not stream millions of failure rows through a Lambda: files of 5 MiB or more (S3's
smallest multipart part) stay in S3 (``UploadPartCopy``), the first with its header, the others from
after theirs; only each file's header line is read, and the files under 5 MiB.
"""

from __future__ import annotations

import itertools
import types

import boto3
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core.multipart import CopyPart, Limits, MiB, Source, UploadPart, plan_parts, with_head
from batchpipe_core.report import FAILURE_HEADER
from batchpipe_core.summary import write_run_failures
from tests.unit import test_multipart

BUCKET = test_multipart.BUCKET
HEADER = (",".join(FAILURE_HEADER) + "\n").encode()
# The moto bucket and the GetObject recorder of the multipart tests.
s3 = test_multipart.s3
reads = test_multipart.reads


def failures_file(s3, key: str, size: int, tag: str) -> bytes:
    """A failures file of about ``size`` bytes: the header, then distinct rows."""
    line = f'src,{tag}/key {{:09d}}.jpg,,404,NoSuchKey,"gone, {tag}"\n'
    rows = "".join(line.format(i) for i in range(max(1, size // len(line.format(0)))))
    body = HEADER + rows.encode()
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return body


def record(permanent: str | None = None, exhausted: str | None = None):
    return types.SimpleNamespace(permanentFailures=permanent, retriesExhausted=exhausted)


def test_large_failure_files_are_joined_in_s3_with_one_header(s3, reads):
    prefix = "runs/r/e/20261120T150000.000Z/"
    bodies = {
        "attempt-1/permanent-failures.csv": failures_file(
            s3, prefix + "attempt-1/permanent-failures.csv", 12 * MiB, "a"
        ),
        "attempt-2/permanent-failures.csv": failures_file(
            s3, prefix + "attempt-2/permanent-failures.csv", 100, "b"
        ),
        "attempt-3/permanent-failures.csv": failures_file(
            s3, prefix + "attempt-3/permanent-failures.csv", 7 * MiB, "c"
        ),
        "attempt-3/retries-exhausted.csv": failures_file(
            s3, prefix + "attempt-3/retries-exhausted.csv", 6 * MiB, "d"
        ),
    }
    uri = lambda name: f"s3://{BUCKET}/{prefix}{name}"  # noqa: E731
    records = [
        record(uri("attempt-1/permanent-failures.csv")),
        record(uri("attempt-2/permanent-failures.csv")),
        record(uri("attempt-3/permanent-failures.csv"), uri("attempt-3/retries-exhausted.csv")),
    ]

    written = write_run_failures(s3, BUCKET, prefix, records)

    assert written == f"s3://{BUCKET}/{prefix}permanent-failures.csv"
    joined = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket=BUCKET, Key=prefix + "permanent-failures.csv"
    )
    lines = joined["Body"].read().splitlines(keepends=True)
    assert lines[0] == HEADER and lines.count(HEADER) == 1
    expected_rows = [line for body in bodies.values() for line in body.splitlines(keepends=True)[1:]]
    assert sorted(lines[1:]) == sorted(expected_rows)  # every row once, none lost
    total = sum(len(b) for b in bodies.values())
    # Read: the headers (one 4 KiB range each) and the small file's rows, nothing of the large files.
    assert sum(n for _, n in reads) <= 4 * 4096 + 100 < total / 100


def test_past_the_part_limit_the_run_failures_keep_one_header_and_every_row(s3, reads):
    """The same join where the parts outnumber S3's part limit (here 3): intermediates first, the
    first file's header at the front of the first one, every other file's skipped."""
    prefix = "runs/r/e/20261120T150000.000Z/"
    names = [f"attempt-{n}/permanent-failures.csv" for n in (1, 2, 3, 4)]
    bodies = [
        failures_file(s3, prefix + name, size, tag)
        for name, size, tag in zip(names, (6 * MiB, 5 * MiB + 9, 7 * MiB, 300), "abcd", strict=True)
    ]
    records = [record(f"s3://{BUCKET}/{prefix}{name}") for name in names]

    write_run_failures(s3, BUCKET, prefix, records, limits=Limits(max_parts=3, max_part=16 * MiB))

    lines = test_multipart.joined_body(prefix + "permanent-failures.csv").splitlines(keepends=True)
    assert lines[0] == HEADER and lines.count(HEADER) == 1
    assert sorted(lines[1:]) == sorted(line for body in bodies for line in body.splitlines(keepends=True)[1:])
    # The scratch intermediates are removed once the file is whole.
    left = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    assert all(not o["Key"].startswith(prefix + "failures-parts/") for o in left["Contents"])


def test_no_failures_gives_the_header_alone(s3):
    prefix = "runs/r/e/s/"
    failures_file(s3, prefix + "attempt-1/permanent-failures.csv", 0, "x")
    s3.put_object(Bucket=BUCKET, Key=prefix + "attempt-1/permanent-failures.csv", Body=HEADER)
    write_run_failures(
        s3, BUCKET, prefix, [record(f"s3://{BUCKET}/{prefix}attempt-1/permanent-failures.csv")]
    )
    body = s3.get_object(Bucket=BUCKET, Key=prefix + "permanent-failures.csv")["Body"].read()
    assert body == HEADER


LIMITS = Limits(min_part=100, max_part=250, max_parts=10_000, max_object=10**9)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 700), min_size=1, max_size=12), offset=st.integers(0, 20))
def test_a_head_leads_a_plan_that_still_obeys_s3s_part_rules(sizes, offset) -> None:
    sources = [
        Source(f"f{i}", max(0, size - offset), offset=offset) for i, size in enumerate(sizes) if size > offset
    ]
    head = b"h" * 30
    parts = with_head(head, plan_parts(sources, LIMITS), LIMITS)
    if not sources:
        assert parts == []
        return
    assert isinstance(parts[0], UploadPart) and parts[0].head == head
    assert all(p.size >= LIMITS.min_part for p in parts[:-1])  # only the last part may be small
    # Every byte of every source once, in place: the ranges cover [offset, offset + size) exactly.
    covered: dict[str, list[tuple[int, int]]] = {}
    for part in parts:
        pieces = (
            [(part.source, part.first, part.last)]
            if isinstance(part, CopyPart)
            else [(s, s.offset, s.offset + s.size - 1) for s in part.sources]
        )
        for source, first, last in pieces:
            covered.setdefault(source.key, []).append((first, last))
    for source in sources:
        spans = sorted(covered[source.key])
        assert spans[0][0] == source.offset and spans[-1][1] == source.offset + source.size - 1
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans))
    # What is read for the head is bounded: 2 * min_part beyond the small sources.
    read = sum(p.size - len(p.head) for p in parts if isinstance(p, UploadPart))
    small = sum(s.size for s in sources if s.size < LIMITS.min_part)
    assert read <= small + 2 * LIMITS.min_part


def test_a_file_whose_header_is_not_this_versions_gets_this_versions_in_front(s3, reads):
    """A failures file written with another header (an older version's) cannot lend its header to
    the join: the current header goes in front, and every file's own is skipped."""
    prefix = "runs/r/e/20261120T150000.000Z/"
    old = b"bucket,key,versionId,status,errorCode,message\n"
    body = failures_file(s3, prefix + "attempt-1/permanent-failures.csv", 6 * MiB, "a")
    s3.put_object(
        Bucket=BUCKET, Key=prefix + "attempt-1/permanent-failures.csv", Body=old + body[len(HEADER) :]
    )
    write_run_failures(
        s3, BUCKET, prefix, [record(f"s3://{BUCKET}/{prefix}attempt-1/permanent-failures.csv")]
    )
    assert test_multipart.joined_body(prefix + "permanent-failures.csv") == body
