"""The job spec (the execution input; README, "Job spec reference"): ValidateSpec's checks in their order,
and the normal form a valid spec takes.

``normalize_spec`` reads the document's limits (batchpipe_core.spec_document), then the model
(batchpipe_core.spec_model, whose field types are batchpipe_core.spec_fields), then what depends on the
stack (batchpipe_core.spec_stack); every problem found is one line, all reported at once. A valid spec
gets every default filled in, some from the stack's parameters.
"""

from __future__ import annotations

import copy
from typing import Any

from batchpipe_core import metadata_table
from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError
from batchpipe_core.inventory_layout import VERSIONS_CURRENT, VERSIONS_PINNED
from batchpipe_core.spec_document import document_problems
from batchpipe_core.spec_fields import CONCURRENCY_MODES, DEFAULT_NAME, LATEST
from batchpipe_core.spec_model import FilterSpec, InventorySpec, JobSpec, ReportSpec, RetrySpec, parse_spec
from batchpipe_core.spec_stack import (
    chosen_source,
    metadata_table_location,
    stack_problems,
    statement_problems,
)


def normalize_spec(raw: Any, config: Config) -> dict[str, Any]:
    """The spec with every default filled in (the README's "Job spec reference" shape), or SpecValidationError.

    The result is plain JSON, and a valid spec itself: normalizing it again returns it unchanged.
    """
    document = document_problems(raw)
    if document:
        # Nothing else looks at a document too big, too deep or not JSON: each later check would
        # only repeat the problem, or be what it exhausts.
        raise SpecValidationError("\n".join(document))
    spec, problems = parse_spec(raw)
    problems += stack_problems(raw, problems, config)
    if spec is None or problems:
        raise SpecValidationError("\n".join(dict.fromkeys(problems)))
    normalized = _source_selection(spec, _rerun_selection(spec, _with_defaults(spec, config)))
    if chosen_source(raw, config) == metadata_table.SOURCE:
        normalized = _metadata_table_selection(spec, normalized, config)
    statement = statement_problems(normalized, config)
    if statement:
        raise SpecValidationError("\n".join(dict.fromkeys(statement)))
    # The defaults come from stack parameters: a bad one is a deployment fault, not the user's.
    _, default_problems = parse_spec(normalized)
    if default_problems:
        raise RuntimeError("the stack's defaults make an invalid spec: " + "; ".join(default_problems))
    return normalized


def _with_defaults(spec: JobSpec, config: Config) -> dict[str, Any]:
    inventory = spec.inventory or InventorySpec()
    filter_ = spec.filter or FilterSpec()
    report = spec.report or ReportSpec()
    retry = spec.retry or RetrySpec()
    return {
        "name": _given(spec.name, DEFAULT_NAME),
        "inventory": {
            "database": _given(inventory.database, config.inventory_database),
            "table": _given(inventory.table, config.inventory_table),
            "date": _given(inventory.date, LATEST),
        },
        "filter": {
            "prefixes": filter_.prefixes,
            "keyRegex": filter_.key_regex,
            "storageClasses": filter_.storage_classes,
            "minSizeBytes": filter_.min_size_bytes,
            "maxSizeBytes": filter_.max_size_bytes,
            "modifiedBefore": filter_.modified_before,
            "modifiedAfter": filter_.modified_after,
            "encryptionStatuses": filter_.encryption_statuses,
            "latestOnly": _given(filter_.latest_only, True),
            "versions": _given(
                filter_.versions, VERSIONS_PINNED if config.inventory_versions == "All" else VERSIONS_CURRENT
            ),
            "where": filter_.where,
        }
        # Kept only when given: the sources that cannot apply them refuse them (docs/FILTERS.md).
        | {
            name: value
            for name, value in (
                ("suffixes", filter_.suffixes),
                ("substrings", filter_.substrings),
                ("replicationStatuses", filter_.replication_statuses),
                ("eligibleForReplication", filter_.eligible_for_replication),
            )
            if value is not None
        },
        "operation": copy.deepcopy(spec.operation),
        "report": {"scope": _given(report.scope, config.default_report_scope)},
        "retry": {
            "maxAttempts": _given(retry.max_attempts, config.default_max_attempts),
            "backoffSeconds": _given(retry.backoff_seconds, config.default_backoff_seconds),
        },
        "priority": _given(spec.priority, config.default_priority),
        "confirmationRequired": _given(spec.confirmation_required, False),
        "dryRun": _given(spec.dry_run, False),
        "maxObjects": _given(spec.max_objects, config.default_max_objects),
        "concurrency": _given(spec.concurrency, CONCURRENCY_MODES[0]),
    }


def _rerun_selection(spec: JobSpec, normalized: dict[str, Any]) -> dict[str, Any]:
    """A rerun's objects come from its failures file: ``rerun`` takes the place of inventory and filter."""
    if spec.rerun is None:
        return normalized
    rerun = {
        "failures": spec.rerun.failures,
        "errorCodes": spec.rerun.error_codes,
        # As filter.versions: a "current" run's failures file has empty version IDs, which "pinned"
        # would read as the null version.
        "versions": _given(spec.rerun.versions, normalized["filter"]["versions"]),
    }
    return {
        ("rerun" if name == "inventory" else name): (rerun if name == "inventory" else value)
        for name, value in normalized.items()
        if name != "filter"
    }


def _source_selection(spec: JobSpec, normalized: dict[str, Any]) -> dict[str, Any]:
    """A source run lists its bucket: ``source`` takes the place of inventory; the generator's manifest
    names no version IDs, so each job acts on each key's current version ("current")."""
    if spec.source is None or spec.source.bucket is None:
        return normalized
    return {
        ("source" if name == "inventory" else name): (
            {"bucket": spec.source.bucket}
            if name == "inventory"
            else (value | {"versions": VERSIONS_CURRENT} if name == "filter" else value)
        )
        for name, value in normalized.items()
    }


def _metadata_table_selection(spec: JobSpec, normalized: dict[str, Any], config: Config) -> dict[str, Any]:
    """A metadata-table run reads the stack's live inventory table: ``source.metadataTable`` takes the
    place of inventory. The table lists every version with its ID, so filter.versions defaults to
    "pinned" as on an all-versions inventory; tags and metadata are kept when given."""
    filter_ = spec.filter or FilterSpec()
    selected_filter = normalized["filter"] | {"versions": _given(filter_.versions, VERSIONS_PINNED)}
    for name, value in (("tags", filter_.tags), ("metadata", filter_.metadata)):
        if value is not None:
            selected_filter[name] = value.model_dump(by_alias=True, exclude_none=True)
    return {
        ("source" if name == "inventory" else name): (
            {metadata_table.SOURCE: metadata_table_location(config)}
            if name == "inventory"
            else (selected_filter if name == "filter" else value)
        )
        for name, value in normalized.items()
    }


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value
