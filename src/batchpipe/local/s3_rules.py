"""S3 rules moto does not enforce, enforced on the embedded AWS so it is never kinder than AWS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

#: UploadPartCopy copies a byte range only from a source object larger than 5 MB (S3 API reference,
#: UploadPartCopy: ``x-amz-copy-source-range``). Whether "MB" means 10^6 or 2^20 bytes is not said;
#: the emulator takes the stricter, 5 MiB.
RANGE_COPY_MIN_SOURCE_BYTES = 5 * 1024**2


@contextmanager
def documented_part_copies() -> Iterator[None]:
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
