"""S3 rules moto does not enforce, enforced on the embedded AWS so it is never kinder than AWS."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

#: UploadPartCopy copies a byte range only from a source object larger than 5 MB (S3 API reference,
#: UploadPartCopy: ``x-amz-copy-source-range``). Whether "MB" means 10^6 or 2^20 bytes is not said;
#: the emulator takes the stricter, 5 MiB.
RANGE_COPY_MIN_SOURCE_BYTES = 5 * 1024**2


@contextmanager
def documented_s3_rules() -> Iterator[None]:
    """The rules below, for the embedded AWS and the unit tests."""
    with ExitStack() as rules:
        rules.enter_context(_documented_range_copies())
        rules.enter_context(_checked_checksums())
        yield


#: The checksums an upload may give in a header that the embedded S3 checks (PutObject and
#: UploadPart, ``x-amz-checksum-*``: the base64 of the body's digest, big-endian for the CRCs).
_CHECKSUMS: dict[str, Callable[[bytes], bytes]] = {
    "crc32": lambda body: zlib.crc32(body).to_bytes(4, "big"),
    "sha1": lambda body: hashlib.sha1(body).digest(),  # noqa: S324 - S3's checksum, not a signature
    "sha256": lambda body: hashlib.sha256(body).digest(),
}


@contextmanager
def _checked_checksums() -> Iterator[None]:
    """moto keeps a checksum given with an upload without computing it (its own TODO says AWS
    does); S3 computes it and refuses the body when they differ: 400 BadDigest (S3 API reference,
    PutObject and UploadPart, ``x-amz-checksum-crc32``; "Error responses": BadDigest, "The Content-MD5
    or checksum value that you specified did not match what the server received")."""
    from moto.s3.exceptions import S3ClientError
    from moto.s3.responses import S3Response

    original = S3Response._get_checksum

    def _get_checksum(self: Any, response_headers: dict[str, Any]) -> Any:
        for name, digest in _CHECKSUMS.items():
            given = self.headers.get(f"x-amz-checksum-{name}")
            if given and given != base64.b64encode(digest(self.body or b"")).decode("ascii"):
                raise S3ClientError(
                    "BadDigest", f"The {name.upper()} you specified did not match the calculated checksum."
                )
        return original(self, response_headers)

    with mock.patch.object(S3Response, "_get_checksum", _get_checksum):
        yield


@contextmanager
def _documented_range_copies() -> Iterator[None]:
    """moto's UploadPartCopy copies any range of any object; S3 refuses a range of an object of
    5 MB or less, and a range that ends past the object (RFC 9110 would answer 416)."""
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import S3Backend

    original = S3Backend.upload_part_copy

    def upload_part_copy(
        self: Any,
        dest_bucket_name: str,
        multipart_id: str,
        part_id: int,
        src_bucket_name: str,
        src_key_name: str,
        src_version_id: str | None,
        start_byte: int | None,
        end_byte: int | None,
    ) -> Any:
        if start_byte is not None:
            source = self.get_object(src_bucket_name, src_key_name, version_id=src_version_id)
            size = source.size if source is not None else 0
            if size <= RANGE_COPY_MIN_SOURCE_BYTES:
                raise S3ClientError(
                    "InvalidRequest",
                    f"a byte range can be copied only from an object larger than 5 MB ({size} bytes)",
                )
            if end_byte is None or end_byte >= size or start_byte > end_byte:
                raise S3ClientError("InvalidRange", f"bytes={start_byte}-{end_byte} of {size} bytes")
        return original(
            self,
            dest_bucket_name,
            multipart_id,
            part_id,
            src_bucket_name,
            src_key_name,
            src_version_id,
            start_byte,
            end_byte,
        )

    with mock.patch.object(S3Backend, "upload_part_copy", upload_part_copy):
        yield
