"""Join S3 objects into one, server-side: multipart upload whose parts are ``UploadPartCopy`` ranges.

S3's rules (S3 User Guide, "Amazon S3 multipart upload limits"): every part but the last is at least
5 MiB, a part is at most 5 GiB, an upload has at most 10,000 parts; and ``UploadPartCopy`` copies a
byte range only from a source object larger than 5 MB (S3 API reference, UploadPartCopy:
``x-amz-copy-source-range``), a whole object of any size. So a source of at least 5 MiB is copied as
one part (or several ranges if it exceeds 5 GiB) and its bytes never leave S3. A source under 5 MiB
cannot be a part unless it is the last one, so consecutive small sources are read and uploaded
together as one part of at least 5 MiB; what the process reads is therefore bounded by the small
sources alone (each under 5 MiB) and is nothing when every source is at least 5 MiB, except that a
single leftover small source is copied whole as the last part (read, if it skips a header: a range
of a small object cannot be copied). When the plan needs more than 10,000 parts, consecutive parts
are first joined (the same way) into intermediate objects of at most 5 GiB, each of which is then
one part.

A ``head`` (a CSV header) can lead the result; a source's ``offset`` skips its own header. Where
every source's object begins with that very header (``headed``), the first source joined keeps its
own, so the header is copied with it inside S3 and nothing is read for it (:func:`headed_order`);
otherwise ``head`` joins the first part (:func:`with_head`), which reads up to 10 MiB of it. A
result of one part takes one request instead of a multipart upload's three: PutObject of what was
read, or CopyObject of a whole source object.

The planning is pure (:func:`plan_parts`, :func:`group_parts`, :func:`with_head`); :func:`concatenate`
does the requests.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from batchpipe_core.errors import BatchPipeError
from batchpipe_core.listing import object_pages

MiB = 1024**2
GiB = 1024**3
TiB = 1024**4


@dataclass(frozen=True)
class Limits:
    """S3's multipart limits (smaller values let tests reach every branch with little data)."""

    min_part: int = 5 * MiB
    max_part: int = 5 * GiB
    max_parts: int = 10_000
    max_object: int = 5 * TiB
    concurrency: int = 8


S3_LIMITS = Limits()


@dataclass(frozen=True)
class Source:
    """``size`` bytes of object ``key`` from byte ``offset`` on (offset > 0 skips e.g. a CSV header).

    A source given to the planner runs to its object's end, so its object has ``offset + size``
    bytes (what decides whether a range of it may be copied); only ``with_head`` makes shorter ones,
    and those are read, never copied."""

    key: str
    size: int
    etag: str | None = None
    offset: int = 0


@dataclass(frozen=True)
class CopyPart:
    """Bytes ``first``..``last`` (inclusive) of one source, copied inside S3."""

    source: Source
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def whole(self) -> bool:
        """The part is its whole source object: copied without a range."""
        return self.first == 0 and self.last == self.source.offset + self.source.size - 1


@dataclass(frozen=True)
class UploadPart:
    """Small sources read by this process and uploaded as one part, in order, after ``head``."""

    sources: tuple[Source, ...]
    head: bytes = b""

    @property
    def size(self) -> int:
        return len(self.head) + sum(source.size for source in self.sources)


Part = CopyPart | UploadPart


@dataclass
class Concatenated:
    bucket: str
    key: str
    etag: str
    size: int
    parts: int
    intermediates: list[str] = field(default_factory=list)


class ManifestTooLargeError(BatchPipeError):
    """The joined object would exceed what one S3 object can hold."""


def plan_parts(sources: Sequence[Source], limits: Limits = Limits()) -> list[Part]:
    """The parts that make one object of the non-empty ``sources``.

    Sources of at least ``min_part`` come first, then the smaller ones, each kind in the given order
    (a manifest's row order means nothing to S3 Batch Operations; grouping the small ones keeps the
    reads to them alone).
    """
    parts: list[Part] = []
    pending: list[Source] = []
    for source in joined_order(sources, limits):
        if source.size >= limits.min_part:
            parts.extend(_ranges(source, limits))
            continue
        pending.append(source)
        if sum(s.size for s in pending) >= limits.min_part:
            parts.append(UploadPart(tuple(pending)))
            pending = []
    if len(pending) == 1 and pending[0].offset == 0:
        # The last part may be small, so a lone small source need not be read: it is copied whole
        # (a range of an object under 5 MB cannot be copied, so one that skips a header is read).
        parts.append(CopyPart(pending[0], 0, pending[0].size - 1))
    elif pending:
        parts.append(UploadPart(tuple(pending)))
    return parts


