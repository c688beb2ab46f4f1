"""`batchpipe preview` with a hostile filter.where (issue 11): refused naming the field, no file read."""

from __future__ import annotations

import json

import pytest

from batchpipe_local.cli import main
from tests.local.test_cli_hostile_input import _inventory

# The reported exploit, aimed at DuckDB's file readers: a quoted identifier inside a type parameter
# that sqlglot used to write back unquoted, twice nested so it survived ValidateSpec and PlanQuery.
PAYLOAD = "1)) > 0) UNION ALL SELECT content, content FROM read_text('/etc/passwd') WHERE (CAST(size AS DECIMAL(10, 1"
HOSTILE = [
    'cast(size as decimal(10, """' + PAYLOAD + '""")) > 0',
    "key IN (SELECT content FROM read_text('/etc/passwd'))",
    "read_text('/etc/passwd') IS NOT NULL",
]


@pytest.mark.parametrize("where", HOSTILE)
def test_preview_refuses_a_where_that_would_read_local_files(tmp_path, capsys, where):
    _inventory(tmp_path / "inv")
    spec = {
        "filter": {"prefixes": ["nothing-here/"], "where": where},
        "operation": {"S3DeleteObjectTagging": {}},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))

    code = main(["preview", "--spec", str(tmp_path / "spec.json"), "--inventory", str(tmp_path / "inv")])

    printed = capsys.readouterr()
    assert code == 2
    assert len(printed.err.splitlines()) == 1 and "Traceback" not in printed.err
    assert "SpecValidationError" in printed.err and "filter.where: " in printed.err
    assert "root:" not in printed.out + printed.err
    assert "objects selected" not in printed.out
