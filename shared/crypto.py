"""Envelope encryption of an org's ON24 credentials (AES-256-GCM), keyed from Key Vault or a local key.

Each record gets a fresh 256-bit data key; the payload is sealed with it, and the data key is sealed with
the key-encryption key (KEK) from a ``KeyProvider``. Both seals use the same associated data: the org id
and the record's clear columns (``bound``: the ON24 client id, region and Dataverse URL stored beside the
envelope), so a blob copied to another org's row fails to open, and so does a row whose clear columns were
edited in the table. The envelope names the KEK version it was sealed with: rotating the Key Vault secret
adds a version, new writes use it, and old rows still open with theirs.

Envelope (compact JSON, all binary fields base64)::

    {"v": 2, "kid": "kv:<secret name>/<version>", "dk": <nonce|sealed data key>, "n": <nonce>, "ct": <sealed payload>}

Version 1 envelopes bound only the org id. They are refused with a message asking to store the credentials
again (one admin PUT per org): the product was not yet deployed to customers when the binding came, so no
silent upgrade path is kept, and a v1 row whose clear columns had been edited can never be mistaken for a
good one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.errors import ConfigError, DecryptionError, SecretUnavailableError

_log = logging.getLogger(__name__)

ENVELOPE_VERSION = 2
_AAD_PREFIX = b"on24-credentials/v2\n"
_NONCE_BYTES = 12
_KEY_BYTES = 32


@dataclass(frozen=True)
class KeyMaterial:
    """A key-encryption key and the id that names its version. ``repr`` shows the id only."""

    key_id: str
    secret: bytes = field(repr=False)


class KeyProvider(Protocol):
    """Where key-encryption keys come from."""

    def current_key(self) -> KeyMaterial:
        """The key new envelopes are sealed with."""
        ...

    def key(self, key_id: str) -> KeyMaterial:
        """The key an existing envelope names. Raises ``DecryptionError`` when it is unknown."""
        ...


class SecretSource(Protocol):
    """The one Key Vault read this module needs (``KeyVaultSecretSource`` adapts ``SecretClient``)."""

    def get_secret(self, name: str, version: str | None = None) -> tuple[str, str]:
        """Return ``(version, value)`` of a secret; the latest version when ``version`` is None.

        Raises:
            SecretUnavailableError: the secret or that version does not exist or is disabled.
            TransientError: Key Vault could not be reached or throttled us.
            ConfigError: the app's identity may not read the secret.
        """
        ...


def _decode_key(raw: str, where: str) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where} must hold base64 of 32 random bytes") from None
    if len(key) != _KEY_BYTES:
        raise ConfigError(f"{where} must decode to exactly 32 bytes (AES-256), got {len(key)}")
    return key


class LocalKeyProvider:
    """A single key from the ``CREDENTIALS_KEY`` setting, for development and the sandbox.

    Its id is a fingerprint of the key, so envelopes sealed under a different local key fail with a
    message saying so instead of an opaque authentication error.
    """

    def __init__(self, base64_key: str) -> None:
        secret = _decode_key(base64_key, "setting CREDENTIALS_KEY")
        fingerprint = hashlib.sha256(b"on24-kek-fingerprint" + secret).hexdigest()[:16]
        self._material = KeyMaterial(f"local:{fingerprint}", secret)

    def current_key(self) -> KeyMaterial:
        return self._material

    def key(self, key_id: str) -> KeyMaterial:
        if key_id != self._material.key_id:
            raise DecryptionError(f"envelope was sealed with key {key_id!r}, which is not the configured local key")
        return self._material


class KeyVaultKeyProvider:
    """Key-encryption keys held as versions of one Key Vault secret (base64 of 32 bytes).

    Versions are immutable, so each is cached for the life of the process once read. Which version is
    current is re-read every ``refresh_seconds``, so a rotation takes effect without a restart. Reads of
    cached keys never wait for Key Vault: one thread fetches, and while it refreshes the current version
    the others keep sealing with the one they have.
    """

    def __init__(
        self,
        source: SecretSource,
        secret_name: str,
        *,
        refresh_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not secret_name:
            raise ValueError("secret_name must not be empty")
        self._source = source
        self._name = secret_name
        self._refresh = refresh_seconds
        self._clock = clock
        self._fetching = threading.Lock()
        self._versions: dict[str, KeyMaterial] = {}
        self._current: tuple[KeyMaterial, float] | None = None

    def _material(self, version: str, value: str) -> KeyMaterial:
        secret = _decode_key(value, f"Key Vault secret {self._name!r} (version {version})")
        material = KeyMaterial(f"kv:{self._name}/{version}", secret)
        self._versions[version] = material
        return material

    def current_key(self) -> KeyMaterial:
        current = self._current
        if current is not None and self._clock() - current[1] < self._refresh:
            return current[0]
        if current is not None and not self._fetching.acquire(blocking=False):
            return current[0]  # another thread is refreshing; the version we have still seals
        if current is None:
            self._fetching.acquire()
        try:
            current = self._current
            if current is not None and self._clock() - current[1] < self._refresh:
                return current[0]
            try:
                version, value = self._source.get_secret(self._name)
            except SecretUnavailableError as exc:
                state = "is disabled" if exc.disabled else "does not exist"
                raise ConfigError(
                    f"the latest version of Key Vault secret {self._name!r} (CREDENTIALS_KEY_SECRET_NAME) {state}: "
                    "enable it or add a new version"
                ) from None
            material = self._versions.get(version) or self._material(version, value)
            if current is not None and current[0].key_id != material.key_id:
                _log.info("credentials key rotated to %s", material.key_id, extra={"key_id": material.key_id})
            self._current = (material, self._clock())
            return material
        finally:
            self._fetching.release()

    def key(self, key_id: str) -> KeyMaterial:
        prefix = f"kv:{self._name}/"
        if not key_id.startswith(prefix):
            raise DecryptionError(f"envelope was sealed with key {key_id!r}, not a version of secret {self._name!r}")
        version = key_id[len(prefix) :]
        cached = self._versions.get(version)
        if cached is not None:
            return cached
        with self._fetching:
            cached = self._versions.get(version)
            if cached is not None:
                return cached
            try:
                got_version, value = self._source.get_secret(self._name, version)
            except SecretUnavailableError as exc:
                if exc.disabled:
                    raise DecryptionError(
                        f"key version {key_id!r} is disabled in Key Vault: enable that version of secret "
                        f"{self._name!r}, or store the org's credentials again to seal them with the current one"
                    ) from None
                raise DecryptionError(
                    f"key version {key_id!r} no longer exists in Key Vault: recover secret {self._name!r} "
                    "(soft delete), or store the org's credentials again"
                ) from None
            return self._material(got_version, value)


class CredentialCipher:
    """Seals and opens credential records for one org at a time, bound to the record's clear columns."""

    def __init__(self, keys: KeyProvider) -> None:
        self._keys = keys

    @staticmethod
    def _aad(org_id: str, bound: Mapping[str, str] | None) -> bytes:
        context = dict(bound or {})
        if "org" in context:
            raise ValueError("'org' is reserved in the associated data")
        context["org"] = org_id
        return _AAD_PREFIX + json.dumps(context, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def seal(self, org_id: str, plaintext: bytes, *, bound: Mapping[str, str] | None = None) -> str:
        """Encrypt ``plaintext`` for ``org_id`` and return the envelope text.

        Args:
            org_id: the org the record belongs to.
            plaintext: the secret payload.
            bound: clear values stored beside the envelope that must not change without the envelope failing to
                open (authenticated, not encrypted); ``open`` must be given the same mapping.
        """
        kek = self._keys.current_key()
        aad = self._aad(org_id, bound)
        data_key = AESGCM.generate_key(bit_length=256)
        dk_nonce, nonce = os.urandom(_NONCE_BYTES), os.urandom(_NONCE_BYTES)
        sealed_key = dk_nonce + AESGCM(kek.secret).encrypt(dk_nonce, data_key, aad)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        envelope = {
            "v": ENVELOPE_VERSION,
            "kid": kek.key_id,
            "dk": base64.b64encode(sealed_key).decode("ascii"),
            "n": base64.b64encode(nonce).decode("ascii"),
            "ct": base64.b64encode(ciphertext).decode("ascii"),
        }
        return json.dumps(envelope, separators=(",", ":"))

    def open(self, org_id: str, envelope: str, *, bound: Mapping[str, str] | None = None) -> bytes:
        """Decrypt an envelope sealed for ``org_id`` with the same ``bound`` values.

        Raises:
            DecryptionError: malformed, tampered, sealed for another org, bound values changed, a v1 envelope
                (re-store the credentials), or an unknown key version.
            TransientError: Key Vault could not be reached to fetch the key version.
        """
        try:
            fields = json.loads(envelope)
            version = fields.get("v") if isinstance(fields, dict) else None
            if version == 1:
                raise DecryptionError(
                    f"stored credentials of org {org_id!r} use envelope format v1, which does not bind the client "
                    "id, region and Dataverse URL: re-store the credentials (PUT /api/orgs/{orgId}/webinar/credentials)"
                )
            if version != ENVELOPE_VERSION:
                raise ValueError("unsupported envelope version")
            key_id = str(fields["kid"])
            sealed_key = base64.b64decode(fields["dk"], validate=True)
            nonce = base64.b64decode(fields["n"], validate=True)
            ciphertext = base64.b64decode(fields["ct"], validate=True)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise DecryptionError(f"stored credentials of org {org_id!r} are not a readable envelope ({exc})") from None
        kek = self._keys.key(key_id)
        aad = self._aad(org_id, bound)
        try:
            data_key = AESGCM(kek.secret).decrypt(sealed_key[:_NONCE_BYTES], sealed_key[_NONCE_BYTES:], aad)
            return AESGCM(data_key).decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise DecryptionError(
                f"stored credentials of org {org_id!r} failed authentication under key {key_id!r}: the envelope "
                "was altered, belongs to another org, its clear columns (client id, region, Dataverse URL) were "
                "changed in the table, or it names the wrong key version; re-store the credentials"
            ) from None

    @staticmethod
    def key_id_of(envelope: str) -> str | None:
        """The key id an envelope names, without decrypting (for status and rotation reports)."""
        try:
            value = json.loads(envelope).get("kid")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None


def derive_key(material: KeyMaterial, purpose: str) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA256 of the key-encryption key, the purpose as its label): a keyed
    hash made with it cannot be tested by anyone without the credentials key, and no purpose's key reveals
    another's or the key-encryption key."""
    label = f"on24-integration/{purpose}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=_KEY_BYTES, salt=None, info=label).derive(material.secret)


__all__ = [
    "CredentialCipher",
    "KeyMaterial",
    "KeyProvider",
    "KeyVaultKeyProvider",
    "LocalKeyProvider",
    "SecretSource",
    "derive_key",
]
