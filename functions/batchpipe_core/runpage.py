"""The run page, ``report.html``: one self-contained HTML page that shows what happened in a run.

Summarize writes it beside ``summary.json`` (docs/MONITORING.md, "The run page"); ``batchpipe local
run`` writes it into its output folder and ``batchpipe summary --html`` fetches it, or renders it
from the summary alone for runs older than the page. It is drawn only from the run's own records: the
summary, the attempt records (their counts, error codes, failures by key prefix - prefixes.py - and
times) and the run's start and end. Nothing is read twice at any scale, and the page holds no user
data beyond what the summary and the failures file already hold: counts, error codes, key prefixes
and the dry run's sample keys.

Self-contained and inert: no script, no fetch (a Content-Security-Policy forbids both, so even a
mistake here cannot make the page load something); the charts are inline SVG written below. Every
value from a run - keys, prefixes, messages, names - goes through ``text``: HTML-escaped (quotes
too), control characters shown as ``\\xNN``, lone surrogates as ``\\udcNN``, and keys inside ``<bdi>``
so right-to-left text cannot reorder the page around it.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batchpipe_core.accounting import trim_errors
from batchpipe_core.classification import NOT_RUN, classify
from batchpipe_core.prefixes import run_prefixes

#: Colours of the outcomes, the same in every chart and legend (chosen to stay apart for the common
#: colour-vision deficiencies; every number is also written out as text).
COLOURS = {
    "succeeded": "#1b7f3b",
    "retriable": "#e0a100",
    "notRun": "#8a8f98",
    "permanent": "#c2312f",
}
NONE = "&ndash;"  # shown where a figure is unknown
PREFIX_ROWS = 15  # rows of the prefix table at each depth; the record keeps 25
# Controls, and the direction overrides and isolates (U+202A-E, U+2066-9) that would turn the page's
# text around them; newlines and tabs stay in messages.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")
# In a key a newline or tab is data too, and so are the invisible direction marks and overrides
# (U+200E/F, U+202A-E, U+2066-9): shown as escapes, so "\u202etxt.exe" cannot pass for "exe.txt".
_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")

_S3_ERRORS = "https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList"
_S3_BEST_PRACTICES = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/ErrorBestPractices.html"
_BATCH_LAMBDA = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/batch-ops-invoke-lambda.html"
_RESTORE = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/restoring-objects.html"

#: What the common error codes mean, in our words, with the AWS page that defines them.
MEANINGS: dict[str, tuple[str, str | None]] = {
    "SlowDown": (
        "S3 asked for a lower request rate (per prefix); a later job usually succeeds.",
        _S3_BEST_PRACTICES,
    ),
    "InternalError": ("S3 failed internally; the request may succeed when retried.", _S3_BEST_PRACTICES),
    "ServiceUnavailable": ("S3 could not serve the request at that moment.", _S3_ERRORS),
    "RequestTimeout": ("The connection was idle too long; retried.", _S3_ERRORS),
    "AccessDenied": (
        "The batch role, a bucket policy or a KMS key policy refused the request: fix the "
        "permission, then rerun these objects.",
        _S3_ERRORS,
    ),
    "NoSuchKey": ("The object was gone by the time the job reached it.", _S3_ERRORS),
    "NoSuchVersion": ("The version the manifest named no longer exists.", _S3_ERRORS),
    "NoSuchBucket": ("The bucket does not exist (or is not visible to the role).", _S3_ERRORS),
    "InvalidObjectState": (
        "The object is archived (Glacier Flexible Retrieval / Deep Archive) and not restored.",
        _RESTORE,
    ),
    "PreconditionFailed": ("A condition of the request (e.g. an ETag) did not hold.", _S3_ERRORS),
    "MethodNotAllowed": ("The operation is not allowed on this object (e.g. a delete marker).", _S3_ERRORS),
    "TemporaryFailure": ("The job's Lambda function asked for a retry.", _BATCH_LAMBDA),
    "PermanentFailure": ("The job's Lambda function reported a failure not worth retrying.", _BATCH_LAMBDA),
    NOT_RUN: (
        "The job stopped (Failed or Cancelled) before running this task; batchpipe counts it "
        "retriable and runs it in the next attempt.",
        None,
    ),
}


@dataclass
class RunPage:
    """Everything the page shows. ``link`` turns an s3:// URI into something a browser opens (the
    S3 console on AWS, a relative path in a local run's folder), or None to show it as text."""

    summary: dict[str, Any]
    records: Sequence[Any] = ()
    started: datetime | None = None
    finished: datetime | None = None
    link: Callable[[str], str | None] = field(default=lambda uri: None)
    execution_link: str | None = None
    generated_by: str = "Summarize"


