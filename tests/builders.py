"""Seeding helpers for the Dataverse stand-in; message bodies come from ``sandbox.triggers``."""

from __future__ import annotations

import uuid
from typing import Any

from sandbox.triggers import canonical_body, dataverse_body

__all__ = ["CrmOrg", "canonical_body", "dataverse_body"]


class CrmOrg:
    """Seeds the Dataverse stand-in with an org's event, accounts, contacts and registrations."""

    def __init__(self, dataverse: Any, *, webinar_id: str | None) -> None:
        self.dataverse = dataverse
        self.account_id = dataverse.add_row("accounts", {"name": "Fabrikam Ltd"})
        self.event_id = dataverse.add_row(
            "msevtmgt_events",
            {
                "msevtmgt_name": "Quarterly product webinar",
                "msevtmgt_webinarid": webinar_id,
                "msevtmgt_eventformat": 100000002,
            },
        )

    def contact(self, first: str, last: str, email: str | None, **extra: Any) -> str:
        row: dict[str, Any] = {
            "firstname": first,
            "lastname": last,
            "fullname": f"{first} {last}",
            "emailaddress1": email,
            "jobtitle": "Engineer",
            "address1_country": "Germany",
            "company": "+49 30 1234567",
            "parentcustomerid": self.account_id,
        }
        row.update(extra)
        return str(self.dataverse.add_row("contacts", row))

    def registration(self, contact_id: str, **extra: Any) -> str:
        row: dict[str, Any] = {
            "msevtmgt_name": f"REG-{uuid.uuid4().hex[:8]}",
            "msevtmgt_eventid": self.event_id,
            "msevtmgt_contactid": contact_id,
            "msevtmgt_iscanceled": False,
            "statecode": 0,
        }
        row.update(extra)
        return str(self.dataverse.add_row("msevtmgt_eventregistrations", row))
