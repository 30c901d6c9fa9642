"""The chaos soak (benchmarks/chaos.py), small enough for every test run: 200 registrations, at least 10 kills.

At production's ratios: the deployed lease, lease wait, ON24 timeout, retry budget, queue lock, park backoff and
RetryParked period, all divided by the soak's one time-scale factor; a delivery that raises is redelivered at once
and a killed worker's messages come back after the lock, as Service Bus does. Separate worker processes are
SIGKILLed at random times and right after ON24 answered a registrant write (their lease is left behind); ON24
and Dataverse fail a fifth and a tenth of their requests in every way the soak knows, and ON24 is down for
10 s (200 s at deployed timing), so deliveries are parked and RetryParked re-drives them. The run must end with
every registration exactly as its newest change says, no orphan registrant, nothing dead-lettered and nothing
left parked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_chaos_soak_with_worker_kills_ends_exactly_as_the_newest_changes_say() -> None:
    command = [sys.executable, "-m", "benchmarks.chaos", "--registrations", "200", "--min-kills", "10"]
    run = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*command, "--kill-every", "0.4", "--kill-after-write", "0.05", "--outage-seconds", "10", "--seed", "7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
    )
    report = run.stdout + run.stderr[-3000:]
    assert run.returncode == 0, report
    assert "wrong final states .......... 0" in run.stdout
    assert "orphan registrants .......... 0" in run.stdout
    assert "dead-lettered ............... 0" in run.stdout
    assert "0 still parked" in run.stdout, "everything parked during the outage was re-driven"
    ratios = [line.split("deployed ")[1].split(", soak ") for line in run.stdout.splitlines() if " ratio " in line]
    assert len(ratios) >= 5 and all(deployed == soak for deployed, soak in ratios), "production's ratios, time-scaled"
