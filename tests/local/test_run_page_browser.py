"""The run page (report.html) of a local run, opened in a real browser: headless Chromium.

The test asserts what a person sees - the text the browser lays out (``innerText``: hidden text is
not in it), one bar per attempt with its coloured segments drawn, the prefix table - on a phone-sized
viewport, with keys that try to be markup (quotes, ``<script>``), right-to-left text and a 1,024-byte
key. A screenshot of each page is kept under ``test-artifacts/`` (``BATCHPIPE_TEST_ARTIFACTS``).

Chromium is the Debian package ``chromium`` (``make browser`` installs it; ``make test`` runs that
first). Without it the test skips, except under CI=true, where it fails, like the other tool tests.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from batchpipe.cli import main
from batchpipe.local import inventory as inv
from batchpipe.local.world import World

from .conftest import write_their_inventory

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("BATCHPIPE_TEST_ARTIFACTS", REPO / "test-artifacts"))
PHONE_WIDTH = 390  # CSS pixels: a common phone viewport

#: Keys a user's bucket may hold; each is a whole folder of failures on the page.
HOSTILE_FOLDERS = [
    "\"quoted\" 'single'",
    "<script>alert(1)<\\script>",
    "\u202eevil-rtl \u05e9\u05dc\u05d5\u05dd",
    "<img src=x onerror=alert(2)>",
]
LONG_FOLDER = "L" * 1000  # with "/" and a 23-byte name: a 1,024-byte key


@pytest.fixture(scope="module")
def chromium() -> str:
    path = os.environ.get("CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
    )
    if not path:
        message = "Chromium not found: `make browser` installs the Debian package (or set CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def browse(chromium: str, profile: Path, *args: str) -> str:
    """One headless Chromium run with its own profile folder; its standard output."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,  # a guard against a hung browser, not a measured time
        check=True,
    )
    return result.stdout


#: The harness loads the page as a phone would show it (an iframe of the phone's width) and writes
#: what it sees into the DOM, which --dump-dom prints. The page itself runs no script (its CSP).
HARNESS = """<!DOCTYPE html><html><body>
<iframe id="page" style="width:{width}px;height:4000px;border:0" srcdoc="{page}"></iframe>
<pre id="seen"></pre>
<script>
window.addEventListener("load", () => {{
  const d = document.getElementById("page").contentDocument;
  const visible = e => e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0;
  const seen = {{
    text: d.body.innerText,
    figures: Object.fromEntries([...d.querySelectorAll(".figure")].map(
      f => [f.querySelector(".label").innerText, f.querySelector(".value").innerText])),
    attempts: [...d.querySelectorAll(".attempt")].filter(visible).map(a => ({{
      heading: a.querySelector("h3").innerText,
      bar: a.querySelector("svg.attempt-bar").getBoundingClientRect().width,
      segments: [...a.querySelectorAll("rect.segment")].filter(visible).map(r => ({{
        kind: r.getAttribute("class").replace("segment segment-", ""),
        width: r.getBoundingClientRect().width}})),
    }})),
    prefixRows: [...d.querySelectorAll("#prefix-table tr.prefix-row")].filter(visible).map(
      r => [...r.querySelectorAll("td")].map(c => c.innerText)),
    elements: [...d.querySelectorAll("*")].map(e => e.localName),
    pageWidth: d.documentElement.scrollWidth,
    viewportWidth: d.documentElement.clientWidth,
  }};
  document.getElementById("seen").textContent = JSON.stringify(seen);
}});
</script></body></html>"""


def what_a_person_sees(chromium: str, page: Path, work: Path) -> dict:
    harness = work / "harness.html"
    harness.write_text(
        HARNESS.format(width=PHONE_WIDTH, page=html.escape(page.read_text(encoding="utf-8"), quote=True)),
        encoding="utf-8",
    )
    dom = browse(chromium, work / "profile", "--dump-dom", harness.as_uri())
    seen = re.search(r'<pre id="seen">(.*?)</pre>', dom, re.S)
    assert seen and seen.group(1), f"the harness saw nothing; Chromium printed:\n{dom[:2000]}"
    return json.loads(html.unescape(seen.group(1)))


