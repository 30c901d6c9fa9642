"""Sorting every person of one webinar into one of the five classes (pure: no I/O here).

The inputs are what a reconciliation read: the CRM registrations of the webinar's events (with their contacts'
emails, in memory only), ON24's active registrants of the webinar, what CRM says of a registration ON24 shows with
our id but the webinar's registrations do not include (read by id), and which persons were forgotten.

- ``missingInOn24``: active in CRM, ON24 holds no registrant with its id;
- ``goneInCrm``: ON24 holds a registrant with its id, but CRM has it cancelled, inactive or deleted (or the person
  was forgotten);
- ``different``: in both, but ON24's registrant has another email, or CRM moved the registration to another event;
- ``notOurs``: ON24's registrant carries no id of a registration the app knows (ON24's own page, a walk-in);
- ``agreed``: the rest (an active forgotten person whom ON24 does not hold is in agreement: the erasure wins).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shared.crm_values import WebinarRegistration
from shared.emails import match_key
from shared.ids import is_guid
from shared.store.ledger import RegistrantRef
from shared.store.reconciliations import CLASSES
from shared.webinars import RegistrantRow

Class = Literal["missingInOn24", "goneInCrm", "different", "notOurs", "agreed"]
Elsewhere = Literal["active", "gone", "unknown"]
"""What CRM says of a registration read by id: active in another event, gone (cancelled, inactive, deleted), or
not ours (the app never had it: no ledger row, not a registration of this webinar)."""


@dataclass(frozen=True)
class Finding:
    """One person's class; for a drift the app may repair, what to do and what ON24 showed for the registration.

    ``seen`` holds ON24's emails in memory for the repair (a removal needs the address); they are never stored.
    """

    cls: Class
    registration_id: str | None = None
    action: Literal["register", "cancel"] | None = None
    seen: tuple[RegistrantRef, ...] = ()
    crm: WebinarRegistration | None = None


@dataclass
class Classification:
    findings: list[Finding] = field(default_factory=list)
    forgotten: int = 0
    """Active CRM registrations of forgotten persons (counted in ``agreed`` when ON24 does not hold them)."""

    def counts(self) -> dict[str, int]:
        counted = Counter(finding.cls for finding in self.findings)
        return {name: counted.get(name, 0) for name in CLASSES} | {"forgotten": self.forgotten}

    def ids(self) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {}
        for finding in self.findings:
            if finding.registration_id and finding.cls not in ("agreed", "notOurs"):
                found.setdefault(finding.cls, []).append(finding.registration_id)
        return {name: tuple(sorted(ids)) for name, ids in found.items()}

    def drift(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.action is not None]


def code_of(row: RegistrantRow) -> str | None:
    """The CRM registration id a registrant carries (lower case), or None when it carries none."""
    code = (row.registration_id or "").strip().lower()
    return code if is_guid(code) else None


def classify(
    webinar_id: str,
    crm: Mapping[str, WebinarRegistration],
    listed: Sequence[RegistrantRow],
    elsewhere: Mapping[str, Elsewhere],
    forgotten: Callable[[str, str | None], bool],
) -> Classification:
    """Every person of the webinar in exactly one class (see the module docstring).

    Args:
        webinar_id: the ON24 webinar.
        crm: the registrations of the webinar's events, by id.
        listed: the provider's active registrants of the webinar.
        elsewhere: for each id ON24 shows that ``crm`` lacks, what CRM says of it (missing: ``unknown``).
        forgotten: whether a registration or an address was ever forgotten (tombstones).
    """
    result = Classification()
    by_code: dict[str, list[RegistrantRow]] = {}
    for row in listed:
        code = code_of(row)
        if code is None:
            result.findings.append(Finding("notOurs"))
        else:
            by_code.setdefault(code, []).append(row)

    def seen_of(rows: list[RegistrantRow]) -> tuple[RegistrantRef, ...]:
        return tuple(RegistrantRef(webinar_id, row.email) for row in rows if row.email)

    for registration_id, registration in crm.items():
        rows = by_code.pop(registration_id, [])
        gone = forgotten(registration_id, registration.email)
        if registration.is_active and gone:
            result.forgotten += 1
        if not registration.is_active or gone:
            if rows:
                result.findings.append(Finding("goneInCrm", registration_id, "cancel", seen_of(rows), registration))
            else:
                result.findings.append(Finding("agreed", registration_id))
        elif not rows:
            result.findings.append(Finding("missingInOn24", registration_id, "register", (), registration))
        elif len(rows) == 1 and _same_email(rows[0].email, registration.email):
            result.findings.append(Finding("agreed", registration_id))
        else:
            result.findings.append(Finding("different", registration_id, "register", seen_of(rows), registration))

    for code, rows in sorted(by_code.items()):
        where = elsewhere.get(code, "unknown")
        if where == "unknown":
            result.findings.extend(Finding("notOurs") for _ in rows)
        elif where == "active":
            result.findings.append(Finding("different", code, "register", seen_of(rows)))
        else:
            result.findings.append(Finding("goneInCrm", code, "cancel", seen_of(rows)))
    return result


def _same_email(listed: str | None, crm: str | None) -> bool:
    return bool(listed) and bool(crm) and match_key(listed or "") == match_key(crm or "")
