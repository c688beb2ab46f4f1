"""S3 listings, a ListObjectsV2 page at a time, without botocore's paginator.

A paginator needs S3's pagination model, which botocore loads the first time a client is asked for
one: in a fresh process that is ~8 ms of CPU (reading ``paginators-1.json`` and scanning botocore's
data folders for it), about 2% of the report stage at 30% failed in ``benchmarks/bench_report.py``,
paid again by every new execution environment of every function that lists. ListObjectsV2 says
itself how to go on: a truncated page (``IsTruncated``) carries ``NextContinuationToken``, which the
next request sends as ``ContinuationToken`` with the same other parameters (S3 API reference,
ListObjectsV2), as botocore's paginator does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from batchpipe_core.errors import TransientError


def object_pages(s3: Any, **parameters: Any) -> Iterator[dict[str, Any]]:
    """ListObjectsV2's pages for ``parameters`` (``Bucket``, ``Prefix``, ``StartAfter``, ``Delimiter``,
    ``MaxKeys``...), in order, each requested only when the one before it has been used up, so a
    caller that stops early lists no further page.

    A listing that cannot go on is an error, never a short listing that looks whole (the report
    stage counts and joins what it lists): a truncated page without a token, or a token the
    listing was already given (botocore's paginator refuses the second too)."""
    given: set[str] = set()
    while True:
        page = s3.list_objects_v2(**parameters)
        yield page
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")
        if not token or token in given:
            raise TransientError(
                f"ListObjectsV2 of s3://{parameters.get('Bucket')}/{parameters.get('Prefix', '')} gave a "
                f"truncated page without a new continuation token ({token!r}); list again"
            )
        given.add(token)
        parameters = {**parameters, "ContinuationToken": token}
