"""What a local run leaves behind: summary.json, the pipeline bucket at its keys, and objects.jsonl
describing every object of the other buckets (docs/LOCAL.md, "What a run leaves behind").

An output folder is only ever emptied of what this tool wrote there: each one holds a marker file
listing the entries the tool created, a non-empty folder without it is refused, and a later run
removes just the entries the marker lists."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from botocore.utils import parse_timestamp
from moto.s3.models import FakeDeleteMarker

from .inventory.seed import SeededKey, moto_bucket, user_metadata
from .lambdas import code_root

MARKER = ".batchpipe-out"
RUN_ENTRIES = ("summary.json", "report.html", "objects.jsonl", "lambda-logs.jsonl")


class OutDirError(ValueError):
    """The output folder cannot be used without risking files this tool did not write."""


def prepare_out(out: Path, entries: tuple[str, ...] = RUN_ENTRIES) -> None:
    """Makes ``out`` ready for a new run: created if missing; if it is an earlier output folder (it
    holds the marker), the entries the marker lists are removed and nothing else; any other
    non-empty folder, and anything that is not a folder, is refused."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutDirError(f"--out {out} is not a folder: give a new or empty folder")
        if (out / MARKER).is_file():
            for name in _claimed(out):
                _remove(out / name)
        elif any(out.iterdir()):
            raise OutDirError(
                f"--out {out} is a non-empty folder that batchpipe did not create (no {MARKER} in it): "
                "give a new or empty folder; nothing was deleted"
            )
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out, list(entries))


def claim(out: Path, name: str) -> None:
    """Records one more entry of ``out`` as this tool's, before writing it."""
    claimed = _claimed(out)
    if name not in claimed:
        _write_marker(out, [*claimed, name])


