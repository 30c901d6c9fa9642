"""Keyed hashes of email addresses (issue 18): forget tombstones and PullMetrics' match indexes compare people by
them, never by the address. This module is the one place that decides an address's compared form and its hash.

Why a secret key: a hash keyed by something public (it used to be the org id, the match index blob's own name
prefix) lets anyone who reads the stored hashes test guessed addresses. The key is derived from the credentials
key (``shared.crypto.derive_key``, one label per purpose), so only a holder of the Key Vault secret (or of
``CREDENTIALS_KEY``) can compute it.

Why pinned: the key comes from one *version* of the credentials key, the one current when a hash was first
needed, whose id (never the key) is recorded in a ``KeyPin``. Rotating the Key Vault secret adds versions but does
not change the hashes, so a tombstone written before a rotation still stops a late register after it. That
version must stay enabled in Key Vault (as it must while credentials sealed under it remain); if it cannot be
read, hashing fails loudly (``ConfigError``: every delivery waits for the fix) instead of silently matching
nothing.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Protocol

from shared.crypto import KeyProvider, derive_key
from shared.emails import match_key
from shared.errors import ConfigError, DecryptionError

TOMBSTONE = "tombstone"
MATCH_INDEX = "match-index"
LEDGER = "ledger"  # what retention leaves in a ledger row in place of the email it clears


def compared_form(email: str) -> str:
    """The form in which two addresses of one person are equal (:func:`shared.emails.match_key`: any case, IDN
    domain in Unicode or ASCII; an ASCII address only case-folded, so hashes made before IDN support stay valid).

    Every keyed hash goes through here, so a change of the compared form is made once; stored hashes then need the
    pin's purpose label bumped, and match indexes rebuild themselves (their blob names the key id).
    """
    return match_key(email)


@dataclass(frozen=True)
class EmailHasher:
    """A keyed hash of an address's compared form (BLAKE2b, 128 bits, hex). ``repr`` shows the key id only."""

    key_id: str
    """``<credentials key version>#<purpose>``: stored hashes name the key they were made with."""
    key: bytes = field(repr=False)

    def __call__(self, email: str | None) -> str | None:
        if not email:
            return None
        digest = hashlib.blake2b(compared_form(email).encode("utf-8"), digest_size=16, key=self.key)
        return digest.hexdigest()


class KeyPin(Protocol):
    """Where the id of the credentials key version that hashes are derived from is recorded."""

    def get(self) -> str | None: ...

    def pin(self, key_id: str) -> str:
        """Record ``key_id`` unless one is recorded already; return the recorded one (the first writer wins)."""
        ...


class EmailHashers:
    """The hasher of each purpose, built on first use (a pin read and, once, a Key Vault read) and kept."""

    def __init__(self, keys: KeyProvider, pin: KeyPin) -> None:
        self._keys = keys
        self._pin = pin
        self._lock = threading.Lock()
        self._built: dict[str, EmailHasher] = {}

    def __call__(self, purpose: str) -> EmailHasher:
        """The hasher for ``purpose``.

        Raises:
            ConfigError: the pinned key version can no longer be read (disabled or deleted in Key Vault, or another
                ``CREDENTIALS_KEY``), or the app's identity may not read Key Vault or Table Storage.
            TransientError: Key Vault or Table Storage could not be reached.
        """
        with self._lock:
            hasher = self._built.get(purpose)
            if hasher is None:
                key_id = self._pin.get() or self._pin.pin(self._keys.current_key().key_id)
                try:
                    material = self._keys.key(key_id)
                except DecryptionError as exc:
                    raise ConfigError(
                        f"the credentials key version {key_id!r} that keyed email hashes (forget tombstones, match "
                        f"indexes) derive from cannot be read: {exc}. Enable that version again; a new key would "
                        "make every stored hash miss"
                    ) from exc
                key = derive_key(material, f"email-hash/{purpose}")
                hasher = self._built[purpose] = EmailHasher(f"{key_id}#{purpose}", key)
            return hasher
