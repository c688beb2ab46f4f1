"""Creates inventory objects in an emulated bucket, so batch jobs have something real to act on.

Bodies are empty (sizes live in the inventory, where the filters read them); storage class and
server-side encryption are set as the rows say. Version history is recreated in order: null versions
first (they predate versioning), then versions and delete markers oldest first, each with the row's
version ID and last-modified time, so the inventory, its manifests and the bucket agree.

The objects are written straight into moto's S3 store rather than through ``PutObject``: a boto3 round
trip costs ~2 ms, which made seeding the bulk of a local run (a million objects: over half an hour).
Seeding is set-up, not a request the pipeline makes, so it has nothing to validate. What a
``PutObject`` would have stored (ETag, CRC32 checksum, default ACL, encryption, storage class,
Content-Type) is stored the same way; ``tests/local/test_inventory.py`` compares the two key by key.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.core.utils import utcnow
from moto.moto_api._internal import mock_random
from moto.s3.exceptions import InvalidStorageClass
from moto.s3.models import (
    STORAGE_CLASS,
    FakeDeleteMarker,
    FakeKey,
    LowercaseDict,
    get_canned_acl,
    s3_backends,
)
from moto.settings import get_s3_default_key_buffer_size
from moto.utilities.utils import get_partition

from .objects import InventoryObject

_SSE = {"SSE-S3": "AES256", "SSE-KMS": "aws:kms", "DSSE-KMS": "aws:kms:dsse"}
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_LAZY = threading.Lock()

Progress = Callable[[int], None]


class SeededKey(FakeKey):
    """moto's FakeKey at a fraction of its memory: ~0.5 KB instead of ~3.5 KB an object.

    A FakeKey sets 35 attributes in ``__init__``, more than CPython shares between instance dicts (30),
    and builds a buffer, a lock, an ACL and a metadata dict per object: 3.5 GB for a million. Here the
    attributes every fresh key has in common are class attributes (an assignment still gives the
    instance its own), and the buffer, lock and metadata are made on first use. Everything else is
    moto's code, so the key behaves as any other: ``test_seeded_keys_match_put_object`` checks that
    every attribute reads as a ``PutObject``'s would.
    """

    _expiry = None
    _status = None
    _tick = 0
    _transitions = [(None, "IN_PROGRESS"), ("IN_PROGRESS", "RESTORED")]
    model_name = "s3::keyrestore"
    website_redirect_location = None
    multipart = None
    disposed = False
    contentsize = 0
    kms_key_id = None
    bucket_key_enabled = None
    lock_mode = None
    lock_legal_status = None
    lock_until = None
    checksum_type = None
    checksum_parts = None
    _body = b""

    def __init__(
        self,
        *,
        name: str,
        bucket_name: str,
        account_id: str,
        region_name: str,
        partition: str,
        version_id: str,
        is_versioned: bool,
        storage: str,
        etag: str,
        encryption: str | None,
        acl: Any,
        checksum: str,
        last_modified: datetime,
        body: bytes,
    ) -> None:
        # Always in this order, so the instance dicts share their keys.
        self.name = name
        self.bucket_name = bucket_name
        self.account_id = account_id
        self.region_name = region_name
        self.partition = partition
        self._version_id = version_id
        self._is_versioned = is_versioned
        self._storage_class = storage
        self._etag = etag
        self.encryption = encryption
        self.acl = acl  # one shared "private" ACL: moto replaces a key's ACL, never edits it
        self.checksum_algorithm = "CRC32"
        self.checksum_value = checksum
        self.last_modified = last_modified
        self._time_progressed = last_modified
        if body:
            self.value = body

    # The buffer, the lock and the metadata, made when something first needs them.
    def _made(self, name: str, make: Callable[[], Any]) -> Any:
        value = self.__dict__.get(name)
        if value is None:
            with _LAZY:  # two threads must not each make one
                value = self.__dict__.get(name)
                if value is None:
                    value = self.__dict__[name] = make()
        return value

    @property
    def _value_buffer(self) -> Any:
        return self._made("_buffer", self._new_buffer)

    @_value_buffer.setter
    def _value_buffer(self, buffer: Any) -> None:
        self.__dict__["_buffer"] = buffer

    def _new_buffer(self) -> Any:
        buffer = tempfile.SpooledTemporaryFile(get_s3_default_key_buffer_size())
        buffer.write(self._body)
        return buffer

    @property
    def lock(self) -> Any:  # type: ignore[override]
        return self._made("_lock", threading.Lock)

    @lock.setter
    def lock(self, lock: Any) -> None:
        self.__dict__["_lock"] = lock

    @property
    def _metadata(self) -> Any:
        return self._made("_meta", _new_metadata)

    @_metadata.setter
    def _metadata(self, metadata: Any) -> None:
        self.__dict__["_meta"] = metadata

    @property
    def _max_buffer_size(self) -> int:
        return get_s3_default_key_buffer_size()

    @_max_buffer_size.setter
    def _max_buffer_size(self, size: int) -> None:
        pass  # moto's __setstate__ restores it; the setting is read when the buffer is made

    @property
    def value(self) -> bytes:  # type: ignore[override]
        if "_buffer" not in self.__dict__:
            return self._body
        return FakeKey.value.fget(self)  # type: ignore[attr-defined]

    @value.setter
    def value(self, new_value: bytes) -> None:
        FakeKey.value.fset(self, new_value)  # type: ignore[attr-defined]

    def user_metadata(self) -> dict[str, str]:
        """HeadObject's ``Metadata`` without making the metadata dict of every key read."""
        metadata = self.__dict__.get("_meta")
        return {} if metadata is None else user_metadata(metadata)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_buffer", "_lock")}
        state["value"] = self.value
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        value = state.pop("value", b"")
        self.__dict__.update(state)
        if value:
            self.value = value

    def dispose(self, garbage: bool = False) -> None:
        buffer = self.__dict__.get("_buffer")
        if buffer is not None:
            buffer.close()
        self.disposed = True


