"""Static checks of what gets deployed: the template, its build, the state machine definition, the code style.

Each tool runs as its own test so a failure names the tool and shows its own output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import pytest
from statelint.config import Config as StatelintConfig
from statelint.linter import Linter as Statelint

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
VENV_SCRIPTS = Path(sysconfig.get_path("scripts"))

# ELF e_machine values (ELF spec): what a native extension in the build was compiled for.
ELF_MACHINES = {62: "x86_64", 183: "arm64"}


def run(command: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )


def assert_ok(result: subprocess.CompletedProcess[str], tail: int = 80) -> None:
    """Fails with the tool's own output (its last lines), not a repr of the whole process result."""
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()
        command = " ".join(result.args)
        pytest.fail(f"{command}\nexit {result.returncode}:\n" + "\n".join(lines[-tail:]), pytrace=False)


def test_cfn_lint_is_clean() -> None:
    # The console script rather than the API: it reads the project's .cfnlintrc if one is added.
    result = run([VENV_SCRIPTS / "cfn-lint", "--", TEMPLATE_PATH], cwd=REPO_ROOT, timeout=300)
    assert_ok(result)


def test_sam_validate_lint(sam_cli: Path, sam_env: dict[str, str], tmp_path: Path) -> None:
    # Checked to work with the network unplugged (unshare -n): the lint is local.
    result = run(
        [sam_cli, "validate", "--lint", "--template-file", TEMPLATE_PATH],
        cwd=tmp_path,
        env=sam_env,
        timeout=300,
    )
    assert_ok(result)


def _elf_machine(path: Path) -> str | None:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(header[18:20], "little")
    return ELF_MACHINES.get(machine, f"e_machine={machine}")


LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


@pytest.mark.slow
def test_sam_build(sam_cli: Path, sam_env: dict[str, str], lambda_functions: dict[str, Any]) -> None:
    """`sam build` as a deployer runs it, with the local interpreter standing in for the runtime.

    The template's default Architecture (arm64) is kept: sam build asks pip for manylinux aarch64
    wheels from PyPI, which works on an x86_64 machine as long as every dependency ships such
    wheels or is pure Python. Only the runtime is overridden, since sam build needs a local
    interpreter of the same version as the function's Runtime.
    """
    runtime = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert shutil.which(runtime, path=sam_env.get("PATH")), f"sam build needs {runtime} on PATH"
    # sam build copies the dependencies into every function (hundreds of MB): a scratch directory
    # that is removed at once, rather than pytest's tmp_path which keeps the last runs.
    with tempfile.TemporaryDirectory(prefix="batchpipe-sam-build-") as scratch:
        build_dir = Path(scratch) / "build"
        result = run(
            [
                sam_cli,
                "build",
                "--template-file",
                TEMPLATE_PATH,
                "--build-dir",
                build_dir,
                "--parameter-overrides",
                f"PythonRuntime={runtime}",
            ],
            cwd=scratch,
            env=sam_env,
            timeout=900,
        )
        assert_ok(result)

        missing_handlers = []
        for logical_id, resource in lambda_functions.items():
            module = resource["Properties"]["Handler"].rsplit(".", 1)[0]
            module_file = build_dir / logical_id / (module.replace(".", "/") + ".py")
            if not module_file.is_file():
                missing_handlers.append(str(module_file.relative_to(build_dir)))
        assert not missing_handlers, f"handler modules missing from the build: {missing_handlers}"

        wrong_arch = sorted(
            f"{path.relative_to(build_dir)} ({machine})"
            for path in build_dir.rglob("*.so*")
            if path.is_file() and (machine := _elf_machine(path)) not in (None, "arm64")
        )
        assert not wrong_arch, f"native code not built for arm64: {wrong_arch[:10]}"

        # Lambda: 250 MB unzipped for a function and all its layers (Lambda quotas, "Deployment
        # package (.zip file archive) size"). ReportPartFunction is the one with a layer.
        unzipped = sum(
            path.stat().st_size
            for directory in ("ReportPartFunction", "ArrowLayer")
            for path in (build_dir / directory).rglob("*")
            if path.is_file()
        )
        # pyarrow only where its wheels run: python3.12+ (layers/arrow/requirements.txt)
        has_pyarrow = (build_dir / "ArrowLayer" / "python" / "pyarrow").is_dir()
        assert has_pyarrow == (sys.version_info >= (3, 12)), f"ArrowLayer holds pyarrow: {has_pyarrow}"
        assert unzipped < LAMBDA_UNZIPPED_LIMIT_BYTES, f"ReportPartFunction + ArrowLayer: {unzipped:,} bytes"


# statelint 3.1.0 insists that BackoffRate be a JSON float (2.0), but the ASL field is a number and
# AWS's own guide writes `"BackoffRate": 2` (Step Functions developer guide, "Handle Lambda service
# exceptions", bp-lambda-serviceexception.html). Only that exact message is ignored.
# statelint 3.1.0 also predates ReaderConfig's InputType, which a Distributed Map reading a JSON array
# from S3 needs (Step Functions developer guide, "ItemReader (Map)": InputType CSV, JSON, JSONL,
# MANIFEST or PARQUET).
STATELINT_FALSE_POSITIVES = (
    re.compile(
        r"^State Machine\.States\.[^ ]+\.Retry\[\d+\]\.BackoffRate is [1-9]\d* but should be a Float$"
    ),
    re.compile(r'^Field "InputType" not allowed in State Machine\.States\.[^ ]+\.ItemReader\.ReaderConfig$'),
)


def test_asl_lint_substituted(substituted_asl: dict[str, Any]) -> None:
    problems = Statelint.validate(substituted_asl, StatelintConfig())
    real = [p for p in problems if not any(fp.match(p) for fp in STATELINT_FALSE_POSITIVES)]
    assert not real, "statelint:\n" + "\n".join(real)


def test_ruff_check() -> None:
    result = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO_ROOT, timeout=300)
    assert_ok(result)


def test_ruff_format() -> None:
    result = run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=REPO_ROOT, timeout=300
    )
    assert_ok(result)
