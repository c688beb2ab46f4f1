"""The CSV files the pipeline writes: a csv writer that keeps ``\r`` inside its row, and an upload
that streams rows to S3 as multipart parts of bounded size, never holding them all."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from isal import isal_zlib

from batchpipe_core.s3uri import s3_uri


def _sends_payloads_unsigned(s3: Any) -> bool:
    """Whether the client was made with ``s3.payload_signing_enabled`` off (clients.UPLOAD_CONFIG);
    a stand-in without botocore's ``meta.config`` is taken as signing."""
    config = getattr(getattr(s3, "meta", None), "config", None)
    return (getattr(config, "s3", None) or {}).get("payload_signing_enabled") is False


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


class PiecesBody:
    """A request body made of bytes-like ``pieces``, read in order without joining them: each read
    is a view of one piece (at most ``size`` bytes), which the connection sends as it is. Seekable
    and sized, as botocore wants a file body (its length, and a rewind before a retry); ``read()``
    of everything left joins it (moto's in-process mock reads a body so)."""

    def __init__(self, pieces: Iterable[Any]) -> None:
        self.pieces = [memoryview(piece).cast("B") for piece in pieces if len(piece)]
        self._size = sum(len(piece) for piece in self.pieces)
        self._position = 0
        self._piece = 0  # the piece that holds the position (len(pieces) at the end)
        self._offset = 0  # the position within it

    def __len__(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}.get(whence)
        if start is None:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        position = min(max(start + offset, 0), self._size)
        self._position, self._piece, self._offset = position, 0, position
        while self._piece < len(self.pieces) and self._offset >= len(self.pieces[self._piece]):
            self._offset -= len(self.pieces[self._piece])
            self._piece += 1
        return position

    def read(self, size: int | None = -1) -> Any:
        if self._piece >= len(self.pieces) or size == 0:
            return b""
        if size is None or size < 0:
            rest = [self.pieces[self._piece][self._offset :], *self.pieces[self._piece + 1 :]]
            self.seek(0, io.SEEK_END)
            return b"".join(rest)
        piece = self.pieces[self._piece]
        view = piece[self._offset : self._offset + size]
        self._offset += len(view)
        self._position += len(view)
        if self._offset == len(piece):
            self._piece, self._offset = self._piece + 1, 0
        return view


#: A write at least this long is kept as its own piece (not copied into the buffer of small writes).
_BLOCK_BYTES = 64 << 10


