"""What a local run leaves behind: summary.json, the pipeline bucket at its keys, and objects.jsonl
describing every object of the other buckets (docs/LOCAL.md, "What a run leaves behind").

An output folder is only ever emptied of what this tool wrote there: each one holds a marker file
listing the entries the tool created, a non-empty folder without it is refused, and a later run
removes just the entries the marker lists.

Nothing is written through a link: a folder on the way that is a link, or a link where a file would
be written, is refused by name (os.O_NOFOLLOW), so a reused folder with planted links cannot make a
run overwrite, append to or create files outside it. A pipeline-bucket key that cannot be a path
(a key and its "folder" both, NUL, a segment over 255 bytes, "..", "//") is mirrored under a safe
name instead, listed in ``<bucket>/.batchpipe-renamed/index.jsonl``."""

from __future__ import annotations

import errno
import hashlib
import json
import os
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
#: Where a key that cannot be a path is mirrored (under its SHA-256), with an index of key -> file.
RENAMED = ".batchpipe-renamed"
#: Longest file-name segment on Linux, macOS and Windows file systems (bytes, UTF-8).
_MAX_SEGMENT_BYTES = 255


class OutDirError(ValueError):
    """The output folder cannot be used without risking files this tool did not write."""


def prepare_out(out: Path, entries: tuple[str, ...] = RUN_ENTRIES) -> None:
    """Makes ``out`` ready for a new run: created if missing; if it is an earlier output folder (it
    holds the marker), the entries the marker lists are removed and nothing else; any other
    non-empty folder, and anything that is not a folder, is refused."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutDirError(f"--out {out} is not a folder: give a new or empty folder")
        if (out / MARKER).is_symlink():
            raise OutDirError(f"{out / MARKER} is a link: batchpipe writes nothing through a link; remove it")
        if (out / MARKER).is_file():
            for name in _claimed(out):
                _remove(out / name)
        elif any(out.iterdir()):
            raise OutDirError(
                f"--out {out} is a non-empty folder that batchpipe did not create (no {MARKER} in it): "
                "give a new or empty folder; nothing was deleted"
            )
        for name in entries:
            _refuse_foreign(out, name)
    out.mkdir(parents=True, exist_ok=True)
    _write_marker(out, list(entries))


def claim(out: Path, name: str) -> None:
    """Records one more entry of ``out`` as this tool's, before writing it; an entry of that name
    that batchpipe did not write (a planted link, the user's own file) is refused, not written into."""
    claimed = _claimed(out)
    if name not in claimed:
        _refuse_foreign(out, name)
        _write_marker(out, [*claimed, name])


def _refuse_foreign(out: Path, name: str) -> None:
    path = out / name
    if path.is_symlink():
        raise OutDirError(f"{path} is a link: batchpipe writes nothing through a link; remove it")
    if path.exists():
        raise OutDirError(f"{path} exists and batchpipe did not write it: move it away or give a new --out")


def open_inside(root: Path, relative: str, mode: str = "wb") -> Any:
    """``root/relative`` opened for writing ("wb", "w", "a"), never through a link.

    Each folder on the way is made if missing and refused if it is a link; the file itself is
    opened with O_NOFOLLOW, so a planted link is an OutDirError naming it instead of a write
    somewhere else. ``relative`` is "/"-separated and must not climb out (checked by callers).
    """
    *folders, name = relative.split("/")
    directory = root
    for folder in folders:
        directory = directory / folder
        if directory.is_symlink():
            raise OutDirError(f"{directory} is a link: batchpipe writes nothing through a link; remove it")
        directory.mkdir(exist_ok=True)
    path = directory / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutDirError(
                f"{path} is a link: batchpipe writes nothing through a link; remove it"
            ) from None
        raise
    if "b" in mode:
        return os.fdopen(descriptor, mode)
    return os.fdopen(descriptor, mode, encoding="utf-8")


def write_inside(root: Path, relative: str, data: bytes | str) -> None:
    with open_inside(root, relative, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


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
    write_inside(out, MARKER, json.dumps({"note": note, "entries": entries}, indent=2) + "\n")


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
    with open_inside(path.parent, path.name, "a") as fh:
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
    write_inside(out, "summary.json", json.dumps(summary, indent=2) + "\n")
    s3 = stack.client("s3")
    claim(out, stack.pipeline_bucket)
    mirror_bucket(s3, stack.pipeline_bucket, out / stack.pipeline_bucket)
    done = 0
    with open_inside(out, "objects.jsonl", "w") as fh:
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
    from batchpipe_core.runpage import RunPage, parse_time, render
    from batchpipe_core.s3uri import split_s3_uri

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
    write_inside(out, "report.html", page)
    return out / "report.html"


def _current_keys(bucket: str) -> Iterator[Any]:
    """The bucket's current objects (what ListObjectsV2 lists), in key order."""
    _backend, store = moto_bucket(bucket)
    for name in sorted(dict(store.keys)):
        versions = store.keys.getlist(name) or []
        if versions and not isinstance(versions[-1], FakeDeleteMarker):
            yield versions[-1]


def mirror_bucket(s3: Any, bucket: str, target: Path) -> None:
    """Every current object of ``bucket`` under ``target`` at its key, or under a safe name.

    Bodies are copied from moto's buffer in 1 MiB pieces: download_file would GET each 8 MiB range,
    and moto copies the whole object to answer every ranged GET.
    """
    del s3
    if target.is_symlink():
        raise OutDirError(f"{target} is a link: batchpipe writes nothing through a link; remove it")
    target.mkdir(exist_ok=True)
    renamed: list[dict[str, str]] = []
    for key in _current_keys(bucket):
        relative = key.name if _usable_path(key.name) else None
        if relative is not None:
            try:
                _copy_body(key, target, relative)
                continue
            except (NotADirectoryError, IsADirectoryError, FileExistsError):
                pass  # a key and its "folder" (a, a/b): the second one is renamed
            except OSError as exc:
                if exc.errno != errno.ENAMETOOLONG:
                    raise
        relative = f"{RENAMED}/{hashlib.sha256(key.name.encode('utf-8', 'surrogatepass')).hexdigest()}"
        _copy_body(key, target, relative)
        renamed.append({"key": key.name, "file": relative})
    if renamed:
        with open_inside(target, f"{RENAMED}/index.jsonl", "w") as fh:
            for entry in renamed:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _usable_path(key: str) -> bool:
    """Whether ``key`` can be a relative path as it is: no empty, "." or ".." segment, no NUL or
    backslash, no segment too long, and not inside the folder of renamed keys."""
    segments = key.split("/")
    return segments[0] != RENAMED and all(
        segment not in ("", ".", "..")
        and "\x00" not in segment
        and "\\" not in segment
        and len(segment.encode("utf-8", "surrogatepass")) <= _MAX_SEGMENT_BYTES
        for segment in segments
    )


def _copy_body(key: Any, target: Path, relative: str) -> None:
    with key.lock, open_inside(target, relative) as fh:
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
