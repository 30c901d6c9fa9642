"""Admin use cases: store (or rotate), remove and report an org's webinar provider credentials.

Removing the row is the integration's off switch: every other function reads the row per use, so after
``remove_credentials`` returns no ON24 call is made for that org by any instance.

Input rules (a 400 naming the field for anything else, before any outbound call):

- the provider's fields (ON24: ``clientId``, ``accessTokenKey``, ``accessTokenSecret``, ``region``): its model
  (``shared.webinars.ProviderCredentials``) and its client's own rules, so nothing the client would refuse is
  ever stored;
- ``dataverseUrl``: the https origin of an allowlisted Dataverse host (``shared.settings.dataverse_origin``;
  plain-http loopback only in the sandbox, ``DATAVERSE_AUTH=none``);
- ``webinarIds``: positive ON24 event ids, stored without leading zeros, duplicates dropped;
- ``fieldMapping`` (optional, ``shared.fieldmap``): its own rules first, then, before anything is stored, every
  column it names is checked against the org's Dataverse metadata (exists, readable or writable, type fits): a
  400 names the column and the reason. A PUT without it stores no mapping (as ``webinarIds``: the body replaces).

The credential check against the provider answers with one fixed message whatever ON24 said (an unknown client id
and a wrong secret look the same to the caller); the detail goes to the log. The org's effective Dataverse URL
must be its own: Dataverse's ``WhoAmI`` must name the org id (``check_dataverse_org``), so an admin of one org
cannot point the app's identity at another org's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from shared.credentials import seal_secrets
from shared.crypto import CredentialCipher
from shared.dataverse_hosts import dataverse_origin
from shared.errors import ConfigError, NotFoundError, PermanentError
from shared.fieldmap import EMPTY, FieldMapping, MappingError
from shared.fieldmap_check import check_columns, needs_dataverse
from shared.ids import WEBINAR_ID_PATTERN, canonical_org_id, is_field_name
from shared.store import CredentialStore, OrgRecord
from shared.webinars import ProviderCredentials

_log = logging.getLogger(__name__)

REFUSED_MESSAGE = "ON24 did not accept these credentials (client id, access token key or secret); nothing was stored"
UNAVAILABLE_MESSAGE = "ON24, Dataverse or the credential store is unavailable; nothing was changed, try again later"


class InputError(ValueError):
    """A request body field that breaks the rules; ``field`` is its JSON name (``webinarIds.1`` for list items)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RefusedError(PermanentError):
    """A save refused after an outbound check (a 422): ``code`` for machines, ``field`` at fault if one."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.field = code, field


class CredentialsRefusedError(RefusedError):
    """The provider refused the credentials being stored. The message is fixed; the detail is only logged."""

    def __init__(self) -> None:
        super().__init__("on24_rejected_credentials", REFUSED_MESSAGE)


class DataverseRefusedError(RefusedError):
    """The org's Dataverse URL is not bound to the org (``WhoAmI``), or cannot be checked; nothing is stored.

    Attributes:
        code: ``dataverse_org_mismatch`` (another org's URL) or ``dataverse_unverified`` (the app's identity was
            refused there, or the answer had no org id).
        field: ``dataverseUrl`` when the body gave the URL, None for the deployment's ``DATAVERSE_URL``.
    """


def check_dataverse_org(org_id: str, url: str, *, given: bool, org_behind: Callable[[str], str]) -> None:
    """Refuse a Dataverse URL whose ``OrganizationId`` (``WhoAmI``, as the app's identity sees it) is not ``org_id``,
    so an admin of one org cannot point the app's identity at another org's rows. Ids are GUIDs, not personal data.

    Raises:
        DataverseRefusedError: another org's URL, or the app's identity was refused there; TransientError: unreachable.
    """
    where = f"dataverseUrl {url}" if given else f"DATAVERSE_URL ({url}, used for orgs without a dataverseUrl)"
    field = "dataverseUrl" if given else None
    try:
        found = org_behind(url)
    except (ConfigError, PermanentError) as exc:
        _log.warning("admin: the Dataverse org behind %s could not be checked for org %s: %s", url, org_id, exc,
                     extra={"org_id": org_id, "dataverse_url": url, "error": type(exc).__name__})  # fmt: skip
        raise DataverseRefusedError(
            "dataverse_unverified",
            f"{where}: Dataverse refused the app's identity or did not say which org it is ({type(exc).__name__}); "
            "the app must be an application user there; nothing was stored",
            field,
        ) from None
    if canonical_org_id(found) != org_id:
        _log.warning("admin: %s belongs to Dataverse org %s, not to org %s: refused", where, found, org_id,
                     extra={"org_id": org_id, "dataverse_url": url, "dataverse_org": found})  # fmt: skip
        hint, found = ("" if given else "; give this org's own dataverseUrl"), found[:64]
        raise DataverseRefusedError(
            "dataverse_org_mismatch",
            f"{where} belongs to Dataverse org {found}, not to org {org_id}{hint}; nothing was stored",
            field,
        )


def _positive_event_id(value: str) -> str:
    if int(value) == 0:
        raise ValueError("must be a positive ON24 event id")
    return str(int(value))


class OrgFields(BaseModel):
    """The provider-independent part of the body: the org's Dataverse URL and webinars to pull."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, strict=True, populate_by_name=True, hide_input_in_errors=True
    )

    dataverse_url: str | None = Field(default=None, alias="dataverseUrl", max_length=300)
    webinar_ids: list[Annotated[str, Field(pattern=WEBINAR_ID_PATTERN.pattern), AfterValidator(_positive_event_id)]] = (
        Field(default_factory=list, alias="webinarIds", max_length=200)
    )
    field_mapping: FieldMapping | None = Field(default=None, alias="fieldMapping")

    @field_validator("dataverse_url")
    @classmethod
    def _org_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        sandbox = bool(info.context and info.context.get("sandbox"))
        return dataverse_origin(value, sandbox=sandbox)

    @field_validator("webinar_ids")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))


