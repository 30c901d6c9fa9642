"""Run only by tests/unit/test_log_scan.py, in a pytest of its own: a test that logs an attendee's email (when
LOG_LEAK_PROBE=leak) from a library logger at DEBUG, which the suite-wide log scan must turn into a failed
session. Its name keeps it out of the normal collection (``test_*.py``)."""

from __future__ import annotations

import logging
import os


def test_probe() -> None:
    logging.getLogger("somelibrary.transport").debug("request for %s", "registrant id 4711")
    if os.environ.get("LOG_LEAK_PROBE") == "leak":
        logging.getLogger("somelibrary.transport").debug("sent the form of %s", "Leaky.Person@probe.example")
