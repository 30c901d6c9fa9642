"""The five classes of a reconciliation, and how a repair corrects a ledger row (pure rules, no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.crm_values import WebinarRegistration
from shared.reconcile.classify import classify
from shared.registration.rules import PRIORITY, Rank, no_op, observed
from shared.store.ledger import LedgerEntry, RegistrantRef
from shared.webinars import RegistrantRow

WEBINAR = "4471234"
T = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def reg(email: str | None, *, active: bool = True) -> WebinarRegistration:
    return WebinarRegistration(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), email, active, T)


def listed(email: str, code: str | None, n: int = 1) -> RegistrantRow:
    return RegistrantRow(str(300_000_000 + n), email, code)


def never(_registration: str, _email: str | None) -> bool:
    return False


def test_every_person_lands_in_exactly_one_class() -> None:
    agreed, missing = reg("joerg.mueller@example.de"), reg("asa.odegard@example.no")
    cancelled, moved_mail = reg("lars.nilsson@example.se", active=False), reg("ivan.petrov@example.ru")
    crm = {r.id: r for r in (agreed, missing, cancelled, moved_mail)}
    rows = [
        listed("Joerg.Mueller@EXAMPLE.de", agreed.id.upper(), 1),  # case of email and id do not matter
        listed("lars.nilsson@example.se", cancelled.id, 2),
        listed("i.petrov@example.ru", moved_mail.id, 3),
        listed("walk.in@example.dk", None, 4),
        listed("partner@example.fi", "not-a-guid", 5),
    ]
    found = classify(WEBINAR, crm, rows, {}, never)
    assert found.counts() == {
        "missingInOn24": 1, "goneInCrm": 1, "different": 1, "notOurs": 2, "agreed": 1, "forgotten": 0,
    }  # fmt: skip
    assert found.ids() == {"missingInOn24": (missing.id,), "goneInCrm": (cancelled.id,), "different": (moved_mail.id,)}
    actions = {f.registration_id: (f.action, f.seen) for f in found.drift()}
    assert actions[cancelled.id] == ("cancel", (RegistrantRef(WEBINAR, "lars.nilsson@example.se"),))
    assert actions[moved_mail.id] == ("register", (RegistrantRef(WEBINAR, "i.petrov@example.ru"),))
    assert actions[missing.id] == ("register", ())


def test_an_idn_address_in_either_spelling_agrees() -> None:
    person = reg("иван@пример.рф")
    found = classify(WEBINAR, {person.id: person}, [listed("Иван@XN--E1AFMKFD.XN--P1AI", person.id)], {}, never)
    assert found.counts()["agreed"] == 1 and found.drift() == []


def test_ids_the_webinar_lacks_are_ours_only_when_the_ledger_knows_them() -> None:
    moved, deleted, stranger = (str(uuid.uuid4()) for _ in range(3))
    rows = [listed("a@example.de", moved, 1), listed("b@example.de", deleted, 2), listed("c@example.de", stranger, 3)]
    found = classify(WEBINAR, {}, rows, {moved: "active", deleted: "gone", stranger: "unknown"}, never)
    assert found.counts()["different"] == 1 and found.counts()["goneInCrm"] == 1 and found.counts()["notOurs"] == 1
    assert {f.registration_id for f in found.drift()} == {moved, deleted}, "a stranger's registrant is never touched"


def test_a_forgotten_person_is_never_missing_and_is_removed_if_the_provider_still_holds_them() -> None:
    absent, present = reg("olga.smirnova@example.ru"), reg("pekka@example.fi")
    found = classify(
        WEBINAR, {absent.id: absent, present.id: present}, [listed("pekka@example.fi", present.id)], {},
        lambda registration, email: True,
    )  # fmt: skip
    assert found.counts()["agreed"] == 1 and found.counts()["forgotten"] == 2
    assert [(f.registration_id, f.cls) for f in found.drift()] == [(present.id, "goneInCrm")]


def test_two_registrants_with_one_registration_id_are_a_difference() -> None:
    person = reg("sigridur@example.is")
    rows = [listed("sigridur@example.is", person.id, 1), listed("sigga@example.is", person.id, 2)]
    found = classify(WEBINAR, {person.id: person}, rows, {}, never)
    assert [f.cls for f in found.drift()] == ["different"] and len(found.drift()[0].seen) == 2


# ---- the repair's corrections of a ledger row -------------------------------------------------------------------
def registered(email: str) -> LedgerEntry:
    return LedgerEntry(
        "org", "r1", state="registered", webinar_id=WEBINAR, email=email, last_message_at=T, last_priority=0
    )


def test_a_confirmed_registrant_the_list_lacks_is_only_maybe_there_and_created_again() -> None:
    entry = observed(registered("jorg@example.de"), WEBINAR, ())
    assert (
        entry.state == "new" and entry.current is None and entry.pending == (RegistrantRef(WEBINAR, "jorg@example.de"),)
    )


def test_a_confirmed_registrant_the_list_shows_stays_and_what_it_shows_becomes_known() -> None:
    seen = (RegistrantRef(WEBINAR, "JORG@example.de"), RegistrantRef(WEBINAR, "other@example.de"))
    entry = observed(registered("jorg@example.de"), WEBINAR, seen)
    assert entry.state == "registered" and entry.pending == (RegistrantRef(WEBINAR, "other@example.de"),)
    elsewhere = observed(registered("jorg@example.de"), "999", ())
    assert elsewhere.state == "registered", "only the webinar whose list was read is judged"


def test_only_a_repair_applies_a_message_ranked_as_the_last_decision_again() -> None:
    entry = registered("jorg@example.de")
    same = Rank(T, PRIORITY["register"])
    assert no_op(entry, same, crm_known=False) == "duplicate"
    assert no_op(entry, same, crm_known=False, again=True) is None
    assert no_op(entry, Rank(T - timedelta(seconds=1), 0), crm_known=False, again=True) == "stale"