@dataclass(frozen=True)
class CredentialsInput:
    """The body of ``PUT /api/orgs/{orgId}/webinar/credentials``: the provider's fields (first) and the org's."""

    provider: ProviderCredentials
    dataverse_url: str | None
    webinar_ids: list[str]
    field_mapping: FieldMapping = EMPTY


def parse_credentials_input(
    data: Mapping[str, Any], provider_fields: type[BaseModel], *, sandbox: bool
) -> CredentialsInput:
    """Validate a decoded body: the provider's fields (and its client's own rules), then the org's, then no other.

    Args:
        data: the JSON object of the request.
        provider_fields: the provider's model of its part (``shared.webinars.ProviderCredentials``).
        sandbox: accept a loopback ``dataverseUrl`` (``DATAVERSE_AUTH=none``).

    Raises:
        InputError: the first field at fault, by its JSON name; the message never contains the value.
    """
    models: tuple[type[BaseModel], ...] = (provider_fields, OrgFields)
    try:
        provider = cast(ProviderCredentials, provider_fields.model_validate(data))
        provider.check()
        targets = getattr(provider_fields, "mapping_targets", {})  # the provider's fields a mapping may fill
        org = OrgFields.model_validate(data, context={"sandbox": sandbox, "targets": targets})
    except pydantic.ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        aliases = {name: info.alias or name for model in models for name, info in model.model_fields.items()}
        field = ".".join(aliases.get(str(part), str(part)) for part in first["loc"]) or "body"
        raise InputError(field, first["msg"]) from None
    known = {key for model in models for name, info in model.model_fields.items() for key in (name, info.alias)}
    unknown = [key for key in data if key not in known]
    if unknown:
        name = str(unknown[0])  # named only when it is shaped like a field name: a key may hold data too
        raise InputError(name if is_field_name(name) else "body", "unknown field")
    return CredentialsInput(provider, org.dataverse_url, org.webinar_ids, org.field_mapping or EMPTY)


def status_view(org_id: str, record: OrgRecord | None, *, legacy_ids: list[str] | None = None) -> dict[str, Any]:
    """The non-secret status an admin sees, including how the org's last metrics run went."""
    if record is None:
        view: dict[str, Any] = {"orgId": org_id, "configured": False}
        if legacy_ids:
            view["attention"] = (
                f"credentials stored under {', '.join(legacy_ids)} (another spelling of this org id) are ignored: "
                "PUT them again for this org id, or DELETE to remove them"
            )
        return view
    return {
        "orgId": org_id,
        "configured": True,
        "status": record.status,
        "statusReason": record.status_reason,
        "clientId": record.account_id,
        "region": record.region,
        "dataverseUrl": record.dataverse_url,
        "webinarIds": list(record.webinar_ids),
        "fieldMapping": _mapping_view(record),
        "keyVersion": record.key_id,
        "updatedAt": _iso(record.updated_at),
        "updatedBy": record.updated_by,
        "metrics": {"status": record.metrics_status, "reason": record.metrics_reason, "at": _iso(record.metrics_at)},
    }


def credentials_status(org_id: str, *, store: CredentialStore) -> dict[str, Any]:
    """CredentialsStatus: the org's view, and a hint when only a row under another spelling of its id exists."""
    record = store.get(org_id)
    return status_view(org_id, record, legacy_ids=None if record else store.variants(org_id))


