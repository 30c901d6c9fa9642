"""A busy registration never dead-letters: a message that meets another delivery's lease is parked alone until the
lease ends, and RetryParked re-drives it then.

Production timing: the deployed lease (90 s) on a virtual clock that stands still unless the test moves it, so a
lease orphaned by a killed worker outlasts every delivery, as it does in production (10 deliveries of 5 s of
waiting are 50 s, less than 90 s). Service Bus is simulated: a delivery that raises is redelivered at once,
dead-lettered after 10. Interleavings are staged with the stand-ins' gates, the crash with a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.app import App, get_app, reset_app, set_app
from shared.settings import Settings
from StoreCredentials import main as store_main
from tests.builders import canonical_body
from tests.conftest import ON24_CLIENT_ID, credentials_body
from tests.e2e.test_parking import MAX_DELIVERIES, deliver, run_retry_parked
from tests.e2e.test_registration_adversity import InBackground
from tests.functions import http_request

ORG = "8f90a1b2-c3d4-4e5f-8a6b-7c8d9e0f1a2b"
WEBINAR = 880401
ROOT = Path(__file__).resolve().parents[2]
LEASE = timedelta(seconds=90)  # the deployed REGISTRATION_LEASE_SECONDS


class FrozenClock:
    """Real time when the test starts, then only where the test moves it (a child process reads the real one)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, on24: Any) -> Any:
    # The deployed lease and retry timing; the lease wait is cut to 50 ms of real time only to keep the test short:
    # on a clock that stands still, a lease that does not end in 5 s does not end in 50 ms either.
    monkeypatch.setenv("REGISTRATION_LEASE_WAIT_SECONDS", "0.05")
    monkeypatch.setenv("RETRY_BUDGET_SECONDS", "0")
    on24.add_event(ON24_CLIENT_ID, WEBINAR, title="Busy webinar")
    virtual = FrozenClock()
    set_app(App(Settings.from_environ(), clock=virtual))
    assert get_app().settings.registration_lease_seconds == LEASE.total_seconds()
    assert store_main(http_request("PUT", ORG, credentials_body())).status_code == 200
    on24.reset_log()
    yield virtual
    reset_app()


def body(reg: str, action: str, at: datetime | None, email: str, first: str, last: str) -> dict[str, Any]:
    return canonical_body(org_id=ORG, registration_id=reg, event_id="0f1e2d3c-4b5a-4697-8877-665544332211",
                          action=action, webinar_id=str(WEBINAR),
                          attendee={"email": email, "firstName": first, "lastName": last}, occurred_at=at)  # fmt: skip




def held(on24: Any, reg: str) -> list[tuple[str, str, str]]:
    """(email, first name, last name) of the registration's ON24 registrants that are not deleted."""
    return [(r["email"], r.get("firstname", ""), r.get("lastname", "")) for r in on24.registrants(WEBINAR)
            if r.get("exteventusercd") == reg and not r["isdeleted"]]  # fmt: skip


def killed_mid_delivery(on24: Any, tmp_path: Path, message: dict[str, Any], email: str) -> None:
    """Deliver ``message`` in a worker process and SIGKILL it once ON24 applied its write: its lease stays."""
    gate = on24.hold_next("POST", "/registrant", after=True, body_contains=email.replace("@", "%40").encode())
    spec = tmp_path / f"{uuid.uuid4().hex}.json"
    spec.write_text(json.dumps({"body": message, "message_id": uuid.uuid4().hex,
                                "enqueued_at": datetime.now(UTC).isoformat()}))  # fmt: skip
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tests.e2e._delivery_child", str(spec)],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        gate.wait_arrived()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        gate.release(drop_reply=True)


