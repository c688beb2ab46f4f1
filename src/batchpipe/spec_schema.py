"""The job spec as a JSON Schema, generated from its two sources of truth, for editors.

The spec's own fields come from the pydantic model ValidateSpec uses (`batchpipe_core.spec_model.JobSpec`);
`operation` comes from botocore's model of S3 Batch Operations' `JobOperation`, the shape the spec
embeds verbatim. Every rule JSON Schema can say is in it (the models' field types carry theirs,
``batchpipe_core.spec_fields._Rule``; the cross-field ones are JobSpec's), and tests/unit/test_spec_schema.py
checks it against ValidateSpec on generated specs. ValidateSpec also checks what JSON Schema cannot
say (a `where` predicate, regexes, date order, the stack's buckets).
"""

from __future__ import annotations

from typing import Any

from batchpipe_core.operation import create_job_model

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://github.com/batchpipe/batchpipe/job-spec.schema.json"
COMMITTED_PATH = "docs/job-spec.schema.json"


def spec_schema() -> dict[str, Any]:
    from batchpipe_core.runlock import SCHEDULED_TIME
    from batchpipe_core.spec_model import JobSpec

    job_spec = JobSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs = job_spec.pop("$defs")
    _drop_titles(job_spec)
    _drop_titles(defs)
    _drop_null_defaults(job_spec)
    _drop_null_defaults(defs)
    operation = _shape_schema(_job_operation_shape(), defs)
    # Exactly one operation per job (CreateJob accepts one member of JobOperation).
    operation.update(minProperties=1, maxProperties=1)
    job_spec["properties"]["operation"] = {**job_spec["properties"]["operation"], **operation}
    job_spec.pop("title", None)
    defs["JobSpec"] = job_spec
    # EventBridge Scheduler's input to the state machine (template.yaml, ScheduleV2): the spec wrapped
    # with the scheduled time, which ValidateSpec unwraps (batchpipe_core.runlock).
    scheduled = {
        "type": "object",
        "description": "the stack's schedule's input: the spec and the time the scheduler fired",
        "properties": {
            "schedule": {
                "type": "object",
                "properties": {
                    "scheduledTime": {
                        "type": "string",
                        "description": "EventBridge Scheduler's <aws.scheduler.scheduled-time>, filled in "
                        "by the scheduler",
                        "pattern": f"^(?:{SCHEDULED_TIME.pattern})$",
                    }
                },
                "required": ["scheduledTime"],
                "additionalProperties": False,
            },
            "spec": {"$ref": "#/$defs/JobSpec"},
        },
        "required": ["schedule", "spec"],
        "additionalProperties": False,
    }
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "batchpipe job spec",
        "description": (
            "The execution input of the batchpipe state machine: a job spec, or the stack's schedule's "
            "input that wraps one. Every field but operation is optional; the stack's parameters give "
            "some defaults. operation is one S3 Batch Operations JobOperation, as in the CreateJob API. "
            "ValidateSpec also checks what JSON Schema cannot say: a where predicate, a regex's syntax, real "
            "dates, minSizeBytes <= maxSizeBytes, modifiedAfter < modifiedBefore, the stack's buckets and "
            "version choice, and integers written without a fraction (JSON Schema counts 10.0 as an integer)."
        ),
        "oneOf": [{"$ref": "#/$defs/JobSpec"}, scheduled],
        "$defs": defs,
    }


def _drop_null_defaults(node: Any) -> None:
    """The model's None means "not given": a field without a real default has no default in the schema."""
    if isinstance(node, dict):
        if "default" in node and node["default"] is None:
            del node["default"]
        for value in node.values():
            _drop_null_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _drop_null_defaults(value)


def _drop_titles(node: Any) -> None:
    """pydantic titles every property with its own name reworded ("Keyregex"): noise in an editor."""
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict):
            for value in properties.values():
                if isinstance(value, dict):
                    value.pop("title", None)
        for value in node.values():
            _drop_titles(value)
    elif isinstance(node, list):
        for value in node:
            _drop_titles(value)


def _job_operation_shape() -> Any:
    return create_job_model().input_shape.members["Operation"]


def _shape_schema(shape: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema of a botocore shape; structures become $defs (some shapes nest each other)."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        name = f"S3Control{shape.name}"
        if name not in defs:
            defs[name] = {}  # placeholder: a shape that refers to itself ends here
            properties = {member: _shape_schema(sub, defs) for member, sub in shape.members.items()}
            node: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
            if shape.required_members:
                node["required"] = list(shape.required_members)
            if shape.documentation:
                node["description"] = _plain(shape.documentation)
            defs[name] = node
        return {"$ref": f"#/$defs/{name}"}
    if kind == "list":
        node = {"type": "array", "items": _shape_schema(shape.member, defs)}
        _bounds(node, meta, "minItems", "maxItems")
        return node
    if kind == "map":
        return {"type": "object", "additionalProperties": _shape_schema(shape.value, defs)}
    if kind == "string":
        node = {"type": "string"}
        if shape.enum:
            node["enum"] = list(shape.enum)
        _bounds(node, meta, "minLength", "maxLength")
        return node
    if kind in ("integer", "long"):
        node = {"type": "integer"}
        _bounds(node, meta, "minimum", "maximum")
        return node
    if kind in ("float", "double"):
        return {"type": "number"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "timestamp":
        # botocore takes an ISO 8601 string or epoch seconds from JSON.
        return {"type": ["string", "integer"]}
    return {}  # blob and anything newer: no constraint rather than a wrong one


def _bounds(node: dict[str, Any], meta: dict[str, Any], low: str, high: str) -> None:
    if "min" in meta:
        node[low] = meta["min"]
    if "max" in meta:
        node[high] = meta["max"]


def _plain(html: str) -> str:
    import re

    text = re.sub(r"<[^>]+>", "", html)
    return " ".join(text.split())[:500]