def screenshot(chromium: str, page: Path, work: Path, name: str, width: int = PHONE_WIDTH) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / name
    browse(chromium, work / "profile", f"--window-size={width},2400", f"--screenshot={target}", page.as_uri())
    assert target.stat().st_size > 10_000, "the screenshot is blank"
    return target


def inventory_with_hostile_keys(folder: Path) -> list[str]:
    """A real inventory folder: 200 generated objects and one failing object per hostile folder."""
    world = World(source_bucket="their-bucket")
    keys = [f"{name}/photo.jpg" for name in HOSTILE_FOLDERS] + [f"{LONG_FOLDER}/{'k' * 23}"]
    assert len(keys[-1].encode()) == 1024
    objects = inv.generate_objects(200, seed=3, bucket="their-bucket") + world.objects_with_keys(keys)
    write_their_inventory(folder, objects)
    return keys


@pytest.mark.xdist_group("chromium")
def test_the_run_page_shows_the_run_in_a_browser_and_hostile_keys_as_text(tmp_path, capsys, chromium):
    inventory_with_hostile_keys(tmp_path / "inv")
    faults = [
        {"keyRegex": "^logs/", "httpStatus": 503, "errorCode": "SlowDown", "times": 1},
        {"keyRegex": '^("|<|\u202e|LLLL)', "httpStatus": 403, "errorCode": "AccessDenied"},
    ]
    (tmp_path / "faults.json").write_text(json.dumps(faults), encoding="utf-8")
    out = tmp_path / "run"

    inputs = ["--inventory", str(tmp_path / "inv"), "--faults", str(tmp_path / "faults.json")]
    code = main(["local", "run", *inputs, "--json", "--out", str(out), "--name", "page"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 3 and summary["status"] == "PARTIAL"
    page = out / "report.html"
    seen = what_a_person_sees(chromium, page, tmp_path)
    screenshot(chromium, page, tmp_path, "run-page-hostile-keys.png")

    # The headline: the run's status and numbers, as the summary has them.
    totals = summary["totals"]
    assert "PARTIAL" in seen["text"]
    assert seen["figures"]["Objects"] == f"{totals['objects']:,}"
    assert seen["figures"]["Succeeded"] == f"{totals['succeeded']:,}"
    assert seen["figures"]["Failed for good"] == str(totals["failedPermanent"]) == "5"
    assert seen["figures"]["Estimated cost"] == f"${summary['estimatedCostUsd']:,.2f}"

    # One bar per attempt, drawn, each rerun shorter than the attempt before.
    assert len(seen["attempts"]) == len(summary["attempts"]) == 2
    drawn = [sum(s["width"] for s in a["segments"]) for a in seen["attempts"]]
    assert drawn[0] > drawn[1] > 0
    first = {s["kind"] for s in seen["attempts"][0]["segments"]}
    assert first == {"succeeded", "retriable", "permanent"}
    assert all(a["bar"] <= PHONE_WIDTH for a in seen["attempts"])

    # The prefix table: every hostile folder is a row, as the text it is; the 1,024-byte key's
    # folder is cut and says so.
    rows = {row[0]: row[1] for row in seen["prefixRows"]}
    for name in HOSTILE_FOLDERS:
        # A direction override is shown as its escape: it cannot turn the key's text around.
        shown = name.replace("\u202e", "\\u202e")
        assert rows.get(f"{shown}/") == "1", (shown, rows)
    assert rows[f"{'L' * 200}…"] == "1"
    assert rows["logs/"] == "0"  # its SlowDowns succeeded on the rerun
    # No key became markup: the only elements are the page's own.
    assert "script" not in seen["elements"] and "img" not in seen["elements"]
    # Readable on a phone: nothing wider than the screen (wide tables scroll inside themselves).
    assert seen["pageWidth"] <= seen["viewportWidth"] <= PHONE_WIDTH
