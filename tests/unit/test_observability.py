"""The handlers' shared logger when one process hosts every function (the embedded AWS)."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path

from batchpipe.local.lambdas import LambdaContext
from batchpipe_core.observability import instrumented, logger


def test_concurrent_invocations_log_the_service_of_the_environment(monkeypatch):
    # As when the harness imports the module before any function's environment exists.
    monkeypatch.setattr(logger, "service", "service_undefined")
    monkeypatch.setitem(logger._default_log_keys, "service", "service_undefined")
    monkeypatch.setitem(logger.registered_formatter.keys_combined, "service", "service_undefined")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "batchpipe-test")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    out = io.StringIO()
    handler = logger.registered_handler
    monkeypatch.setattr(handler, "stream", out)

    @instrumented
    def chatty(event: dict, context) -> None:
        for n in range(20):
            logger.info("working", extra={"n": n})
            time.sleep(0)  # let another invocation start (and clear the logger's state) meanwhile

    def invoke_many() -> None:
        for _ in range(15):
            chatty(
                {}, LambdaContext("ChattyFunction", "arn:aws:lambda:us-east-1:123456789012:function:chatty")
            )

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=invoke_many) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    monkeypatch.undo()  # the logger's own service back before anything else logs
    logger.clear_state()

    services = {json.loads(line)["service"] for line in out.getvalue().splitlines()}
    assert services == {"batchpipe-test"}


def _modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    import os
    import subprocess

    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        # The functions' code root, as pytest's pythonpath and Lambda give it.
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "functions"),
            **(env or {}),
        },
    )
    return set(done.stdout.split())


def test_the_spec_checks_load_no_xray_sdk_and_a_wrapped_handler_does():
    """The `batchpipe` command imports the spec's checks, which import the handlers' logger; only a
    handler (wrapped at a Lambda's init) makes the Tracer, whose X-Ray SDK builds a client on import
    (a 40-line traceback under an unknown AWS_PROFILE), and only when tracing is on: with
    POWERTOOLS_TRACE_DISABLED (local runs, preview) the disabled Tracer would only pass the call on."""
    unknown_profile = {"AWS_PROFILE": "no-such-profile", "AWS_DEFAULT_REGION": "us-east-1"}
    tracing = {"POWERTOOLS_TRACE_DISABLED": "false", "AWS_DEFAULT_REGION": "us-east-1"}

    checks = _modules_after("import batchpipe_core.spec", unknown_profile)
    traced = _modules_after("import validate_spec.app", tracing)
    untraced = _modules_after("import validate_spec.app", {"POWERTOOLS_TRACE_DISABLED": "true"})

    assert not {m for m in checks if m.startswith("aws_xray_sdk")}
    assert "aws_xray_sdk.core" in traced
    assert not {m for m in untraced if m.startswith("aws_xray_sdk")}
