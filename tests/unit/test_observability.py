"""The handlers' shared logger when one process hosts every function (the embedded AWS)."""

from __future__ import annotations

import io
import json
import sys
import threading
import time

from batchpipe_core.observability import instrumented, logger
from batchpipe_local.lambdas import LambdaContext


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
