"""The tombstone rule on its own (issue 18): a register or update ranked before a forget (at its time or earlier:
a forget outranks every other action at equal times) becomes a forget; one ranked after it stays as it was."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.messages import RegistrationCommand
from shared.registration.forgotten import addressable, unless_forgotten
from shared.registration.ports import Desired, RegistrationPorts
from shared.registration.rules import PRIORITY, Rank
from shared.store.ledger import LedgerEntry, RegistrantRef
from shared.webinars import Person

FORGOTTEN_AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REG = "0f0e0d0c-0b0a-4908-8706-050403020100"


class Stones:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def record(
        self, org_id: str, at: datetime, *, registration_ids: Iterable[str] = (), email: str | None = None
    ) -> int:
        return 0

    def forgotten_at(self, org_id: str, registration_id: str, email: str | None) -> datetime | None:
        self.asked.append((registration_id, email))
        return FORGOTTEN_AT if email == "asa.odegard@firma.example" else None


def ports(stones: Stones) -> RegistrationPorts:
    unused: Any = None
    return RegistrationPorts(credentials=unused, ledger=unused, provider_for=unused, crm_for=unused, tombstones=stones)


def register(action: str = "register") -> tuple[RegistrationCommand, Desired]:
    person = Person(email="asa.odegard@firma.example", first_name="Åsa", last_name="Ødegård")
    cmd = RegistrationCommand(org_id="org", action=action, registration_id=REG, source="canonical", person=person)
    desired = Desired(PRIORITY[action], RegistrantRef("880101", person.email), person, "registered", None, "e", "c")
    return cmd, desired


def test_a_register_at_or_before_the_forget_becomes_a_forget_and_one_after_it_does_not() -> None:
    stones = Stones()
    for action in ("register", "update"):
        cmd, desired = register(action)
        for at in (FORGOTTEN_AT - timedelta(days=3), FORGOTTEN_AT):
            turned = unless_forgotten(ports(stones), cmd, desired, Rank(at, PRIORITY[action]))
            assert (turned.target, turned.status, turned.priority) == (None, "forgotten", PRIORITY["forget"])
            assert turned.person is None and turned.contact_id is None and "Åsa" not in (turned.reason or "")
        later = Rank(FORGOTTEN_AT + timedelta(microseconds=1), PRIORITY[action])
        assert unless_forgotten(ports(stones), cmd, desired, later) is desired
    assert stones.asked[0] == (REG, "asa.odegard@firma.example")


def test_a_removal_is_not_looked_up_and_an_unaddressable_one_says_why() -> None:
    stones = Stones()
    cmd, _ = register("register")
    removal = Desired(PRIORITY["cancel"], None, None, "cancelled", None, "e", "c")
    assert unless_forgotten(ports(stones), cmd, removal, Rank(FORGOTTEN_AT, 2)) is removal and stones.asked == []
    cleared = LedgerEntry(org_id="org", registration_id=REG, state="registered", webinar_id="880101",
                          registrant_id="300000001")  # fmt: skip
    cancel = RegistrationCommand(org_id="org", action="cancel", registration_id=REG, source="canonical")
    entry, why = addressable(cancel, cleared, removal)
    assert entry is cleared and why and "300000001" in why and "cannot be removed" in why
    given = Person(email="asa.odegard@firma.example", first_name="", last_name="")
    forget = RegistrationCommand(org_id="org", action="forget", registration_id=REG, source="admin", person=given)
    entry, why = addressable(forget, cleared, removal)
    assert why is None and entry is not None and entry.current == RegistrantRef("880101", "asa.odegard@firma.example")
