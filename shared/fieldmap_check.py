"""A field mapping checked against the org's Dataverse metadata when it is saved: every column it names must exist
on its table, be readable (sent to the provider) or writable (written by PullMetrics), and have a type the value
fits. One metadata read per table named (``EntityDefinitions(LogicalName='…')/Attributes``), never per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from shared.fieldmap import ATTENDANCE_VALUES, CHECKIN, FITS, SENDABLE, FieldMapping, MappingError, ValueKind


@dataclass(frozen=True)
class Attribute:
    """One column's metadata, as far as a mapping needs it."""

    name: str
    type: str
    readable: bool
    creatable: bool
    updatable: bool

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Attribute:
        return cls(
            name=str(value.get("LogicalName") or ""),
            type=str(value.get("AttributeType") or ""),
            readable=value.get("IsValidForRead") is True,
            creatable=value.get("IsValidForCreate") is True,
            updatable=value.get("IsValidForUpdate") is True,
        )


@dataclass(frozen=True)
class _Use:
    path: str  # the JSON path of the entry, e.g. toCrm.2.column
    table: str
    column: str
    kind: ValueKind | None  # None: read and sent to the provider
    creates: bool = False  # the write may create the row (check-ins are upserted)


def _uses(mapping: FieldMapping) -> Iterator[_Use]:
    for index, entry in enumerate(mapping.to_provider):
        if entry.column is not None:
            yield _Use(f"fieldMapping.toProvider.{index}.column", entry.table, entry.column, None)
    for index, crm in enumerate(mapping.to_crm):
        kind = ATTENDANCE_VALUES[crm.value]
        yield _Use(f"fieldMapping.toCrm.{index}.column", crm.table, crm.column, kind, creates=crm.table == CHECKIN)
    if mapping.no_show is not None:
        yield _Use("fieldMapping.noShow.column", "msevtmgt_eventregistration", mapping.no_show.column,
                   mapping.no_show.kind)  # fmt: skip


def needs_dataverse(mapping: FieldMapping) -> bool:
    """Whether the mapping names any CRM column (then the org needs a Dataverse URL to save it)."""
    return next(_uses(mapping), None) is not None


def check_columns(mapping: FieldMapping, attributes: Callable[[str], list[dict[str, Any]]]) -> None:
    """Check every column the mapping names against ``attributes(table logical name)`` (Dataverse metadata).

    Raises:
        MappingError: the first column at fault, by its JSON path, with the table, the column and the reason.
        NotFoundError, TransientError, ConfigError: as the metadata read.
    """
    tables: dict[str, dict[str, Attribute]] = {}
    for use in _uses(mapping):
        if use.table not in tables:
            tables[use.table] = {a.name: a for a in map(Attribute.of, attributes(use.table))}
        attribute = tables[use.table].get(use.column)
        where = f"{use.table}.{use.column}"
        if attribute is None:
            raise MappingError(use.path, f"{where} does not exist in the org's Dataverse")
        if use.kind is None:
            if not attribute.readable:
                raise MappingError(use.path, f"{where} cannot be read")
            if attribute.type not in SENDABLE:
                raise MappingError(
                    use.path, f"{where} is a {attribute.type} column; only text, number, yes/no and date columns "
                    "can be sent to the provider"
                )  # fmt: skip
            continue
        if not attribute.updatable or (use.creates and not attribute.creatable):
            raise MappingError(use.path, f"{where} is not writable (IsValidForUpdate/IsValidForCreate is false)")
        if attribute.type not in FITS[use.kind]:
            fits = ", ".join(sorted(FITS[use.kind]))
            raise MappingError(use.path, f"{where} is a {attribute.type} column; a {use.kind} value needs {fits}")
