"""RetryParked: re-drive parked registrations when they are due, one probe per unreachable org.

A registration is parked (``shared.registration.park``) when its delivery failed transiently for the
``PARK_AFTER_DELIVERIES``-th time, or when ON24 refused the org's token; from then on the org's new registrations
are parked at once, without calling ON24. The org row says when its parked work is next due, so a run reads only
the parked messages of orgs whose time has come, the longest-waiting first. For an org still parking, the first
message is the probe: if it fails again, the org backs off (exponentially, with jitter, capped; an org whose
token ON24 refused waits ``REJECTED_PROBE``, or for the next credentials save, which makes its work due at once)
and its other messages wait for the next probe; once one gets an answer from ON24 (a message that needs no ON24
call, e.g. a stale one, proves nothing and the next one probes), the org's parking ends and its parked messages
follow, within the run's budget. Re-driving goes through ``handle_registration``: the same lease, order and
exactly-once rules as a fresh delivery.

ON24's registrant limit per account (``shared.store.pacing``): a message parked alone because its slot lay beyond
its delivery's wait is due at that slot. A run re-drives an org's due messages 8 at a time, each waiting for its
slot until the run's budget ends, plus a delivery's wait for a re-drive started within it
(``RegistrationPorts.pace_until``; 45 + 10 s, inside the minute), so one run drains at the account's limit; a
slot beyond that reschedules its message to it and leaves the org's other due messages for the next run.

Orgs are isolated: whatever one org raises (Dataverse refusing the app's identity, a storage fault, a bug) is
recorded on that org with backoff and the run goes on to the next; a parked message that no longer parses is
moved, whole, to the rejected messages with the reason (never retried); any other error of one message
reschedules that message with backoff.

Parked messages of an org whose credentials were removed are dropped, each with a ledger record ("skipped:
integration disabled"), by a sweep in the first run of every hour; the same sweep makes due the parked work of
an org whose row has no due time (stranded by an older version's credentials save).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pydantic

from shared.errors import BusyError, ConfigError, CredentialsRejectedError, TransientError
from shared.messages import RegistrationCommand
from shared.registration import REJECTED_PROBE, Outcome, RegistrationPorts, handle_registration
from shared.registration.lease import LeaseHeld, SlotLater
from shared.store.credentials import CredentialStore, OrgRecord
from shared.store.parked import ParkedMessage, ParkedMessages
from shared.store.rejected import RejectedMessages

_log = logging.getLogger(__name__)

BUSY_RETRY = timedelta(seconds=30)  # a registration another delivery holds: soon again, it is no outage
REDRIVE_CONCURRENCY = 8  # re-drives at once for an org that is not parking (its messages were parked alone)


@dataclass
class RetryReport:
    """What one run did."""

    outcomes: Counter[str] = field(default_factory=Counter)
    orgs_still_unreachable: list[str] = field(default_factory=list)
    orgs_resumed: list[str] = field(default_factory=list)
    orgs_failed: list[str] = field(default_factory=list)
    """Orgs whose re-drive raised something other than an outage (configuration, a bug); they back off."""
    set_aside: int = 0
    """Parked messages that no longer parse, moved to the rejected messages."""
    dropped: int = 0
    left_for_next_run: int = 0


def retry_parked(
    ports: RegistrationPorts,
    credentials: CredentialStore,
    parked: ParkedMessages,
    *,
    rejected: RejectedMessages,
    budget_seconds: float,
) -> RetryReport:
    """Re-drive the parked messages of the orgs that are due, within ``budget_seconds``; one org's failure never
    stops the others.

    Raises:
        TransientError, ConfigError: the org table cannot be listed; the next run starts over.
    """
    started, now, report = time.monotonic(), ports.clock(), RetryReport()
    # Re-drives wait for their ON24 slots within the run; one started within the budget as long past it as a delivery.
    ports = replace(ports, pace_until=started + budget_seconds + ports.pace_wait_seconds)
    due = sorted(_due_orgs(credentials, parked, now), key=lambda org: (org.park_until or now, org.org_id))
    for org in due:
        if time.monotonic() - started > budget_seconds:
            break
        try:
            _retry_org(ports, credentials, parked, rejected, org, now, started, budget_seconds, report)
        except Exception as exc:  # one org's trouble (Dataverse 401/403, storage, a bug): recorded, the run goes on
            _org_failed(ports, credentials, org, now, exc, report)
    if now.minute == 0:
        try:
            report.dropped = _sweep(ports, credentials, parked, now)
        except Exception:
            _log.exception("parked registrations: the hourly sweep failed; the next one tries again")
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


def _retry_org(
    ports: RegistrationPorts,
    credentials: CredentialStore,
    parked: ParkedMessages,
    rejected: RejectedMessages,
    org: OrgRecord,
    now: datetime,
    started: float,
    budget_seconds: float,
    report: RetryReport,
) -> None:
    """Re-drive one org's parked messages; raises what concerns the whole org (after recording the probe)."""
    failures = org.park_failures
    # An org that is parking (or whose token ON24 refused) backs off as a whole: its time, which a credentials save
    # brings forward, governs every message. Otherwise only messages due by their own time (parked alone while
    # their registration was busy) are taken; the others wait for their row.
    whole = org.parking or org.status == "rejected"
    due = (m for m in parked.for_org(org.org_id) if whole or m.next_attempt_at <= now)
    messages = sorted(due, key=lambda m: m.next_attempt_at)
    with _Ahead(ports, messages, concurrent=failures == 0) as ahead:
        _retry_messages(ports, credentials, parked, rejected, org, now, started, budget_seconds, report, ahead)


