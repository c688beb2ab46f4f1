"""`batchpipe preview` with a hostile filter.where (issue 11): refused naming the field, no file read."""

from __future__ import annotations

import json

import pytest

from batchpipe.cli import main
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


def test_preview_counts_integer_division_as_athena_and_fails_where_athena_fails(tmp_path, capsys):
    from collections import Counter
    from datetime import UTC, datetime

    from batchpipe.local import inventory as inv

    objects = [o for o in inv.generate_objects(300, seed=11, bucket="their-bucket") if o.size is not None]
    inv.write_inventory_dir(
        tmp_path / "inv", source_bucket="their-bucket", dest_bucket="dest", dest_prefix="inv",
        config_id="cfg", objects=objects, fmt="CSV", delivery_time=datetime(2024, 3, 4, tzinfo=UTC),
    )  # fmt: skip
    # Trino divides bigints as integers (truncating): the most common quotient, counted in Python.
    quotient, expected = Counter(o.size // 1000 for o in objects).most_common(1)[0]
    spec = tmp_path / "spec.json"

    spec.write_text(json.dumps({"filter": {"where": f"size / 1000 = {quotient}"}}))
    code = main(["preview", "--spec", str(spec), "--inventory", str(tmp_path / "inv")])
    assert code == 0
    assert f"objects selected: {expected}\n" in capsys.readouterr().out

    spec.write_text(json.dumps({"filter": {"where": "size / 0 = 1"}}))
    code = main(["preview", "--spec", str(spec), "--inventory", str(tmp_path / "inv")])
    printed = capsys.readouterr()
    assert code == 2
    assert len(printed.err.splitlines()) == 1 and "DIVISION_BY_ZERO: Division by zero" in printed.err
    assert "objects selected" not in printed.out
