"""Every concatenation at S3's real limits, where the rules change: 5 MiB (part minimum; a byte range
of an object can be copied only above 5 MB), 5 GiB (part maximum), 10,000 parts.

Terabytes cannot be held in a test, so the joins run against a ledger S3: it checks each request
against the documented rules (S3 User Guide, "Amazon S3 multipart upload limits"; S3 API reference,
UploadPartCopy ``x-amz-copy-source-range``, CopyObject "up to 5 GB", GetObject ``Range``) and,
instead of bytes, keeps where each byte of an object came from - a byte range of a source, or bytes
the code uploaded after reading them. The joined object's provenance must be the header, then every source's bytes once, in
``joined_order``. Reads return zero bytes of the right length, and are attributed to the upload that
follows them (the ledger runs the parts one at a time, ``Limits(concurrency=1)``).

The joins under test are multipart.concatenate with a header (an attempt's permanent failures, the
run's failures file: sources that skip a header have an offset) and without (the manifest, the retry
manifest, the packed groups); all go through the same function, so the ledger checks them all.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpipe_core.multipart import GiB, Limits, MiB, Source, concatenate, joined_order

S3 = Limits(concurrency=1)  # S3's real limits; parts one at a time so reads belong to the next upload
HEADER = b"bucket,key,versionId,httpStatus,errorCode,message\n"

Segment = tuple  # ("src", key, first, last) or ("lit", bytes)


class S3Refused(Exception):
    pass


def merged(segments: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for segment in segments:
        last = out[-1] if out else None
        if last and last[0] == segment[0] == "src" and last[1] == segment[1] and last[3] + 1 == segment[2]:
            out[-1] = ("src", last[1], last[2], segment[3])
        elif last and last[0] == segment[0] == "lit":
            out[-1] = ("lit", last[1] + segment[1])
        else:
            out.append(segment)
    return out


def length(segment: Segment) -> int:
    return segment[3] - segment[2] + 1 if segment[0] == "src" else len(segment[1])


def sliced(segments: list[Segment], first: int, last: int) -> list[Segment]:
    """Bytes first..last (inclusive) of an object made of ``segments``."""
    out, position = [], 0
    for segment in segments:
        size = length(segment)
        lo, hi = max(first, position), min(last, position + size - 1)
        if lo <= hi:
            if segment[0] == "src":
                out.append(("src", segment[1], segment[2] + lo - position, segment[2] + hi - position))
            else:
                out.append(("lit", segment[1][lo - position : hi - position + 1]))
        position += size
    return out


@dataclass
class Upload:
    key: str
    parts: dict[int, list[Segment]] = field(default_factory=dict)


class LedgerS3:
    """The requests concatenate makes, checked against S3's documented rules, with provenance."""

    def __init__(self) -> None:
        self.objects: dict[str, list[Segment]] = {}
        self.uploads: dict[str, Upload] = {}
        self.read_since_upload: list[Segment] = []
        self.bytes_read = 0
        self.requests = 0

    def put(self, key: str, size: int) -> Source:
        self.objects[key] = [("src", key, 0, size - 1)] if size else []
        return Source(key, size, self.etag(key))

    def size(self, key: str) -> int:
        return sum(length(s) for s in self.objects[key])

    def etag(self, key: str) -> str:
        return f"etag-{key}-{len(self.objects[key])}"

    def create_multipart_upload(self, Bucket: str, Key: str) -> dict:
        self.requests += 1
        upload_id = f"u{len(self.uploads)}"
        self.uploads[upload_id] = Upload(Key)
        return {"UploadId": upload_id}

    def _part_number(self, number: int) -> None:
        if not 1 <= number <= 10_000:
            raise S3Refused(f"part number {number}: 1 to 10,000")

    def upload_part(self, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes) -> dict:
        self.requests += 1
        self._part_number(PartNumber)
        reads, self.read_since_upload = self.read_since_upload, []
        from_reads = sum(length(s) for s in reads)
        if from_reads > len(Body):
            raise AssertionError("the part holds less than what was read for it")
        head = Body[: len(Body) - from_reads]
        self.uploads[UploadId].parts[PartNumber] = ([("lit", head)] if head else []) + reads
        return {"ETag": f"p{PartNumber}"}

    def upload_part_copy(
        self,
        Bucket: str,
        Key: str,
        UploadId: str,
        PartNumber: int,
        CopySource: dict,
        CopySourceRange: str | None = None,
        CopySourceIfMatch: str | None = None,
    ) -> dict:
        self.requests += 1
        self._part_number(PartNumber)
        source = CopySource["Key"]
        size = self.size(source)
        if CopySourceIfMatch is not None and CopySourceIfMatch != self.etag(source):
            raise S3Refused("PreconditionFailed")
        if CopySourceRange is None:
            first, last = 0, size - 1
        else:
            if size <= 5 * MiB:
                raise S3Refused(f"a range of {source} ({size} bytes): only of objects larger than 5 MB")
            first, last = map(int, CopySourceRange.removeprefix("bytes=").split("-"))
            if not 0 <= first <= last < size:
                raise S3Refused(f"range {first}-{last} of {size} bytes")
        self.uploads[UploadId].parts[PartNumber] = sliced(self.objects[source], first, last)
        return {"CopyPartResult": {"ETag": f"p{PartNumber}"}}

    def complete_multipart_upload(self, Bucket: str, Key: str, UploadId: str, MultipartUpload: dict) -> dict:
        self.requests += 1
        upload = self.uploads.pop(UploadId)
        numbers = [p["PartNumber"] for p in MultipartUpload["Parts"]]
        if numbers != list(range(1, len(numbers) + 1)) or set(numbers) != set(upload.parts):
            raise S3Refused(f"parts {numbers[:5]}... do not match the uploaded ones")
        if len(numbers) > 10_000:
            raise S3Refused(f"{len(numbers)} parts")
        sizes = [sum(length(s) for s in upload.parts[n]) for n in numbers]
        if any(size < 5 * MiB for size in sizes[:-1]):
            raise S3Refused("EntityTooSmall: a part before the last is under 5 MiB")
        if any(size > 5 * GiB for size in sizes):
            raise S3Refused("EntityTooLarge: a part over 5 GiB")
        self.objects[Key] = merged([s for n in numbers for s in upload.parts[n]])
        return {"ETag": f'"{self.etag(Key)}"'}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> dict:
        self.requests += 1
        if len(Body) > 5 * 1000**3:
            raise S3Refused("EntityTooLarge: PutObject of over 5 GB")
        reads, self.read_since_upload = self.read_since_upload, []
        from_reads = sum(length(s) for s in reads)
        if from_reads > len(Body):
            raise AssertionError("the object holds less than what was read for it")
        head = Body[: len(Body) - from_reads]
        self.objects[Key] = merged(([("lit", head)] if head else []) + reads)
        return {"ETag": f'"{self.etag(Key)}"'}

    def copy_object(
        self,
        Bucket: str,
        Key: str,
        CopySource: dict,
        MetadataDirective: str,
        CopySourceIfMatch: str | None = None,
    ) -> dict:
        self.requests += 1
        source = CopySource["Key"]
        if CopySourceIfMatch is not None and CopySourceIfMatch != self.etag(source):
            raise S3Refused("PreconditionFailed")
        if self.size(source) > 5 * 1000**3:  # S3 API reference, CopyObject: "up to 5 GB"
            raise S3Refused(f"CopyObject of {source}: over 5 GB")
        self.objects[Key] = list(self.objects[source])
        return {"CopyObjectResult": {"ETag": f'"{self.etag(Key)}"'}}

    def abort_multipart_upload(self, Bucket: str, Key: str, UploadId: str) -> None:
        self.uploads.pop(UploadId, None)

    def get_object(self, Bucket: str, Key: str, Range: str | None = None, IfMatch: str | None = None) -> dict:
        self.requests += 1
        if IfMatch is not None and IfMatch != self.etag(Key):
            raise S3Refused("PreconditionFailed")
        size = self.size(Key)
        first, last = (0, size - 1) if Range is None else map(int, Range.removeprefix("bytes=").split("-"))
        last = min(last, size - 1)
        segments = sliced(self.objects[Key], first, last)
        self.read_since_upload.extend(segments)
        self.bytes_read += last - first + 1
        return {"Body": _Zeros(last - first + 1)}


