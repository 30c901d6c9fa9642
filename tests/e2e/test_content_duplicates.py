"""A message whose content ON24 already holds makes no ON24 call, whatever its rank; a changed field does.

ON24 allows 1,000 registrant calls a minute per account: producers that post the same canonical message again
(without ``occurredAt``, so each copy ranks by its own, later, enqueue time) must not spend them. The ledger keeps
a fingerprint of the fields ON24 confirmed; interleavings are staged with the ON24 stand-in's gates.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.app import reset_app
from shared.errors import TransientError
from tests.builders import CrmOrg, canonical_body
from tests.e2e.test_registration_adversity import (
    ORG,
    WEBINAR,
    InBackground,
    crm,
    deliver,
    deliver_until_done,
    env,
    parked_keys,
    redrive_parked_when_due,
    row,
)

__all__ = ["crm", "env"]  # fixtures


def posted(reg: str, crm: CrmOrg, first: str, last: str, email: str = "jorg.muller@firma.de") -> Any:
    """A canonical register as a producer posts it: no ``occurredAt``, so its rank is its enqueue time."""
    return canonical_body(org_id=ORG, registration_id=reg, event_id=crm.event_id, action="register",
                          webinar_id=str(WEBINAR), attendee={"email": email, "firstName": first, "lastName": last,
                                                             "company": "Bücherei Köln"})  # fmt: skip


def on24_writes(on24: Any) -> int:
    return on24.count("POST", "/registrant") + on24.count("PATCH", "/registrant")


def holds(on24: Any, reg: str) -> list[tuple[str, str]]:
    return [(r["firstname"], r["lastname"]) for r in on24.registrants(WEBINAR)
            if r.get("exteventusercd") == reg and not r["isdeleted"]]  # fmt: skip


def test_the_same_message_posted_again_later_makes_no_second_on24_call(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    message = posted(reg, crm, "Jörg", "Müller")
    first = datetime.now(UTC)
    deliver_until_done(message, enqueued_time=first)
    deliver_until_done(message, enqueued_time=first + timedelta(seconds=5))  # posted again, enqueued later

    assert on24_writes(on24) == 1, "the second copy sends ON24 nothing new"
    assert holds(on24, reg) == [("Jörg", "Müller")]
    assert row(reg).last_message_at == first + timedelta(seconds=5), "its rank is recorded: newest-wins holds"


def test_thirty_copies_at_once_make_one_on24_call(crm: CrmOrg, on24: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ON24_TIMEOUT_SECONDS", "5")  # the held create outlasts the copies' waits
    monkeypatch.setenv("REGISTRATION_LEASE_SECONDS", "30")
    reset_app()
    reg = str(uuid.uuid4())
    message = posted(reg, crm, "Иван", "Петров")
    first = datetime.now(UTC)
    create = on24.hold_next("POST", "/registrant")
    holder = InBackground(lambda: deliver(message, enqueued_time=first))
    create.wait_arrived()  # the first copy holds the row and is inside its ON24 create
    start = threading.Barrier(29)

    def copy(n: int) -> None:
        start.wait()
        deliver(message, enqueued_time=first + timedelta(seconds=n), message_id=uuid.uuid4().hex)

    copies = [InBackground(lambda n=n: copy(n)) for n in range(1, 30)]
    try:
        assert [c.join() for c in copies] == [[]] * 29, "every copy completed while the first one held the row"
        assert parked_keys() == [reg], "the copies wait, parked, for the row"
    finally:
        create.release()
    assert holder.join() == []
    redrive_parked_when_due(wait=False)

    assert on24_writes(on24) == 1
    assert holds(on24, reg) == [("Иван", "Петров")]
    assert row(reg).last_message_at == first + timedelta(seconds=29)


def test_a_changed_field_is_sent_and_the_old_content_again_after_it(crm: CrmOrg, on24: Any) -> None:
    reg = str(uuid.uuid4())
    first = datetime.now(UTC)
    deliver_until_done(posted(reg, crm, "Åsa", "Ødegård"), enqueued_time=first)
    deliver_until_done(posted(reg, crm, "Åsa", "Ødegård-Lund"), enqueued_time=first + timedelta(seconds=1))
    assert on24_writes(on24) == 2 and holds(on24, reg) == [("Åsa", "Ødegård-Lund")]
    deliver_until_done(posted(reg, crm, "Åsa", "Ødegård"), enqueued_time=first + timedelta(seconds=2))
    assert on24_writes(on24) == 3 and holds(on24, reg) == [("Åsa", "Ødegård")], "back to the first content"


def test_an_update_whose_answer_was_lost_leaves_the_content_unknown_so_the_next_message_is_sent(
    crm: CrmOrg, on24: Any
) -> None:
    reg = str(uuid.uuid4())
    first = datetime.now(UTC)
    deliver_until_done(posted(reg, crm, "Jörg", "Müller"), enqueued_time=first)
    patch = on24.hold_next("PATCH", "/registrant", after=True)  # ON24 applies the change; the answer is lost
    changed = InBackground(lambda: deliver(posted(reg, crm, "Jörg", "Mueller"), enqueued_time=first
                                           + timedelta(seconds=1)))  # fmt: skip
    patch.wait_arrived()
    on24.fail_next(20, status=503, method="PATCH")  # and every retry within the budget fails
    patch.release(drop_reply=True)
    (raised,) = changed.join()
    assert isinstance(raised, TransientError) and holds(on24, reg) == [("Jörg", "Mueller")]
    on24.clear_faults()

    deliver_until_done(posted(reg, crm, "Jörg", "Müller"), enqueued_time=first + timedelta(seconds=2))
    assert holds(on24, reg) == [("Jörg", "Müller")], "ON24 may hold the lost change: the old content is sent again"