def _ranges(source: Source, limits: Limits) -> list[CopyPart]:
    """Equal ranges no larger than ``max_part`` (each at least ``max_part / 2``, so >= ``min_part``)."""
    count = math.ceil(source.size / limits.max_part)
    step = math.ceil(source.size / count)
    end = source.offset + source.size
    return [CopyPart(source, first, min(first + step, end) - 1) for first in range(source.offset, end, step)]


def with_head(head: bytes, parts: Sequence[Part], limits: Limits = Limits()) -> list[Part]:
    """``parts`` preceded by ``head`` (e.g. a CSV header), still a valid upload.

    ``head`` is too small to be a part of its own, so it joins the first part: an upload part simply
    gets it in front; a copied range gives up its first ``min_part`` bytes to be read and uploaded
    after ``head`` (the rest stays a copy when it may still be a part: ``min_part`` or more, or last).
    So at most ``2 * min_part`` bytes are read for it, whatever the sizes.
    """
    if not head or not parts:
        return list(parts)
    first, rest = parts[0], list(parts[1:])
    if isinstance(first, UploadPart):
        return [UploadPart(first.sources, head + first.head), *rest]
    source = first.source
    split = first.first + limits.min_part
    if first.last - split + 1 < limits.min_part and rest:
        split = first.last + 1  # the remainder could not be a part: read it all (< 2 * min_part)
    taken = Source(source.key, min(split, first.last + 1) - first.first, source.etag, first.first)
    headed: list[Part] = [UploadPart((taken,), head)]
    if split <= first.last:
        headed.append(CopyPart(source, split, first.last))
    return headed + rest


def group_parts(parts: Sequence[Part], limits: Limits = Limits()) -> list[list[Part]]:
    """Consecutive parts joined so that each group makes an object of at most ``max_part`` bytes.

    Each group is a valid multipart upload of its own: only the overall last part can be small, and
    it is the last part of the last group. Next-fit keeps any two neighbouring groups above
    ``max_part`` together, so a 5 TiB object needs at most ~2,050 groups.
    """
    groups: list[list[Part]] = []
    current: list[Part] = []
    size = 0
    for part in parts:
        if current and (size + part.size > limits.max_part or len(current) == limits.max_parts):
            groups.append(current)
            current, size = [], 0
        current.append(part)
        size += part.size
    if current:
        groups.append(current)
    return groups


def joined_order(sources: Sequence[Source], limits: Limits = Limits()) -> list[Source]:
    """The order in which :func:`concatenate` joins ``sources`` (empty ones dropped)."""
    return [s for s in sources if s.size >= limits.min_part] + [
        s for s in sources if 0 < s.size < limits.min_part
    ]


def headed_order(sources: Sequence[Source], head_bytes: int, limits: Limits = Limits()) -> list[Source]:
    """The non-empty ``sources`` in :func:`joined_order`, the first given back its header.

    Each source's object begins with the same header of ``head_bytes``, which its ``offset`` skips
    (its ``size`` is what follows). The joined object starts with the first source's header, copied
    with the rest of that object, so no header is read and uploaded in front (``with_head``). The
    order is :func:`joined_order`'s either way: the first source is first whatever its size becomes
    (a small first one means every source is small).
    """
    if any(source.offset != head_bytes for source in sources):
        raise ValueError("every source of a headed join skips exactly its header")
    ordered = joined_order(sources, limits)
    if not ordered or not head_bytes:
        return ordered
    first = ordered[0]
    return [Source(first.key, first.size + head_bytes, first.etag), *ordered[1:]]