# ------------------------------------------------------------------------------ escaping


def text(value: Any, *, controls: re.Pattern[str] = _CONTROL) -> str:
    """Any value as HTML text: escaped, control characters and lone surrogates made visible."""
    raw = "" if value is None else str(value)
    raw = controls.sub(_visible, raw)
    raw = raw.encode("utf-8", "backslashreplace").decode("utf-8")
    return html.escape(raw, quote=True)


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def key_text(value: Any, *, cut: bool = False) -> str:
    """A key or prefix: isolated (``<bdi>``) so its direction cannot leak into the page."""
    shown = text(value, controls=_KEY_CONTROL) if value != "" else "<i>(top level of the bucket)</i>"
    return f'<bdi class="key">{shown}{"…" if cut else ""}</bdi>'


def _number(value: Any) -> str:
    return NONE if value is None else f"{value:,}" if isinstance(value, int) else text(value)


# --------------------------------------------------------------------------------- times


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def duration_text(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return NONE
    if seconds < 10:
        return f"{seconds:.1f} s"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _between(start: Any, end: Any) -> float | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else (b - a).total_seconds()


# --------------------------------------------------------------------------------- render


def render(page: RunPage) -> str:
    summary = page.summary
    sections = [
        _headline(page),
        _attempts(page),
        _errors(page),
        _prefixes(page),
        _timeline(page),
        _links(page),
    ]
    name = summary.get("name") or "run"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No script, no fetch, no frame: the page is data, whatever the run's keys hold.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n"
        f"<title>batchpipe {text(name)}: {text(summary.get('status'))}</title>\n"
        f"<style>{_STYLE}</style></head>\n"
        "<body><main>\n" + "\n".join(s for s in sections if s) + "\n"
        f"<footer>Written by batchpipe ({text(page.generated_by)}) from the run summary and its attempt "
        "records: counts, error codes and key prefixes only.</footer>\n"
        "</main></body></html>\n"
    )


def _headline(page: RunPage) -> str:
    summary = page.summary
    status = str(summary.get("status") or "UNKNOWN")
    totals = summary.get("totals") or {}
    manifest = summary.get("manifest") or {}
    objects = totals.get("objects", manifest.get("objects"))
    seconds = (page.finished - page.started).total_seconds() if page.started and page.finished else None
    cells = [
        ("objects", "Objects", objects),
        ("succeeded", "Succeeded", totals.get("succeeded")),
        ("failedPermanent", "Failed for good", totals.get("failedPermanent")),
        ("failedRetriesExhausted", "Retries exhausted", totals.get("failedRetriesExhausted")),
    ]
    if "notRun" in totals:
        cells.append(("notRun", "Not run", totals.get("notRun")))
    if totals.get("unresolved"):
        cells.append(("unresolved", "Unresolved", totals.get("unresolved")))
    cost = summary.get("estimatedCostUsd")
    figures = "".join(
        f'<div class="figure" data-figure="{key}"><span class="value">{_number(value)}</span>'
        f'<span class="label">{label}</span></div>'
        for key, label, value in cells
    )
    figures += (
        f'<div class="figure" data-figure="cost"><span class="value">'
        f'{NONE if cost is None else f"${cost:,.2f}"}</span><span class="label">Estimated cost</span></div>'
        f'<div class="figure" data-figure="duration"><span class="value">{duration_text(seconds)}</span>'
        '<span class="label">Duration</span></div>'
    )
    when = ""
    if page.started:
        when = f"Started {page.started.strftime('%Y-%m-%d %H:%M:%S')} UTC"
        if page.finished:
            when += f", finished {page.finished.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    notes = []
    if summary.get("rerunOf"):
        notes.append(f"A rerun of the failures in <code>{text(summary['rerunOf'])}</code>.")
    if manifest.get("why") and not objects:
        notes.append(f"Nothing selected: {text(manifest['why'])}")
    if status == "FAILED":
        notes.append(
            f"<strong>Error</strong> <code>{text(summary.get('error'))}</code>: "
            f'<span class="message">{text(str(summary.get("cause") or "")[:2000])}</span>'
        )
    if status == "CANCELLED":
        notes.append(
            "A person cancelled the job: no further attempt. The objects that never ran are in the "
            'failures file with error <code>NotRun</code>; rerun them with <code>{"rerun": {"failures": '
            '"&lt;the failures file&gt;", "errorCodes": ["NotRun"]}}</code>.'
        )
    skipped = summary.get("skipped")
    if isinstance(skipped, dict):
        notes.append(f"Skipped ({text(skipped.get('reason'))}): {text(skipped.get('message'))}")
    for job in summary.get("cancelledJobs") or []:
        if isinstance(job, dict):
            notes.append(
                f"Job <code>{text(job.get('jobId'))}</code> (attempt {text(job.get('attempt'))}) "
                f"cancelled by the pipeline: {text(job.get('reason'))}"
            )
    if status == "DRY_RUN" and manifest.get("sample"):
        keys = "".join(f"<li>{key_text(k)}</li>" for k in manifest["sample"][:20])
        notes.append(f"A dry run: no job ran. Sample of the selected keys:<ul>{keys}</ul>")
    return (
        '<header id="headline">'
        f'<p class="run">batchpipe run <bdi>{text(summary.get("name"))}</bdi></p>'
        f'<h1><span class="status status-{text(status.lower())}">{text(status)}</span></h1>'
        f'<p class="when">{text(when)}</p>'
        f'<div class="figures">{figures}</div>'
        + "".join(f'<p class="note">{note}</p>' for note in notes)
        + "</header>"
    )