def _retry_messages(
    ports: RegistrationPorts,
    credentials: CredentialStore,
    parked: ParkedMessages,
    rejected: RejectedMessages,
    org: OrgRecord,
    now: datetime,
    started: float,
    budget_seconds: float,
    report: RetryReport,
    ahead: _Ahead,
) -> None:
    """``_retry_org``'s loop over the due messages, whose re-drives ``ahead`` may already have started."""
    failures, messages = org.park_failures, ahead.messages
    for position, message in enumerate(messages):
        if ahead.stopped and not ahead.started(position):  # the account's limit was met: the rest stay due
            report.left_for_next_run += len(messages) - position
            return
        if time.monotonic() - started > budget_seconds:
            credentials.set_parking(org.org_id, failures, now)  # due again at once: carry on next run
            report.left_for_next_run += len(messages) - position
            return
        try:
            command = RegistrationCommand.model_validate_json(message.command)
        except (pydantic.ValidationError, ValueError) as exc:
            _set_aside(parked, rejected, message, exc)
            report.set_aside += 1
            continue
        try:
            outcome = ahead.outcome(position, command)
        except BusyError as exc:  # held by another delivery: due again when the row frees, not an outage
            until = exc.until if isinstance(exc, LeaseHeld) else now + BUSY_RETRY
            parked.reschedule(message, next_attempt_at=until, error=str(exc))
            if isinstance(exc, SlotLater):  # the account's next slot lies past this run's end: no new re-drives,
                ahead.stop()  # but those already started are looked at (done ones leave the parking now)
            continue
        except (TransientError, CredentialsRejectedError) as exc:
            failures += 1
            refused = isinstance(exc, CredentialsRejectedError)
            until = now + (REJECTED_PROBE if refused else ports.backoff.delay(failures))
            parked.reschedule(message, next_attempt_at=until, error=str(exc))
            credentials.set_parking(org.org_id, failures, until)
            report.orgs_still_unreachable.append(org.org_id)
            report.left_for_next_run += len(messages) - position
            _log.warning(
                "parked registrations of org %s: %s (%d failed tries), next try at %s: %s",
                org.org_id, "ON24 still refuses its credentials" if refused else "still unreachable", failures,
                until.isoformat(), exc,
                extra={"org_id": org.org_id, "parked_failures": failures, "outcome": "parked"},
            )  # fmt: skip
            return
        except Exception as exc:
            if not _message_failed(ports, parked, message, now, exc):
                raise  # not this message's own trouble: the org backs off
            continue
        parked.remove(message)
        report.outcomes[outcome.status] += 1
        if failures and outcome.provider_answered:  # the probe got through: new registrations are parked no more
            failures = 0
            credentials.set_parking(org.org_id, 0, now)
            report.orgs_resumed.append(org.org_id)
    left = parked.for_org(org.org_id)  # some may have been parked while this run went on
    credentials.set_parking(org.org_id, failures, min((m.next_attempt_at for m in left), default=None))


class _Ahead:
    """Re-drives of an org that is not parking, started ``REDRIVE_CONCURRENCY`` ahead on threads (issue 22).

    Messages parked alone (busy row, the account's ON24 slot) are independent registrations: re-driven one by one,
    a window's worth of ON24 slots would take longer than the window. A probe of an org that is parking stays
    alone (``concurrent`` False). Once the account's limit is met (``stop``), no re-drive starts, and the loop
    still looks at those already started. When the run's budget ends, re-drives already started finish; a result
    not looked at leaves its message parked and due, and its next re-drive finds the row decided (a duplicate).
    """

    def __init__(self, ports: RegistrationPorts, messages: list[ParkedMessage], *, concurrent: bool) -> None:
        self.messages = messages
        self._ports = ports
        self._pool = ThreadPoolExecutor(REDRIVE_CONCURRENCY) if concurrent and len(messages) > 1 else None
        self._futures: dict[int, Future[Outcome]] = {}
        self._submitted = 0
        self.stopped = False

    def stop(self) -> None:
        """Start no more re-drives."""
        self.stopped = True

    def started(self, position: int) -> bool:
        """Whether message ``position``'s re-drive is already under way (its result not taken yet)."""
        return position in self._futures

    def __enter__(self) -> _Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def outcome(self, position: int, command: RegistrationCommand) -> Outcome:
        """The re-drive of message ``position`` (its ``command`` parsed); raises what it raised."""
        message = self.messages[position]
        if self._pool is None:
            return _redrive(self._ports, message, command)
        while not self.stopped and self._submitted < min(len(self.messages), position + REDRIVE_CONCURRENCY):
            ahead = self.messages[self._submitted]
            try:
                parsed = RegistrationCommand.model_validate_json(ahead.command)
            except (pydantic.ValidationError, ValueError):
                parsed = None  # the loop sets it aside when it gets there
            if parsed is not None:
                self._futures[self._submitted] = self._pool.submit(_redrive, self._ports, ahead, parsed)
            self._submitted += 1
        future = self._futures.pop(position, None)
        return future.result() if future is not None else _redrive(self._ports, message, command)


