"""Inventory rows as Python objects, and a generator of realistic synthetic ones.

The generator exists so that tests and ``local run --objects N`` exercise what real buckets hold:
keys with spaces, ``+``, ``%``, ``=``, ``,``, quotes, ``#``, ``?``, unicode, deep prefixes and
1,024-byte keys; sizes spread over orders of magnitude; every storage class and encryption status;
and, for versioned buckets, several versions per key, null versions and delete markers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(slots=True)
class InventoryObject:
    """One inventory row (one object version). Attribute names are the snake_case column names.

    Slotted: a local run holds one per object while it seeds (~0.3 KB each instead of ~1 KB).

    ``version_id`` None is the null version (an empty VersionId in an "All versions" inventory).
    Keys are always decoded here, whatever the inventory format.
    """

    bucket: str
    key: str
    version_id: str | None = None
    is_latest: bool | None = True
    is_delete_marker: bool | None = False
    size: int | None = 0
    last_modified_date: datetime | None = None
    e_tag: str | None = None
    storage_class: str | None = "STANDARD"
    is_multipart_uploaded: bool | None = False
    replication_status: str | None = None
    encryption_status: str | None = "SSE-S3"
    object_lock_retain_until_date: datetime | None = None
    object_lock_mode: str | None = None
    object_lock_legal_hold_status: str | None = "OFF"
    intelligent_tiering_access_tier: str | None = None
    bucket_key_status: str | None = "DISABLED"
    checksum_algorithm: str | None = None
    object_access_control_list: str | None = None
    object_owner: str | None = None
    lifecycle_expiration_date: datetime | None = None

    def replace(self, **changes: object) -> InventoryObject:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def current_objects(objects: list[InventoryObject]) -> list[InventoryObject]:
    """What a "Current version only" inventory lists: latest versions that are not delete markers."""
    return [o for o in objects if o.is_latest and not o.is_delete_marker]


# ------------------------------------------------------------------------------------------ generator
_EPOCH_START = datetime(2019, 1, 1, tzinfo=UTC)
_EPOCH_SPAN_MS = int((datetime(2025, 6, 30, tzinfo=UTC) - _EPOCH_START).total_seconds() * 1000)

_STORAGE_CLASSES = {
    "STANDARD": 58,
    "STANDARD_IA": 12,
    "INTELLIGENT_TIERING": 10,
    "GLACIER": 6,
    "DEEP_ARCHIVE": 4,
    "GLACIER_IR": 5,
    "ONEZONE_IA": 3,
    "REDUCED_REDUNDANCY": 2,
}
_TIERING_TIERS = {
    "FREQUENT": 6,
    "INFREQUENT": 3,
    "ARCHIVE_INSTANT_ACCESS": 2,
    "ARCHIVE": 1,
    "DEEP_ARCHIVE": 1,
}
_ENCRYPTION = {"SSE-S3": 68, "NOT-SSE": 15, "SSE-KMS": 13, "DSSE-KMS": 2, "SSE-C": 2}
_REPLICATION = {None: 80, "COMPLETED": 12, "PENDING": 3, "FAILED": 3, "REPLICA": 2}
_CHECKSUMS = {None: 70, "CRC32": 10, "CRC32C": 8, "SHA256": 6, "SHA1": 2, "CRC64NVME": 4}
_REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
_EXTENSIONS = ("jpg", "png", "pdf", "csv", "json", "txt", "gz", "parquet", "mp4")


def _cumulative(weights: dict) -> tuple[list, list[int]]:
    return list(weights), list(itertools.accumulate(weights.values()))


_CUMULATIVE: dict[int, tuple[list, list[int]]] = {}


def _pick(rng: random.Random, weights: dict) -> object:
    # choices() with the cumulative weights precomputed: the same draws, without rebuilding the lists.
    population, cumulative = _CUMULATIVE.get(id(weights)) or _CUMULATIVE.setdefault(
        id(weights), _cumulative(weights)
    )
    return rng.choices(population, cum_weights=cumulative)[0]


# Each template makes a key from (rng, n); n is unique per object, so keys never collide.
_KeyTemplate = Callable[[random.Random, int], str]
_KEY_TEMPLATES: list[tuple[int, _KeyTemplate]] = [
    (
        30,
        lambda r, n: (
            f"photos/{r.randint(2015, 2025)}/{r.randint(1, 12):02d}/IMG_{n:06d}.{r.choice(('jpg', 'jpeg', 'JPG', 'png'))}"
        ),
    ),
    (
        10,
        lambda r, n: (
            f"logs/app/{r.randint(2020, 2025)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}/part-{n:05d}.log.gz"
        ),
    ),
    (8, lambda r, n: f"data/raw/region={r.choice(_REGIONS)}/year={r.randint(2019, 2025)}/part-{n}.parquet"),
    (6, lambda r, n: f"backups/db/{r.randint(2019, 2025)}/dump_{n}.sql.gz"),
    (
        5,
        lambda r, n: (
            f"My Documents/Quarterly Report {r.randint(2019, 2025)} Q{r.randint(1, 4)} (final) v{n}.pdf"
        ),
    ),
    (4, lambda r, n: f"c++/src/lib+extra/{n}+plus.{r.choice(_EXTENSIONS)}"),
    (3, lambda r, n: f"reports/100% complete/{n}%25 done.txt"),
    (3, lambda r, n: f"données/été/café naïve {n}.txt"),
    (2, lambda r, n: f"日本語/フォルダ/ファイル{n}.txt"),
    (2, lambda r, n: f"emoji/🎉/party-{n}.png"),
    (2, lambda r, n: f'odd/a,b;c=d/{n}"quoted" & <tag>.txt'),
    (2, lambda r, n: f"odd/hash#{n}/what?{n}=yes.txt"),
    (2, lambda r, n: "deep/" + "/".join(f"level{i}" for i in range(r.randint(8, 20))) + f"/leaf-{n}.bin"),
    (1, lambda r, n: f"trailing/space /{n} "),
    (1, lambda r, n: f"tilde~/{n}~star*.txt"),
    (1, lambda r, n: f"folder-markers/{n}/"),
    (1, lambda r, n: f"double//slash/{n}"),
    (1, lambda r, n: f"tab\tand\\backslash/{n}.txt"),
    (1, lambda r, n: f"long/{n}/" + "é" * 300 + "x" * r.randint(300, 400)),
]


_TEMPLATES = [t for _, t in _KEY_TEMPLATES]
_TEMPLATE_CUMULATIVE = list(itertools.accumulate(w for w, _ in _KEY_TEMPLATES))


def generate_key(rng: random.Random, n: int) -> str:
    template = rng.choices(_TEMPLATES, cum_weights=_TEMPLATE_CUMULATIVE)[0]
    key = template(rng, n)
    # S3's limit is 1,024 bytes of UTF-8; the long template sits close under it.
    while len(key.encode()) > 1024:
        key = key[:-1]
    return key


def _version_id(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"
    return "".join(rng.choice(alphabet) for _ in range(32))


def _object(rng: random.Random, bucket: str, key: str, modified: datetime) -> InventoryObject:
    if key.endswith("/") or rng.random() < 0.02:
        size = 0
    elif rng.random() < 0.005:  # the few huge objects every real bucket has
        size = rng.randint(1024**3, 100 * 1024**3)
    else:
        size = min(int(rng.lognormvariate(10, 2.5)), 5 * 1024**4)
    multipart = size > 16 * 1024**2 and rng.random() < 0.8
    digest = hashlib.md5(f"{key}|{modified.isoformat()}".encode(), usedforsecurity=False).hexdigest()
    storage_class = str(_pick(rng, _STORAGE_CLASSES))
    encryption = str(_pick(rng, _ENCRYPTION))
    locked = rng.random() < 0.03
    return InventoryObject(
        bucket=bucket,
        key=key,
        size=size,
        last_modified_date=modified,
        e_tag=f"{digest}-{max(2, size // (8 * 1024**2))}" if multipart else digest,
        storage_class=storage_class,
        is_multipart_uploaded=multipart,
        replication_status=_pick(rng, _REPLICATION),  # type: ignore[arg-type]
        encryption_status=encryption,
        object_lock_retain_until_date=modified + timedelta(days=rng.randint(30, 3650)) if locked else None,
        object_lock_mode=rng.choice(("GOVERNANCE", "COMPLIANCE")) if locked else None,
        object_lock_legal_hold_status="ON" if rng.random() < 0.01 else "OFF",
        intelligent_tiering_access_tier=str(_pick(rng, _TIERING_TIERS))
        if storage_class == "INTELLIGENT_TIERING"
        else None,
        bucket_key_status="ENABLED" if encryption == "SSE-KMS" and rng.random() < 0.5 else "DISABLED",
        checksum_algorithm=_pick(rng, _CHECKSUMS),  # type: ignore[arg-type]
    )


def _modified(rng: random.Random) -> datetime:
    return _EPOCH_START + timedelta(milliseconds=rng.randrange(_EPOCH_SPAN_MS))


def generate_objects(
    n: int, seed: int = 0, *, bucket: str = "my-source-bucket", versioned: bool = False
) -> list[InventoryObject]:
    """``n`` inventory rows. Unversioned: ``n`` distinct keys. Versioned: ``n`` versions over fewer
    keys, some with several versions, some starting with a null version, some deleted (latest is a
    delete marker). Deterministic for a given seed."""
    rng = random.Random(seed)
    if not versioned:
        return [_object(rng, bucket, generate_key(rng, i), _modified(rng)) for i in range(n)]

    rows: list[InventoryObject] = []
    i = 0
    while len(rows) < n:
        key = generate_key(rng, i)
        i += 1
        count = min(n - len(rows), rng.choices((1, 2, 3), weights=(70, 20, 10))[0])
        times = sorted(_modified(rng) for _ in range(count))
        history = [
            _object(rng, bucket, key, t).replace(version_id=_version_id(rng), is_latest=False) for t in times
        ]
        if rng.random() < 0.08:  # written before versioning was enabled
            history[0] = history[0].replace(version_id=None)
        if count > 1 and rng.random() < 0.15:  # deleted: the newest "version" is a delete marker
            history[-1] = InventoryObject(
                bucket=bucket,
                key=key,
                version_id=history[-1].version_id,
                is_delete_marker=True,
                last_modified_date=history[-1].last_modified_date,
                size=None,
                storage_class=None,
                is_multipart_uploaded=None,
                encryption_status=None,
                object_lock_legal_hold_status=None,
                bucket_key_status=None,
            )
        history[-1].is_latest = True
        rows.extend(history)
    return rows
