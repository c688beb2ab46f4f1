"""The CSV files the pipeline writes: a csv writer that keeps ``\r`` inside its row, and an upload
that streams rows to S3 as multipart parts of bounded size, never holding them all."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from batchpipe_core.s3uri import s3_uri


@dataclass(frozen=True)
class Uploaded:
    bucket: str
    key: str
    etag: str  # without the quotes S3 puts around it
    size: int
    rows: int

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.key)


class CsvWriter:
    """``csv.writer`` with ``\n`` line ends that also quotes a field holding a ``\r``.

    QUOTE_MINIMAL quotes only the delimiter, the quote and the line terminator's characters, so with
    ``\n`` a bare ``\r`` (legal in S3 keys and in error messages) would be written unquoted and read
    back as a line break, splitting the row. Such rows are written with every field quoted.
    """

    def __init__(self, out: Any) -> None:
        self._minimal = csv.writer(out, lineterminator="\n")
        self._quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, fields: Iterable[Any]) -> None:
        row = list(fields)
        if any(isinstance(field, str) and "\r" in field for field in row):
            self._quoted.writerow(row)
        else:
            self._minimal.writerow(row)


class CsvUpload:
    """A CSV object streamed to S3: rows are buffered into multipart parts, never all held.

    Parts start at 8 MiB and grow by 8 MiB every 1,000 parts, so the 10,000-part limit allows about
    440 GB while a part (the memory bound) stays at most 80 MiB. An upload of at most
    ``SINGLE_PUT_BYTES`` is a single PutObject: the multipart upload starts only when the buffer
    passes it, with that buffer as its first parts. With ``skip_if_empty`` nothing is written when
    no row came (close returns None).
    """

    PART_BYTES = 8 << 20
    #: The most an upload buffers before it starts a multipart upload. A multipart upload costs a
    #: CreateMultipartUpload, a CompleteMultipartUpload and a request per 8 MiB part, each ~1.5 ms of
    #: the function's CPU in botocore (docs/PERFORMANCE.md), where one PutObject takes up to 5 GB (S3
    #: User Guide, "Uploading and copying objects using multipart upload"): a window's failure files
    #: (17 MB each at 30% failed in the benchmark) go in one request each for 24 MiB more memory per
    #: file at most. Under the local engine's 64 MiB body limit (docs/LOCAL.md).
    SINGLE_PUT_BYTES = 32 << 20

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        header: list[str] | None = None,
        skip_if_empty: bool = False,
    ) -> None:
        self._s3, self.bucket, self.key = s3, bucket, key
        self._buffer = bytearray()
        self._writer = CsvWriter(self)
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._skip_if_empty = skip_if_empty
        self.rows = 0
        self.size = 0
        if header:
            self._writer.writerow(header)

    def write(self, text: str) -> None:
        """csv.writer's file protocol."""
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if self._upload_id is None:
            if len(self._buffer) > self.SINGLE_PUT_BYTES:
                self._flush_parts()
        elif len(self._buffer) >= self._part_bytes():
            self._flush_parts()

    def writerow(self, fields: Iterable[Any]) -> None:
        self._writer.writerow(fields)
        self.rows += 1

    def write_block(self, data: bytes, rows: int) -> None:
        """``rows`` CSV lines written elsewhere (failure_columns.csv_lines), as ``writerow`` would."""
        self.write_bytes(data)
        self.rows += rows

    def _part_bytes(self) -> int:
        return self.PART_BYTES * (1 + len(self._parts) // 1000)

    def _flush_parts(self, last: bool = False) -> None:
        """The buffer as parts of ``_part_bytes`` each; what is left under one part stays in the
        buffer (a part but the last must be at least 5 MiB), unless ``last``."""
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="text/csv"
            )
            self._upload_id = created["UploadId"]
        start = 0
        with memoryview(self._buffer) as buffer:
            while len(buffer) - start >= self._part_bytes() or (last and start < len(buffer)):
                end = start + self._part_bytes()
                self._upload_part(bytes(buffer[start:end]))
                start = min(end, len(buffer))
        del self._buffer[:start]

    def _upload_part(self, body: bytes) -> None:
        number = len(self._parts) + 1
        part = self._s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    def close(self) -> Uploaded | None:
        if self.rows == 0 and self._skip_if_empty:
            self.abort()
            return None
        if self._upload_id is None:
            response = self._s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), ContentType="text/csv"
            )
        else:
            if self._buffer:
                self._flush_parts(last=True)
            response = self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()
        return Uploaded(self.bucket, self.key, response["ETag"].strip('"'), self.size, self.rows)

    def abort(self) -> None:
        """Discards what was written; nothing appears in S3."""
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
        self._buffer.clear()
