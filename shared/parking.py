"""RetryParked: re-drive parked registrations when they are due, one probe per unreachable org.

A registration is parked (``shared.registration.park``) when its delivery failed transiently for the
``PARK_AFTER_DELIVERIES``-th time; from then on the org's new registrations are parked at once, without calling
ON24. The org row says when its parked work is next due, so a run reads only the parked messages of orgs
whose time has come. For an org still parking, the first message is the probe: if it fails again, the org
backs off (exponentially, with jitter, capped) and its other messages wait for the next probe; once one gets
an answer from ON24 (a message that needs no ON24 call, e.g. a stale one, proves nothing and the next one
probes), the org's parking ends and its parked messages follow, within the run's budget. Re-driving goes
through ``handle_registration``: the same lease, order and exactly-once rules as a fresh delivery.

Parked messages of an org whose credentials were removed are dropped, each with a ledger record ("skipped:
integration disabled"), by a sweep in the first run of every hour.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.errors import BusyError, TransientError
from shared.messages import RegistrationCommand
from shared.registration import Outcome, RegistrationPorts, handle_registration
from shared.registration.lease import LeaseHeld
from shared.store.credentials import CredentialStore, OrgRecord
from shared.store.parked import ParkedMessage, ParkedMessages

_log = logging.getLogger(__name__)

BUSY_RETRY = timedelta(seconds=30)  # a registration another delivery holds: soon again, it is no outage


@dataclass
class RetryReport:
    """What one run did."""

    outcomes: Counter[str] = field(default_factory=Counter)
    orgs_still_unreachable: list[str] = field(default_factory=list)
    orgs_resumed: list[str] = field(default_factory=list)
    dropped: int = 0
    left_for_next_run: int = 0


def retry_parked(
    ports: RegistrationPorts, credentials: CredentialStore, parked: ParkedMessages, *, budget_seconds: float
) -> RetryReport:
    """Re-drive the parked messages of the orgs that are due, within ``budget_seconds``.

    Raises:
        TransientError, ConfigError: storage or the app's configuration fails; the next run starts over.
    """
    started, now, report = time.monotonic(), ports.clock(), RetryReport()
    for org in _due_orgs(credentials, parked, now):
        if time.monotonic() - started > budget_seconds:
            break
        failures = org.park_failures
        due = (m for m in parked.for_org(org.org_id) if m.next_attempt_at <= now)  # busy ones wait for their row
        messages = sorted(due, key=lambda m: m.next_attempt_at)
        for position, message in enumerate(messages):
            if time.monotonic() - started > budget_seconds:
                credentials.set_parking(org.org_id, failures, now)  # due again at once: carry on next run
                report.left_for_next_run += len(messages) - position
                break
            try:
                outcome = _redrive(ports, message)
            except BusyError as exc:  # held by another delivery: due again when the row frees, not an outage
                until = exc.until if isinstance(exc, LeaseHeld) else now + BUSY_RETRY
                parked.reschedule(message, next_attempt_at=until, error=str(exc))
                continue
            except TransientError as exc:
                failures += 1
                until = now + ports.backoff.delay(failures)
                parked.reschedule(message, next_attempt_at=until, error=str(exc))
                credentials.set_parking(org.org_id, failures, until)
                report.orgs_still_unreachable.append(org.org_id)
                report.left_for_next_run += len(messages) - position
                _log.warning(
                    "parked registrations of org %s: still unreachable (%d failed tries), next try at %s: %s",
                    org.org_id, failures, until.isoformat(), exc,
                    extra={"org_id": org.org_id, "parked_failures": failures, "outcome": "parked"},
                )  # fmt: skip
                break
            parked.remove(message)
            report.outcomes[outcome.status] += 1
            if failures and outcome.provider_answered:  # the probe got through: new registrations are parked no more
                failures = 0
                credentials.set_parking(org.org_id, 0, now)
                report.orgs_resumed.append(org.org_id)
        else:
            left = parked.for_org(org.org_id)  # some may have been parked while this run went on
            credentials.set_parking(org.org_id, failures, min((m.next_attempt_at for m in left), default=None))
    if now.minute == 0:
        report.dropped = _drop_orphans(ports, credentials, parked)
    return report


def _due_orgs(credentials: CredentialStore, parked: ParkedMessages, now: datetime) -> list[OrgRecord]:
    """The orgs whose parked work is due: by the org's own time (``park_until``; an org that is parking backs
    off as a whole), and orgs not parking that hold a message due by its own time (parked alone while its
    registration was busy; found even if a concurrent run's ``set_parking`` overwrote the org's time)."""
    due = {org.org_id: org for org in credentials.due_for_parked_work(now)}
    for org_id in sorted(parked.due_org_ids(now) - due.keys()):
        org = credentials.get(org_id)
        if org is not None and not org.parking:
            due[org_id] = org
    return list(due.values())


def _redrive(ports: RegistrationPorts, message: ParkedMessage) -> Outcome:
    command = RegistrationCommand.model_validate_json(message.command)
    return handle_registration(command, ports, received_at=message.received_at, redrive=True)


def _drop_orphans(ports: RegistrationPorts, credentials: CredentialStore, parked: ParkedMessages) -> int:
    """Drop the parked messages of orgs whose credentials were removed; the ledger records each skip."""
    dropped = 0
    for org_id in sorted(parked.org_ids()):
        if credentials.get(org_id) is not None:
            continue
        for message in parked.for_org(org_id):
            _redrive(ports, message)  # no credentials: recorded as "skipped: integration disabled", no ON24 call
            parked.remove(message)
            dropped += 1
    return dropped
