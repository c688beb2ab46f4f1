"""What the commands print: text for a person (the default, like the AWS CLI's text and table views)
or JSON for a script (``--output json``), one document on stdout and nothing else there. Shared by the
operator's commands and `preview`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

TEXT, JSON = "text", "json"
OUTPUTS = (TEXT, JSON)


def output_option(parser: argparse.ArgumentParser, text: str) -> None:
    """``--output text|json``; ``text`` says what the text view shows."""
    parser.add_argument(
        "--output", choices=OUTPUTS, default=TEXT, help=f"{text} (text, the default), or JSON for scripts"
    )


def print_json(data: Any, out: TextIO) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str), file=out)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """Rows under a header, each column as wide as its widest cell; an unknown value is ``-``."""
    cells = [["-" if row.get(c) is None else str(row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [list(columns), *cells]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip(), file=out)


def iso_time(moment: datetime | None) -> str | None:
    """A time as ISO 8601 in UTC to the second (``2026-12-02T03:00:00Z``)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