class CsvUpload:
    """A CSV object streamed to S3: rows are buffered into multipart parts, never all held.

    Parts start at 8 MiB and grow by 8 MiB every 1,000 parts, so the 10,000-part limit allows about
    440 GB while a part (the memory bound) stays at most 80 MiB. An upload of at most
    ``SINGLE_PUT_BYTES`` is a single PutObject: the multipart upload starts only when the buffer
    passes it, with that buffer as its first parts. With ``skip_if_empty`` nothing is written when
    no row came (close returns None).
    """

    PART_BYTES = 8 << 20
    # How a body goes to botocore depends on who checksums it. Where the client sends payloads
    # unsigned (clients.UPLOAD_CONFIG, the report stage's), the upload gives the CRC32 itself and the
    # body is bytes: botocore neither hashes nor re-frames it, and moto's in-process mock (the tests,
    # the local engine) reads bytes bodies but not a bytearray that comes with its checksum. Otherwise
    # a bytearray, which botocore checksums, signs and sends as it is; bytes would be wrapped in a
    # file that it reads in 1 MiB pieces for the CRC32 and the signature: 27 against 21 ms of CPU
    # for a 17 MB PutObject over HTTP (docs/PERFORMANCE.md).
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
        # What is buffered: blocks as they came (failure_columns' lines are views of Arrow's
        # buffers), joined into one body when sent, so a block is copied once on its way to S3, not
        # once more into a growing buffer; rows written one at a time gather in ``_small`` first.
        self._pieces: list[Any] = []
        self._small = bytearray()
        self._buffered = 0
        self._writer = CsvWriter(self)
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._skip_if_empty = skip_if_empty
        self._checksummed = _sends_payloads_unsigned(s3)
        self.rows = 0
        self.size = 0
        if header:
            self._writer.writerow(header)

    def write(self, text: str) -> None:
        """csv.writer's file protocol."""
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: Any) -> None:
        """Appends ``data`` (bytes-like, kept as it is until sent: it must not change afterwards)."""
        if len(data) < _BLOCK_BYTES:
            self._small += data
        else:
            self._take_small()
            self._pieces.append(data)
        self._buffered += len(data)
        self.size += len(data)
        if self._upload_id is None:
            if self._buffered > self.SINGLE_PUT_BYTES:
                self._flush_parts()
        elif self._buffered >= self._part_bytes():
            self._flush_parts()

    def writerow(self, fields: Iterable[Any]) -> None:
        self._writer.writerow(fields)
        self.rows += 1

    def write_block(self, pieces: Iterable[Any], rows: int) -> None:
        """``rows`` CSV lines written elsewhere (``failure_columns.csv_pieces``: bytes-like pieces that
        together are the lines), as ``writerow`` would."""
        for piece in pieces:
            self.write_bytes(piece)
        self.rows += rows

    def _take_small(self) -> None:
        if self._small:
            self._pieces.append(self._small)
            self._small = bytearray()

    def _joined(self) -> bytes | bytearray:
        """Everything buffered as one body (bytes where the upload gives its checksum, else a
        bytearray), the buffer emptied."""
        self._take_small()
        pieces = self._pieces
        if self._checksummed:
            body: bytes | bytearray = b"".join(pieces)
        elif len(pieces) == 1 and isinstance(pieces[0], bytearray):
            body = pieces[0]
        else:
            body = bytearray().join(pieces)
        self._pieces, self._buffered = [], 0
        return body

    def _single_body(self) -> Any:
        """Everything buffered, for one PutObject: where the upload gives its checksum, the pieces
        as they are (``PiecesBody``), else joined (``_joined``).

        botocore turns a bytes body of PutObject into a file it reads 128 KiB at a time (its
        ``convert_body_to_file_like_object`` handler, and the connection's block size), so joining
        the pieces first only copied them once more: 17 MB at 30% failed in the benchmark, memory a
        fresh function touches for the first time (docs/PERFORMANCE.md)."""
        if not self._checksummed:
            return self._joined()
        self._take_small()
        body = PiecesBody(self._pieces)
        self._pieces, self._buffered = [], 0
        return body

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
        buffer = self._joined()
        start = 0
        while len(buffer) - start >= self._part_bytes() or (last and start < len(buffer)):
            end = start + self._part_bytes()
            whole = start == 0 and end >= len(buffer)
            self._upload_part(buffer if whole else buffer[start:end])
            start = min(end, len(buffer))
        if start < len(buffer):
            self._pieces.append(buffer[start:] if start else buffer)
            self._buffered = len(buffer) - start

    def _checksum(self, body: Any) -> dict[str, str]:
        """The body's CRC32 for S3 to check (``ChecksumCRC32``: base64 of its 4 big-endian bytes),
        where the client sends payloads unsigned (``clients.UPLOAD_CONFIG``). A client that signs
        them would SHA-256 a body whose checksum is given; without it, botocore computes the same
        CRC32 itself and sends it after the body (over HTTPS a re-framed copy of the body)."""
        if not self._checksummed:
            return {}
        # ISA-L's CRC32 (python-isal: zlib's polynomial and interface, the same value) folds 64
        # bytes at a time with carry-less multiplication: 1.8 against 10 ms for 40 MiB here, where
        # zlib's table-driven one was a quarter of the CPU of closing a window's failure files
        # (docs/PERFORMANCE.md, "Tenth pass").
        crc = 0
        for piece in body.pieces if isinstance(body, PiecesBody) else (body,):
            crc = isal_zlib.crc32(piece, crc)
        return {"ChecksumCRC32": base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")}

    def _upload_part(self, body: bytes | bytearray) -> None:
        number = len(self._parts) + 1
        part = self._s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            **self._checksum(body),
        )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    def close(self) -> Uploaded | None:
        if self.rows == 0 and self._skip_if_empty:
            self.abort()
            return None
        if self._upload_id is None:
            body = self._single_body()
            response = self._s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=body, ContentType="text/csv", **self._checksum(body)
            )
        else:
            if self._buffered:
                self._flush_parts(last=True)
            response = self._s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        return Uploaded(self.bucket, self.key, response["ETag"].strip('"'), self.size, self.rows)

    def abort(self) -> None:
        """Discards what was written; nothing appears in S3."""
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
        self._pieces, self._small, self._buffered = [], bytearray(), 0
