"""docs/OPERATIONS.md's "An operator's day", run as written: every command of its `bash` blocks, in
order, against the `batchpipe local serve` its own lines start, each ending with the exit status its
comment gives.

The section's lines are of these kinds, and nothing else (a line the test does not know fails it):
`pip install .` (tests/local/test_install.py installs it), `cp`, `echo '…' > FILE` and
`cat > FILE <<'EOF'` … `EOF` (done here, in a scratch folder beside `examples/`), `batchpipe local
serve … &` (started here on a free port: its other arguments as written), `export …` (must be the
exports serve prints, the port aside) and `batchpipe …  # exit N`. A command whose comment says
`once …` is repeated until it exits N (and, with `shows "TEXT"`, prints TEXT): what a person does who
runs it again when the run has got there.
"""

from __future__ import annotations

import re
import shlex
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from batchpipe.cli import main

from ..serving import point_shell_at, serving

REPO = Path(__file__).resolve().parents[2]
OPERATIONS = REPO / "docs" / "OPERATIONS.md"
README = REPO / "README.md"
SECTION = "## An operator's day"
ONCE_SECONDS = 180

pytestmark = [
    pytest.mark.filterwarnings("ignore:No application metrics to publish"),
    pytest.mark.xdist_group("operator-day"),
]


def day_lines() -> list[str]:
    """The section's `bash` blocks, line by line (continuations joined, blank lines dropped)."""
    text = OPERATIONS.read_text(encoding="utf-8")
    start = text.index(f"\n{SECTION}")
    end = text.find("\n## ", start + 1)
    return bash_lines(text[start : end if end != -1 else None])


def bash_lines(text: str) -> list[str]:
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                lines.append(line.rstrip())
    return lines


def _expected(comment: str) -> tuple[int, bool, str | None]:
    found = re.search(r"exit (\d+)", comment)
    assert found, f"a batchpipe line of {SECTION} says its exit status: # exit N ({comment!r})"
    shows = re.search(r'shows "([^"]+)"', comment)
    return int(found[1]), "once" in comment, shows[1] if shows else None


def test_the_operators_day_runs_as_written(tmp_path, monkeypatch, capsys):
    lines = day_lines()
    assert any(line.startswith("batchpipe start") for line in lines)
    # The section's commands run from the checkout: its examples/, and samconfig.toml for the stack.
    for name in ("examples", "samconfig.toml"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    ran: list[str] = []
    with ExitStack() as stack:
        served = None
        index = 0
        while index < len(lines):
            line = lines[index]
            index += 1
            command, _, comment = line.partition("  #")
            command = command.strip()
            if command == "pip install .":
                continue
            heredoc = re.fullmatch(r"cat > (\S+) <<'EOF'", command)
            if heredoc:
                end = lines.index("EOF", index)
                (tmp_path / heredoc[1]).write_text("\n".join(lines[index:end]) + "\n")
                index = end + 1
                continue
            words = shlex.split(command)
            if words[0] == "cp":
                (tmp_path / words[2]).write_bytes((tmp_path / words[1]).read_bytes())
            elif words[0] == "echo":
                assert words[2] == ">", line
                (tmp_path / words[3]).write_text(words[1] + "\n")
                time.sleep(0.05)  # serve re-reads the faults file when its modification time moves
            elif words[:3] == ["batchpipe", "local", "serve"]:
                assert words[-1] == "&", line
                args = words[3:-1]
                port = args.index("--port")
                del args[port : port + 2]
                served = stack.enter_context(serving(*args, cwd=tmp_path))
            elif words[0] == "export":
                assert served is not None, "export before local serve"
                printed = re.search(r"export .*", served.banner)[0]
                shown = re.sub(r"http://127\.0\.0\.1:\d+", "ENDPOINT", printed)
                assert re.sub(r"http://127\.0\.0\.1:\d+", "ENDPOINT", command) == shown
                point_shell_at(served.endpoint, monkeypatch)
            elif words[0] == "batchpipe":
                code, once, shows = _expected(comment)
                deadline = time.monotonic() + ONCE_SECONDS
                while True:
                    got = main(words[1:])
                    captured = capsys.readouterr()
                    done = got == code and (shows is None or shows in captured.out)
                    if done or not once or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                assert got == code, f"{command}\n{captured.out}{captured.err}"
                if shows is not None:
                    assert shows in captured.out, f"{command}\n{captured.out}"
                ran.append(command)
            else:
                pytest.fail(f"{SECTION} has a line this test does not know how to run: {line}")
    assert served is not None and served.returncode == 0, served and served.output
    assert ran


def test_the_readme_rehearsal_is_part_of_the_day():
    """README's rehearsal block shows the day's core: each of its lines is one of the day's (so the
    test above runs it), exit comment included."""
    text = README.read_text(encoding="utf-8")
    start = text.index("**Rehearse it locally.**")
    block = bash_lines(text[start : text.index("**See what a spec selects", start)])
    day = day_lines()

    assert len(block) >= 5
    assert [line for line in block if line not in day] == []
