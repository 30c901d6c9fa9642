"""State in Azure Table Storage: org credentials, the registration ledger, per-webinar sync state."""

from shared.store.credentials import CredentialStore, OrgRecord
from shared.store.tables import StateTables

__all__ = ["CredentialStore", "OrgRecord", "StateTables"]
