"""An org's provider secrets sealed into its row, and opened again: the envelope bound to the row's clear columns.

The secrets are a small JSON object (the provider's names: ON24's ``accessTokenKey``/``accessTokenSecret``),
sealed with ``shared.crypto.CredentialCipher`` and bound to the org id and the row's clear columns
(``OrgRecord.bound``), so a copied blob or an edited column fails to open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace

from pydantic import SecretStr

from shared.crypto import CredentialCipher
from shared.store.credentials import OrgRecord


def seal_secrets(cipher: CredentialCipher, record: OrgRecord, secrets: Mapping[str, str]) -> OrgRecord:
    """``record`` with the envelope of ``secrets``, bound to the record's clear columns."""
    envelope = cipher.seal(record.org_id, json.dumps(dict(secrets)).encode("utf-8"), bound=record.bound)
    return replace(record, envelope=envelope, key_id=CredentialCipher.key_id_of(envelope))


def open_secrets(cipher: CredentialCipher, record: OrgRecord) -> dict[str, SecretStr]:
    """The secrets sealed in an org row.

    Raises:
        DecryptionError: the envelope or a bound clear column was altered, or it cannot be opened.
        TransientError: Key Vault could not be reached to fetch the key version.
    """
    opened = json.loads(cipher.open(record.org_id, record.envelope, bound=record.bound))
    return {str(name): SecretStr(str(value)) for name, value in opened.items()}
