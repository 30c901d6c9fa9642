"""The suite-wide check that logs carry ids, never emails: every record of every logger, at every level.

``tests/conftest.py`` attaches one ``LogScan`` to the root logger for the whole session (with the root level
lowered to DEBUG) and fails the session if any record held an email address that is not on the allowlist.
A record is rendered the way the telemetry exports it: the message with its arguments, every ``extra`` field
(they become custom dimensions in Application Insights) and the exception text.

The allowlist holds addresses that are not an attendee's personal data: the names of the admin principals
the tests sign in as (an audit line must say *who* acted; ``tests.functions.principal_headers`` registers
them here) and the fixed addresses below.
"""

from __future__ import annotations

import logging
import re
import traceback
from dataclasses import dataclass
from typing import Any

EMAIL = re.compile(r"[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")  # \w: Jörg.Müller@firma.de and иван@пример.рф too
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

ALLOWED: set[str] = set()
"""Addresses that may appear in logs (lower case): admin principals (audit "who"), nothing of an attendee."""


def allow_in_logs(address: str) -> str:
    """Register an admin principal's name: audit lines name who acted. Returns the address."""
    ALLOWED.add(address.casefold())
    return address


def render(record: logging.LogRecord) -> str:
    """Everything of a record that reaches a log sink: message with args, extra fields, exception, stack."""
    try:
        parts = [record.getMessage()]
    except Exception:  # a malformed call still exports its template and its arguments
        parts = [str(record.msg), repr(record.args)]
    extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES}
    if extras:
        parts.append(repr(extras))
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


@dataclass(frozen=True)
class Leak:
    test: str
    logger: str
    address: str
    line: str


class LogScan(logging.Handler):
    """A handler that keeps every rendered record containing an ``@`` (with the test that emitted it)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.test = "(outside any test)"
        self.records = 0
        self._suspects: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = render(record)
        if "@" in text:
            self._suspects.append((self.test, record.name, text))

    def leaks(self, allowed: set[str] | None = None) -> list[Leak]:
        """Every email address in the captured records that is not allowed."""
        permitted = ALLOWED if allowed is None else allowed
        found: list[Leak] = []
        for test, logger, text in self._suspects:
            for address in EMAIL.findall(text):
                if address.casefold() not in permitted:
                    found.append(Leak(test, logger, address, text[:500]))
        return found


def report(leaks: list[Leak], limit: int = 20) -> str:
    lines = [f"{len(leaks)} email address(es) reached the logs (logs must carry ids, never emails or names):"]
    for leak in leaks[:limit]:
        lines.append(f"- {leak.address!r} in a record of logger {leak.logger!r} during {leak.test}: {leak.line!r}")
    return "\n".join(lines)


def install(root: logging.Logger) -> tuple[LogScan, Any]:
    """Attach a scan to ``root`` at DEBUG; returns it and a function that detaches it and restores the level."""
    scan = LogScan()
    previous = root.level
    root.addHandler(scan)
    root.setLevel(logging.DEBUG)

    def uninstall() -> None:
        root.removeHandler(scan)
        root.setLevel(previous)

    return scan, uninstall
