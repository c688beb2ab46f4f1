"""docs/FILTERS.md's table "Which filter each source supports" against ValidateSpec's refusals: the
table is checked, never repeated. A cell starting with "no" must be refused by name (the field, and a
source that supports it); any other cell must be accepted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batchpipe_core.config import Config
from batchpipe_core.errors import SpecValidationError
from batchpipe_core.spec import normalize_spec
from batchpipe_core.spec_model import FilterSpec

from .test_spec import TAGGING, stack_env  # noqa: F401 - fixtures

FILTERS_MD = Path(__file__).resolve().parents[2] / "docs" / "FILTERS.md"
BUCKET = "my-source-bucket"
# The spec each column's source takes, and the word its refusals use to name it.
SOURCES: dict[str, tuple[dict[str, Any], str]] = {
    "Inventory": ({}, "inventory"),
    "`source.metadataTable` (S3 Metadata)": ({"source": {"metadataTable": {}}}, "metadataTable"),
    "`source.bucket` (manifest generator)": ({"source": {"bucket": BUCKET}}, "source.bucket"),
}
# A valid value of each field (what the field accepts is the model's business, not the table's).
VALUES: dict[str, Any] = {
    "prefixes": ["a b+/"],
    "suffixes": [" 100%.jpg"],
    "substrings": ["é/"],
    "keyRegex": "\\.jpe?g$",
    "storageClasses": ["STANDARD"],
    "minSizeBytes": 1,
    "maxSizeBytes": 10,
    "modifiedAfter": "2024-01-01T00:00:00Z",
    "modifiedBefore": "2024-02-01T00:00:00Z",
    "encryptionStatuses": ["SSE-KMS"],
    "replicationStatuses": ["FAILED"],
    "eligibleForReplication": True,
    "latestOnly": True,
    "versions": "current",
    "where": "size > 0",
    "tags": {"allOf": [{"key": "project", "value": "atlas"}]},
    "metadata": {"anyOf": [{"key": "owner"}]},
}


def _table() -> tuple[list[str], dict[str, list[str]]]:
    """The table's source columns and, per filter field, its cells."""
    text = FILTERS_MD.read_text()
    section = text[text.index("### Which filter each source supports") :]
    lines = [line for line in section.splitlines()[1:] if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, body = rows[0], rows[2:]
    cells: dict[str, list[str]] = {}
    for row in body:
        for field in re.findall(r"`([A-Za-z]+)`", row[0]):
            cells[field] = row[1:]
    return header[1:], cells


COLUMNS, CELLS = _table()


@pytest.fixture
def config(stack_env) -> Config:  # noqa: F811
    stack_env.setenv("METADATA_TABLE_BUCKET", BUCKET)
    return Config.from_env()


def test_the_table_has_a_row_for_every_filter_field_and_a_column_for_every_source():
    fields = {field.alias for field in FilterSpec.model_fields.values()}
    assert set(CELLS) == fields == set(VALUES)
    assert COLUMNS == list(SOURCES)


@pytest.mark.parametrize("field", sorted(VALUES))
@pytest.mark.parametrize("column", list(SOURCES))
def test_each_cell_is_what_validate_spec_does(config, field, column):
    source, _ = SOURCES[column]
    cell = CELLS[field][COLUMNS.index(column)]
    spec = {"operation": TAGGING, **source, "filter": {field: VALUES[field]}}

    if cell.lower().startswith("no"):
        with pytest.raises(SpecValidationError) as raised:
            normalize_spec(spec, config)
        (line,) = [line for line in str(raised.value).splitlines() if line.startswith(f"filter.{field}:")]
        supporting = [
            SOURCES[other][1]
            for other, text in zip(COLUMNS, CELLS[field], strict=True)
            if not text.lower().startswith("no")
        ]
        assert any(name in line for name in supporting), line
    else:
        normalized = normalize_spec(spec, config)
        assert normalized["filter"][field] == VALUES[field]