def concatenate(
    s3: Any,
    *,
    bucket: str,
    sources: Sequence[Source],
    key: str,
    scratch_prefix: str,
    limits: Limits = Limits(),
    source_bucket: str | None = None,
    head: bytes = b"",
    headed: bool = False,
) -> Concatenated | None:
    """Write the non-empty ``sources`` (objects in ``source_bucket``) as one object ``bucket/key``,
    in :func:`joined_order`, after ``head``.

    With ``headed``, every source's object begins with ``head`` itself, which its ``offset`` skips:
    the first source's is copied instead (:func:`headed_order`). Returns None when every source is
    empty (S3 has no zero-part upload). Intermediate objects, needed only past 10,000 parts, are
    written under ``scratch_prefix`` and listed in the result for cleanup.
    """
    if headed:
        sources, head = headed_order(sources, len(head), limits), b""
    source_bucket = source_bucket or bucket
    total = sum(source.size for source in sources)
    if total > limits.max_object:
        raise ManifestTooLargeError(
            f"The manifest would be {total} bytes, more than one S3 object can hold ({limits.max_object}); "
            "narrow the filter (e.g. by prefixes) and run several times."
        )
    parts = plan_parts(sources, limits)
    if not parts:
        return None
    intermediates: list[str] = []
    level = 0
    # The head can split the first part in two (with_head): the parts are counted with it.
    while len(with_head(head, parts, limits)) > limits.max_parts:
        groups = group_parts(parts, limits)
        if len(groups) >= len(parts):
            raise ManifestTooLargeError(f"{len(parts)} parts cannot be joined into {limits.max_parts}")
        joined = []
        for index, group in enumerate(groups):
            scratch_key = f"{scratch_prefix}level-{level}/{index:05d}"
            etag, size = _upload(s3, bucket, scratch_key, source_bucket, group, limits)
            intermediates.append(scratch_key)
            joined.append(Source(scratch_key, size, etag))
        # Intermediates live in the destination bucket.
        source_bucket = bucket
        parts = plan_parts(joined, limits)
        level += 1
    parts = with_head(head, parts, limits)
    if len(parts) == 1 and _one_request(parts[0]):
        etag, size = _write_one(s3, bucket, key, source_bucket, parts[0])
    else:
        etag, size = _upload(s3, bucket, key, source_bucket, parts, limits)
    return Concatenated(bucket, key, etag, size, len(parts), intermediates)


#: The largest object CopyObject copies in one request: "up to 5 GB" (S3 API reference, CopyObject),
#: read as decimal gigabytes, the smaller reading.
COPY_OBJECT_MAX = 5 * 1000**3


def _one_request(part: Part) -> bool:
    """Whether ``part``, the only one, can be written without a multipart upload: bytes read here
    (PutObject), or a whole object CopyObject can copy."""
    return isinstance(part, UploadPart) or (part.whole and part.size <= COPY_OBJECT_MAX)


def _write_one(s3: Any, bucket: str, key: str, source_bucket: str, part: Part) -> tuple[str, int]:
    """The object of one part in one request instead of three (CreateMultipartUpload, the part,
    CompleteMultipartUpload): the same bytes, by PutObject of what was read or by CopyObject inside
    S3. ``MetadataDirective`` ``REPLACE`` with no metadata gives the copy what a multipart upload
    without metadata gets, not the source's content type and metadata (the default, ``COPY``)."""
    if isinstance(part, CopyPart):
        condition = {"CopySourceIfMatch": part.source.etag} if part.source.etag else {}
        copied = s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": source_bucket, "Key": part.source.key},
            MetadataDirective="REPLACE",
            **condition,
        )
        return copied["CopyObjectResult"]["ETag"].strip('"'), part.size
    return s3.put_object(Bucket=bucket, Key=key, Body=_body(s3, source_bucket, part))["ETag"].strip(
        '"'
    ), part.size


def _upload(
    s3: Any, bucket: str, key: str, source_bucket: str, parts: Sequence[Part], limits: Limits
) -> tuple[str, int]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        put = _part_writer(s3, bucket, key, upload_id, source_bucket)
        with ThreadPoolExecutor(max_workers=limits.concurrency) as pool:
            etags = list(pool.map(put, range(1, len(parts) + 1), parts))
        completed = s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]},
        )
    except BaseException:
        _abort(s3, bucket, key, upload_id)
        raise
    return completed["ETag"].strip('"'), sum(part.size for part in parts)