def _redrive(ports: RegistrationPorts, message: ParkedMessage, command: RegistrationCommand) -> Outcome:
    return handle_registration(command, ports, received_at=message.received_at, redrive=True)


def _message_failed(
    ports: RegistrationPorts, parked: ParkedMessages, message: ParkedMessage, now: datetime, exc: Exception
) -> bool:
    """Record what a message raised on it, with backoff by its attempts. True: the message alone backs off (an
    unexpected error); False: the error is the org's (``ConfigError``, e.g. Dataverse refused the app's identity
    for the org's URL), for the org to back off."""
    until = now + ports.backoff.delay(message.attempts + 1)
    parked.reschedule(message, next_attempt_at=until, error=f"{type(exc).__name__}: {exc}"[:1000])
    if isinstance(exc, ConfigError):
        return False
    _log.exception(
        "parked registration %s (org %s) failed unexpectedly; next try at %s",
        message.key, message.org_id, until.isoformat(),
        extra={"org_id": message.org_id, "registration_id": message.key, "outcome": "parked"},
    )  # fmt: skip
    return True


def _org_failed(
    ports: RegistrationPorts, credentials: CredentialStore, org: OrgRecord, now: datetime, exc: Exception,
    report: RetryReport,
) -> None:  # fmt: skip
    """Record an org-wide failure on the org row: one more failed try, and its parked work (and new registrations,
    parked meanwhile) waits with backoff; the run goes on with the next org. Never raises."""
    failures = org.park_failures + 1
    until = now + ports.backoff.delay(failures)
    report.orgs_failed.append(org.org_id)
    _log.error(
        "parked registrations of org %s: the re-drive failed (%s), next try at %s: %s",
        org.org_id, type(exc).__name__, until.isoformat(), exc,
        extra={"org_id": org.org_id, "parked_failures": failures, "error": type(exc).__name__},
    )  # fmt: skip
    try:
        credentials.set_parking(org.org_id, failures, until)
    except Exception:
        _log.exception("parked registrations of org %s: the backoff could not be recorded", org.org_id)


def _set_aside(parked: ParkedMessages, rejected: RejectedMessages, message: ParkedMessage, exc: Exception) -> None:
    """A parked message that no longer parses (written by another version): kept whole with the reason among the
    rejected messages, and removed from the parking, so it is never retried. The reason names fields, no values."""
    if isinstance(exc, pydantic.ValidationError):
        fields = sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors(include_input=False)})
        cause = f"fields at fault: {', '.join(fields)[:300]}"
    else:
        cause = "not valid JSON"
    reason = f"parked message of registration {message.key} no longer parses ({cause}); set aside, not retried"
    rejected.record(f"parked:{message.row_key}", reason, message.command.encode("utf-8"), org_id=message.org_id,
                    delivery_count=message.attempts)  # fmt: skip
    parked.remove(message)
    extra = {"org_id": message.org_id, "registration_id": message.key, "message_id": f"parked:{message.row_key}"}
    _log.error(reason, extra={**extra, "outcome": "rejected"})


def _sweep(ports: RegistrationPorts, credentials: CredentialStore, parked: ParkedMessages, now: datetime) -> int:
    """Drop the parked messages of orgs whose credentials were removed (the ledger records each skip), and make due
    the parked work of an org row that has no due time. Returns how many were dropped."""
    dropped = 0
    for org_id in sorted(parked.org_ids()):
        org = credentials.get(org_id)
        if org is not None:
            if org.park_until is None:
                _log.warning("org %s has parked registrations but no due time: due now", org_id,
                             extra={"org_id": org_id})  # fmt: skip
                credentials.set_parking(org_id, org.park_failures, now)
            continue
        for message in parked.for_org(org_id):
            try:
                command = RegistrationCommand.model_validate_json(message.command)
            except (pydantic.ValidationError, ValueError):
                parked.remove(message)  # the org is gone and the message unreadable: nothing to record it on
            else:  # no credentials: recorded as "skipped: integration disabled", no ON24 call
                _redrive(ports, message, command)
                parked.remove(message)
            dropped += 1
    return dropped
