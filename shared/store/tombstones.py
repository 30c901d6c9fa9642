"""Forget tombstones (issue 18): what a forget leaves behind so that a register ranked before it never registers the
person again, whether it arrives late, parked, or replayed from the dead-letter queue.

Where: the ledger table, one partition per org, ``~forgotten|<org>`` (beside the org's ledger partition, so a
registration's check is one query in one partition, and a purge deletes the partition). Rows:

- ``r|<registration id>``: every registration the forget found (ledger or parked);
- ``e|<keyed email hash>``: the person's address (``shared.emailhash``, purpose ``tombstone``), so that a
  registration the forget could not know about (no row yet: its register is still on its way) is caught too.

Each row holds ``ForgottenAt``, the forget's rank time (a forget has the highest priority, so a message at that
time or earlier ranks before it). A later forget moves it forward, never back. Rows expire
``TOMBSTONE_RETENTION`` after the forget (see the README, "Erasure": the longest way a register can come back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from azure.data.tables import TableClient

from shared.emailhash import EmailHasher
from shared.errors import TransientError
from shared.store.codec import etag_of, moment
from shared.store.tables import delete_matching, delete_partition, read_entity, table_errors, write_entity

FORGOTTEN_PARTITION = "~forgotten"
TOMBSTONE_RETENTION = timedelta(days=400)
"""Longer than any way a register ranked before a forget comes back: Service Bus redelivery (minutes), the
queue's message TTL (14 days), parking (until the org's outage ends), kept rejected bodies
(``REJECTED_RETENTION_DAYS``, the longer of the two applies) and operators' dead-letter replays (within a year)."""

TOMBSTONE_SETTLE = 1.0
"""Seconds an erasure waits between writing its tombstone and looking up the person's rows; a register whose
tombstone check and claim took longer checks again before it calls ON24 (``shared.registration.forgotten``)."""


def forgotten_partition(org_id: str) -> str:
    return f"{FORGOTTEN_PARTITION}|{org_id}"


class Tombstones:
    """Record and look up forgets by registration id and by keyed email hash (rows in ``table``)."""

    def __init__(self, table: TableClient, hasher: Callable[[], EmailHasher]) -> None:
        self._table = table
        self._hasher = hasher

    def record(
        self, org_id: str, at: datetime, *, registration_ids: Iterable[str] = (), email: str | None = None
    ) -> int:
        """Leave tombstones at ``at`` (raised to it, never lowered). Idempotent. Returns how many rows it wrote.

        Raises:
            TransientError: storage unavailable or the rows kept changing (repeat the forget).
        """
        keys = [f"r|{registration_id}" for registration_id in dict.fromkeys(registration_ids)]
        email_hash = self._hasher()(email) if email else None
        if email_hash:
            keys.append(f"e|{email_hash}")
        return sum(self._raise_to(org_id, key, at) for key in keys)

    def _raise_to(self, org_id: str, key: str, at: datetime) -> bool:
        partition, what = forgotten_partition(org_id), f"recording a forget tombstone in org {org_id!r}"
        for _ in range(5):
            entity = read_entity(self._table, partition, key, what)
            before = moment(entity.get("ForgottenAt")) if entity is not None else None
            if before is not None and before >= at:
                return False
            row = {"PartitionKey": partition, "RowKey": key, "ForgottenAt": at}
            if write_entity(self._table, row, etag_of(entity) if entity is not None else None, what) is not None:
                return True
        raise TransientError(f"the forget tombstones of org {org_id!r} kept changing; repeat the forget")

    def forgotten_at(self, org_id: str, registration_id: str, email: str | None) -> datetime | None:
        """When the latest forget of this registration or this address was ranked, or None (one query)."""
        parameters = {"p": forgotten_partition(org_id), "r": f"r|{registration_id}"}
        query = "PartitionKey eq @p and ( RowKey eq @r"
        email_hash = self._hasher()(email) if email else None
        if email_hash:
            query += " or RowKey eq @e"
            parameters["e"] = f"e|{email_hash}"
        query += " )"  # spaces around the parentheses: the SDK finds @parameters by splitting on spaces
        with table_errors(f"looking up forget tombstones of registration {registration_id} (org {org_id!r})"):
            rows = self._table.query_entities(query, parameters=parameters, select=["ForgottenAt"])
            times = [t for t in (moment(row.get("ForgottenAt")) for row in rows) if t is not None]
        return max(times, default=None)

    def checker(self, org_id: str) -> Callable[[str, str | None], bool]:
        """Whether a registration or an address was ever forgotten, for many at once (reconciliation): the org's
        tombstones are read once (erasures are few), the addresses hashed in memory.

        Raises:
            TransientError: storage unavailable; ConfigError: the hash key cannot be read.
        """
        with table_errors(f"reading the forget tombstones of org {org_id!r}"):
            keys = {
                str(row["RowKey"])
                for row in self._table.query_entities(
                    "PartitionKey eq @p", parameters={"p": forgotten_partition(org_id)}, select=["RowKey"]
                )
            }
        hasher = self._hasher() if any(key.startswith("e|") for key in keys) else None

        def forgotten(registration_id: str, email: str | None) -> bool:
            if f"r|{registration_id}" in keys:
                return True
            email_hash = hasher(email) if hasher is not None and email else None
            return bool(email_hash) and f"e|{email_hash}" in keys

        return forgotten

    def expire(self, cutoff: datetime, *, limit: int) -> tuple[int, bool]:
        """Delete up to ``limit`` tombstones of forgets ranked before ``cutoff``. Returns (deleted, none left)."""
        deleted = delete_matching(
            self._table,
            "PartitionKey gt @low and PartitionKey lt @high and ForgottenAt lt @cutoff",
            {"low": f"{FORGOTTEN_PARTITION}|", "high": f"{FORGOTTEN_PARTITION}}}", "cutoff": cutoff},
            limit=limit,
            what="deleting expired forget tombstones",
        )
        return deleted, deleted < limit

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        """Delete up to ``limit`` of the org's tombstones (a purge: the org leaves with all of its state)."""
        what = f"deleting the forget tombstones of org {org_id!r}"
        return delete_partition(self._table, forgotten_partition(org_id), limit=limit, what=what)
