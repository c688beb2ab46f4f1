"""Server-side concatenation: the plan obeys S3's part rules, and moto S3 accepts it byte for byte."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from batchpipe_core.multipart import (
    CopyPart,
    Limits,
    ManifestTooLargeError,
    MiB,
    Source,
    UploadPart,
    concatenate,
    group_parts,
    headed_order,
    joined_order,
    packing_plan,
    plan_parts,
    with_packed,
)

BUCKET = "pipeline"

# ---------------------------------------------------------------- the plan (pure)

SMALL_LIMITS = Limits(min_part=100, max_part=250, max_parts=4, max_object=10**9)


def covered_bytes(parts) -> list[tuple[str, int, int]]:
    """(source, first, last) byte ranges the parts stand for, in order."""
    ranges = []
    for part in parts:
        if isinstance(part, CopyPart):
            ranges.append((part.source.key, part.first, part.last))
        else:
            ranges.extend((s.key, 0, s.size - 1) for s in part.sources)
    return ranges


def expected_ranges(sources, limits) -> list[tuple[str, int, int]]:
    """Files of at least the minimum part first, then the small ones, each in listing order."""
    large = [(s.key, 0, s.size - 1) for s in sources if s.size >= limits.min_part]
    return large + [(s.key, 0, s.size - 1) for s in sources if 0 < s.size < limits.min_part]


def merged(ranges):
    """Adjacent ranges of one source joined, so split copies compare equal to whole ones."""
    out: list[tuple[str, int, int]] = []
    for key, first, last in ranges:
        if out and out[-1][0] == key and out[-1][2] + 1 == first:
            out[-1] = (key, out[-1][1], last)
        else:
            out.append((key, first, last))
    return out


sizes = st.lists(st.integers(min_value=0, max_value=700), max_size=40)


@settings(max_examples=300, deadline=None)
@given(sizes)
def test_plan_obeys_s3_part_rules_and_covers_every_byte_once(source_sizes):
    sources = [Source(f"f{i}", size) for i, size in enumerate(source_sizes)]
    parts = plan_parts(sources, SMALL_LIMITS)
    assert merged(covered_bytes(parts)) == expected_ranges(sources, SMALL_LIMITS)
    assert all(part.size >= SMALL_LIMITS.min_part for part in parts[:-1])
    assert all(0 < part.size <= SMALL_LIMITS.max_part for part in parts)
    # Only small sources are ever read, and the bytes read are bounded by them.
    read = [s for part in parts if isinstance(part, UploadPart) for s in part.sources]
    assert all(s.size < SMALL_LIMITS.min_part for s in read)
    assert sum(s.size for s in read) <= sum(s.size for s in sources if 0 < s.size < SMALL_LIMITS.min_part)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=100, max_value=2000), min_size=1, max_size=30))
def test_sources_of_at_least_the_minimum_part_are_never_read(source_sizes):
    parts = plan_parts([Source(f"f{i}", s) for i, s in enumerate(source_sizes)], SMALL_LIMITS)
    assert all(isinstance(part, CopyPart) for part in parts)


@settings(max_examples=200, deadline=None)
@given(sizes)
def test_groups_are_valid_uploads_of_at_most_the_maximum_part(source_sizes):
    parts = plan_parts([Source(f"f{i}", s) for i, s in enumerate(source_sizes)], SMALL_LIMITS)
    groups = group_parts(parts, SMALL_LIMITS)
    assert [p for g in groups for p in g] == parts
    for group in groups:
        assert sum(p.size for p in group) <= SMALL_LIMITS.max_part
        assert len(group) <= SMALL_LIMITS.max_parts
        assert all(p.size >= SMALL_LIMITS.min_part for p in group[:-1])
    # Every group but the last is a whole object of at least the minimum part: one part later on.
    assert all(sum(p.size for p in g) >= SMALL_LIMITS.min_part for g in groups[:-1])


def test_a_lone_small_leftover_is_copied_as_the_last_part_not_read():
    parts = plan_parts([Source("big", 300), Source("tiny", 7)], SMALL_LIMITS)
    assert parts[-1] == CopyPart(Source("tiny", 7), 0, 6)


@settings(max_examples=200, deadline=None)
@given(sizes, st.integers(min_value=1, max_value=400), st.data())
def test_packed_objects_stand_in_for_exactly_their_groups(source_sizes, budget, data):
    sources = [Source(f"part-{i:03d}", size, f"etag-{i}") for i, size in enumerate(source_sizes)]
    plan = packing_plan(sources, "packed/", [], budget, SMALL_LIMITS)
    written = [
        Source(group.key, sum(s.size for s in group.sources), "packed-etag")
        for group in plan
        if data.draw(st.booleans())
    ]
    replanned = packing_plan(sources, "packed/", written, budget, SMALL_LIMITS)
    joined = with_packed(sources, replanned, SMALL_LIMITS)

    # Every non-empty source is in the join exactly once: as itself, or inside its group's object.
    stood_for = {s.key: [s.key] for s in sources}
    stood_for.update({group.key: [s.key for s in group.sources] for group in replanned})
    assert sorted(k for source in joined for k in stood_for[source.key]) == sorted(
        s.key for s in sources if s.size
    )
    assert {s.key for s in joined if s.key.startswith("packed/")} == {s.key for s in written}
    for group in replanned:  # a group reads at most the budget plus one source
        assert sum(s.size for s in group.sources) < budget + SMALL_LIMITS.min_part


def test_an_object_packed_from_other_sources_is_not_taken_for_a_group():
    sources = [Source(f"part-{i}", 40, f"etag-{i}") for i in range(3)]
    (group,) = packing_plan(sources, "packed/", [], 1_000, SMALL_LIMITS)
    rewritten = [*sources[:2], Source("part-2", 40, "etag-2-rewritten")]

    (regrouped,) = packing_plan(rewritten, "packed/", [Source(group.key, 120, "x")], 1_000, SMALL_LIMITS)

    assert regrouped.key != group.key and regrouped.packed is None
    assert with_packed(rewritten, [regrouped], SMALL_LIMITS) == rewritten


def test_a_source_larger_than_a_part_is_copied_in_equal_ranges():
    parts = plan_parts([Source("huge", 1001)], SMALL_LIMITS)
    assert [(p.first, p.last) for p in parts] == [(0, 200), (201, 401), (402, 602), (603, 803), (804, 1000)]


# ---------------------------------------------------------------- on S3 (moto)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def reads(s3):
    """Every GetObject the code under test makes: (key, bytes returned)."""
    seen: list[tuple[str, int]] = []

    def remember_key(params, context, **kwargs):
        context["batchpipe_key"] = params.get("Key")

    def record(http_response, parsed, model, context, **kwargs):
        if http_response.status_code < 300:
            seen.append((context.get("batchpipe_key"), int(parsed["ContentLength"])))

    s3.meta.events.register("provide-client-params.s3.GetObject", remember_key)
    s3.meta.events.register("after-call.s3.GetObject", record)
    return seen


def joined_body(key="manifest.csv") -> bytes:
    """Read with a client of its own, so the check is not counted as a read of the code under test."""
    checker = boto3.client("s3", region_name="us-east-1")
    return checker.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def row_bytes(name: str, size: int) -> bytes:
    """Manifest-like rows, distinct per file, exactly ``size`` bytes."""
    line = f"src-bucket,{name}%2Fkey%20{{:09d}}\n"
    text = "".join(line.format(i) for i in range(size // len(line.format(0)) + 1)).encode()
    return text[:size]


def put_sources(s3, sizes: dict[str, int]) -> tuple[list[Source], bytes]:
    """The files, and their concatenation in the documented order (>= 5 MiB first, then the rest)."""
    sources, bodies = [], {}
    for name, size in sizes.items():
        bodies[name] = row_bytes(name, size)
        etag = s3.put_object(Bucket=BUCKET, Key=f"athena/{name}", Body=bodies[name])["ETag"]
        sources.append(Source(f"athena/{name}", size, etag))
    order = [n for n in sizes if sizes[n] >= 5 * MiB] + [n for n in sizes if sizes[n] < 5 * MiB]
    return sources, b"".join(bodies[n] for n in order)


def test_mixed_sizes_join_byte_for_byte_reading_only_small_files(s3, reads):
    sizes = {
        "0-big": 6 * MiB,
        "1-tiny": 10,
        "2-empty": 0,
        "3-small": 3 * MiB,
        "4-small": 2 * MiB + 512 * 1024,
        "5-big": 5 * MiB,
        "6-one-byte": 1,
        "7-empty": 0,
        "8-small": 4 * MiB,
    }
    sources, expected = put_sources(s3, sizes)
    result = concatenate(s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/")
    assert joined_body() == expected
    assert result.size == len(expected)
    assert result.etag == boto3.client("s3", region_name="us-east-1").head_object(
        Bucket=BUCKET, Key="manifest.csv"
    )["ETag"].strip('"')
    # The 5 MiB and larger files stayed in S3; the small ones (< 5 MiB each) were read once.
    assert sorted(k for k, _ in reads) == [
        "athena/1-tiny",
        "athena/3-small",
        "athena/4-small",
        "athena/6-one-byte",
        "athena/8-small",
    ]
    assert sum(n for _, n in reads) == sum(s for s in sizes.values() if 0 < s < 5 * MiB)


def test_files_of_at_least_5_mib_are_never_read(s3, reads):
    sources, expected = put_sources(s3, {"a": 5 * MiB, "b": 7 * MiB + 3, "c": 5 * MiB + 1})
    result = concatenate(s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/")
    assert joined_body() == expected
    assert result.parts == 3
    assert reads == []


def test_a_single_small_file_is_copied_not_read(s3, reads):
    sources, expected = put_sources(s3, {"only": 123})
    concatenate(s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/")
    assert joined_body() == expected
    assert reads == []


@pytest.mark.parametrize("head", [b"", b"bucket,key\n"], ids=["copied", "with-header"])
def test_an_object_of_one_part_takes_one_request_not_a_multipart_upload(s3, head):
    """One part needs no multipart upload (three requests): a lone small file is copied whole by
    CopyObject, or read and put after a header by PutObject; the object is the same bytes."""
    operations: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: operations.append(model.name))
    sources, expected = put_sources(s3, {"only": 3 * MiB})
    s3.put_object(Bucket=BUCKET, Key="manifest.csv", Body=b"an older object: replaced")
    operations.clear()
    result = concatenate(
        s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/", head=head
    )
    assert joined_body() == head + expected
    assert operations == (["CopyObject"] if not head else ["GetObject", "PutObject"])
    assert (result.parts, result.size) == (1, len(head + expected))
    assert result.etag == s3.head_object(Bucket=BUCKET, Key="manifest.csv")["ETag"].strip('"')


def test_only_empty_files_make_no_object(s3):
    sources, _ = put_sources(s3, {"a": 0, "b": 0})
    assert concatenate(s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="s/") is None
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="manifest.csv")


def test_past_the_part_limit_parts_are_joined_into_intermediates_first(s3, reads):
    limits = Limits(max_parts=2, max_part=12 * MiB)
    sources, expected = put_sources(s3, {"a": 5 * MiB, "b": 6 * MiB, "c": 5 * MiB, "d": 5 * MiB, "e": 100})
    result = concatenate(
        s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/", limits=limits
    )
    assert joined_body() == expected
    assert result.parts <= 2
    assert result.intermediates and all(k.startswith("scratch/") for k in result.intermediates)
    assert reads == []


def test_a_file_larger_than_a_part_is_copied_in_ranges(s3, reads):
    limits = Limits(max_part=11 * MiB)
    sources, expected = put_sources(s3, {"huge": 12 * MiB + 5, "tail": 10})
    result = concatenate(
        s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/", limits=limits
    )
    assert joined_body() == expected
    assert result.parts == 3
    assert reads == []


def test_a_failure_aborts_the_upload(s3):
    sources, _ = put_sources(s3, {"a": 5 * MiB})
    missing = [*sources, Source("athena/gone", 10), Source("athena/gone-too", 10)]
    with pytest.raises(ClientError):
        concatenate(s3, bucket=BUCKET, sources=missing, key="manifest.csv", scratch_prefix="scratch/")
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="manifest.csv")


def test_a_source_that_changed_since_listing_is_refused(s3):
    sources, _ = put_sources(s3, {"a": 5 * MiB, "b": 10, "c": 10})
    s3.put_object(Bucket=BUCKET, Key="athena/b", Body=b"0123456789")  # same size, other content
    with pytest.raises(ClientError):
        concatenate(s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/")


def test_an_object_too_large_for_s3_is_refused_before_any_request(s3):
    with pytest.raises(ManifestTooLargeError, match="narrow the filter"):
        concatenate(
            s3,
            bucket=BUCKET,
            sources=[Source("x", 6 * 1024**4)],
            key="manifest.csv",
            scratch_prefix="scratch/",
        )


# ---------------------------------------------------------------- a header in front (issue 23, §1)


@pytest.mark.parametrize(
    "sizes",
    [
        {"big": 5 * MiB},  # exactly the part minimum: read whole (its remainder is empty)
        {"big": 5 * MiB + 1},  # one byte over: the remainder is the (small) last part
        {"big": 7 * MiB, "tail": 100},  # the remainder is too small to be a non-last part: read
        {"big": 12 * MiB + 3, "small": 3 * MiB},  # the remainder stays a copy
        {"a": 6 * MiB, "b": 5 * MiB, "c": 10},
    ],
    ids=["5MiB", "5MiB+1", "7MiB+tail", "12MiB+small", "two-big+tail"],
)
def test_a_header_in_front_of_a_source_of_at_least_5_mib_reads_only_what_it_needs(s3, reads, sizes):
    """with_head turns the first 5 MiB (or up to 10 MiB) of the first copied source into an uploaded
    part after the header; that read is a Range from byte 0, never the whole object."""
    sources, expected = put_sources(s3, sizes)
    head = b"bucket,key,versionId,httpStatus,errorCode,message\n"
    result = concatenate(
        s3, bucket=BUCKET, sources=sources, key="manifest.csv", scratch_prefix="scratch/", head=head
    )
    assert joined_body() == head + expected
    assert result.size == len(head) + len(expected)
    first = max(sizes, key=lambda name: sizes[name] >= 5 * MiB)
    assert all(key == f"athena/{first}" for key, _ in reads if key != "athena/small")
    assert sum(size for key, size in reads if key == f"athena/{first}") < 2 * 5 * MiB


@pytest.mark.parametrize("offset", [0, 51], ids=["whole-sources", "sources-skip-51-bytes"])
def test_past_the_part_limit_a_header_goes_in_front_of_the_intermediates(s3, reads, offset):
    """Issue 23 §1 at the 10,000-part rule (here 3 parts): the parts are first joined into
    intermediates, then the header takes the first 5 MiB of the first intermediate by a ranged read
    (a GET without Range would return the whole intermediate and the join would refuse it)."""
    limits = Limits(max_parts=3, max_part=16 * MiB)
    sizes = {"a": 6 * MiB, "b": 5 * MiB + 7, "c": 5 * MiB, "d": 7 * MiB, "e": 100}
    put, _ = put_sources(s3, sizes)
    sources = [Source(s.key, s.size - offset, s.etag, offset=offset) for s in put]
    bodies = {s.key: row_bytes(s.key.removeprefix("athena/"), s.size + s.offset)[s.offset :] for s in sources}
    head = b"bucket,key,versionId,httpStatus,errorCode,message\n"
    result = concatenate(
        s3,
        bucket=BUCKET,
        sources=sources,
        key="joined.csv",
        scratch_prefix="scratch/",
        head=head,
        limits=limits,
    )
    assert joined_body("joined.csv") == head + b"".join(bodies[s.key] for s in joined_order(sources, limits))
    assert result.parts <= 3 and result.intermediates
    # Read: the sources under 5 MiB, and at most 10 MiB (the part behind the header) of an intermediate.
    small = {s.key for s in sources if s.size < 5 * MiB}
    assert all(key in small or key.startswith("scratch/") for key, _ in reads)
    assert sum(n for key, n in reads if key.startswith("scratch/")) <= 10 * MiB


def test_the_emulator_refuses_a_range_of_an_object_of_5_mib_or_less(s3):
    """UploadPartCopy copies a range only of an object larger than 5 MB (S3 API reference): the
    emulated S3 refuses what AWS would, so a plan that relied on it fails here too."""
    s3.put_object(Bucket=BUCKET, Key="small", Body=b"x" * 100)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="joined")["UploadId"]
    common = {"Bucket": BUCKET, "Key": "joined", "UploadId": upload, "PartNumber": 1}
    with pytest.raises(ClientError, match="InvalidRequest"):
        s3.upload_part_copy(
            **common, CopySource={"Bucket": BUCKET, "Key": "small"}, CopySourceRange="bytes=1-99"
        )
    s3.upload_part_copy(**common, CopySource={"Bucket": BUCKET, "Key": "small"})  # the whole object is fine


def test_a_lone_small_source_that_skips_a_header_is_read_not_copied_by_range(s3, reads):
    sources, expected = put_sources(s3, {"big": 6 * MiB, "small": 300})
    skipped = [sources[0], Source(sources[1].key, 280, sources[1].etag, offset=20)]
    concatenate(s3, bucket=BUCKET, sources=skipped, key="manifest.csv", scratch_prefix="scratch/")
    assert joined_body() == expected[: 6 * MiB] + expected[6 * MiB + 20 :]
    assert reads == [("athena/small", 280)]


# ---------------------------------------------------------------- files that carry the header (issue 23 §2)

HEADER = b"bucket,key,versionId,httpStatus,errorCode,message\n"


@settings(max_examples=300, deadline=None)
@given(sizes, st.integers(min_value=1, max_value=30))
def test_a_headed_plan_copies_the_first_header_and_skips_the_others(object_sizes, head_bytes):
    """Objects that each begin with a header of ``head_bytes``: the first joined is covered from byte
    0, every other from after its header; S3's part rules hold; a range is copied only of an object
    above the part minimum; and only objects whose rows are under the minimum are read."""
    limits = SMALL_LIMITS
    sources = [
        Source(f"f{i}", size - head_bytes, offset=head_bytes)
        for i, size in enumerate(object_sizes)
        if size >= head_bytes
    ]
    ordered = headed_order(sources, head_bytes, limits)
    parts = plan_parts(ordered, limits)
    order = joined_order(sources, limits)
    assert [s.key for s in ordered] == [s.key for s in order]
    expected = [(s.key, s.offset, s.offset + s.size - 1) for s in order]
    if expected:
        expected[0] = (expected[0][0], 0, expected[0][2])  # the first keeps its header
    covered = [
        (part.source.key, part.first, part.last)
        if isinstance(part, CopyPart)
        else (s.key, s.offset, s.offset + s.size - 1)
        for part in parts
        for s in ([part.source] if isinstance(part, CopyPart) else part.sources)
    ]
    assert merged(covered) == expected
    assert all(part.size >= limits.min_part for part in parts[:-1])
    assert all(0 < part.size <= limits.max_part for part in parts)
    for part in parts:
        if isinstance(part, CopyPart) and not part.whole:
            assert part.source.offset + part.source.size > limits.min_part  # S3 copies ranges of these only
        if isinstance(part, UploadPart):
            assert all(s.size < limits.min_part for s in part.sources)


def put_headed(s3, sizes: dict[str, int]) -> dict[str, bytes]:
    """Failure files that begin with HEADER, each exactly ``size`` bytes in all (header included)."""
    bodies = {}
    for name, size in sizes.items():
        bodies[name] = HEADER + row_bytes(name, size - len(HEADER))
        s3.put_object(Bucket=BUCKET, Key=f"parts/{name}", Body=bodies[name])
    return bodies


def headed_sources(s3, names) -> list[Source]:
    """The files as a headed join takes them: each from after its header."""
    sources = []
    for name in names:
        head = s3.head_object(Bucket=BUCKET, Key=f"parts/{name}")
        sources.append(
            Source(f"parts/{name}", head["ContentLength"] - len(HEADER), head["ETag"], len(HEADER))
        )
    return sources


def headed_join(s3, sources, key="joined.csv", **kwargs):
    return concatenate(
        s3,
        bucket=BUCKET,
        sources=sources,
        key=key,
        scratch_prefix="scratch/",
        head=HEADER,
        headed=True,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("sizes", "read"),
    [
        # The first file is exactly 5 MiB with its header (its rows are small, so every file is):
        # copied whole, never read; the small file after it is read from after its header.
        ({"a": 5 * MiB, "c": 300}, ["c"]),
        # Rows of exactly 5 MiB (objects of 5 MiB and a header): copied, the second from after its
        # header (a range of an object over 5 MiB), nothing read but the small file.
        ({"a": 5 * MiB + len(HEADER), "b": 5 * MiB + len(HEADER), "c": 300}, ["c"]),
        # Behind a larger file, a file of 5 MiB with its header has small rows: read, as a small file.
        ({"a": 5 * MiB, "b": 6 * MiB}, ["a"]),
        # One byte under 5 MiB with its header, behind a large file: its rows are read, as a small file's.
        ({"a": 5 * MiB - 1, "b": 6 * MiB, "c": 300}, ["a", "c"]),
        # One byte under and the first: its header and rows are the first part, read with the small one.
        ({"a": 5 * MiB - 1, "c": 300}, ["a", "c"]),
        # Rows one byte under 5 MiB but 5 MiB with the header, and first: copied whole, never read.
        ({"a": 5 * MiB - 1 + len(HEADER), "c": 300}, ["c"]),
        # A lone small file: copied whole with its header (CopyObject), nothing read.
        ({"a": 300}, []),
    ],
    ids=[
        "5MiB-with-header",
        "5MiB-of-rows",
        "5MiB-behind-a-larger",
        "1-byte-under-behind",
        "1-byte-under-first",
        "rows-1-under",
        "lone",
    ],
)
def test_a_headed_join_reads_no_header_and_no_file_of_5_mib(s3, reads, sizes, read):
    bodies = put_headed(s3, sizes)
    sources = headed_sources(s3, sizes)
    order = [s.key.removeprefix("parts/") for s in joined_order(sources)]

    result = headed_join(s3, sources)

    expected = HEADER + b"".join(bodies[name][len(HEADER) :] for name in order)
    assert joined_body("joined.csv") == expected
    assert result.size == len(expected)
    assert sorted({key for key, _ in reads}) == [f"parts/{name}" for name in read]
    # What is read is the small files' rows, or all of a small first file: never 5 MiB of anything.
    assert all(size < 5 * MiB for _, size in reads)


def test_a_packed_group_keeps_one_header_and_the_join_of_it_reads_nothing(s3, reads):
    """PackParts packs small files (read, each from after its header but the first) into an object
    that begins with the header like a part file; the merge then copies it and a large file inside
    S3 without reading either."""
    bodies = put_headed(s3, {"big": 6 * MiB, "s1": 3 * MiB, "s2": 2 * MiB + 500, "s3": 400})
    small = headed_sources(s3, ["s1", "s2", "s3"])
    packed = headed_join(s3, small, key="packed/g0.csv")
    rows = b"".join(bodies[name][len(HEADER) :] for name in ("s1", "s2", "s3"))
    assert joined_body("packed/g0.csv") == HEADER + rows
    assert sum(size for _, size in reads) == sum(len(bodies[n]) for n in ("s1", "s2", "s3")) - 2 * len(HEADER)
    reads.clear()

    joined = [
        *headed_sources(s3, ["big"]),
        Source("packed/g0.csv", packed.size - len(HEADER), packed.etag, len(HEADER)),
    ]
    headed_join(s3, joined)

    assert joined_body("joined.csv") == bodies["big"] + rows
    assert reads == []


def test_past_the_part_limit_a_headed_join_reads_nothing(s3, reads):
    """Intermediates first (3 parts, here at most 2): the first keeps the first file's header."""
    limits = Limits(max_parts=2, max_part=16 * MiB)
    bodies = put_headed(s3, {"a": 6 * MiB, "b": 5 * MiB + 60, "c": 7 * MiB})
    result = headed_join(s3, headed_sources(s3, bodies), limits=limits)
    assert joined_body("joined.csv") == bodies["a"] + bodies["b"][len(HEADER) :] + bodies["c"][len(HEADER) :]
    assert result.intermediates and reads == []


def test_a_headed_join_refuses_a_source_that_does_not_skip_exactly_the_header():
    with pytest.raises(ValueError, match="skips exactly its header"):
        headed_order([Source("a", 10, offset=3)], len(HEADER))