def _attempt_rows(page: RunPage) -> list[dict[str, Any]]:
    """The attempts as the page draws them: the records when there are any (they have notRun and
    times), else the summary's attempts."""
    if page.records:
        return [
            {
                "attempt": r.attempt,
                "jobId": r.jobId,
                "jobStatus": r.jobStatus,
                "total": r.total,
                "succeeded": r.succeeded,
                "failedRetriable": r.failedRetriable,
                "failedPermanent": r.failedPermanent,
                "notRun": r.notRun,
                "errors": r.errors,
                "unknown": r.unknownErrorCodes,
                "report": r.report,
                "jobCreated": r.jobCreated,
                "jobEnded": r.jobEnded,
                "recorded": r.recorded,
                "closed": r.closed_retriable,
            }
            for r in page.records
        ]
    return [a for a in page.summary.get("attempts") or [] if isinstance(a, dict)]


def _attempts(page: RunPage) -> str:
    attempts = _attempt_rows(page)
    if not attempts:
        return ""
    widest = max((a.get("total") or 0) for a in attempts) or 1
    rows = []
    for a in attempts:
        total = a.get("total") or 0
        not_run = a.get("notRun") or 0
        segments = [
            ("succeeded", "succeeded", a.get("succeeded") or 0),
            ("retriable", "retriable", (a.get("failedRetriable") or 0) - not_run),
            ("notRun", "not run", not_run),
            ("permanent", "permanent", a.get("failedPermanent") or 0),
        ]
        # The bar's length is the attempt's share of the largest attempt, so the reruns shrink
        # visibly; a tiny rerun still gets a visible sliver.
        length = max(4.0, 1000.0 * total / widest) if total else 0.0
        x, rects = 0.0, []
        for kind, label, count in segments:
            if count <= 0 or not total:
                continue
            width = length * count / total
            rects.append(
                f'<rect class="segment segment-{kind}" x="{x:.2f}" y="0" width="{width:.2f}" height="28" '
                f'fill="{COLOURS[kind]}"><title>{label}: {count:,}</title></rect>'
            )
            x += width
        legend = " · ".join(
            f'<span class="count" data-kind="{kind}"><i class="swatch" style="background:{COLOURS[kind]}">'
            f"</i>{label} {count:,}</span>"
            for kind, label, count in segments
            if count > 0
        )
        job_time = _between(a.get("jobCreated"), a.get("jobEnded"))
        duration = f", job ran {duration_text(job_time)}" if job_time is not None else ""
        rows.append(
            f'<div class="attempt" data-attempt="{text(a.get("attempt"))}">'
            f"<h3>Attempt {text(a.get('attempt'))}: {total:,} objects, job "
            f"<code>{text(a.get('jobId'))}</code> {text(a.get('jobStatus'))}{duration}</h3>"
            f'<svg class="attempt-bar" viewBox="0 0 1000 28" preserveAspectRatio="none" role="img" '
            f'aria-label="attempt {text(a.get("attempt"))}: {text(legend_text(segments))}">'
            f'<rect x="0" y="0" width="1000" height="28" fill="#eef0f3"/>{"".join(rects)}</svg>'
            f'<p class="legend">{legend or "no tasks"}</p></div>'
        )
    return (
        '<section id="attempts"><h2>Attempts</h2>'
        "<p>Each bar is one S3 Batch Operations job, as long as its share of the first: what "
        "succeeded, what failed and was retried in the next attempt, and what failed for good.</p>"
        + "".join(rows)
        + "</section>"
    )