class _Zeros:
    def __init__(self, size: int) -> None:
        self.size = size

    def read(self) -> bytes:
        return bytes(self.size)


def join(ledger: LedgerS3, sources: list[Source], head: bytes) -> list[Segment]:
    result = concatenate(
        ledger, bucket="b", sources=sources, key="joined", scratch_prefix="scratch/", limits=S3, head=head
    )
    assert result is not None
    return ledger.objects["joined"]


def expected(sources: list[Source], head: bytes) -> list[Segment]:
    body = [("src", s.key, s.offset, s.offset + s.size - 1) for s in joined_order(sources, S3)]
    return merged(([("lit", head)] if head else []) + body)


def with_offsets(ledger: LedgerS3, sizes: list[int], offsets: list[int]) -> list[Source]:
    """Objects of ``sizes``; each source skips its object's first ``offset`` bytes (a header)."""
    sources = []
    for index, (size, offset) in enumerate(zip(sizes, itertools.cycle(offsets), strict=False)):
        whole = ledger.put(f"src/{index:05d}", size + offset)
        sources.append(Source(whole.key, size, whole.etag, offset))
    return sources


BOUNDARIES = [
    1,
    5 * MiB - 1,
    5 * MiB,
    5 * MiB + 1,
    10 * MiB - 1,
    10 * MiB,
    10 * MiB + 1,
    5 * GiB - 1,
    5 * GiB,
    5 * GiB + 1,
    10 * GiB + 1,
]


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.sampled_from(BOUNDARIES) | st.integers(1, 12 * MiB), min_size=1, max_size=12),
    offsets=st.lists(st.sampled_from([0, 0, 1, 51, 4096]), min_size=1, max_size=3),
    head=st.sampled_from([b"", HEADER]),
)
def test_every_join_at_the_boundaries_obeys_s3_and_holds_every_byte_once(sizes, offsets, head):
    ledger = LedgerS3()
    sources = with_offsets(ledger, sizes, offsets)
    assert join(ledger, sources, head) == expected(sources, head)
    # What is read: the small sources, and for a header at most 10 MiB of the first copied one.
    small = sum(s.size for s in sources if s.size < 5 * MiB)
    assert ledger.bytes_read <= small + 10 * MiB


@pytest.mark.parametrize("head", [b"", HEADER], ids=["no-header", "header"])
@pytest.mark.parametrize("count", [9_999, 10_000, 10_001])
def test_joins_at_the_10000_part_limit(count, head):
    """10,000 parts of 10 MiB are one upload; a header in front splits the first part in two (5 MiB
    read and uploaded after the header, 5 MiB copied), so with it the join needs intermediates at
    10,000 already; past the limit it always does."""
    ledger = LedgerS3()
    sources = [ledger.put(f"src/{i:05d}", 10 * MiB) for i in range(count)]
    assert join(ledger, sources, head) == expected(sources, head)
    assert not ledger.uploads  # every upload completed
    assert ledger.bytes_read <= 10 * MiB


def test_a_source_past_5_gib_is_copied_in_ranges_and_one_of_exactly_5_gib_whole():
    ledger = LedgerS3()
    sources = [ledger.put("huge", 15 * GiB + 7), ledger.put("max", 5 * GiB), ledger.put("tail", 3)]
    assert join(ledger, sources, HEADER) == expected(sources, HEADER)
    assert ledger.bytes_read <= 10 * MiB + 3
