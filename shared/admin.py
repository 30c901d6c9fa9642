"""Admin use cases: store (or rotate), remove and report an org's ON24 credentials.

Removing the row is the integration's off switch: every other function reads the row per use, so after
``remove_credentials`` returns no ON24 call is made for that org by any instance.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from shared.crypto import CredentialCipher
from shared.on24 import On24Credentials
from shared.settings import is_loopback_url
from shared.store import CredentialStore, OrgRecord

_log = logging.getLogger(__name__)

Token = Annotated[SecretStr, Field(min_length=1, max_length=512)]


class CredentialsInput(BaseModel):
    """The body of ``PUT /api/orgs/{orgId}/webinar/credentials``. Unknown fields are refused (typos)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    client_id: str = Field(alias="clientId", pattern=r"^[0-9]{1,20}$")
    access_token_key: Token = Field(alias="accessTokenKey")
    access_token_secret: Token = Field(alias="accessTokenSecret")
    region: Literal["na", "eu"] = "na"
    dataverse_url: str | None = Field(default=None, alias="dataverseUrl", max_length=300)
    webinar_ids: list[Annotated[str, Field(pattern=r"^[0-9]{1,18}$")]] = Field(
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
    def _org_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return f"https://{parts.netloc}"
        if parts.scheme == "http" and parts.hostname and is_loopback_url(value):
            return f"http://{parts.netloc}"
        raise ValueError("must be the https URL of the Dataverse org, e.g. https://contoso.crm.dynamics.com")

    def on24_credentials(self) -> On24Credentials:
        return On24Credentials(
            client_id=self.client_id,
            access_token_key=self.access_token_key,
            access_token_secret=self.access_token_secret,
            region=self.region,
        )


def seal_credentials(cipher: CredentialCipher, org_id: str, credentials: On24Credentials) -> str:
    """The envelope for an org's token pair (client id and region are stored in clear beside it)."""
    plaintext = json.dumps(
        {
            "accessTokenKey": credentials.access_token_key.get_secret_value(),
            "accessTokenSecret": credentials.access_token_secret.get_secret_value(),
        }
    ).encode("utf-8")
    return cipher.seal(org_id, plaintext)


def open_credentials(cipher: CredentialCipher, record: OrgRecord) -> On24Credentials:
    """Decrypt an org row into ON24 credentials. Raises ``DecryptionError`` if the envelope is bad."""
    secrets = json.loads(cipher.open(record.org_id, record.envelope))
    return On24Credentials(
        client_id=record.client_id,
        access_token_key=SecretStr(secrets["accessTokenKey"]),
        access_token_secret=SecretStr(secrets["accessTokenSecret"]),
        region="eu" if record.region == "eu" else "na",
    )


def status_view(org_id: str, record: OrgRecord | None) -> dict[str, Any]:
    """The non-secret status an admin sees."""
    if record is None:
        return {"orgId": org_id, "configured": False}
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
    }


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
        CredentialsRejectedError: ON24 refused them (nothing is stored).
        TransientError: ON24 or storage could not be reached (nothing is stored).
    """
    credentials = body.on24_credentials()
    verify(credentials)
    envelope = seal_credentials(cipher, org_id, credentials)
    record = store.save(
        OrgRecord(
            org_id=org_id,
            client_id=body.client_id,
            region=body.region,
            envelope=envelope,
            key_id=CredentialCipher.key_id_of(envelope),
            dataverse_url=body.dataverse_url,
            webinar_ids=tuple(dict.fromkeys(body.webinar_ids)),
            updated_by=actor,
        )
    )
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
