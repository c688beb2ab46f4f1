"""The run page's HTML (batchpipe_core.runpage) read back by an HTML parser: whatever a run's keys,
names and messages hold, they come back as text and never as markup; and each kind of run - one with
its records, one older than the page, a dry run, a failed one - gets a page that says what happened.
(tests/local/test_run_page_browser.py opens a local run's page in Chromium.)"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
if str(FUNCTIONS) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS))

from batchpipe_core.accounting import AttemptRecord  # noqa: E402
from batchpipe_core.prefixes import PrefixTally  # noqa: E402
from batchpipe_core.runpage import RunPage, render  # noqa: E402

HOSTILE = [
    '"><script>alert(1)</script>',
    'it\'s <b>bold</b> & "quoted"',
    "\u202etxt.exe \u05e9\u05dc\u05d5\u05dd",
    "line\nbreak\x00nul",
    "k" * 1024,
]


class Page(HTMLParser):
    """The elements and the text a parser finds in the page."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.chunks: list[str] = []
        self.links: list[str] = []
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name == "href"]

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section", "h1", "h2",
    "h3", "p", "span", "div", "strong", "code", "bdi", "i", "ul", "li", "a", "table", "thead", "tbody",
    "tr", "th", "td", "svg", "rect", "details", "summary",
}  # fmt: skip


def record(attempt: int, total: int, succeeded: int, retriable: int, permanent: int, keys: list, **extra):
    prefixes = PrefixTally()
    for key, is_retriable in keys:
        prefixes.add(key, retriable=is_retriable)
    errors = {}
    if retriable:
        errors["503 SlowDown"] = retriable
    if permanent:
        errors["403 AccessDenied"] = permanent
    return AttemptRecord(
        attempt=attempt,
        jobId=f"job-{attempt}",
        jobStatus="Complete",
        total=total,
        succeeded=succeeded,
        failedRetriable=retriable,
        failedPermanent=permanent,
        errors=errors,
        failuresByPrefix=prefixes.as_document(),
        report=f"s3://pipe/runs/x/attempt-{attempt}/report/job-{attempt}/manifest.json",
        **extra,
    )


def summary(status: str = "PARTIAL", **extra) -> dict:
    return {
        "name": HOSTILE[0],
        "executionId": "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
        "status": status,
        "manifest": {"location": "s3://pipe/runs/x/manifest.csv", "objects": 10},
        "attempts": [],
        "totals": {"objects": 10, "succeeded": 5, "failedPermanent": 5, "failedRetriesExhausted": 0},
        "permanentFailures": "s3://pipe/runs/x/permanent-failures.csv",
        "estimatedCostUsd": 0.2512,
        **extra,
    }


def test_keys_and_messages_of_any_kind_come_back_as_text_never_as_markup():
    failing = [(f"{name}/object", False) for name in HOSTILE]
    records = [
        record(
            1, 10, 3, 2, 5, [*failing, ("slow/a", True), ("slow/b", True)], jobCreated="2026-11-20T15:00:00Z"
        ),
        record(2, 2, 2, 0, 0, []),
    ]
    document = render(
        RunPage(
            summary=summary("FAILED", error=HOSTILE[1], cause=HOSTILE[0] + HOSTILE[2]),
            records=records,
            started=datetime(2026, 11, 20, 14, 58, tzinfo=UTC),
            finished=datetime(2026, 11, 20, 15, 10, tzinfo=UTC),
            link=lambda uri: "https://console.example/?" + uri,
        )
    )

    page = Page(document)
    assert set(page.tags) <= ALLOWED_TAGS
    assert "script" not in page.tags and "b" not in page.tags
    for name in HOSTILE[:2]:
        assert f"{name}/" in page.text
    assert "\\u202etxt.exe \u05e9\u05dc\u05d5\u05dd/" in page.text  # the override shown, the Hebrew kept
    assert "\u202e" not in page.text  # nowhere, not in names or messages either
    assert "line\\x0abreak\\x00nul/" in page.text  # control characters are shown, not obeyed
    assert "k" * 200 + "…" in page.text  # the 1,024-byte key's folder, cut where the record cuts it
    assert document.count("<bdi") >= len(HOSTILE)  # each key isolated from the page's direction
    assert all(link.startswith("https://") for link in page.links)
    assert "Content-Security-Policy" in document and "default-src 'none'" in document


def test_lone_surrogates_in_a_key_make_a_valid_page():
    broken = "bad\udcff/key"
    document = render(RunPage(summary=summary(), records=[record(1, 10, 9, 0, 1, [(broken, False)])]))
    document.encode("utf-8")  # no UnicodeEncodeError: the page can be written
    assert "bad\\udcff/" in Page(document).text


def test_a_page_for_every_attempt_and_the_depth_where_the_failures_split():
    records = [
        record(
            1,
            10,
            4,
            3,
            3,
            [("photos/2023/a/1", False), ("photos/2023/b/2", False), ("photos/2023/b/3", False)]
            + [("photos/2023/a/4", True)] * 3,
        ),
        record(2, 3, 3, 0, 0, []),
    ]
    document = render(RunPage(summary=summary(), records=records))

    page = Page(document)
    assert document.count('class="attempt"') == 2
    # Depths 1 and 2 hold one prefix each; at depth 3 the failures split: that table is the open one.
    assert 'id="prefix-table" data-depth="3"' in document
    assert "photos/2023/b/" in page.text and "photos/2023/a/" in page.text
    assert "Timeline" not in page.text  # these records carry no times: no invented timeline


def test_an_older_run_renders_from_its_summary_alone():
    attempts = [
        {
            "attempt": 1,
            "jobId": "j",
            "jobStatus": "Complete",
            "total": 10,
            "succeeded": 5,
            "failedRetriable": 0,
            "failedPermanent": 5,
            "errors": {"404 NoSuchKey": 5},
        }
    ]
    page = Page(render(RunPage(summary=summary(attempts=attempts))))
    assert "404 NoSuchKey" in page.text and "permanent" in page.text
    assert "Failures by key prefix" not in page.text  # no records: nothing to say about prefixes


def test_a_dry_run_lists_its_sample_keys_as_text():
    manifest = {"location": None, "objects": 3, "sample": HOSTILE[:2]}
    page = Page(render(RunPage(summary=summary("DRY_RUN", manifest=manifest, totals=None))))
    assert "DRY_RUN" in page.text
    assert HOSTILE[0] in page.text and HOSTILE[1] in page.text
    assert "script" not in page.tags


def test_the_error_table_stays_bounded_however_many_codes_a_run_met():
    many = record(1, 600, 0, 0, 600, [])
    many.errors = {f"{400 + i % 100} Code{i}": 1 for i in range(600)}
    page = Page(render(RunPage(summary=summary(), records=[many])))
    assert page.tags.count("tr") < 120  # 50 rows of errors and their meanings, at most
    assert "the rarer error codes, summed" in page.text