def _new_metadata() -> Any:
    metadata = LowercaseDict()
    metadata["Content-Type"] = "binary/octet-stream"  # what moto's FakeKey starts with
    return metadata


def user_metadata(metadata: Any) -> dict[str, str]:
    """The ``x-amz-meta-*`` entries of a key's metadata, as HeadObject's ``Metadata`` names them."""
    prefix = "x-amz-meta-"
    return {k[len(prefix) :]: v for k, v in metadata.items() if k.lower().startswith(prefix)}


def moto_bucket(bucket: str) -> tuple[Any, Any]:
    """(moto's S3 backend, its bucket) for a bucket of the in-process mock; ValueError if none has it."""
    for account in list(s3_backends.keys()):
        backend = s3_backends[account].get("aws")
        found = backend.buckets.get(bucket) if backend is not None else None
        if found is not None:
            return backend, found
    raise ValueError(f"bucket {bucket!r} does not exist in the emulated S3 (create it first)")


def _is_versioned(objects: list[InventoryObject]) -> bool:
    keys = [o.key for o in objects]
    return len(set(keys)) != len(keys) or any(
        o.version_id is not None or o.is_delete_marker or o.is_latest is False for o in objects
    )


def _naive_utc(moment: datetime | None) -> datetime:
    if moment is None:
        return utcnow()
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def seed_bucket(
    s3_client: Any,
    bucket: str,
    objects: list[InventoryObject],
    *,
    body: bytes = b"",
    keep_version_ids: bool = True,
    progress: Progress | None = None,
) -> list[InventoryObject]:
    """Creates ``objects`` in ``bucket`` (which must exist) and updates each row in place to what the
    bucket now holds (bucket name, ETag, and the version ID when it is not kept); returns them.

    ``s3_client`` is unused (the objects go into moto's store); it stays so callers read alike.
    ``progress`` is called with the number of rows created so far, every 10,000 rows and at the end.
    """
    del s3_client
    backend, store = moto_bucket(bucket)
    etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
    checksum = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    acl = get_canned_acl("private")
    partition = get_partition(backend.region_name)
    default_sse = (store.encryption or {}).get("Rule", {}).get("ApplyServerSideEncryptionByDefault", {})
    keys = store.keys
    default_lock = store.object_lock_enabled and store.has_default_lock
    previous: dict[str, datetime] = {}

    def create(obj: InventoryObject) -> None:
        versioned_now = store.is_versioned
        if keep_version_ids:
            version = obj.version_id
        else:
            version = str(mock_random.uuid4()) if versioned_now else None
        modified = _naive_utc(obj.last_modified_date)
        last = previous.get(obj.key)
        if last is not None and modified <= last:
            modified = last + _ONE_MS  # S3 lists versions by time: keep the rows' order
        previous[obj.key] = modified
        existing = keys.getlist(obj.key) or []
        if obj.is_delete_marker:
            marker = FakeDeleteMarker(key=existing[-1] if existing else _key(obj, None, modified, False))
            marker._version_id = version or "null"
            marker.last_modified = modified
            entry: Any = marker
        else:
            if obj.storage_class and obj.storage_class not in STORAGE_CLASS:
                raise InvalidStorageClass(storage=obj.storage_class)
            entry = _key(obj, version, modified, versioned_now)
            if default_lock:  # PutObject applies the bucket's default retention
                entry.lock_mode, entry.lock_until = store.default_lock_mode, store.default_retention()
            obj.e_tag = etag
        if versioned_now and existing:
            existing.append(entry)
        else:
            keys.setlist(obj.key, [entry])
        obj.bucket, obj.version_id = bucket, version

    def _key(obj: InventoryObject, version: str | None, modified: datetime, versioned_now: bool) -> SeededKey:
        return SeededKey(
            name=obj.key,
            bucket_name=bucket,
            account_id=backend.account_id,
            region_name=backend.region_name,
            partition=partition,
            version_id=version or "null",
            is_versioned=versioned_now,
            storage=obj.storage_class or "STANDARD",
            etag=etag,
            encryption=_SSE.get(obj.encryption_status or "") or default_sse.get("SSEAlgorithm"),
            acl=acl,
            checksum=checksum,
            last_modified=modified,
            body=body,
        )

    done = 0

    def created(count: int = 1) -> None:
        nonlocal done
        done += count
        if progress is not None and (done % 10_000 == 0 or done == len(objects)):
            progress(done)

    if not _is_versioned(objects):
        for obj in objects:
            create(obj)
            created()
        return objects

    history: dict[str, list[InventoryObject]] = defaultdict(list)
    for obj in objects:
        history[obj.key].append(obj)
    for versions in history.values():
        versions.sort(key=lambda o: (o.last_modified_date or _EARLIEST, bool(o.is_latest)))
    # Null versions predate versioning: create them first, then enable it for the rest.
    firsts = [v[0] for v in history.values() if v[0].version_id is None and not v[0].is_delete_marker]
    for obj in firsts:
        create(obj)
        created()
    backend.put_bucket_versioning(bucket, "Enabled")
    first_ids = {id(o) for o in firsts}
    for versions in history.values():
        for obj in versions:
            if id(obj) not in first_ids:
                create(obj)
                created()
    return objects


create_objects = seed_bucket
