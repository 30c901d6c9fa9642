"""Admin use cases: store (or rotate), remove and report an org's ON24 credentials.

Removing the row is the integration's off switch: every other function reads the row per use, so after
``remove_credentials`` returns no ON24 call is made for that org by any instance.

Input rules (a 400 naming the field for anything else, before any outbound call):

- ``clientId``, ``accessTokenKey``, ``accessTokenSecret``, ``region``: what ``shared.on24.On24Credentials``
  accepts (the same model checks both, so nothing the ON24 client would refuse is ever stored);
- ``dataverseUrl``: the https origin of an allowlisted Dataverse host (``shared.settings.dataverse_origin``;
  plain-http loopback only in the sandbox, ``DATAVERSE_AUTH=none``);
- ``webinarIds``: positive ON24 event ids, stored without leading zeros, duplicates dropped.

The credential check against ON24 answers with one fixed message whatever ON24 said (an unknown client id
and a wrong secret look the same to the caller); the detail goes to the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from shared.crypto import CredentialCipher
from shared.errors import PermanentError
from shared.on24 import On24Credentials
from shared.settings import dataverse_origin
from shared.store import CredentialStore, OrgRecord

_log = logging.getLogger(__name__)

Token = Annotated[SecretStr, Field(min_length=1, max_length=512)]
REFUSED_MESSAGE = "ON24 did not accept these credentials (client id, access token key or secret); nothing was stored"
UNAVAILABLE_MESSAGE = "ON24 or the credential store is unavailable; nothing was changed, try again later"
_ALIASES = {
    "client_id": "clientId",
    "access_token_key": "accessTokenKey",
    "access_token_secret": "accessTokenSecret",
    "region": "region",
}


class InputError(ValueError):
    """A request body field that breaks the rules; ``field`` is its JSON name (``webinarIds.1`` for list items)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class CredentialsRefusedError(PermanentError):
    """ON24 refused the credentials being stored. The message is fixed; the detail is only logged."""

    def __init__(self) -> None:
        super().__init__(REFUSED_MESSAGE)


def _positive_event_id(value: str) -> str:
    if int(value) == 0:
        raise ValueError("must be a positive ON24 event id")
    return str(int(value))


class CredentialsInput(BaseModel):
    """The body of ``PUT /api/orgs/{orgId}/webinar/credentials``. Unknown fields are refused (typos)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, populate_by_name=True, hide_input_in_errors=True
    )

    client_id: str = Field(alias="clientId", pattern=r"^[0-9]{1,20}$")
    access_token_key: Token = Field(alias="accessTokenKey")
    access_token_secret: Token = Field(alias="accessTokenSecret")
    region: Literal["na", "eu"] = "na"
    dataverse_url: str | None = Field(default=None, alias="dataverseUrl", max_length=300)
    webinar_ids: list[Annotated[str, Field(pattern=r"^[0-9]{1,18}$"), AfterValidator(_positive_event_id)]] = Field(
        default_factory=list, alias="webinarIds", max_length=200
    )

    @field_validator("access_token_key", "access_token_secret")
    @classmethod
    def _printable(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw.strip() != raw or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
            raise ValueError("must not contain whitespace at the ends or control characters")
        return value

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

    def on24_credentials(self) -> On24Credentials:
        return On24Credentials(
            client_id=self.client_id,
            access_token_key=self.access_token_key,
            access_token_secret=self.access_token_secret,
            region=self.region,
        )


def parse_credentials_input(data: Mapping[str, Any], *, sandbox: bool) -> CredentialsInput:
    """Validate a decoded body against ``CredentialsInput`` and the ON24 client's own credential rules.

    Args:
        data: the JSON object of the request.
        sandbox: accept a loopback ``dataverseUrl`` (``DATAVERSE_AUTH=none``).

    Raises:
        InputError: the first field at fault, by its JSON name; the message never contains the value.
    """
    try:
        body = CredentialsInput.model_validate(data, context={"sandbox": sandbox})
        body.on24_credentials()
    except pydantic.ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        field = ".".join(_ALIASES.get(str(part), str(part)) for part in first["loc"]) or "body"
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise InputError(field, message) from None
    return body


def seal_credentials(cipher: CredentialCipher, record: OrgRecord, credentials: On24Credentials) -> OrgRecord:
    """``record`` with the envelope for the org's token pair, bound to the record's clear columns."""
    plaintext = json.dumps(
        {
            "accessTokenKey": credentials.access_token_key.get_secret_value(),
            "accessTokenSecret": credentials.access_token_secret.get_secret_value(),
        }
    ).encode("utf-8")
    envelope = cipher.seal(record.org_id, plaintext, bound=record.bound)
    return replace(record, envelope=envelope, key_id=CredentialCipher.key_id_of(envelope))


def open_credentials(cipher: CredentialCipher, record: OrgRecord) -> On24Credentials:
    """Decrypt an org row into ON24 credentials.

    Raises:
        DecryptionError: the envelope or a bound clear column was altered, or it cannot be opened.
    """
    secrets = json.loads(cipher.open(record.org_id, record.envelope, bound=record.bound))
    return On24Credentials(
        client_id=record.client_id,
        access_token_key=SecretStr(secrets["accessTokenKey"]),
        access_token_secret=SecretStr(secrets["accessTokenSecret"]),
        region="eu" if record.region == "eu" else "na",
    )


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
        "clientId": record.client_id,
        "region": record.region,
        "dataverseUrl": record.dataverse_url,
        "webinarIds": list(record.webinar_ids),
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
    verify: Callable[[On24Credentials], None],
    actor: str,
) -> dict[str, Any]:
    """Check the credentials against ON24, then seal and save them (a re-PUT rotates).

    Raises:
        CredentialsRefusedError: ON24 refused them, for whatever reason (nothing is stored; detail logged).
        TransientError: ON24 or storage could not be reached (nothing is stored).
    """
    credentials = body.on24_credentials()
    try:
        verify(credentials)
    except PermanentError as exc:
        _log.warning(
            "admin: ON24 refused the credentials offered for org %s (client %s): %s",
            org_id,
            body.client_id,
            exc,
            extra={"org_id": org_id, "client_id": body.client_id, "error": type(exc).__name__},
        )
        raise CredentialsRefusedError from None
    record = OrgRecord(
        org_id=org_id,
        client_id=body.client_id,
        region=body.region,
        envelope="",
        key_id=None,
        dataverse_url=body.dataverse_url,
        webinar_ids=tuple(body.webinar_ids),
        updated_by=actor,
    )
    record = store.save(seal_credentials(cipher, record, credentials))
    _log.info(
        "audit: ON24 credentials stored for org %s by %s",
        org_id,
        actor,
        extra={"org_id": org_id, "actor": actor, "audit": "credentials.stored", "client_id": body.client_id},
    )
    return status_view(org_id, record)


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
        "clientId": removed.client_id if removed else None,
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
    "InputError",
    "credentials_status",
    "open_credentials",
    "parse_credentials_input",
    "remove_credentials",
    "seal_credentials",
    "status_view",
    "store_credentials",
]