def test_an_orphaned_lease_dead_letters_nothing_and_the_newest_update_reaches_on24_when_it_ends(
    clock: Any, on24: Any, tmp_path: Path
) -> None:
    reg, other = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = clock.now - timedelta(minutes=10)
    register = body(reg, "register", None, "joerg.mueller@firma.de", "Jörg", "Müller")
    assert deliver(register, t0) == "completed"
    killed_mid_delivery(on24, tmp_path, body(reg, "update", t0 + timedelta(minutes=1), "j.mueller@firma.de",
                                             "Jörg", "Müller"), "j.mueller@firma.de")  # fmt: skip
    orphan = get_app().ledger.get(ORG, reg)
    assert orphan.lease_until is not None and orphan.lease_until > clock.now, "the killed delivery left its lease"

    duplicate = deliver(register, t0 + timedelta(minutes=2))  # the same post again, enqueued later
    update = body(reg, "update", t0 + timedelta(minutes=3), "ivan.petrov@firma.de", "Иван", "Петров")
    outcomes = [duplicate] + [deliver(update, t0 + timedelta(minutes=3)) for _ in range(MAX_DELIVERIES)]

    assert outcomes == ["completed"] * (1 + MAX_DELIVERIES), "a busy registration dead-letters nothing"
    parked = list(get_app().parked.iter_all())
    assert [(p.key, p.next_attempt_at) for p in parked] == [(reg, orphan.lease_until)], (
        "only the newest message is kept, due when the orphaned lease ends"
    )
    assert deliver(body(other, "register", None, "asa.odegard@firma.no", "Åsa", "Ødegård"), clock.now) == "completed"
    assert held(on24, other) == [("asa.odegard@firma.no", "Åsa", "Ødegård")], "the org's other registrations go on"
    org = get_app().credentials.get(ORG)
    assert org is not None and not org.parking, "a busy registration does not park the org"

    run_retry_parked()  # before the lease ends: nothing is due
    assert len(list(get_app().parked.iter_all())) == 1
    clock.now = orphan.lease_until + timedelta(seconds=1)
    run_retry_parked()

    assert held(on24, reg) == [("ivan.petrov@firma.de", "Иван", "Петров")], "the newest update won"
    assert list(get_app().parked.iter_all()) == []
    settled = get_app().ledger.get(ORG, reg)
    assert settled.state == "registered" and settled.lease_id is None and settled.pending == ()


def test_a_redrive_that_meets_a_live_lease_waits_for_that_lease_and_the_org_does_not_park(
    clock: Any, on24: Any, tmp_path: Path
) -> None:
    reg = str(uuid.uuid4())
    t0 = clock.now - timedelta(minutes=10)
    assert deliver(body(reg, "register", t0, "aino.virtanen@yritys.fi", "Aino", "Virtanen"), t0) == "completed"
    killed_mid_delivery(on24, tmp_path, body(reg, "update", t0 + timedelta(minutes=1), "aino.v@yritys.fi",
                                             "Aino", "Virtanen"), "aino.v@yritys.fi")  # fmt: skip
    first_lease = get_app().ledger.get(ORG, reg).lease_until
    newest = body(reg, "update", t0 + timedelta(minutes=3), "aino.korhonen@yritys.fi", "Aino", "Korhonen")
    assert deliver(newest, t0 + timedelta(minutes=3)) == "completed"

    # The orphaned lease ends; before RetryParked comes, a live delivery (ranked between) takes the row.
    clock.now = first_lease + timedelta(seconds=1)
    gate = on24.hold_next("POST", "/registrant", body_contains=b"aino.m%40yritys.fi")
    live = InBackground(lambda: deliver(body(reg, "update", t0 + timedelta(minutes=2), "aino.m@yritys.fi", "Aino",
                                             "Mäkinen"), t0 + timedelta(minutes=2)))  # fmt: skip
    try:
        gate.wait_arrived()
        live_lease = get_app().ledger.get(ORG, reg).lease_until
        run_retry_parked()
        (again,) = get_app().parked.iter_all()
        org = get_app().credentials.get(ORG)
    finally:
        gate.release()
    assert live.join() == []
    assert again.next_attempt_at == live_lease and again.attempts == 1, "due again when the live lease ends"
    assert org is not None and not org.parking, "meeting a busy row is not an outage of the org"

    clock.now = live_lease + timedelta(seconds=1)
    run_retry_parked()
    assert held(on24, reg) == [("aino.korhonen@yritys.fi", "Aino", "Korhonen")]
    assert list(get_app().parked.iter_all()) == []
