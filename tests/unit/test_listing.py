"""S3 listings without botocore's paginator (batchpipe_core/listing.py), on moto's S3."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from batchpipe_core.errors import TransientError
from batchpipe_core.listing import object_pages
from batchpipe_core.multipart import list_sources, sources_after

BUCKET = "listing-bucket-example"
#: Keys whose UTF-8 order differs from their order as written, across three pages of two.
KEYS = ["p/b", "p/a", "p/é", "p/z", "p/日本", "p/A", "q/other"]


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for key in KEYS:
            client.put_object(Bucket=BUCKET, Key=key, Body=key.encode())

        def no_paginator(*_, **__):
            raise AssertionError("a listing asked for botocore's paginator")

        client.get_paginator = no_paginator  # loading its model is the cost the module avoids
        yield client


def listed(pages) -> list[str]:
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_every_page_is_followed_in_key_order(s3):
    pages = list(object_pages(s3, Bucket=BUCKET, Prefix="p/", MaxKeys=2))
    expected = sorted((k for k in KEYS if k.startswith("p/")), key=str.encode)
    assert listed(pages) == expected
    assert len(pages) == 3
    assert [page["IsTruncated"] for page in pages] == [True, True, False]


def test_start_after_holds_on_every_page(s3):
    assert listed(object_pages(s3, Bucket=BUCKET, Prefix="p/", StartAfter="p/a", MaxKeys=1)) == [
        "p/b",
        "p/z",
        "p/é",
        "p/日本",
    ]


def test_a_caller_that_stops_early_requests_no_further_page(s3):
    requests = []
    s3.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: requests.append(1))
    pages = object_pages(s3, Bucket=BUCKET, Prefix="p/", MaxKeys=2)
    next(pages)
    assert len(requests) == 1


def test_delimited_listing_gives_each_folder_once(s3):
    pages = list(object_pages(s3, Bucket=BUCKET, Delimiter="/", MaxKeys=1))
    folders = [common["Prefix"] for page in pages for common in page.get("CommonPrefixes", [])]
    assert folders == ["p/", "q/"]


def test_the_packing_listings_read_every_page(s3, monkeypatch):
    monkeypatch.setattr("batchpipe_core.multipart.LIST_PAGE_KEYS", 2)
    assert [source.key for source in sources_after(s3, bucket=BUCKET, prefix="p/", after="p/b")] == [
        "p/z",
        "p/é",
        "p/日本",
    ]
    assert [source.size for source in list_sources(s3, BUCKET, "p/")] == [3, 3, 3, 3, 4, 8]


@pytest.mark.parametrize("token", [None, "the-first-token-again"])
def test_a_listing_that_cannot_go_on_is_an_error_not_a_short_listing(s3, token):
    """A truncated page without a token, or with one already given: S3 never answers so (its
    documentation: a truncated response carries NextContinuationToken), and if it did, stopping
    would look like a whole listing to the report stage that counts what it lists."""
    tokens = []

    def mangle(parsed, **_):
        if parsed.get("NextContinuationToken"):
            tokens.append(parsed["NextContinuationToken"])
            if token is None:
                del parsed["NextContinuationToken"]
            elif len(tokens) > 1:
                parsed["NextContinuationToken"] = tokens[0]

    s3.meta.events.register("after-call.s3.ListObjectsV2", mangle)
    with pytest.raises(TransientError, match="continuation token"):
        listed(object_pages(s3, Bucket=BUCKET, Prefix="p/", MaxKeys=2))


def test_past_s3s_1000_keys_a_page_every_key_is_listed(s3):
    """S3's own page size (ListObjectsV2 returns at most 1,000 keys a page: S3 API reference,
    MaxKeys), not a small one set by the test: the listings that give no MaxKeys cross it too."""
    keys = [f"many/{index:04d}-é" for index in range(1001)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    pages = list(object_pages(s3, Bucket=BUCKET, Prefix="many/"))
    assert [len(page["Contents"]) for page in pages] == [1000, 1]
    assert [source.key for source in list_sources(s3, BUCKET, "many/")] == keys
