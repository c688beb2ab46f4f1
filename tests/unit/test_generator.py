"""The spec's filter as S3 Batch's manifest generator filter: what it maps, and what it refuses by name."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batchpipe_core.generator_rules import generator_filter, generator_problems


def test_every_supported_field_keeps_its_meaning():
    conditions = generator_filter(
        {
            "prefixes": ["photos/日本 a+b%"],
            "suffixes": [".JPG"],
            "substrings": [" +%é/"],
            "replicationStatuses": ["FAILED", "NONE"],
            "eligibleForReplication": True,
            "minSizeBytes": 10,
            "maxSizeBytes": 20,
            "modifiedAfter": "2024-01-01T00:00:00Z",
            "modifiedBefore": "2024-02-01T00:00:00Z",
            "storageClasses": ["STANDARD", "GLACIER_IR"],
            "encryptionStatuses": ["SSE-KMS"],
            "latestOnly": True,
            "versions": "current",
        }
    )

    assert conditions == {
        # The raw key, not an encoding of it: the generator compares object keys as stored.
        "KeyNameConstraint": {
            "MatchAnyPrefix": ["photos/日本 a+b%"],
            "MatchAnySuffix": [".JPG"],
            "MatchAnySubstring": [" +%é/"],
        },
        "ObjectReplicationStatuses": ["FAILED", "NONE"],
        "EligibleForReplication": True,
        # Inclusive spec bounds as the generator's strict ones.
        "ObjectSizeGreaterThanBytes": 9,
        "ObjectSizeLessThanBytes": 21,
        "CreatedAfter": datetime(2023, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        "CreatedBefore": datetime(2024, 2, 1, tzinfo=UTC),
        "MatchAnyStorageClass": ["STANDARD", "GLACIER_IR"],
        "MatchAnyObjectEncryption": [{"SSEKMS": {}}],
    }


def test_no_filter_and_a_zero_minimum_add_no_condition():
    assert generator_filter(None) == {}
    assert generator_filter({"minSizeBytes": 0, "latestOnly": True}) == {}
    assert generator_filter({"maxSizeBytes": 0}) == {"ObjectSizeLessThanBytes": 1}


@pytest.mark.parametrize(
    ("filter_spec", "field", "fix"),
    [
        ({"keyRegex": "\\.jpg$"}, "filter.keyRegex", "the inventory source"),
        ({"where": "size > 0"}, "filter.where", "the inventory source"),
        ({"prefixes": ["a/", "b/"]}, "filter.prefixes", "run once per prefix"),
        ({"suffixes": [".jpg", ".png"]}, "filter.suffixes", "run once per suffix"),
        ({"substrings": ["a", "b"]}, "filter.substrings", "run once per substring"),
        ({"replicationStatuses": ["FAILED", "PENDING"]}, "filter.replicationStatuses", "PENDING"),
        ({"storageClasses": ["STANDARD", "OUTPOSTS"]}, "filter.storageClasses", "OUTPOSTS"),
        ({"encryptionStatuses": ["SSE-S3", "NOT-SSE"]}, "filter.encryptionStatuses", "run once per status"),
        ({"latestOnly": False}, "filter.latestOnly", "remove latestOnly: false"),
        ({"versions": "pinned"}, "filter.versions", '"current"'),
    ],
)
def test_what_the_generator_cannot_do_is_refused_by_name(filter_spec, field, fix):
    problems = generator_problems(filter_spec)

    assert len(problems) == 1
    assert problems[0].startswith(f"{field}: ")
    assert fix in problems[0]
    assert "\n" not in problems[0]


def test_a_filter_the_generator_can_apply_has_no_problems():
    assert generator_problems(None) == []
    assert (
        generator_problems(
            {
                "prefixes": ["a/"],
                "storageClasses": ["GLACIER"],
                "encryptionStatuses": ["NOT-SSE"],
                "latestOnly": True,
            }
        )
        == []
    )
