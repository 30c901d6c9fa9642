"""The pinned credentials key version that keyed email hashes derive from (``shared.emailhash``): one row
``(~app, email-hash-key)`` in the orgs table holding the key *id* (never key material)."""

from __future__ import annotations

from azure.data.tables import TableClient

from shared.errors import TransientError
from shared.store.tables import read_entity, write_entity

_PARTITION, _ROW = "~app", "email-hash-key"


class TableKeyPin:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self) -> str | None:
        entity = read_entity(self._table, _PARTITION, _ROW, "reading the email hash key pin")
        return str(entity["KeyId"]) if entity is not None and entity.get("KeyId") else None

    def pin(self, key_id: str) -> str:
        """Create the pin with ``key_id``; when another instance created it first, theirs stands."""
        entity = {"PartitionKey": _PARTITION, "RowKey": _ROW, "KeyId": key_id}
        if write_entity(self._table, entity, None, "pinning the email hash key") is not None:
            return key_id
        pinned = self.get()
        if pinned is None:  # created and deleted meanwhile: nobody deletes it, so this is a fault
            raise TransientError("the email hash key pin vanished while it was being created; retry")
        return pinned
