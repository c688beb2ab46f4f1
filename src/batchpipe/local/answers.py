"""The embedded S3 Batch engine's settings a `local` command can choose, by name (no engine import:
the command-line parsers read this)."""

from __future__ import annotations

# `local run --suspended-generator`: the engine settings that give each answer (docs/LOCAL.md).
SUSPENDED_GENERATOR_ANSWERS: dict[str, dict[str, bool]] = {
    "neither": {},
    "manifest": {"generated_manifest_before_run": True},
    "count": {"withhold_total": False},
    "both": {"generated_manifest_before_run": True, "withhold_total": False},
}
