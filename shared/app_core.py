"""What every part of the composition root (``shared.app_privacy``, ``shared.app_reconcile``) uses of ``App``: one
structural type, so that each part names only what it adds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shared.registration import RegistrationPorts
    from shared.settings import Settings
    from shared.store import CredentialStore, StateTables
    from shared.store.ledger import Ledger
    from shared.store.sync_state import SyncStateStore
    from shared.store.tombstones import Tombstones


class AppCore(Protocol):
    """The state stores and settings ``App`` builds once, as its parts see them."""

    settings: Settings
    _build_lock: Any

    @property
    def tables(self) -> StateTables: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def sync_state(self) -> SyncStateStore: ...
    @property
    def credentials(self) -> CredentialStore: ...
    @property
    def tombstones(self) -> Tombstones: ...
    def registration_ports(self) -> RegistrationPorts: ...
