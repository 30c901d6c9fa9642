"""The composition root's privacy part (``App`` inherits it): purge requests, forget tombstones, keyed email
hashes, and the privacy use cases' ports. Kept apart so that ``shared.app`` stays one screenful per concern."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from shared.app_core import AppCore
from shared.once import built_once

if TYPE_CHECKING:
    from shared.crypto import KeyProvider
    from shared.emailhash import EmailHashers
    from shared.privacy import ErasureOutcome, PrivacyOptions, PrivacyPorts
    from shared.store.blobs import MatchIndexes
    from shared.store.parked import ParkedMessages
    from shared.store.purges import PurgeRequests
    from shared.store.rejected import RejectedMessages
    from shared.store.tombstones import Tombstones


class _App(AppCore, Protocol):
    """What the privacy part uses of ``App`` beyond ``AppCore``."""

    @property
    def key_provider(self) -> KeyProvider: ...
    @property
    def rejected(self) -> RejectedMessages: ...
    @property
    def parked(self) -> ParkedMessages: ...
    @property
    def match_indexes(self) -> MatchIndexes: ...
    @property
    def purges(self) -> PurgeRequests: ...
    @property
    def email_hashers(self) -> EmailHashers: ...


class PrivacyParts:
    @built_once
    def purges(self: _App) -> PurgeRequests:
        """Open purge requests (orgs that left), beside the credentials rows."""
        from shared.store.purges import PurgeRequests

        return PurgeRequests(self.tables.table("orgs"))

    @built_once
    def email_hashers(self: _App) -> EmailHashers:
        """Keyed email hashes (tombstones, match indexes), keyed from a pinned version of the credentials key."""
        from shared.emailhash import EmailHashers
        from shared.store.keypin import TableKeyPin

        return EmailHashers(self.key_provider, TableKeyPin(self.tables.table("orgs")))

    @built_once
    def tombstones(self: _App) -> Tombstones:
        """What forgets leave, so that a register ranked before one never registers the person again (issue 18)."""
        from shared.emailhash import TOMBSTONE
        from shared.store.tombstones import Tombstones

        return Tombstones(self.tables.table("ledger"), lambda: self.email_hashers(TOMBSTONE))

    def privacy_ports(self: _App) -> PrivacyPorts:
        """The privacy use cases' stores; one person's registrations are forgotten by RegisterAttendee's own code."""
        from shared.emailhash import LEDGER
        from shared.privacy import PrivacyPorts
        from shared.registration import forget_registration

        registration = self.registration_ports()

        def forget(
            org_id: str, registration_id: str, *, requested_at: datetime, reason: str, email: str | None = None
        ) -> ErasureOutcome:
            return forget_registration(
                org_id, registration_id, registration, requested_at=requested_at, reason=reason, email=email
            )

        def email_hash(email: str | None) -> str | None:  # the key is read on first use only
            return self.email_hashers(LEDGER)(email)

        return PrivacyPorts(
            ledger=self.ledger,
            sync=self.sync_state,
            rejected=self.rejected,
            parked=self.parked,
            purges=self.purges,
            orgs=self.credentials,
            forget=forget,
            indexes=self.match_indexes,
            tombstones=self.tombstones,
            email_hash=email_hash,
        )

    def privacy_options(self: _App) -> PrivacyOptions:
        from shared.privacy import PrivacyOptions

        s = self.settings
        return PrivacyOptions(
            grace=timedelta(days=s.metrics_grace_days), rejected_retention=timedelta(days=s.rejected_retention_days)
        )