def _claimed(out: Path) -> list[str]:
    try:
        names = json.loads((out / MARKER).read_text(encoding="utf-8"))["entries"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutDirError(
            f"{out / MARKER} is not a batchpipe marker ({exc}): give a new or empty folder"
        ) from None
    # Only plain names directly in the folder: a hand-edited marker must not reach outside it.
    return [
        n
        for n in names
        if isinstance(n, str) and n not in ("", ".", "..", MARKER) and "/" not in n and "\\" not in n
    ]


def _write_marker(out: Path, entries: list[str]) -> None:
    note = "Written by batchpipe: a later run with this --out removes the entries listed here, nothing else."
    (out / MARKER).write_text(
        json.dumps({"note": note, "entries": entries}, indent=2) + "\n", encoding="utf-8"
    )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


@contextmanager
def lambda_logs_to(path: Path) -> Iterator[None]:
    """The handlers' structured logs (Powertools, JSON lines) go to a file instead of stdout, where
    they would interleave with the progress and break `--json`."""
    sys.path.insert(0, str(code_root("functions/")))
    from batchpipe_core.observability import logger

    handler = logger.registered_handler
    with open(path, "a", encoding="utf-8") as fh:
        # Not setStream(): it flushes the old stream, which a test harness may have closed already.
        with handler.lock:
            previous, handler.stream = handler.stream, fh
        try:
            yield
        finally:
            with handler.lock:
                handler.stream = sys.stderr if getattr(previous, "closed", False) else previous


def write_outputs(
    stack: Any,
    out: Path,
    summary: dict,
    *,
    exclude_buckets: set[str],
    progress: Callable[[int], None] | None = None,
) -> None:
    """Writes everything to disk as it is read: no output is built in memory first.

    The buckets are read from moto's store, not through ListObjectVersions/HeadObject/GetObjectTagging:
    moto deep-copies every version of the bucket for each page of ListObjectVersions (quadratic: a
    100,000-object run never finished), and three requests per object cost ~5 ms. These are the
    harness's own reports, not requests the pipeline makes, so nothing is lost by not validating them.
    ``progress`` is called with the number of objects described so far, every 10,000.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    s3 = stack.client("s3")
    claim(out, stack.pipeline_bucket)
    mirror_bucket(s3, stack.pipeline_bucket, out / stack.pipeline_bucket)
    done = 0
    with open(out / "objects.jsonl", "w", encoding="utf-8") as fh:
        for bucket in sorted(b["Name"] for b in s3.list_buckets()["Buckets"]):
            if bucket in exclude_buckets:
                continue
            for record in describe_objects(s3, bucket):
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                done += 1
                if progress is not None and done % 10_000 == 0:
                    progress(done)
    if progress is not None:
        progress(done)


def write_run_page(out: Path, summary: dict, *, pipeline_bucket: str, started: Any, finished: Any) -> Path:
    """``out/report.html``: the run page (batchpipe_core.runpage) drawn from the summary and the
    attempt records in the mirrored pipeline bucket, its links relative paths into that mirror so the
    folder opens in a browser as it is, offline. Call after ``write_outputs``."""
    sys.path.insert(0, str(code_root("functions/")))
    from batchpipe_core.accounting import AttemptRecord
    from batchpipe_core.report import split_s3_uri
    from batchpipe_core.runpage import RunPage, parse_time, render

    records = []
    mirror = out / pipeline_bucket
    if summary.get("report"):
        folder = (mirror / split_s3_uri(summary["report"])[1]).parent
        numbers = sorted(
            int(path.parent.name.removeprefix("attempt-"))
            for path in folder.glob("attempt-*/record.json")
            if path.parent.name.removeprefix("attempt-").isdigit()
        )
        records = [
            AttemptRecord.model_validate_json((folder / f"attempt-{n}" / "record.json").read_bytes())
            for n in numbers
        ]

    def link(uri: str) -> str | None:
        bucket, key = split_s3_uri(uri) if uri.startswith("s3://") else ("", "")
        if bucket != pipeline_bucket or not (mirror / key).is_file():
            return None
        return quote(f"{bucket}/{key}")

    page = render(
        RunPage(
            summary=summary,
            records=records,
            started=parse_time(started),
            finished=parse_time(finished),
            link=link,
            generated_by="batchpipe local run",
        )
    )
    target = out / "report.html"
    target.write_text(page, encoding="utf-8")
    return target


def _current_keys(bucket: str) -> Iterator[Any]:
    """The bucket's current objects (what ListObjectsV2 lists), in key order."""
    _backend, store = moto_bucket(bucket)
    for name in sorted(dict(store.keys)):
        versions = store.keys.getlist(name) or []
        if versions and not isinstance(versions[-1], FakeDeleteMarker):
            yield versions[-1]


def mirror_bucket(s3: Any, bucket: str, target: Path) -> None:
    """The pipeline's own keys are safe as paths (it writes them); anything else is refused.

    Bodies are copied from moto's buffer in 1 MiB pieces: download_file would GET each 8 MiB range,
    and moto copies the whole object to answer every ranged GET.
    """
    del s3
    root = target.resolve()
    for key in _current_keys(bucket):
        path = (target / key.name).resolve()
        if not path.is_relative_to(root) or key.name.endswith("/"):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with key.lock, open(path, "wb") as fh:
            buffer = key._value_buffer
            buffer.seek(0)
            shutil.copyfileobj(buffer, fh, 1024 * 1024)


def _restore(key: Any) -> str | None:
    """HeadObject's ``Restore`` (moto's x-amz-restore header)."""
    if key._expiry is None:
        return None
    if key.status == "IN_PROGRESS":
        return 'ongoing-request="true"'
    return f'ongoing-request="false", expiry-date="{key.expiry_date}"'


def describe_objects(s3: Any, bucket: str) -> Iterator[dict]:
    """Every object version with its tags and metadata, newest version of each key first; keys stay
    data, never file paths. The fields are what ListObjectVersions, HeadObject and
    GetObjectTagging answer (S3 answers GetObjectTagging on archived objects too: tags are not data)."""
    del s3
    backend, store = moto_bucket(bucket)
    tags_of = backend.tagger.get_tag_dict_for_resource
    for name in sorted(dict(store.keys)):
        versions = store.keys.getlist(name) or []
        for position, version in enumerate(reversed(versions)):
            if isinstance(version, FakeDeleteMarker):
                yield {"bucket": bucket, "key": name, "version": version.version_id, "deleteMarker": True}
                continue
            metadata = (
                version.user_metadata() if isinstance(version, SeededKey) else user_metadata(version.metadata)
            )
            yield {
                "bucket": bucket,
                "key": name,
                "version": version.version_id,
                "isLatest": position == 0,
                "size": version.size,
                "storageClass": version.storage_class or "STANDARD",
                "tags": dict(tags_of(version.arn)),
                "metadata": metadata,
                "restore": _restore(version),
                "legalHold": version.lock_legal_status,
                "retention": {
                    "mode": version.lock_mode,
                    "until": str(parse_timestamp(version.lock_until)) if version.lock_until else None,
                },
            }
