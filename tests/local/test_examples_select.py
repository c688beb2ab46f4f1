"""Every shipped example selects objects on the demo's generated data (`make demo`: 2,000 objects,
seed 7), so an operator trying one on `local run`, `local serve` or `preview` sees it act on something.

Each example runs as a dry run through the real pipeline on one embedded stack; the rerun example
takes the failures file of a run on the same data whose failures include the error code it names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchpipe.local.stack import LocalStack
from batchpipe.local.world import World

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.json"))
RERUN_EXAMPLE = REPO / "examples" / "rerun-failures.json"
DEMO_OBJECTS, DEMO_SEED = 2000, 7  # the Makefile's demo, local run's default seed


@pytest.fixture(scope="module")
def demo_stack():
    world = World()
    with LocalStack(parameters=world.parameters(), faults=_demo_faults()) as stack:
        world.seed(stack.client("s3"), world.generated(DEMO_OBJECTS, seed=DEMO_SEED))
        yield stack


def _demo_faults() -> list[dict]:
    """The demo's faults, and a bucket policy that refuses one folder (the rerun example's story)."""
    demo = json.loads((REPO / "examples" / "local" / "faults.json").read_text())
    return [*demo, {"keyRegex": "^photos/2023/", "httpStatus": 403, "errorCode": "AccessDenied"}]


def _dry_run(stack: LocalStack, spec: dict, name: str) -> dict:
    execution = stack.run({**spec, "dryRun": True}, name=name, timeout=600)
    assert execution.status == "SUCCEEDED", execution.message
    return execution.output


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e != RERUN_EXAMPLE], ids=lambda p: p.stem)
def test_each_example_selects_objects_of_the_demo(demo_stack, example):
    summary = _dry_run(demo_stack, json.loads(example.read_text()), f"dry-{example.stem}")

    assert summary["status"] == "DRY_RUN", summary
    assert summary["manifest"]["objects"] > 0, f"{example.name} selects nothing on the demo's data"


def test_the_rerun_example_selects_the_failures_it_names(demo_stack):
    spec = json.loads(RERUN_EXAMPLE.read_text())
    first = demo_stack.run(
        {"name": "retag-photos", "filter": {"prefixes": ["photos/2023/"]}, "operation": spec["operation"]},
        name="retag-photos-1",
        timeout=600,
    )
    failures = first.output["permanentFailures"]
    assert failures, first.output

    summary = _dry_run(demo_stack, {**spec, "rerun": {**spec["rerun"], "failures": failures}}, "dry-rerun")

    assert summary["manifest"]["objects"] > 0
    assert summary["manifest"]["objects"] == first.output["totals"]["failedPermanent"]
