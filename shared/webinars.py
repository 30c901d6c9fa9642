"""The webinar provider seam: what the use cases need of a webinar platform, in the product's own terms.

RegisterAttendee registers a ``Person`` in a webinar, updates or removes them, or has the provider forget them;
PullMetrics reads a webinar's ``WebinarSchedule`` and its ``AttendanceRow`` pages; the admin route checks an
org's credentials. ``WebinarProvider`` is one org's account at the provider; the adapter (``shared.on24``) maps
these types to and from the provider's own API, and the composition root (``shared.app``) builds it. Nothing
else names the provider. Ids are strings: a *webinar id* (ON24: event id), a *registrant id* (ON24:
``eventuserid``), a provider *account id* (ON24: client id); see the README's glossary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class Person(BaseModel):
    """A person to register in a webinar: from a canonical message, or read from a CRM contact.

    Strings are checked before they get here (``shared.messages``); optional fields are None when unknown.
    Values may exceed what a provider stores: the adapter truncates them to the provider's limits.
    """

    model_config = ConfigDict(frozen=True)

    email: str
    first_name: str
    last_name: str
    company: str | None = None
    job_title: str | None = None
    country: str | None = None
    work_phone: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    address_street1: str | None = None
    extra: tuple[tuple[str, str], ...] = Field(default=(), exclude=True)
    """Provider registration fields set by the org's field mapping (``shared.fieldmap``): (field name, value),
    e.g. ON24 ``("std1", "Partner")``; they override the fields above of the same name. Worked out afresh each
    time a message is decided, never stored with a message (a parked message keeps its first release's shape)."""


AttendanceStatus = Literal["live", "on_demand", "both", "none"]
"""How a registrant attended: live only, on demand only, both, or not at all (``none``: listed without activity)."""


@dataclass(frozen=True)
class AttendanceRow:
    """What a webinar's attendance list says about one attendee (a metrics row).

    Attributes:
        registrant_id: the provider's registrant id, when sent.
        email: the attendee's email, when sent.
        registration_id: the external id the registrant was created with (this app sends the CRM registration
            id), as the provider returns it.
        live_minutes, on_demand_minutes: minutes watched live and on demand, kept apart (0 when unknown).
        questions, polls, surveys, resources: questions asked, polls and surveys answered, resources downloaded
            (0 when unknown).
        engagement_score: the provider's engagement score (ON24: 0-10), None when not sent.
        first_activity, last_activity: the earliest and latest activity, live or on demand.
        attended_live, attended_on_demand: whether the provider shows live / on-demand activity (minutes or an
            activity time); None: the adapter could not tell, and the minutes decide (see ``attendance``).
    """

    registrant_id: str | None
    email: str | None
    registration_id: str | None
    live_minutes: int = 0
    on_demand_minutes: int = 0
    questions: int = 0
    polls: int = 0
    first_activity: datetime | None = None
    last_activity: datetime | None = None
    surveys: int = 0
    resources: int = 0
    engagement_score: float | None = None
    attended_live: bool | None = None
    attended_on_demand: bool | None = None

    @property
    def attendance(self) -> AttendanceStatus:
        """``live``, ``on_demand``, ``both`` or ``none``."""
        live = self.attended_live if self.attended_live is not None else self.live_minutes > 0
        later = self.attended_on_demand if self.attended_on_demand is not None else self.on_demand_minutes > 0
        if live and later:
            return "both"
        if live:
            return "live"
        return "on_demand" if later else "none"


@dataclass(frozen=True)
class RegistrantRow:
    """What a webinar's registrant list says about one active registrant (reconciliation).

    ``registration_id`` is the external id the registrant carries (this app sends the CRM registration id; a
    registrant made on the provider's own page has none). The email is compared in memory, never stored.
    """

    registrant_id: str
    email: str | None
    registration_id: str | None


class AttendancePage:
    """One page of a webinar's attendance list: its position, a fingerprint of its content, and its rows.

    The rows are built on first access: a pull that finds the fingerprint unchanged since the page was last
    written skips building and matching them. Equal fingerprints mean equal rows (a hash of the provider's
    answer for the page's attendees).
    """

    __slots__ = ("_load", "_rows", "fingerprint", "index", "size")

    def __init__(self, index: int, fingerprint: str, size: int, load: Callable[[], Sequence[AttendanceRow]]) -> None:
        self.index = index
        self.fingerprint = fingerprint
        self.size = size  # attendees on the page, known without building the rows
        self._load = load
        self._rows: Sequence[AttendanceRow] | None = None

    @property
    def rows(self) -> Sequence[AttendanceRow]:
        if self._rows is None:
            self._rows = self._load()
        return self._rows


@dataclass(frozen=True)
class WebinarSchedule:
    """When a webinar runs: ``starts_at`` (live start), ``ends_at`` (the end of its on-demand window)."""

    starts_at: datetime | None
    ends_at: datetime | None


class Registrations(Protocol):
    """Registrants of one account's webinars (RegisterAttendee)."""

    @property
    def last_unanswered_at(self) -> float | None:
        """``time.monotonic()`` when a request that may have reached the provider last went unanswered, if ever.

        Such a request may still be applied later, even if a retry then succeeded: whoever relies on the
        provider's state (the registration lease) waits until it can no longer land.
        """
        ...

    def register(self, webinar_id: str, person: Person, *, registration_id: str) -> str:
        """Create (or undelete) the registrant; returns the registrant id. Repeating it is safe."""
        ...

    def update(self, webinar_id: str, person: Person, *, registration_id: str) -> str:
        """Update the registrant with this email in place; returns the registrant id.

        Raises:
            NotFoundError: the provider holds no such registrant (any more).
        """
        ...

    def remove(self, webinar_id: str, email: str) -> None:
        """Remove (soft delete) the registrant; idempotent."""
        ...

    def forget(self, webinar_id: str, email: str) -> None:
        """Erase the registrant's personal data at the provider; idempotent."""
        ...


class Attendance(Protocol):
    """Schedules and attendance of one account's webinars (PullMetrics)."""

    def schedule(self, webinar_id: str) -> WebinarSchedule:
        """The webinar's schedule.

        Raises:
            NotFoundError: the provider has no such webinar for this account.
        """
        ...

    def attendance_pages(
        self, webinar_id: str, *, start: datetime | None, end: datetime | None, first_page: int = 0
    ) -> Iterator[AttendancePage]:
        """The attendees with activity in [start, end], page by page, from ``first_page``."""
        ...


class Registrants(Protocol):
    """The registrant list of one account's webinars (reconciliation)."""

    def registrant_pages(self, webinar_id: str) -> Iterator[Sequence[RegistrantRow]]:
        """The webinar's active registrants, page by page (paced with the attendance list's calls)."""
        ...


class WebinarProvider(Registrations, Attendance, Registrants, Protocol):
    """One org's account at the webinar provider: everything the use cases ask of it."""

    def check_credentials(self) -> None:
        """One cheap authenticated call.

        Raises:
            CredentialsRejectedError: the provider refused the credentials.
            TransientError: it could not be reached.
        """
        ...


class ProviderCredentials(Protocol):
    """The provider's part of the admin's credentials body (``PUT .../webinar/credentials``), validated."""

    @property
    def account_id(self) -> str:
        """The provider account (stored in the clear, bound to the sealed secrets)."""
        ...

    @property
    def region(self) -> str:
        """Where the account lives at the provider (stored in the clear, bound to the sealed secrets)."""
        ...

    def secrets(self) -> dict[str, str]:
        """The values to seal (``shared.credentials``); never logged or returned."""
        ...

    def check(self) -> None:
        """Apply the client's own rules to the credentials.

        Raises:
            pydantic.ValidationError: a field the client would refuse (located by its Python name).
        """
        ...