def legend_text(segments: list[tuple[str, str, int]]) -> str:
    return ", ".join(f"{label} {count}" for _, label, count in segments if count > 0)


def _split_label(label: str) -> tuple[int | None, str]:
    status, _, code = label.partition(" ")
    if status.isdigit():
        return int(status), code
    return None, label


def _errors(page: RunPage) -> str:
    attempts = _attempt_rows(page)
    counts: Counter[str] = Counter()
    unknown: set[str] = set()
    seen_in: dict[str, list[str]] = {}
    for a in attempts:
        for label, count in (a.get("errors") or {}).items():
            counts[str(label)] += int(count)
            seen_in.setdefault(str(label), []).append(str(a.get("attempt")))
        unknown.update(str(label) for label in a.get("unknown") or {})
    if not counts:
        return ""
    rows = []
    # At most MAX_ERRORS_SHOWN rows, the rarest summed as "other": the records keep every label.
    for label, count in trim_errors(dict(counts)).items():
        http_status, code = _split_label(label)
        if label == "other":
            kind, meaning = NONE, "the rarer error codes, summed (each attempt's record.json lists them all)"
            source = None
        else:
            if label in unknown:
                kind = "unclassified"
            else:
                kind = "retriable" if classify(http_status, code).retriable else "permanent"
            meaning, source = MEANINGS.get(code, ("", None))
        cite = f' <a href="{text(source)}">AWS</a>' if source else ""
        # The meaning gets a row of its own: on a phone a fifth column would be a sliver.
        rows.append(
            f'<tr class="error" data-kind="{kind}"><td><code>{text(label)}</code></td>'
            f'<td class="num">{count:,}</td><td><span class="kind kind-{kind}">{kind}</span></td>'
            f'<td class="num">{text(", ".join(seen_in.get(label, [])))}</td></tr>'
            + (f'<tr class="meaning"><td colspan="4">{text(meaning)}{cite}</td></tr>' if meaning else "")
        )
    note = (
        "<p>Unclassified codes were decided by the stack's <code>UnknownErrorPolicy</code>; "
        "add them to <code>batchpipe_core/classification.py</code>.</p>"
        if unknown
        else ""
    )
    return (
        '<section id="errors"><h2>Error codes</h2>'
        '<div class="scroll"><table class="errors"><thead><tr><th>Error</th><th class="num">Tasks</th>'
        '<th>Class</th><th class="num">Attempts</th></tr></thead><tbody>'
        + "".join(rows)
        + f"</tbody></table></div>{note}</section>"
    )


def _prefix_depth(depths: list[dict[str, Any]]) -> int:
    """The depth where the failures separate: the shallowest at which they fall under more than one
    prefix (else the deepest, all under one prefix)."""
    for depth, level in enumerate(depths):
        listed = [e for e in level["prefixes"] if e["failed"] or e["retried"]]
        if len(listed) > 1 or level["other"]["failed"] or level["other"]["retried"]:
            return depth
    return len(depths) - 1


