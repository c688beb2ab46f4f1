"""A source bucket and its S3 Inventory on the embedded AWS: what `local run` and the state-machine
tests act on. The stack's inventory parameters point at it, as a deployment's would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import inventory as inv

SOURCE_BUCKET = "batchpipe-demo-source"
INVENTORY_BUCKET = "batchpipe-demo-inventory"
INVENTORY_DEST_PREFIX = "inventory"
INVENTORY_CONFIG_ID = "daily-all-objects"


def required_parameters(template: dict) -> dict[str, Any]:
    """The local world's answers to the template parameters that have no default.

    Those are the ones only an account can answer (its inventory bucket, its source buckets), which
    `sam deploy --guided` asks for; a local stack is deployed for the demo world unless told otherwise.
    """
    given = World().parameters()
    required = [name for name, declaration in template["Parameters"].items() if "Default" not in declaration]
    unknown = [name for name in required if name not in given]
    if unknown:
        raise KeyError(f"World.parameters() gives no value for the required template parameters {unknown}")
    # The demo stack allows every operation, so every example runs locally; a test of the refusal
    # passes AllowedOperations itself.
    return {name: given[name] for name in required} | {"AllowedOperations": given["AllowedOperations"]}


def every_operation() -> str:
    """AllowedOperations naming every operation botocore knows and both named-only extras."""
    from batchpipe_core.operation import operation_names
    from batchpipe_core.spec_stack import BYPASS_GOVERNANCE, COMPLIANCE_RETENTION

    return ",".join([*operation_names(), COMPLIANCE_RETENTION, BYPASS_GOVERNANCE])


@dataclass
class World:
    source_bucket: str = SOURCE_BUCKET
    fmt: str = "CSV"
    versions: str = "Current"
    inventory_bucket: str = INVENTORY_BUCKET
    config_id: str = INVENTORY_CONFIG_ID
    objects: list[Any] = field(default_factory=list)
    # S3PutObjectLegalHold and S3PutObjectRetention need a bucket created with Object Lock (which
    # also turns versioning on), as on AWS: S3 user guide, "Locking objects with Object Lock".
    object_lock: bool = False
    # The inventory configuration's optional fields (S3 writes them in its own order).
    fields: tuple[str, ...] = inv.DEFAULT_OPTIONAL_FIELDS

    @property
    def inventory_prefix(self) -> str:
        return f"{INVENTORY_DEST_PREFIX}/{self.source_bucket}/{self.config_id}"

    def parameters(self, **overrides: Any) -> dict[str, Any]:
        """template.yaml parameters of a stack deployed for this inventory."""
        return {
            "InventoryBucket": self.inventory_bucket,
            "InventoryPrefix": self.inventory_prefix,
            "InventoryFormat": self.fmt,
            "InventoryVersions": self.versions,
            "SourceBuckets": self.source_bucket,
            "TargetBuckets": self.source_bucket,
            # The demo stack may read the source bucket's S3 Metadata live inventory table, which
            # LocalStack.write_metadata_table backfills (batchpipe.local.metadata_table).
            "MetadataTableBucket": self.source_bucket,
            "AllowedOperations": every_operation(),
            # Wait states are compressed locally but task timeouts are real seconds unless the stack's
            # timeout_scale compresses them: the first wait for a job's count (no event announces it,
            # as on AWS) is kept short, at the template's MinValue.
            "JobCountWaitSeconds": "1",
            **overrides,
        }

    def create_buckets(self, s3: Any) -> None:
        s3.create_bucket(Bucket=self.inventory_bucket)
        s3.create_bucket(Bucket=self.source_bucket, ObjectLockEnabledForBucket=self.object_lock)
        if self.versions == "All":
            s3.put_bucket_versioning(Bucket=self.source_bucket, VersioningConfiguration={"Status": "Enabled"})

    def seed(
        self,
        s3: Any,
        objects: list[Any],
        *,
        delivery_time: datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Creates the objects and writes one complete inventory delivery listing them."""
        self.create_buckets(s3)
        self.objects = inv.create_objects(s3, self.source_bucket, objects, progress=progress)
        self.deliver(s3, self.objects, delivery_time=delivery_time)

    def deliver(
        self, s3: Any, rows: list[Any], *, delivery_time: datetime | None = None, rows_per_file: int = 250_000
    ) -> inv.InventoryDelivery:
        """Writes one complete inventory delivery listing ``rows`` (the objects need not exist)."""
        return inv.write_inventory(
            s3,
            source_bucket=self.source_bucket,
            dest_bucket=self.inventory_bucket,
            dest_prefix=INVENTORY_DEST_PREFIX,
            config_id=self.config_id,
            objects=rows,
            fmt=self.fmt,
            versions=self.versions,
            fields=self.fields,
            delivery_time=delivery_time or datetime.now(UTC).replace(minute=0, second=0, microsecond=0),
            rows_per_file=rows_per_file,
        )

    def generated(self, n: int, seed: int = 7) -> list[Any]:
        return inv.generate_objects(n, seed=seed, bucket=self.source_bucket, versioned=self.versions == "All")

    def objects_with_keys(self, keys: list[str]) -> list[Any]:
        """Plain current objects with chosen keys (tests pick keys that faults match)."""
        template = inv.generate_objects(1, seed=1, bucket=self.source_bucket)[0]
        return [
            template.replace(key=key, size=10 + i, storage_class="STANDARD") for i, key in enumerate(keys)
        ]
