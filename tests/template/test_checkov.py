"""checkov on template.yaml: zero findings, except skips justified next to the resource.

A skip is written in the resource's own Metadata, with the reason:

    Metadata:
      checkov:
        skip:
          - id: CKV_AWS_117
            comment: "No VPC resources are used; a VPC would only add NAT cost and cold starts."

checkov decides which conditional resources exist from the parameter defaults, so it runs twice: on
the template as it deploys by default, and with every optional resource switched on (trail, e-mail
subscription). checkov pins its own dependencies, so it lives in its own virtualenv: set CHECKOV to
its executable or create `.venv-checkov` from requirements/checkov.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from batchpipe.local.template import load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
DEFAULT_CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"

# Parameter values that switch every optional (conditional) resource on.
EVERYTHING_ON = {
    "CreateTrail": "true",
    "NotificationEmail": "ops@example.com",
    "AWSSDKPandasLayerArn": "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python313-Arm64:16",
}


@pytest.fixture(scope="module")
def checkov() -> Path:
    path = Path(os.environ.get("CHECKOV", DEFAULT_CHECKOV)).absolute()
    if not path.is_file():
        message = (
            f"checkov not found at {path}: create it with `python3 -m venv .venv-checkov && "
            ".venv-checkov/bin/pip install -r requirements/checkov.txt`, or set CHECKOV"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def _variant(tmp_path: Path, name: str, defaults: dict[str, str]) -> Path:
    """The template as JSON (checkov reads both), with some parameter defaults changed."""
    template = load_template(TEMPLATE_PATH)
    for parameter, value in defaults.items():
        template["Parameters"][parameter]["Default"] = value
    folder = tmp_path / name
    folder.mkdir()
    # DefinitionUri and CodeUri are relative to the template; keep them resolvable.
    for relative in ("statemachine", "functions"):
        (folder / relative).symlink_to(REPO_ROOT / relative, target_is_directory=True)
    path = folder / "template.json"
    path.write_text(json.dumps(template, indent=1), encoding="utf-8")
    return path


# No network: no Prisma Cloud guideline download, no PyPI update check, no SCA package scan.
QUIET_ENV = {
    "BC_SKIP_MAPPING": "TRUE",
    "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
    "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    "LOG_LEVEL": "ERROR",
}


def _run(checkov: Path, root: Path, templates: list[Path]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BC_", "PRISMA_"))}
    files = [arg for template in templates for arg in ("--file", str(template.relative_to(root)))]
    result = subprocess.run(
        [str(checkov), *files, "--framework", "cloudformation", "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=root,
        env={**env, **QUIET_ENV},
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov exit {result.returncode}, no JSON report:\n{result.stderr[-4000:]}", pytrace=False
        )
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r.get("check_type") == "cloudformation"]
    return report


@pytest.fixture(scope="module")
def reports(checkov: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Variant name -> {"summary", "failed", "skipped"}; one checkov run for all (it starts slowly)."""
    root = tmp_path_factory.mktemp("checkov")
    variants = {"defaults": {}, "everything-on": EVERYTHING_ON}
    report = _run(checkov, root, [_variant(root, name, defaults) for name, defaults in variants.items()])
    assert report["summary"].get("parsing_errors", 0) == 0, f"checkov could not parse: {report['summary']}"

    def of(variant: str, kind: str) -> list[dict[str, Any]]:
        return [c for c in report["results"].get(kind, []) if Path(c["file_path"]).parts[1] == variant]

    return {
        name: {
            "summary": report["summary"],
            "failed": of(name, "failed_checks"),
            "skipped": of(name, "skipped_checks"),
            "passed": of(name, "passed_checks"),
        }
        for name in variants
    }


def _findings(report: dict[str, Any]) -> list[str]:
    return [f"{check['check_id']} {check['resource']}: {check['check_name']}" for check in report["failed"]]


@pytest.mark.parametrize("variant", ["defaults", "everything-on"])
def test_checkov_finds_nothing(reports: dict[str, dict[str, Any]], variant: str) -> None:
    report = reports[variant]
    assert report["passed"] or report["skipped"], f"checkov checked nothing in the {variant} template"
    findings = _findings(report)
    assert not findings, (
        f"checkov findings ({variant}); fix them or skip with a reason in the resource's Metadata "
        "(checkov: skip: - id: ... comment: ...):\n  " + "\n  ".join(sorted(findings))
    )


def test_every_skip_is_justified_and_still_needed(reports: dict[str, dict[str, Any]]) -> None:
    """A skip without a reason hides a finding; a skip of a check that passes hides nothing."""
    used = {
        (check["resource"].split(".", 1)[1], check["check_id"])
        for report in reports.values()
        for check in report["skipped"]
    }
    declared = []
    for logical_id, resource in load_template(TEMPLATE_PATH)["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            declared.append((logical_id, skip.get("id"), (skip.get("comment") or "").strip()))
    unjustified = [f"{logical_id} {check}" for logical_id, check, comment in declared if len(comment) < 20]
    stale = [f"{logical_id} {check}" for logical_id, check, _ in declared if (logical_id, check) not in used]
    assert not unjustified, f"checkov skips without a real reason (comment): {unjustified}"
    assert not stale, f"checkov skips for checks that no longer fire (remove them): {stale}"


def test_checkov_is_the_pinned_version(reports: dict[str, dict[str, Any]]) -> None:
    pinned = next(
        line.split("==", 1)[1].strip()
        for line in (REPO_ROOT / "requirements" / "checkov.txt").read_text(encoding="utf-8").splitlines()
        if line.startswith("checkov==")
    )
    versions = {report["summary"].get("checkov_version") for report in reports.values()}
    assert versions == {pinned}, (
        f"checkov {versions} ran, requirements/checkov.txt pins {pinned}: recreate .venv-checkov"
    )


def test_checkov_executable_is_not_on_the_dev_venv() -> None:
    """checkov's pins conflict with ours; it must never be installed into .venv by accident."""
    assert shutil.which("checkov", path=str(REPO_ROOT / ".venv" / "bin")) is None
