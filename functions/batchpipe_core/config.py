"""Environment configuration. The variable names are declared once, in template.yaml (Globals)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass


def _getter(environment: Mapping[str, str]) -> Callable[..., str]:
    def _env(name: str, default: str | None = None) -> str:
        value = environment.get(name, default)
        if value is None:
            raise RuntimeError(f"environment variable {name} is not set (template.yaml Globals declares it)")
        return value

    return _env


@dataclass(frozen=True)
class Config:
    account_id: str
    pipeline_bucket: str
    token_table: str
    inventory_bucket: str
    inventory_prefix: str
    inventory_format: str
    inventory_versions: str
    inventory_database: str
    inventory_table: str
    athena_workgroup: str
    batch_role_arn: str
    notification_topic_arn: str
    source_buckets: tuple[str, ...]
    # The stack's AllowedOperations parameter (ValidateSpecFunction only); None where it is not set.
    allowed_operations: tuple[str, ...] | None
    default_max_attempts: int
    default_backoff_seconds: int
    default_priority: int
    default_max_objects: int
    default_report_scope: str
    unknown_error_policy: str
    job_wait_timeout_seconds: int
    job_count_wait_seconds: int
    concurrency_wait_seconds: int
    state_machine_name: str
    report_part_rows: int
    join_partition_rows: int
    manifest_pack_bytes: int
    regroup_fan_in: int = 64
    # The general purpose bucket whose S3 Metadata live inventory table runs may read ("" = none), the
    # table's namespace ("" = S3's usual b_<bucket>), and the source of a spec that names none.
    metadata_table_bucket: str = ""
    metadata_table_namespace: str = ""
    default_source: str = "inventory"

    @classmethod
    def from_env(cls) -> Config:
        """Read at call time, not import time: one process may host several stacks (tests, local run)."""
        return cls.from_mapping(os.environ)

    @classmethod
    def from_mapping(cls, environment: Mapping[str, str]) -> Config:
        """From a function's environment variables: this process's, or a deployed function's as Lambda's
        GetFunctionConfiguration returns them (`batchpipe start` checks a spec with ValidateSpec's)."""
        _env = _getter(environment)
        return cls(
            account_id=_env("ACCOUNT_ID"),
            pipeline_bucket=_env("PIPELINE_BUCKET"),
            token_table=_env("TOKEN_TABLE"),
            inventory_bucket=_env("INVENTORY_BUCKET"),
            inventory_prefix=_env("INVENTORY_PREFIX").strip("/"),
            inventory_format=_env("INVENTORY_FORMAT"),
            inventory_versions=_env("INVENTORY_VERSIONS"),
            inventory_database=_env("INVENTORY_DATABASE"),
            inventory_table=_env("INVENTORY_TABLE"),
            athena_workgroup=_env("ATHENA_WORKGROUP"),
            batch_role_arn=_env("BATCH_ROLE_ARN"),
            notification_topic_arn=_env("NOTIFICATION_TOPIC_ARN"),
            source_buckets=tuple(b for b in _env("SOURCE_BUCKETS", "").split(",") if b),
            allowed_operations=_allowed_operations(environment),
            default_max_attempts=int(_env("DEFAULT_MAX_ATTEMPTS", "3")),
            default_backoff_seconds=int(_env("DEFAULT_BACKOFF_SECONDS", "300")),
            default_priority=int(_env("DEFAULT_PRIORITY", "10")),
            default_max_objects=int(_env("DEFAULT_MAX_OBJECTS", "1000000000")),
            default_report_scope=_env("DEFAULT_REPORT_SCOPE", "AllTasks"),
            unknown_error_policy=_env("UNKNOWN_ERROR_POLICY", "permanent"),
            job_wait_timeout_seconds=int(_env("JOB_WAIT_TIMEOUT_SECONDS", "25200")),
            job_count_wait_seconds=int(_env("JOB_COUNT_WAIT_SECONDS", "60")),
            concurrency_wait_seconds=int(_env("CONCURRENCY_WAIT_SECONDS", "43200")),
            state_machine_name=_env("STATE_MACHINE_NAME", "batchpipe-pipeline"),
            report_part_rows=int(_env("REPORT_PART_ROWS", "10000000")),
            join_partition_rows=int(_env("JOIN_PARTITION_ROWS", "4000000")),
            regroup_fan_in=int(_env("REGROUP_FAN_IN", "64")),
            manifest_pack_bytes=int(_env("MANIFEST_PACK_BYTES", str(1 << 30))),
            metadata_table_bucket=_env("METADATA_TABLE_BUCKET", ""),
            metadata_table_namespace=_env("METADATA_TABLE_NAMESPACE", ""),
            default_source=_env("DEFAULT_SOURCE", "inventory"),
        )


def _allowed_operations(environment: Mapping[str, str]) -> tuple[str, ...] | None:
    """Only ValidateSpecFunction is given ALLOWED_OPERATIONS (the other functions never decide it)."""
    value = environment.get("ALLOWED_OPERATIONS")
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())