def store_credentials(
    org_id: str,
    body: CredentialsInput,
    *,
    store: CredentialStore,
    cipher: CredentialCipher,
    verify: Callable[[ProviderCredentials], None],
    actor: str,
    org_behind: Callable[[str], str],
    default_dataverse_url: str | None = None,
    now: datetime | None = None,
    attributes: Callable[[str, str], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Check the credentials with the provider, then seal and save them (a re-PUT rotates).

    The org's effective Dataverse URL (``dataverseUrl``, else ``default_dataverse_url``) must belong to the org:
    ``org_behind`` (Dataverse ``WhoAmI``) answers its ``OrganizationId``. The save keeps the org's parking and
    makes its parked registrations due at ``now`` (the app's clock): those parked because ON24 refused the old
    token, or during an outage, are re-driven by the next RetryParked run. A field mapping is checked against
    that Dataverse's metadata (``attributes(url, table)``) before anything is stored.

    Raises:
        CredentialsRefusedError: the provider refused them, for whatever reason (nothing is stored; detail logged).
        DataverseRefusedError: the Dataverse URL belongs to another org, or cannot be checked (nothing is stored).
        InputError: a mapped column that does not exist, is not writable or does not fit (nothing is stored).
        TransientError: the provider, Dataverse or storage could not be reached (nothing is stored).
    """
    provider = body.provider
    try:
        verify(provider)
    except PermanentError as exc:
        _log.warning(
            "admin: ON24 refused the credentials offered for org %s (client %s): %s",
            org_id,
            provider.account_id,
            exc,
            extra={"org_id": org_id, "client_id": provider.account_id, "error": type(exc).__name__},
        )
        raise CredentialsRefusedError from None
    url = body.dataverse_url or default_dataverse_url
    if url:
        check_dataverse_org(org_id, url, given=body.dataverse_url is not None, org_behind=org_behind)
    _check_mapping(org_id, body.field_mapping, url, attributes)
    record = OrgRecord(
        org_id=org_id,
        account_id=provider.account_id,
        region=provider.region,
        envelope="",
        key_id=None,
        dataverse_url=body.dataverse_url,
        webinar_ids=tuple(body.webinar_ids),
        updated_by=actor,
        field_mapping=body.field_mapping.to_json(),
    )
    record = store.save(seal_secrets(cipher, record, provider.secrets()), now=now)
    _log.info(
        "audit: ON24 credentials stored for org %s by %s",
        org_id,
        actor,
        extra={"org_id": org_id, "actor": actor, "audit": "credentials.stored", "client_id": provider.account_id},
    )
    return status_view(org_id, record)


def _check_mapping(
    org_id: str, mapping: FieldMapping, url: str | None, attributes: Callable[[str, str], list[dict[str, Any]]] | None
) -> None:
    """Every CRM column the mapping names, against the org's Dataverse metadata (one read per table)."""
    if not needs_dataverse(mapping):
        return
    if not url or attributes is None:
        raise InputError("fieldMapping", "names CRM columns, so the org needs a Dataverse URL (dataverseUrl)")
    table = ""

    def read(logical_name: str) -> list[dict[str, Any]]:
        nonlocal table
        table = logical_name
        return attributes(url, logical_name)

    try:
        check_columns(mapping, read)
    except MappingError as exc:
        _log.info("admin: field mapping of org %s refused: %s", org_id, exc, extra={"org_id": org_id})
        raise InputError(exc.field, str(exc).split(": ", 1)[1]) from None
    except NotFoundError:
        raise InputError("fieldMapping", f"table {table} does not exist in the org's Dataverse") from None


def _mapping_view(record: OrgRecord) -> dict[str, Any] | None:
    """The stored mapping as the admin gave it (not a secret), None without one."""
    try:
        mapping = FieldMapping.from_json(record.field_mapping)
    except ConfigError:
        return {"error": "the stored field mapping cannot be read; PUT it again"}
    return mapping.view() if mapping else None


def remove_credentials(org_id: str, *, store: CredentialStore, actor: str) -> dict[str, Any]:
    """Delete the org's credentials: the integration is disabled for it from now on. Idempotent."""
    removed = store.delete(org_id)
    _log.info(
        "audit: ON24 credentials %s for org %s by %s",
        "removed" if removed else "already absent",
        org_id,
        actor,
        extra={"org_id": org_id, "actor": actor, "audit": "credentials.removed", "was_configured": bool(removed)},
    )
    return {
        "orgId": org_id,
        "removed": removed is not None,
        "configured": False,
        "clientId": removed.account_id if removed else None,
        "region": removed.region if removed else None,
        "integration": "disabled",
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


__all__ = [
    "REFUSED_MESSAGE",
    "UNAVAILABLE_MESSAGE",
    "CredentialsInput",
    "CredentialsRefusedError",
    "DataverseRefusedError",
    "InputError",
    "OrgFields",
    "RefusedError",
    "check_dataverse_org",
    "credentials_status",
    "parse_credentials_input",
    "remove_credentials",
    "status_view",
    "store_credentials",
]
