"""Creates inventory objects in an emulated bucket, so batch jobs have something real to act on.

Bodies are empty (sizes live in the inventory, where the filters read them); storage class and
server-side encryption are set as the rows say. Version history is recreated in order: null versions
before versioning is enabled, then versions and delete markers oldest first. S3 cannot be told which
version ID to give an object, so when the rows carry version IDs (a real inventory, or generated
ones) moto's object is given that ID afterwards: the inventory, its manifests and the bucket agree.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from .objects import InventoryObject

_SSE = {"SSE-S3": "AES256", "SSE-KMS": "aws:kms", "DSSE-KMS": "aws:kms:dsse"}
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _is_versioned(objects: list[InventoryObject]) -> bool:
    keys = [o.key for o in objects]
    return len(set(keys)) != len(keys) or any(
        o.version_id is not None or o.is_delete_marker or o.is_latest is False for o in objects
    )


def _moto_version(bucket: str, key: str, version_id: str) -> Any | None:
    """moto's object (or delete marker) for this version, when moto runs in this process."""
    from moto.s3.models import s3_backends

    for account in list(s3_backends.keys()):
        backend = s3_backends[account].get("aws")
        found = backend.buckets.get(bucket) if backend is not None else None
        if found is not None:
            return next((v for v in found.keys.getlist(key, []) if str(v.version_id) == version_id), None)
    return None


def _keep_version(obj: InventoryObject, bucket: str, given: str | None, wanted: str | None) -> str | None:
    """Gives moto's version ``given`` the ID ``wanted`` (None: the null version); returns the ID it has."""
    given_id = given or "null"
    if (wanted or "null") == given_id:
        return wanted
    version = _moto_version(bucket, obj.key, given_id)
    if version is None:
        return None if given_id == "null" else given_id
    version._version_id = wanted
    return wanted


def _put(s3: Any, bucket: str, obj: InventoryObject, body: bytes) -> tuple[str | None, str]:
    params: dict[str, Any] = {"Bucket": bucket, "Key": obj.key, "Body": body}
    if obj.storage_class:
        params["StorageClass"] = obj.storage_class
    if obj.encryption_status in _SSE:
        params["ServerSideEncryption"] = _SSE[obj.encryption_status]
    response = s3.put_object(**params)
    return response.get("VersionId"), response["ETag"].strip('"')


def seed_bucket(
    s3_client: Any,
    bucket: str,
    objects: list[InventoryObject],
    *,
    body: bytes = b"",
    keep_version_ids: bool = True,
) -> list[InventoryObject]:
    """Creates ``objects`` in ``bucket`` (which must exist) and updates each row in place to what the
    bucket now holds (bucket name, ETag, and the version ID when it cannot be kept); returns them."""

    def create(obj: InventoryObject) -> None:
        if obj.is_delete_marker:
            given, etag = s3_client.delete_object(Bucket=bucket, Key=obj.key).get("VersionId"), obj.e_tag
        else:
            given, etag = _put(s3_client, bucket, obj, body)
        if keep_version_ids and (versioned or given not in (None, "null")):
            obj.version_id = _keep_version(obj, bucket, given, obj.version_id)
        else:
            obj.version_id = None if given in (None, "null") else given
        obj.bucket, obj.e_tag = bucket, etag

    versioned = _is_versioned(objects)
    if not versioned:
        for obj in objects:
            create(obj)
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
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first_ids = {id(o) for o in firsts}
    for versions in history.values():
        for obj in versions:
            if id(obj) not in first_ids:
                create(obj)
    return objects


create_objects = seed_bucket
