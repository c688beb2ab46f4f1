"""State-machine tests run the real pipeline.asl.json with the real handlers on the embedded AWS."""

from __future__ import annotations

import pytest

from batchpipe.local.stack import LocalStack


@pytest.fixture
def stack():
    with LocalStack() as running:
        yield running