def _prefix_table(level: dict[str, Any]) -> str:
    # What failed for good first: that is what an operator has to act on.
    entries = sorted(
        (e for e in level["prefixes"] if e["failed"] or e["retried"]),
        key=lambda e: (-e["failed"], -e["retried"], e["prefix"]),
    )[:PREFIX_ROWS]
    largest = max((e["failed"] + e["retried"] for e in entries), default=1) or 1
    rows = []
    for e in entries:
        failed_width = 100.0 * e["failed"] / largest
        retried_width = 100.0 * e["retried"] / largest
        at_least = "" if e["exact"] else "≥ "
        rows.append(
            f'<tr class="prefix-row"><td class="prefix">{key_text(e["prefix"], cut=e.get("cut", False))}</td>'
            f'<td class="num">{at_least}{e["failed"]:,}</td><td class="num">{at_least}{e["retried"]:,}</td>'
            f'<td class="share"><svg viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="{failed_width:.2f}" height="10" fill="{COLOURS["permanent"]}"/>'
            f'<rect x="{failed_width:.2f}" width="{retried_width:.2f}" height="10" '
            f'fill="{COLOURS["retriable"]}"/></svg></td></tr>'
        )
    other = level["other"]
    if other["failed"] or other["retried"]:
        rows.append(
            f'<tr class="prefix-other"><td><i>other prefixes</i></td><td class="num">{other["failed"]:,}</td>'
            f'<td class="num">{other["retried"]:,}</td><td></td></tr>'
        )
    return (
        '<div class="scroll"><table class="prefixes"><thead><tr><th>Key prefix</th>'
        '<th class="num">Failed</th><th class="num">Retried</th><th class="share">Share</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _prefixes(page: RunPage) -> str:
    if not page.records:
        return ""
    table = run_prefixes(page.records)
    if table is None:
        if any(r.failedRetriable or r.failedPermanent for r in page.records):
            return (
                '<section id="prefixes"><h2>Failures by key prefix</h2><p>Not recorded: this run\'s '
                "attempt records were written before batchpipe counted failures by prefix.</p></section>"
            )
        return ""
    depths = table["depths"]
    if not any(e["failed"] or e["retried"] for level in depths for e in level["prefixes"]):
        return ""
    chosen = _prefix_depth(depths)
    parts = [
        '<section id="prefixes"><h2>Failures by key prefix</h2>'
        f"<p>Where the failures fall, at depth {chosen + 1} (the key up to its {_ordinal(chosen + 1)} "
        "<code>/</code>), where they first split. A bucket policy or a prefix that is gone shows up "
        "here as one large row. Failed: failed for good; Retried: failed, then ran again in the next "
        "attempt. ≥: at least (a part of the report met more prefixes than it tracks).</p>",
        f'<div id="prefix-table" data-depth="{chosen + 1}">{_prefix_table(depths[chosen])}</div>',
    ]
    for depth, level in enumerate(depths):
        if depth == chosen or not level["prefixes"]:
            continue
        parts.append(
            f'<details data-depth="{depth + 1}"><summary>Depth {depth + 1}</summary>{_prefix_table(level)}</details>'
        )
    parts.append("</section>")
    return "".join(parts)


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth"}.get(n, f"{n}th")


def _stages(page: RunPage) -> list[tuple[str, str, datetime, datetime]]:
    """(kind, label, start, end) of each stage the records' times bound, in order."""
    stages: list[tuple[str, str, datetime, datetime]] = []
    previous_end = page.started
    attempts = _attempt_rows(page)
    for position, a in enumerate(attempts):
        created, ended, recorded = (parse_time(a.get(k)) for k in ("jobCreated", "jobEnded", "recorded"))
        number = a.get("attempt")
        if created and previous_end and created >= previous_end:
            if position == 0:
                what = "import the failures file" if page.summary.get("rerunOf") else "query, build"
                stages.append(("manifest", f"Manifest ({what}; create the job)", previous_end, created))
            else:
                stages.append(("backoff", f"Backoff before attempt {number}", previous_end, created))
        if created and ended:
            stages.append(("job", f"Job {number}", created, ended))
        if ended and recorded:
            stages.append(("report", f"Report {number}", ended, recorded))
        previous_end = recorded or ended or previous_end
    if previous_end and page.finished and page.finished >= previous_end:
        label = "Summary" if attempts else "Manifest and summary"
        stages.append(("summary", label, previous_end, page.finished))
    return stages


def _timeline(page: RunPage) -> str:
    stages = _stages(page)
    if not stages:
        return ""
    start = min(s[2] for s in stages)
    end = max(s[3] for s in stages)
    span = max((end - start).total_seconds(), 1e-3)
    colours = {
        "manifest": "#5b6ee1",
        "job": "#1b7f3b",
        "report": "#7a4fc9",
        "backoff": "#b0b5bd",
        "summary": "#2a8fa3",
    }
    row_height = 22
    rects, rows = [], []
    for index, (kind, label, a, b) in enumerate(stages):
        x = 1000.0 * (a - start).total_seconds() / span
        width = max(2.0, 1000.0 * (b - a).total_seconds() / span)
        seconds = (b - a).total_seconds()
        rects.append(
            f'<rect class="stage stage-{kind}" x="{x:.2f}" y="{index * row_height + 3}" width="{width:.2f}" '
            f'height="{row_height - 6}" fill="{colours[kind]}"><title>{text(label)}: '
            f"{duration_text(seconds)}</title></rect>"
        )
        rows.append(
            f'<tr data-stage="{kind}"><td><i class="swatch" style="background:{colours[kind]}"></i>'
            f"{text(label)}</td><td>{a.strftime('%H:%M:%S')}</td>"
            f'<td class="num">{duration_text(seconds)}</td></tr>'
        )
    height = len(stages) * row_height
    return (
        '<section id="timeline"><h2>Timeline</h2>'
        f'<svg class="timeline" viewBox="0 0 1000 {height}" preserveAspectRatio="none" '
        f'style="height:{height}px" role="img" aria-label="timeline of the run\'s stages">'
        + "".join(rects)
        + '</svg><div class="scroll"><table><thead><tr><th>Stage</th><th>Began (UTC)</th>'
        '<th class="num">Took</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>"
        "<p>From the times the attempt records keep (each job's creation and end, each report's "
        "record); a report stage includes the wait for the job's status event. Backoffs are "
        "compressed in a local run.</p></section>"
    )


def _links(page: RunPage) -> str:
    summary = page.summary
    items = []

    def item(label: str, uri: Any) -> None:
        if not uri:
            return
        target = page.link(str(uri))
        shown = f"<code>{text(uri)}</code>"
        items.append(
            f"<li>{label}: " + (f'<a href="{text(target)}">{shown}</a>' if target else shown) + "</li>"
        )

    if page.execution_link:
        items.append(
            f'<li>Execution: <a href="{text(page.execution_link)}"><code>{text(summary.get("executionId"))}'
            "</code></a></li>"
        )
    elif summary.get("executionId"):
        items.append(f"<li>Execution: <code>{text(summary.get('executionId'))}</code></li>")
    item(
        "Failures file (every object that did not succeed, with its last error)",
        summary.get("permanentFailures"),
    )
    item("Manifest", (summary.get("manifest") or {}).get("location"))
    for a in _attempt_rows(page):
        item(f"Completion report of attempt {text(a.get('attempt'))}", a.get("report"))
    if not items:
        return ""
    return '<section id="links"><h2>Links</h2><ul>' + "".join(items) + "</ul></section>"


_STYLE = """
:root{color-scheme:light;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
background:#fff;line-height:1.45}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{margin:.2rem 0;font-size:1.6rem}h2{margin:1.6rem 0 .5rem;font-size:1.2rem;border-bottom:1px solid #dde1e6}
h3{font-size:.95rem;margin:.8rem 0 .3rem;font-weight:600;overflow-wrap:anywhere}
.run{margin:0;color:#4a5361;overflow-wrap:anywhere}.when{margin:.2rem 0;color:#4a5361}
.status{padding:.1rem .5rem;border-radius:.3rem;color:#fff;background:#4a5361}
.status-succeeded{background:#1b7f3b}.status-partial{background:#b36b00}.status-failed{background:#c2312f}
.status-cancelled{background:#8a8f98}
.figures{display:grid;grid-template-columns:repeat(auto-fit,minmax(7rem,1fr));gap:.5rem;margin:.8rem 0}
.figure{border:1px solid #dde1e6;border-radius:.4rem;padding:.5rem .6rem;display:flex;flex-direction:column}
.figure .value{font-size:1.35rem;font-weight:650;font-variant-numeric:tabular-nums}
.figure .label{font-size:.8rem;color:#4a5361}
svg.attempt-bar{display:block;width:100%;height:28px;border-radius:.25rem}
svg.timeline{display:block;width:100%}
.legend{margin:.25rem 0 .8rem;font-size:.85rem}
.swatch{display:inline-block;width:.75rem;height:.75rem;border-radius:.15rem;margin-right:.3rem;
vertical-align:-.05rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid #eef0f3;vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.share{width:18%;min-width:3rem}td.prefix{width:60%}
tr.error td{border-bottom:0}table.errors code{word-break:normal}tr.meaning td{color:#4a5361;font-size:.82rem;padding-top:0}td.share svg{width:100%;height:10px;display:block;margin-top:.35rem}
.key{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-all;font-family:ui-monospace,Menlo,
Consolas,monospace;font-size:.85rem}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;overflow-wrap:anywhere;
word-break:break-all}
.kind{padding:0 .35rem;border-radius:.2rem;font-size:.8rem;white-space:nowrap}
.kind-retriable{background:#fff3cf}.kind-permanent{background:#fbe0df}.kind-unclassified{background:#e6e8ec}
details{margin:.5rem 0}summary{cursor:pointer;color:#2a5db0}
.note{background:#f6f7f9;border-left:3px solid #8a8f98;padding:.4rem .6rem;overflow-wrap:anywhere}
.message{white-space:pre-wrap}
footer{margin:2rem 0 1rem;font-size:.8rem;color:#4a5361}
a{color:#2a5db0}
"""