def _part_writer(
    s3: Any, bucket: str, key: str, upload_id: str, source_bucket: str
) -> Callable[[int, Part], str]:
    def put(number: int, part: Part) -> str:
        common = {"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number}
        if isinstance(part, CopyPart):
            copy_source = {"Bucket": source_bucket, "Key": part.source.key}
            condition = {"CopySourceIfMatch": part.source.etag} if part.source.etag else {}
            if not part.whole:  # the planner copies ranges only of objects larger than 5 MiB
                condition["CopySourceRange"] = f"bytes={part.first}-{part.last}"
            result = s3.upload_part_copy(**common, CopySource=copy_source, **condition)
            return result["CopyPartResult"]["ETag"]
        return s3.upload_part(**common, Body=_body(s3, source_bucket, part))["ETag"]

    return put


def _body(s3: Any, source_bucket: str, part: UploadPart) -> bytearray:
    """The bytes of a part read here: its head and its sources' bytes, copied once into a bytearray,
    which botocore checksums, signs and sends as it is (csv_upload.CsvUpload)."""
    return bytearray().join([part.head, *(_read(s3, source_bucket, source) for source in part.sources)])


def _read(s3: Any, bucket: str, source: Source) -> bytes:
    """Exactly the source's bytes. Always a ranged GET: a source may be the first bytes of a larger
    object (``with_head`` takes the first 5 MiB of a copied one, from offset 0), and a GET without a
    Range returns the whole object (S3 API reference, GetObject: ``Range``)."""
    if source.size == 0:
        return b""  # no byte range names nothing (RFC 9110: last >= first)
    condition = {"IfMatch": source.etag} if source.etag else {}
    condition["Range"] = f"bytes={source.offset}-{source.offset + source.size - 1}"
    data = s3.get_object(Bucket=bucket, Key=source.key, **condition)["Body"].read()
    if len(data) != source.size:
        raise BatchPipeError(f"s3://{bucket}/{source.key} changed while being joined ({len(data)} bytes)")
    return data


def _abort(s3: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError:
        pass  # the bucket's lifecycle rule aborts incomplete uploads after 2 days


def list_sources(s3: Any, bucket: str, prefix: str) -> list[Source]:
    """Every object under ``prefix`` as a Source, in key order (ListObjectsV2 returns keys in
    ascending UTF-8 binary order: S3 API reference, ListObjectsV2), so a listing plans the same way
    each time it is read."""
    sources = []
    for page in object_pages(s3, Bucket=bucket, Prefix=prefix, MaxKeys=LIST_PAGE_KEYS):
        for item in page.get("Contents", []):
            sources.append(Source(item["Key"], item["Size"], item.get("ETag")))
    return sources


# ------------------------------------------------------------------ packing small sources, bounded


def packing_groups(sources: Sequence[Source], budget: int, limits: Limits = Limits()) -> list[list[Source]]:
    """The sources under ``min_part``, in order, cut into groups that each reach ``budget`` bytes
    (the last may be smaller): what one invocation reads and writes as one packed object.

    A group holds at most ``budget + min_part`` bytes, and with ``budget >= min_part`` every packed
    object but the last is at least ``min_part``: the final join copies them all inside S3.
    """
    groups: list[list[Source]] = []
    current: list[Source] = []
    size = 0
    for source in sources:
        if not 0 < source.size < limits.min_part:
            continue
        current.append(source)
        size += source.size
        if size >= budget:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


@dataclass(frozen=True)
class PackGroup:
    """One group of small sources, the key its packed object has, and that object once written."""

    key: str
    sources: tuple[Source, ...]
    packed: Source | None


def packing_plan(
    sources: Sequence[Source],
    packed_prefix: str,
    packed: Sequence[Source],
    budget: int,
    limits: Limits = Limits(),
) -> list[PackGroup]:
    """``packing_groups`` of ``sources``, each with its packed object among ``packed`` (a listing of
    ``packed_prefix``) if one was written.

    A packed object's key names its group's position and a digest of the group's keys, sizes and
    ETags, so an object packed from other sources (a part rewritten since) is never taken for it.
    """
    written = {source.key: source for source in packed}
    plan = []
    for index, group in enumerate(packing_groups(sources, budget, limits)):
        key = packed_key(packed_prefix, index, group)
        plan.append(PackGroup(key, tuple(group), written.get(key)))
    return plan


def listed_packing_plan(
    s3: Any,
    *,
    bucket: str,
    sources: Sequence[Source],
    packed_prefix: str,
    budget: int,
    limits: Limits = S3_LIMITS,
) -> list[PackGroup]:
    """``packing_plan`` with the packed objects found under ``packed_prefix`` in ``bucket``."""
    return packing_plan(sources, packed_prefix, list_sources(s3, bucket, packed_prefix), budget, limits)


#: Keys per ListObjectsV2 page: S3's most (S3 API reference, ListObjectsV2: MaxKeys).
LIST_PAGE_KEYS = 1000


def next_packing_group(
    s3: Any,
    *,
    bucket: str,
    prefix: str,
    suffix: str,
    after: str | None,
    budget: int,
    limits: Limits = S3_LIMITS,
) -> list[Source]:
    """The ``packing_groups`` group of the objects under ``prefix`` whose keys end with ``suffix``
    that follows the group ending at key ``after`` (None: the first group); [] when none is left.

    Listed from ``after`` on (ListObjectsV2 ``StartAfter``) and only until the group is full, so a
    loop that carries ``after`` from step to step lists each object once in all, instead of every
    object at every step. Groups are cut where ``packing_groups`` cuts them over the whole listing:
    a group ends at the first small source that brings it to ``budget``, so the next one starts right
    after it.
    """
    return first_packing_group(
        sources_after(s3, bucket=bucket, prefix=prefix, after=after),
        suffix=suffix,
        budget=budget,
        limits=limits,
    )


def first_packing_group(
    sources: Iterable[Source], *, suffix: str, budget: int, limits: Limits = S3_LIMITS
) -> list[Source]:
    """The first ``packing_groups`` group of ``sources`` (in key order) whose keys end with
    ``suffix``, taken from ``sources`` only until it is full: under ``budget`` only when they ran out."""
    group: list[Source] = []
    size = 0
    for source in sources:
        if not source.key.endswith(suffix) or not 0 < source.size < limits.min_part:
            continue
        group.append(source)
        size += source.size
        if size >= budget:
            return group
    return group


def sources_after(s3: Any, *, bucket: str, prefix: str, after: str | None) -> Iterator[Source]:
    """The objects under ``prefix`` whose keys follow ``after`` (None: all), in key order, listed
    lazily a page at a time: ListObjectsV2 returns keys in ascending UTF-8 binary order and
    ``StartAfter`` starts the listing after that key (S3 API reference, ListObjectsV2), so a caller
    that stops early lists no further page."""
    start = {"StartAfter": after} if after else {}
    for page in object_pages(s3, Bucket=bucket, Prefix=prefix, **start, MaxKeys=LIST_PAGE_KEYS):
        for item in page.get("Contents", []):
            yield Source(item["Key"], item["Size"], item.get("ETag"))


def packed_key(packed_prefix: str, index: int, group: Sequence[Source]) -> str:
    """Where group ``index`` of a packing plan is packed: its position and a digest of its sources."""
    return f"{packed_prefix}g{index:06d}-{_digest(group)}.csv"


def _digest(group: Sequence[Source]) -> str:
    text = "\n".join(f"{s.key}\t{s.offset}\t{s.size}\t{(s.etag or '').strip(chr(34))}" for s in group)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_packed(
    sources: Sequence[Source], plan: Sequence[PackGroup], limits: Limits = Limits()
) -> list[Source]:
    """What a final join copies: the sources of ``min_part`` or more, and for each group of smaller
    ones its packed object where it was written, else the group's sources as they are (so the result
    never depends on the packing having run; only the bytes read by the join do)."""
    joined = [s for s in sources if s.size >= limits.min_part]
    for group in plan:
        joined.extend([group.packed] if group.packed is not None else group.sources)
    return joined
