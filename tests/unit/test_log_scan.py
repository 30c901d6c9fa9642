"""The suite-wide log scan (tests/logscan.py, wired in tests/conftest.py) catches an email wherever a record
carries it, and fails the session that logged it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.logscan import LogScan, render

ROOT = Path(__file__).resolve().parents[2]


def record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("shared.anything", logging.DEBUG, __file__, 1, msg, args, None)
    if exc is not None:
        rec.exc_info = (type(exc), exc, exc.__traceback__)
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize(
    "rec",
    [
        record("registered %s", "ada@people.example"),  # an argument
        record("registration %s done", "r1", email="ada@people.example"),  # an extra field (a custom dimension)
        record("failed", exc=ValueError("bad address ada@people.example")),  # the exception text
        record("no args: ada@people.example"),  # the template itself
    ],
)
def test_the_scanner_finds_an_email_wherever_a_record_carries_it(rec: logging.LogRecord) -> None:
    scan = LogScan()  # a scanner of its own: these records never reach the session's
    scan.handle(rec)
    assert [leak.address for leak in scan.leaks(allowed=set())] == ["ada@people.example"]
    assert "ada@people.example" in render(rec)


@pytest.mark.parametrize("address", ["Jörg.Müller@firma.de", "åsa.ødegård@företag.se", "иван@пример.рф"])
def test_the_scanner_finds_addresses_of_our_markets(address: str) -> None:
    scan = LogScan()
    scan.handle(record("registered %s", address))
    assert [leak.address for leak in scan.leaks(allowed=set())] == [address]


def test_allowed_addresses_and_ids_pass() -> None:
    scan = LogScan()
    scan.handle(record("audit: credentials removed by %s", "admin@contoso.example", org_id="o1"))
    scan.handle(record("registration %s (org %s): registered", "3f2a9c1e", "o1"))
    assert scan.leaks(allowed={"admin@contoso.example"}) == []


def run_probe(mode: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOG_LEAK_PROBE": mode}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/_log_leak_probe.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_session_that_logs_an_email_fails_and_names_it() -> None:
    leaky = run_probe("leak")
    assert leaky.returncode != 0, leaky.stdout
    assert "Leaky.Person@probe.example" in leaky.stdout and "somelibrary.transport" in leaky.stdout
    assert "email address(es) reached the logs" in leaky.stdout
    clean = run_probe("clean")
    assert clean.returncode == 0, clean.stdout
