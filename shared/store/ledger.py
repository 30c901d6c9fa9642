"""The registration ledger: one row per (org, CRM registration id) recording what ON24 holds for it.

Every change to a row is conditional on its etag, which is what makes redelivery, duplicates and races
safe. A delivery that will call ON24 first *claims* the row: one etag-guarded write that takes a short
lease and records its intent (the action, ON24 event and email it is about to apply) and adds the target
to the row's *pending* registrants. Only then does it call ON24; it finishes with one more write that
records the outcome and drops the lease. The row therefore always knows every ON24 registrant that may
exist for the registration: the confirmed one (``state == "registered"``: ``on24_event_id``/``email``)
and the pending ones an interrupted delivery may have left behind, which the next delivery removes.

The row stores the attendee's email because ON24 keys updates and soft deletes by email; it never
stores credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.emails import match_key
from shared.store.ledger_rows import Intent, LedgerEntry, LedgerState, RegistrantRef, pending_column
from shared.store.parked import PARKED_PARTITION
from shared.store.tables import (
    TRANSACTION_SIZE,
    delete_matching,
    delete_partition,
    read_entity,
    table_errors,
    write_entity,
)

_log = logging.getLogger(__name__)


_PERSONAL_COLUMNS = {"Email": "", "Pending": "", "Fingerprint": ""}  # what retention empties


def _rows_of(
    org_id: str, *, webinar_id: str | None = None, after: str | None = None, updated_since: datetime | None = None
) -> tuple[str, dict[str, Any]]:
    """The filter of an org's ledger rows: of one ON24 event, after a row key, written since a time.

    "Written" means by ``Ledger.write``, the only writer of ``UpdatedAt``: merges such as retention's change the
    system ``Timestamp`` of every row they touch and would make each pass rescan them.
    """
    clauses = ["PartitionKey eq @org"]
    parameters: dict[str, Any] = {"org": org_id}
    conditions: tuple[tuple[str, str, str | datetime | None], ...] = (
        ("On24EventId eq @event", "event", webinar_id),
        ("RowKey gt @after", "after", after),
        ("UpdatedAt ge @since", "since", updated_since),
    )
    for clause, name, value in conditions:
        if value is not None:
            clauses.append(clause)
            parameters[name] = value
    return " and ".join(clauses), parameters


class LedgerReader(Protocol):
    """What the metrics pull, its recent-rows read and the health tally read of the ledger: its rows, filtered."""

    def entries(
        self,
        org_id: str,
        *,
        webinar_id: str | None = None,
        columns: Sequence[str] | None = None,
        updated_since: datetime | None = None,
    ) -> Iterator[LedgerEntry]: ...


class Ledger:
    """Etag-guarded reads and writes of ledger rows in the ``<prefix>ledger`` table."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get(self, org_id: str, registration_id: str) -> LedgerEntry | None:
        what = f"reading the ledger row of registration {registration_id} (org {org_id!r})"
        entity = read_entity(self._table, org_id, registration_id, what)
        return None if entity is None else LedgerEntry.from_entity(entity)

    def write(self, entry: LedgerEntry) -> LedgerEntry | None:
        """Store ``entry`` if the row is still at ``entry.etag`` (absent when etag is None).

        Returns:
            The entry with its new etag, or None when another writer got there first (re-read and decide again).
        """
        entry = replace(entry, updated_at=datetime.now(UTC))
        what = f"writing the ledger row of registration {entry.registration_id} (org {entry.org_id!r})"
        etag = write_entity(self._table, entry.to_entity(), entry.etag, what)
        return None if etag is None else replace(entry, etag=etag)

    def entries(
        self,
        org_id: str,
        *,
        webinar_id: str | None = None,
        columns: Sequence[str] | None = None,
        updated_since: datetime | None = None,
    ) -> Iterator[LedgerEntry]:
        """An org's ledger rows, optionally only those of one ON24 event, only those a registration wrote at or
        after ``updated_since`` (``UpdatedAt``), and only some ``columns`` (the rest read as defaults): a
        webinar's match index is built from 100,000 rows this way once, then kept up to date with the few
        written since."""
        query, parameters = _rows_of(org_id, webinar_id=webinar_id, updated_since=updated_since)
        select = ["PartitionKey", "RowKey", *columns] if columns else None
        with table_errors(f"listing ledger rows of org {org_id!r}"):
            for entity in self._table.query_entities(query, parameters=parameters, select=select):
                yield LedgerEntry.from_entity(entity)

    def registrations_of(
        self, org_id: str, *, contact_id: str | None, email: str | None, email_hash: str | None = None
    ) -> list[str]:
        """The org's registrations of one person: by CRM contact id, by email (confirmed or pending, compared
        case-insensitively, as ON24 does), or by the keyed hash retention left in place of a cleared email
        (``email_hash``; forgotten rows excepted). Emails are compared in their match form (any case, IDN domain in
        Unicode or ASCII). Reads the org's partition: for erasure, not for every message."""
        by_address, by_hash = self.person_rows(org_id, contact_id=contact_id, email=email, email_hash=email_hash)
        return [*by_address, *by_hash]

    def person_rows(
        self,
        org_id: str,
        *,
        contact_id: str | None,
        email: str | None,
        email_hash: str | None,
        updated_since: datetime | None = None,
    ) -> tuple[list[str], list[str]]:
        """``registrations_of`` in one read of the partition (only rows written since ``updated_since``), split:
        (found by contact id or email, found only by the keyed hash of an email retention cleared: their removal
        needs the address from the caller)."""
        wanted = match_key(email) if email else None
        by_address: list[str] = []
        by_hash: list[str] = []
        query, parameters = _rows_of(org_id, updated_since=updated_since)
        with table_errors(f"finding the registrations of a person in org {org_id!r}"):
            rows = self._table.query_entities(
                query, parameters=parameters, select=["RowKey", "ContactId", "Email", "Pending", "EmailHash", "State"]
            )
            for row in rows:
                emails = {match_key(str(row.get("Email") or ""))}
                emails |= {match_key(ref.email) for ref in pending_column(row.get("Pending"), org_id, row["RowKey"])}
                if (contact_id and row.get("ContactId") == contact_id) or (wanted and wanted in emails):
                    by_address.append(str(row["RowKey"]))
                elif email_hash and row.get("EmailHash") == email_hash and row.get("State") != "forgotten":
                    by_hash.append(str(row["RowKey"]))
        return by_address, by_hash

    def webinars_touched_since(self, org_id: str, since: datetime | None) -> set[str]:
        """ON24 event ids of the org's ledger rows written by registrations since ``since`` (all when None)."""
        query, parameters = _rows_of(org_id, updated_since=since)
        with table_errors(f"discovering webinars of org {org_id!r}"):
            return {
                str(entity["On24EventId"])
                for entity in self._table.query_entities(query, parameters=parameters, select=["On24EventId"])
                if entity.get("On24EventId")
            }

    def changed_since(self, org_id: str, since: datetime) -> bool:
        """Whether a registration of the org recorded anything (``write``) at or after ``since``.

        Read-only, for the health summary: it stops at the first matching row, so an unchanged org costs one
        query (Table Storage still evaluates the filter over the partition, like ``webinars_touched_since``).
        """
        query, parameters = _rows_of(org_id, updated_since=since)
        with table_errors(f"looking for changed ledger rows of org {org_id!r}"):
            rows = self._table.query_entities(query, parameters=parameters, select=["RowKey"], results_per_page=1)
            return next(iter(rows), None) is not None

    # ---- privacy: retention, erasure lookup and purge (issue 14) -------------------------------------------
    def personal_rows(
        self, org_id: str, webinar_id: str, *, after: str | None = None, updated_since: datetime | None = None
    ) -> Iterator[LedgerEntry]:
        """The rows of one ON24 event that still hold personal data (an email in ``Email``, ``Pending`` or
        ``Intent``), in row key order; only those after row key ``after`` and written since ``updated_since``.

        The email never goes into the query (a request URL may be logged): only emptiness is tested.
        """
        query, parameters = _rows_of(org_id, webinar_id=webinar_id, after=after, updated_since=updated_since)
        query += " and (Email ne '' or Pending ne '' or Intent ne '')"
        with table_errors(f"listing ledger rows with personal data of webinar {webinar_id} (org {org_id!r})"):
            for entity in self._table.query_entities(query, parameters=parameters):
                yield LedgerEntry.from_entity(entity)

    def clear_personal_data(
        self, entries: Sequence[LedgerEntry], email_hash: Callable[[str | None], str | None] | None = None
    ) -> list[str]:
        """Empty ``Email``, ``Pending`` and ``Fingerprint`` (a hash of the person's fields) of rows that are still at
        the version read (``entry.etag``); with ``email_hash``, ``EmailHash`` keeps a keyed hash of the email, so that
        a forget given the address still finds the row (and removes the ON24 registrant with the address it was
        given).

        Every other column stays: the ids, the state, the message rank, the metrics hash. A row written since it
        was read (a delivery took a lease, recorded an intent, ...) is left alone: no write ever lands on a row
        that changed, so none lands over a lease. Rows go in entity group transactions of up to 100.

        Returns:
            The registration ids whose rows were cleared.
        """
        cleared: list[str] = []
        for start in range(0, len(entries), TRANSACTION_SIZE):
            chunk = [e for e in entries[start : start + TRANSACTION_SIZE] if e.etag]
            operations: list[Any] = [
                (
                    "update",
                    _cleared(e, email_hash),
                    {"mode": UpdateMode.MERGE, "etag": e.etag, "match_condition": MatchConditions.IfNotModified},
                )
                for e in chunk
            ]
            by_partition: dict[str, list[Any]] = {}
            for operation in operations:
                by_partition.setdefault(operation[1]["PartitionKey"], []).append(operation)
            for org_id, group in by_partition.items():
                with table_errors(f"clearing personal data from ledger rows of org {org_id!r}"):
                    try:
                        self._table.submit_transaction(group)
                        cleared.extend(op[1]["RowKey"] for op in group)
                        continue
                    except TableTransactionError:  # one row changed meanwhile: the others row by row
                        pass
                    for _, entity, options in group:
                        try:
                            self._table.update_entity(entity, **options)
                        except (ResourceModifiedError, ResourceNotFoundError):
                            continue
                        cleared.append(entity["RowKey"])
        return cleared

    def delete_org_rows(self, org_id: str, *, limit: int) -> int:
        """Delete up to ``limit`` of the org's ledger rows (a purge). Returns how many; fewer: none left."""
        return delete_partition(self._table, org_id, limit=limit, what=f"deleting the ledger rows of org {org_id!r}")

    def delete_parked(self, org_id: str, *, limit: int) -> int:
        """Delete up to ``limit`` of the org's parked registrations (partition ``~parked``, row keys
        ``<org>|<registration>``). Org ids never contain ``|`` or ``}``, so the range holds this org's only."""
        return delete_matching(
            self._table,
            "PartitionKey eq @parked and RowKey gt @low and RowKey lt @high",
            {"parked": PARKED_PARTITION, "low": f"{org_id}|", "high": f"{org_id}}}"},
            limit=limit,
            what=f"deleting the parked registrations of org {org_id!r}",
        )


def _cleared(entry: LedgerEntry, email_hash: Callable[[str | None], str | None] | None) -> dict[str, Any]:
    """The merge that clears a row's personal data, leaving the keyed hash of its email when one is given."""
    columns: dict[str, Any] = {
        "PartitionKey": entry.org_id,
        "RowKey": entry.registration_id,
        **_PERSONAL_COLUMNS,
    }
    if email_hash is not None and entry.email:
        columns["EmailHash"] = email_hash(entry.email) or ""
    return columns


__all__ = ["Intent", "Ledger", "LedgerEntry", "LedgerState", "RegistrantRef"]
