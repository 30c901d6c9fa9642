"""``python -m sandbox demo`` as a user runs it: a subprocess from the repository root.

Checks that it succeeds and shows what it promises (the registrant table with viewing minutes, the skip after
the integration was switched off), and that no process it started survives it, whether it finishes or is
interrupted. Leftovers are found without psutil: every process started for the demo inherits a marker
environment variable, and ``/proc/<pid>/environ`` is searched for it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARKER = "SANDBOX_DEMO_TEST_MARKER"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find leftover processes"),
]


@pytest.fixture
def marker() -> Iterator[str]:
    value = uuid.uuid4().hex
    yield value
    for pid in marked_processes(value):  # a failed test must not leak Azurite into the rest of the session
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def demo_env(marker: str) -> dict[str, str]:
    return {**os.environ, MARKER: marker, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}


def marked_processes(marker: str) -> list[int]:
    """Live processes whose environment carries the marker (the demo and everything it started)."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def assert_nothing_left(marker: str, pgid: int) -> None:
    deadline = time.monotonic() + 3.0
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_processes(marker) == [], "a process started by the demo survived it"
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def table(output: str) -> list[dict[str, str]]:
    """The registrant table (``| Name | Email | ... |``) as dicts."""
    lines = [line for line in output.splitlines() if line.startswith("| ")]
    assert lines and lines[0].startswith("| Name "), "no registrant table in the output"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[1:]]


def test_demo_runs_end_to_end_and_leaves_nothing_behind(marker: str) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "demo"],
        cwd=ROOT,
        env=demo_env(marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        start_new_session=True,
    )
    try:
        output, errors = process.communicate(timeout=110)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, f"demo failed:\n{output}\n{errors}"
    assert time.monotonic() - started < 60, "the demo should take well under a minute"

    rows = table(output)
    assert len(rows) >= 50
    assert {"Name", "Email", "Publishing state", "ON24 registrant", "Minutes", "Interactions"} <= set(rows[0])
    minutes = [int(row["Minutes"]) for row in rows if row["Minutes"].isdigit()]
    assert any(m > 0 for m in minutes), "no registrant has viewing minutes"
    assert any(row["Publishing state"] == "Published" and row["ON24 registrant"].isdigit() for row in rows)
    assert any(row["Publishing state"] == "Webinar provider error" for row in rows), "the no-email failure"
    assert "Zoë Ångström" in output, "non-ASCII names survive the round trip"

    assert any("skipped: integration disabled" in line and "0 ON24 calls" in line for line in output.splitlines())
    assert "Demo OK" in output and "Stopped Azurite and the stand-ins." in output
    assert output.rstrip().endswith("open http://127.0.0.1:7072/api/admin"), "it ends with the admin page's URL"
    assert "Sandbox-Secret-" not in output + errors, "the ON24 token secret is never printed"
    assert_nothing_left(marker, pgid=process.pid)


@pytest.mark.parametrize(
    ("signum", "after", "exit_code"),
    [
        (signal.SIGINT, "Azurite (in memory)", 130),  # Ctrl-C right after Azurite came up
        (signal.SIGTERM, "[4/10]", 143),  # terminated while messages are being delivered
    ],
    ids=["sigint-after-azurite", "sigterm-mid-run"],
)
def test_interrupted_demo_exits_promptly_and_leaves_nothing_behind(
    marker: str, signum: signal.Signals, after: str, exit_code: int
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "demo"],
        cwd=ROOT,
        env=demo_env(marker),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        start_new_session=True,
        # As in a terminal's foreground: Ctrl-C acts (a shell's background job would inherit SIGINT ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any(after in line for line in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "the demo ended before the point of interruption:\n" + "".join(seen)
            seen.append(line)
        assert len(marked_processes(marker)) >= 2, "Azurite should be running beside the demo (marker check)"

        os.kill(process.pid, signum)
        interrupted_at = time.monotonic()
        process.wait(timeout=20)
        elapsed = time.monotonic() - interrupted_at
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    while (line := lines.get(timeout=5)) is not None:
        seen.append(line)
    output = "".join(seen)
    assert process.returncode == exit_code, output
    assert elapsed < 15, f"took {elapsed:.1f} s to stop"
    assert "Interrupted" in output and "Stopped Azurite and the stand-ins." in output
    assert "Traceback" not in output
    assert_nothing_left(marker, pgid=process.pid)
